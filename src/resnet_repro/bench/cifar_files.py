"""A generated CIFAR-10 in the official on-disk format, and the way to make torchvision accept it.

`make_fake_cifar10(root, n_train, n_test)` writes root/cifar-10-batches-py/ as the official archive unpacks (five
pickled training batches, a test batch, batches.meta: dicts of uint8 CHW rows and labels) and returns the MD5 of
each file. torchvision checks every file against the MD5 table of its CIFAR10 class, so a process that must load
the generated folder through torchvision gets that table replaced: `cifar10_command` starts a script in a
subprocess that replaces it when torchvision's CIFAR module is imported (tests in-process use monkeypatch, see
tests/support/fake_data.py). A corrupted byte then fails the check exactly as with the real files.

The benchmark's whole-command case runs both training scripts on such a folder of the real size; the tests use
small ones. Only the standard library and numpy are imported here, and the table is replaced on torchvision's
import, not by importing it: a process started through `cifar10_command` imports what it would import on the real
data set, and nothing more (our training command, reading its decoded cache, does not import torchvision at all).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
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

# `python -c CIFAR10_SUBPROCESS MD5_JSON script.py [args]`: run a script with torchvision's CIFAR-10 MD5 table
# replaced by the one in MD5_JSON (written by write_md5_table), so that a generated CIFAR-10 passes its checks.
CIFAR10_SUBPROCESS = (
    "import runpy, sys; from resnet_repro.bench import cifar_files; "
    "cifar_files.accept_cifar10_md5_on_import(cifar_files.read_md5_table(sys.argv[1])); "
    "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
CIFAR_MODULE = "torchvision.datasets.cifar"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_batch(path: Path, images: np.ndarray, labels: list[int], name: str) -> None:
    # The real batches are Python 2 pickles, read with encoding="latin1" (their bytes keys come back as str; str keys
    # work too). Python 3 cannot write those; at protocol 2 it would store the pixels as UTF-8 text, 1.5x the size
    # and slower to read than the real files. Protocol 4 stores them as raw bytes: the real files' size (31 MB a
    # batch) and about their reading cost, through the same pickle.load.
    entry = {
        "batch_label": name,
        "labels": labels,
        "data": images.reshape(len(images), -1),
        "filenames": [f"{name}_{i}.png" for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)


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


def cifar10_md5_attributes(md5: dict[str, str], cifar10=None) -> dict[str, object]:
    """The attributes of torchvision's CIFAR10 class (`cifar10`, imported if not given) that hold its MD5 table,
    with the values of `md5`."""
    if cifar10 is None:
        from torchvision.datasets import CIFAR10 as cifar10

    return {
        "train_list": [[name, md5[name]] for name in CIFAR10_TRAIN_FILES],
        "test_list": [[CIFAR10_TEST_FILE, md5[CIFAR10_TEST_FILE]]],
        "meta": {**cifar10.meta, "md5": md5[CIFAR10_META_FILE]},
    }


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds the module `name` as usual and, once it has run, calls `then(module)`."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module, then = spec.loader.exec_module, self.then

        def exec_module(module):
            run_module(module)
            then(module)

        spec.loader.exec_module = exec_module  # this spec's own loader object: nothing else is changed
        return spec


def after_import(name: str, then) -> None:
    """Call `then(module)` on the module `name` once it is imported in this process (at once if it already is)."""
    if name in sys.modules:
        then(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, then))


def accept_cifar10_md5_on_import(md5: dict[str, str]) -> None:
    """Make torchvision's CIFAR10 check files against `md5` (from make_fake_cifar10) in this process, from the moment
    torchvision is imported (at once if it already is)."""

    def replace(module) -> None:
        for attr, value in cifar10_md5_attributes(md5, module.CIFAR10).items():
            setattr(module.CIFAR10, attr, value)

    after_import(CIFAR_MODULE, replace)


def write_md5_table(path: str | Path, md5: dict[str, str]) -> Path:
    Path(path).write_text(json.dumps(md5, indent=1))
    return Path(path)


def read_md5_table(path: str | Path) -> dict[str, str]:
    return json.loads(Path(path).read_text())


def cifar10_python(md5_table: str | Path) -> list[str]:
    """The argv that stands for `python` in `python script.py args`, for a process whose torchvision accepts the
    generated CIFAR-10 of `md5_table`."""
    return [sys.executable, "-c", CIFAR10_SUBPROCESS, str(md5_table)]


def cifar10_command(md5_table: str | Path, script: str | Path, *args: str) -> list[str]:
    """argv for running `script args` in such a subprocess."""
    return [*cifar10_python(md5_table), str(script), *args]
