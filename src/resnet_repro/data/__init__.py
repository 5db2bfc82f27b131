"""Data sets: small 32x32 images held on the training device (CIFAR, Fashion-MNIST), ImageNet through DataLoaders."""

import torch

from ..config import DataConfig
from ..errors import UserError
from .small_images import DeviceImageData, load_test_set

SMALL_IMAGE_DATASETS = ("cifar10", "cifar100", "fashion_mnist")


def build_data(cfg: DataConfig, device: torch.device, seed: int, rank: int = 0, world_size: int = 1):
    """The data object the trainer uses: train_batches(start_iter), eval_batches(split), eval_sets, num_classes."""
    if cfg.name in SMALL_IMAGE_DATASETS:
        data = DeviceImageData(cfg, device, seed, rank, world_size)
    else:
        from .imagenet import ImageNetData

        data = ImageNetData(cfg, device, seed, rank, world_size)
    if cfg.batch_size > data.train_size:  # config.check_invariants knows the published sizes; this copy may be smaller
        raise UserError(
            f"data.batch_size={cfg.batch_size} is larger than the {data.train_size} training images in "
            f"{cfg.root}: choose a smaller batch"
        )
    return data


__all__ = ["build_data", "load_test_set", "DeviceImageData"]
