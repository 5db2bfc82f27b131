"""Small fake data sets in the real on-disk layouts, for tests that must not need the real downloads.

CIFAR-10: `make_fake_cifar10(root)` writes root/cifar-10-batches-py/ as torchvision expects it (five pickled
training batches, a test batch, batches.meta) and returns the MD5 of each file. torchvision verifies every file
against the MD5 table of its CIFAR10 class, so a test makes the fake folder acceptable with `patch_cifar10_md5`
(in-process, through pytest's monkeypatch) or `apply_cifar10_md5` (in a subprocess, see CIFAR10_SUBPROCESS). A
corrupted byte in any file then fails the check exactly as with the real data.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# `python -c CIFAR10_SUBPROCESS MD5_JSON scripts/train.py [overrides]`: run a script with torchvision's CIFAR-10 MD5
# table replaced by the one in MD5_JSON (written by write_md5_table), so that a fake CIFAR-10 passes its checks.
CIFAR10_SUBPROCESS = (
    f"import runpy, sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
    "from support import fake_data; fake_data.apply_cifar10_md5(fake_data.read_md5_table(sys.argv[1])); "
    "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_batch(path: Path, images: np.ndarray, labels: list[int], name: str) -> None:
    # The real batches are Python 2 pickles: bytes keys read back as str with encoding="latin1"; str keys work too.
    entry = {
        "batch_label": name,
        "labels": labels,
        "data": images.reshape(len(images), -1),
        "filenames": [f"{name}_{i}.png" for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def make_fake_cifar10(root: str | Path, n_train: int = 250, n_test: int = 100, seed: int = 0) -> dict[str, str]:
    """Write a CIFAR-10 folder root/cifar-10-batches-py with n_train training images (over the five batch files)
    and n_test test images, random 32x32 RGB with random labels; return {file name: MD5} for all seven files."""
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train + n_test, 3, 32, 32), dtype=np.uint8)  # the real layout: CHW rows
    labels = rng.integers(0, 10, size=n_train + n_test).tolist()
    for name, index in zip(CIFAR10_TRAIN_FILES, np.array_split(np.arange(n_train), len(CIFAR10_TRAIN_FILES))):
        _write_batch(folder / name, images[index], [labels[i] for i in index], name)
    _write_batch(folder / CIFAR10_TEST_FILE, images[n_train:], labels[n_train:], CIFAR10_TEST_FILE)
    with open(folder / CIFAR10_META_FILE, "wb") as f:
        pickle.dump(
            {"label_names": CIFAR10_LABELS, "num_cases_per_batch": -(-n_train // 5), "num_vis": 3072}, f, protocol=2
        )
    return {name: _md5(folder / name) for name in [*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE]}


def _md5_attributes(md5: dict[str, str]) -> dict[str, object]:
    from torchvision.datasets import CIFAR10

    return {
        "train_list": [[name, md5[name]] for name in CIFAR10_TRAIN_FILES],
        "test_list": [[CIFAR10_TEST_FILE, md5[CIFAR10_TEST_FILE]]],
        "meta": {**CIFAR10.meta, "md5": md5[CIFAR10_META_FILE]},
    }


def patch_cifar10_md5(monkeypatch, md5: dict[str, str]) -> None:
    """Make torchvision's CIFAR10 check files against `md5` (from make_fake_cifar10) for the rest of a test."""
    from torchvision.datasets import CIFAR10

    for name, value in _md5_attributes(md5).items():
        monkeypatch.setattr(CIFAR10, name, value)


def apply_cifar10_md5(md5: dict[str, str]) -> None:
    """The same for the whole process (a subprocess started with CIFAR10_SUBPROCESS)."""
    from torchvision.datasets import CIFAR10

    for name, value in _md5_attributes(md5).items():
        setattr(CIFAR10, name, value)


def write_md5_table(path: str | Path, md5: dict[str, str]) -> Path:
    Path(path).write_text(json.dumps(md5, indent=1))
    return Path(path)


def read_md5_table(path: str | Path) -> dict[str, str]:
    return json.loads(Path(path).read_text())


def cifar10_command(md5_table: str | Path, script: str | Path, *args: str) -> list[str]:
    """argv for running `script args` in a subprocess whose torchvision accepts the fake CIFAR-10 of `md5_table`."""
    return [sys.executable, "-c", CIFAR10_SUBPROCESS, str(md5_table), str(script), *args]


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
