"""ImageNet networks of Table 1: ResNet-18/34/50/101/152 and the plain-18/34 baselines."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import BasicBlock, Bottleneck, check_shortcut, init_weights, make_stage
from .counting import CostReporting

# depth -> (block, blocks per stage conv2_x..conv5_x), Table 1.
ARCHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def default_shortcut(depth: int) -> str:
    """The paper's choice: A for ResNet-18/34 (Table 2), B for the bottleneck nets (Table 3)."""
    return "A" if ARCHS[depth][0] is BasicBlock else "B"


class ImageNetNet(CostReporting, nn.Module):
    """conv1 7x7/64 s2 + BN + ReLU, 3x3 max pool s2, four stages (64/128/256/512 base width), GAP, FC.

    Module names match torchvision's ResNet, so with shortcut="B" and stride_in_1x1=False this *is*
    torchvision.models.resnetXX (same state_dict keys, identical outputs).
    """

    input_size = (3, 224, 224)

    def __init__(
        self,
        depth: int,
        num_classes: int = 1000,
        shortcut: str | None = None,
        residual: bool = True,
        stride_in_1x1: bool = True,
    ):
        super().__init__()
        if depth not in ARCHS:
            raise ValueError(f"ImageNet depth must be one of {', '.join(map(str, ARCHS))}, got {depth}")
        shortcut = check_shortcut(default_shortcut(depth) if shortcut is None else shortcut)
        block, stage_blocks = ARCHS[depth]
        self.depth, self.residual, self.shortcut, self.stride_in_1x1 = depth, residual, shortcut, stride_in_1x1
        self.stage_blocks = stage_blocks
        self.arch = f"{'resnet' if residual else 'plain'}{depth}"

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        for i, (planes, num_blocks) in enumerate(zip((64, 128, 256, 512), stage_blocks)):
            stride = 1 if i == 0 else 2  # conv3_1, conv4_1, conv5_1 downsample
            stage = make_stage(block, in_ch, planes, num_blocks, stride, shortcut, residual, stride_in_1x1)
            self.add_module(f"layer{i + 1}", stage)
            in_ch = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def response_layers(self) -> list[nn.BatchNorm2d]:
        """BN after each conv of the main path (stem, then every block conv), in forward order; not shortcut BNs."""
        blocks = [*self.layer1, *self.layer2, *self.layer3, *self.layer4]
        return [self.bn1] + [bn for b in blocks for bn in b.response_layers()]
