"""The paper's networks: CIFAR-10 6n+2 nets (Section 4.2) and ImageNet nets (Table 1), plain and residual."""

from __future__ import annotations

import re

from torch import nn

from .blocks import SHORTCUTS, BasicBlock, Bottleneck, ZeroPadShortcut, check_shortcut
from .cifar import CifarNet
from .counting import architecture_table, count_flops, count_params
from .imagenet import ARCHS as IMAGENET_ARCHS
from .imagenet import ImageNetNet

CIFAR_MODELS = tuple(f"plain{d}" for d in (20, 32, 44, 56, 110)) + tuple(
    f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)
)
IMAGENET_MODELS = ("plain18", "plain34", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
FAMILIES = ("auto", "cifar", "imagenet")
MODEL_NAME = re.compile(r"(plain|resnet)(\d+)")  # plainN | resnetN: residual or not, and the depth

__all__ = [
    "build_model",
    "build_model_from_config",
    "CIFAR_MODELS",
    "IMAGENET_MODELS",
    "FAMILIES",
    "SHORTCUTS",
    "count_params",
    "count_flops",
    "architecture_table",
    "CifarNet",
    "ImageNetNet",
    "BasicBlock",
    "Bottleneck",
    "ZeroPadShortcut",
]


def build_model(
    name: str,
    num_classes: int | None = None,
    shortcut: str | None = None,
    stride_in_1x1: bool = True,
    family: str = "auto",
) -> nn.Module:
    """Build `plainN` or `resnetN`.

    family="auto": depths 18/34/50/101/152 are the ImageNet nets, any other name is a CIFAR 6n+2 net;
    "cifar" / "imagenet" force the family (resnet50 and resnet152 are also 6n+2 depths).
    num_classes defaults to 10 (CIFAR) or 1000 (ImageNet). shortcut defaults to the paper's choice: A on CIFAR
    and for ResNet-18/34, B for ResNet-50/101/152; plain nets ignore it. stride_in_1x1 only affects bottlenecks
    (True: the paper's placement; False: torchvision's).
    """
    match = MODEL_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"unknown model {name!r}: expected plainN or resnetN, "
            f"e.g. one of {', '.join(CIFAR_MODELS + IMAGENET_MODELS)}"
        )
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: choose one of {', '.join(FAMILIES)}")
    if shortcut is not None:
        check_shortcut(shortcut)
    residual, depth = match.group(1) == "resnet", int(match.group(2))

    if family == "imagenet" or (family == "auto" and depth in IMAGENET_ARCHS):
        return ImageNetNet(depth, 1000 if num_classes is None else num_classes, shortcut, residual, stride_in_1x1)
    return CifarNet(depth, 10 if num_classes is None else num_classes, shortcut or "A", residual)


def build_model_from_config(cfg, num_classes: int) -> nn.Module:
    """The network a run's `model` config describes (config.ModelConfig, or the `model` part of a config.yaml),
    with `cfg.num_classes` when it is set, else the data set's `num_classes`."""
    try:
        return build_model(
            str(cfg.name),
            num_classes=cfg.num_classes or num_classes,
            shortcut=str(cfg.shortcut),
            stride_in_1x1=bool(cfg.stride_in_1x1),
            family=str(cfg.family),
        )
    except ValueError as err:
        from ..errors import UserError

        raise UserError(f"{err} (set model=... or model.name=...)") from None
