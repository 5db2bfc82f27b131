"""What the cases run on: CIFAR-10, or random images of its shape made in memory; synthetic JPEGs for ImageNet."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig, TrainConfig
from ..data.imagenet import ImageNetData
from ..data.small_images import DeviceImageData, ImageArrays, load_split
from .harness import Settings, sync


def cifar_available(root: str | Path) -> bool:
    return (Path(root) / "cifar-10-batches-py" / "data_batch_1").exists()


def synthetic_arrays(n: int, seed: int = 0) -> ImageArrays:
    g = torch.Generator().manual_seed(seed)
    return ImageArrays(
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)
    )


def cifar_arrays(settings: Settings, synthetic_size: tuple[int, int] | None = None) -> tuple[ImageArrays, ImageArrays]:
    """CIFAR-10's training and test splits from settings.cifar_root, or random images of `synthetic_size` (default
    settings.synthetic_sizes) instead."""
    if cifar_available(settings.cifar_root):
        return tuple(load_split("cifar10", settings.cifar_root, train=train) for train in (True, False))
    n_train, n_test = synthetic_size or settings.synthetic_sizes
    return synthetic_arrays(n_train, 0), synthetic_arrays(n_test, 1)


def describe_data(settings: Settings) -> str:
    if cifar_available(settings.cifar_root):
        return f"CIFAR-10 ({settings.cifar_root})"
    return (
        f"synthetic: random uint8 images of CIFAR-10's shape and size, because CIFAR-10 is not in "
        f"{settings.cifar_root} (`make prepare-cifar`); throughput does not depend on the pixels"
    )


def image_data(cfg: TrainConfig, device: torch.device, arrays: tuple[ImageArrays, ImageArrays]) -> DeviceImageData:
    """The training data of a run of `cfg`, built from the given arrays instead of loaded from data.root."""
    return DeviceImageData(cfg.data, device, cfg.seed, arrays=arrays)


def synthetic_jpeg_folder(root: Path, classes: int = 8, per_class: int = 128, seed: int = 0) -> Path:
    """An ImageFolder of 500x375 JPEGs (ImageNet's typical size; quality 90, smooth colours plus noise, about the
    file size of ImageNet's photos), with a val/ of one image per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500]
    for split, n in (("train", per_class), ("val", 1)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                a, b, d = rng.uniform(0.2, 2.0, 3)
                base = np.stack([xx * a, yy * b, (xx + yy) * d], -1) % 256 + rng.normal(0, 12, (375, 500, 3))
                Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"img{i}.JPEG", quality=90)
    return root


def loader_throughput(cfg: DataConfig, device: torch.device, batches: int = 50, warmup: int = 5) -> dict[str, float]:
    """Training images per second the ImageNet input pipeline delivers on `device`."""
    data = ImageNetData(cfg, device, seed=0)
    it = data.train_batches(0)
    for _ in range(warmup):
        next(it)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "img_per_s": batches * cfg.batch_size / seconds,
        "batches": batches,
        "seconds": seconds,
        "gpu_decode": cfg.gpu_decode,
        "num_workers": cfg.num_workers,
    }
