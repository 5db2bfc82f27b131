"""CIFAR-10 networks of Section 4.2: depth 6n+2 (ResNet-20/32/44/56/110/1202 and their plain counterparts)."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import BasicBlock, check_shortcut, conv3x3, init_weights, make_stage
from .counting import CostReporting


class CifarNet(CostReporting, nn.Module):
    """3x3 conv (16) + BN + ReLU, 3 stages of n basic blocks (16/32/64 filters on 32/16/8 maps), GAP, FC.

    Depth counts the weighted layers: 1 + 6n convs + the FC. `residual=False` gives the plain net.
    """

    input_size = (3, 32, 32)

    def __init__(self, depth: int, num_classes: int = 10, shortcut: str = "A", residual: bool = True):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, 1202, ...), got {depth}")
        check_shortcut(shortcut)  # plain nets ignore it but still reject nonsense
        n = (depth - 2) // 6
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.arch = f"{'resnet' if residual else 'plain'}{depth}"

        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        # Subsampling by the first (stride-2) conv of stages 2 and 3, where the width doubles.
        self.layer1 = make_stage(BasicBlock, 16, 16, n, 1, shortcut, residual)
        self.layer2 = make_stage(BasicBlock, 16, 32, n, 2, shortcut, residual)
        self.layer3 = make_stage(BasicBlock, 32, 64, n, 2, shortcut, residual)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))

    def response_layers(self) -> list[nn.BatchNorm2d]:
        """BN after each 3x3 conv, in forward order (Figure 7: response after BN, before ReLU or addition)."""
        blocks = [*self.layer1, *self.layer2, *self.layer3]
        return [self.bn1] + [bn for b in blocks for bn in b.response_layers()]
