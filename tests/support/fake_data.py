"""Small fake data sets in the real on-disk layouts, for tests that must not need the real downloads.

CIFAR-10: the writer lives in the package (resnet_repro/bench/cifar_files.py), because the benchmark's whole-command
case trains on a generated CIFAR-10 of the real size; `make_fake_cifar10(root)` writes root/cifar-10-batches-py/ as
torchvision expects it and returns the MD5 of each file. torchvision verifies every file against the MD5 table of
its CIFAR10 class, so a test makes the fake folder acceptable with `patch_cifar10_md5` (in-process, through pytest's
monkeypatch) or starts a subprocess with `cifar10_command` (which gives torchvision the table as it is imported). A
corrupted byte in any file then fails the check exactly as with the real data.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_repro.bench.cifar_files import (
    CIFAR10_FOLDER,
    CIFAR10_META_FILE,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    cifar10_command,
    cifar10_md5_attributes,
    make_fake_cifar10,
    read_md5_table,
    write_md5_table,
)

__all__ = [
    "CIFAR10_FOLDER",
    "CIFAR10_META_FILE",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "cifar10_command",
    "make_fake_cifar10",
    "patch_cifar10_md5",
    "read_md5_table",
    "write_md5_table",
    "CIFAR100_FOLDER",
    "make_fake_cifar100",
    "patch_cifar100_md5",
    "make_image_folder",
]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def patch_cifar10_md5(monkeypatch, md5: dict[str, str]) -> None:
    """Make torchvision's CIFAR10 check files against `md5` (from make_fake_cifar10) for the rest of a test."""
    from torchvision.datasets import CIFAR10

    for name, value in cifar10_md5_attributes(md5).items():
        monkeypatch.setattr(CIFAR10, name, value)


# CIFAR-100: one pickled training file, one test file and meta in root/cifar-100-python/, as in the official archive.
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ("train", "test", "meta")


def make_fake_cifar100(root: str | Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> dict[str, str]:
    """Write a CIFAR-100 folder root/cifar-100-python (train, test: data rows, fine and coarse labels; meta: the
    label names) with random 32x32 RGB images and fine labels in 0..99; return {file name: MD5} for the three files."""
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train + n_test, 3, 32, 32), dtype=np.uint8)
    fine = rng.integers(0, 100, size=n_train + n_test).tolist()
    for name, index in (("train", range(n_train)), ("test", range(n_train, n_train + n_test))):
        index = list(index)
        entry = {
            "filenames": [f"{name}_{i}.png" for i in index],
            "batch_label": f"{name} batch 1 of 1",
            "fine_labels": [fine[i] for i in index],
            "coarse_labels": [fine[i] // 5 for i in index],
            "data": images[index].reshape(len(index), -1),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump(
            {
                "fine_label_names": [f"fine_{i}" for i in range(100)],
                "coarse_label_names": [f"coarse_{i}" for i in range(20)],
            },
            f,
            protocol=2,
        )
    return {name: _md5(folder / name) for name in CIFAR100_FILES}


def patch_cifar100_md5(monkeypatch, md5: dict[str, str]) -> None:
    """Make torchvision's CIFAR100 check files against `md5` (from make_fake_cifar100) for the rest of a test."""
    from torchvision.datasets import CIFAR100

    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5["meta"]})


# ImageNet: a tiny ImageFolder of JPEGs.
IMAGENET_CLASSES, IMAGENET_TRAIN_PER_CLASS, IMAGENET_VAL_PER_CLASS = 3, 6, 3


def make_image_folder(root: Path, seed: int = 0) -> Path:
    """A tiny ImageNet in its layout: root/{train,val}/<synset>/*.JPEG, 3 classes of 64x80 and 80x64 JPEGs (a few
    grey-scale and CMYK ones, as ImageNet has)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", IMAGENET_TRAIN_PER_CLASS), ("val", IMAGENET_VAL_PER_CLASS)):
        for c in range(IMAGENET_CLASSES):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = (64, 80) if i % 2 == 0 else (80, 64)
                yy, xx = np.mgrid[0:h, 0:w]
                base = np.stack([(xx * (c + 1) * 3) % 256, (yy * 4 + 60 * c) % 256, ((xx + yy) * 2 + 20 * i) % 256], -1)
                image = Image.fromarray(np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8))
                if split == "train" and i == 1:
                    image = image.convert({0: "L", 1: "CMYK", 2: "RGB"}[c])  # ImageNet has a few of each
                image.save(folder / f"img{i}.JPEG", quality=90)
    return root
