"""Building blocks shared by the CIFAR and ImageNet networks (paper Sections 3.3 and 4.2).

A *plain* network is the very same stack built with `residual=False`: each block keeps its convolutions and
drops the shortcut, so plain and residual nets differ only in the addition (plus the projection weights of
options B and C).

Module names follow torchvision (conv1/bn1/.../downsample) so that its ImageNet checkpoints load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

SHORTCUTS = ("A", "B", "C")


def check_shortcut(option: str) -> str:
    if option not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {option!r}: choose one of {', '.join(SHORTCUTS)}")
    return option


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by BN, whose shift makes a bias redundant.
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity shortcut that subsamples by `stride` and appends zero channels; no parameters.

    The extra channels go at the end (the paper does not say where). Where they go does not matter: a block's
    output channels are in arbitrary order, so any placement is the same network up to a channel permutation.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"zero-padding cannot reduce channels ({in_ch} -> {out_ch})")
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            # Same output size as a stride-s conv with "same" padding: ceil(H / s).
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_ch - self.in_ch))

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, stride={self.stride}"


def make_shortcut(option: str, in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """The shortcut of a residual block; None means identity.

    A: identity, zero-padded where the shape changes. B: 1x1 projection where the shape changes, identity
    elsewhere. C: 1x1 projection on every block. Projections are conv + BN, laid out as torchvision's `downsample`.
    """
    check_shortcut(option)
    same_shape = in_ch == out_ch and stride == 1
    if option == "C" or (option == "B" and not same_shape):
        return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
    if same_shape:
        return None
    return ZeroPadShortcut(in_ch, out_ch, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convs, BN after each, ReLU after the addition (Fig. 2; CIFAR nets and ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "A",
        residual: bool = True,
        stride_in_1x1: bool = True,  # unused: only bottlenecks have a 1x1; kept for a common signature
    ):
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        # Not in-place: forward hooks on the BNs (Figure 7) must see the BN output unmodified.
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = make_shortcut(shortcut, in_ch, planes, stride) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))  # out of place, see relu
        return self.relu(out)

    def response_layers(self) -> list[nn.BatchNorm2d]:
        return [self.bn1, self.bn2]


class Bottleneck(nn.Module):
    """1x1 (reduce), 3x3, 1x1 (expand x4), BN after each conv, ReLU after the addition (Fig. 5; ResNet-50/101/152).

    stride_in_1x1=True puts the stride-2 of a downsampling block on the first 1x1 conv, as in the paper's
    model; False puts it on the 3x3 (torchvision, "ResNet v1.5"), which costs more FLOPs and is more accurate.
    """

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "B",
        residual: bool = True,
        stride_in_1x1: bool = True,
    ):
        super().__init__()
        out_ch = planes * self.expansion
        self.residual = residual
        self.conv1 = conv1x1(in_ch, planes, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()  # not in-place, as in BasicBlock
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def response_layers(self) -> list[nn.BatchNorm2d]:
        # Every weighted layer of the block, so that each net has depth - 1 response layers (the FC is the last).
        return [self.bn1, self.bn2, self.bn3]


def make_stage(
    block: type[BasicBlock] | type[Bottleneck],
    in_ch: int,
    planes: int,
    num_blocks: int,
    stride: int,
    shortcut: str,
    residual: bool,
    stride_in_1x1: bool = True,
) -> nn.Sequential:
    """`num_blocks` blocks at one resolution; the first one subsamples (stride) and changes the width."""
    layers = []
    for i in range(num_blocks):
        layers.append(block(in_ch, planes, stride if i == 0 else 1, shortcut, residual, stride_in_1x1))
        in_ch = planes * block.expansion
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """He (MSRA) initialization for convs [paper ref. 13], BN to the identity; the FC keeps PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
