"""Data sets: small 32x32 images held on the training device (CIFAR, Fashion-MNIST), ImageNet through DataLoaders."""

import torch

from ..config import DataConfig
from ..errors import UserError
from .small_images import DeviceImageData, load_test_set

SMALL_IMAGE_DATASETS = ("cifar10", "cifar100", "fashion_mnist")


def build_data(cfg: DataConfig, device: torch.device, seed: int, rank: int = 0, world_size: int = 1):
    """The data object the trainer uses: train_batches(start_iter), eval_batches(split), eval_sets, num_classes."""
    if cfg.name in SMALL_IMAGE_DATASETS:
        return DeviceImageData(cfg, device, seed, rank, world_size)
    if cfg.name == "imagenet":
        from .imagenet import ImageNetData

        return ImageNetData(cfg, device, seed, rank, world_size)
    raise UserError(f"unknown data.name {cfg.name!r}: choose one of {', '.join(SMALL_IMAGE_DATASETS)}, imagenet")


__all__ = ["build_data", "load_test_set", "DeviceImageData"]
