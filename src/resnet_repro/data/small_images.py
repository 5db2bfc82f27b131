"""CIFAR-10/100 and Fashion-MNIST, held on the training device as uint8 tensors, batched and augmented there.

The whole 32x32 training set fits in GPU memory (480 MB for CIFAR, padded and with its mirror images: see
augment.CropFlipImages), so it moves once; every augmented batch is then one gather of pixel rows and one float
pass, with no DataLoader, worker processes or PIL.

Randomness is derived from (seed, iteration), not from a running generator, so the data order and every crop
are a function of the iteration number: resume is exact, and any number of DDP processes sees the same global
batch as one process.

CIFAR is read through torchvision's dataset classes, which download it and verify every file's MD5 checksum. The
decoded arrays are then kept beside the files (`decoded-v1-{train,test}.npz` in the data set's folder, 150 MB and
30 MB) and read from there while the files keep the size and modification time they had when torchvision verified
them: importing torchvision (its models import torch's compiler: seconds), hashing 180 MB twice and unpickling are
paid once per data set, not once per run.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import NUM_CLASSES, DataConfig
from ..errors import UserError
from ..io import atomic_write
from .augment import CropFlipImages, normalize, random_crop_flip_params
from .streams import stream_generator

log = logging.getLogger(__name__)

# The folder and the files of each CIFAR archive, as torchvision's classes verify them (train_list, test_list, meta).
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
}
DECODED_FILE = "decoded-v1-{split}.npz"  # the version changes with the format or the decoding
# A file modified this close to the moment its decoded copy was written may have been modified again within the
# resolution of file times, unseen: such a copy is not trusted (git's "racily clean" rule).
RACY_NS = 2_000_000_000
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_STREAM_DATA_ORDER, _STREAM_AUGMENT = 1, 2


@dataclass
class ImageArrays:
    """A split as uint8 N,C,H,W images and int64 labels (CPU tensors)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


# Seconds a download waits for the network at each step: without network it fails in seconds, not minutes.
DOWNLOAD_TIMEOUT_S = 10.0


def load_cifar(
    name: str,
    root: str | Path,
    train: bool,
    download: bool = False,
    root_setting: str = "data.root=",
    download_timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> ImageArrays:
    """CIFAR: the decoded copy if the files are as torchvision verified them (see the module docstring), else through
    torchvision's dataset class (download, MD5 checksums), keeping a decoded copy for the next run. `root_setting`
    names `root` in an error the way the command that was typed sets it (data.root= for training, CIFAR_ROOT= for
    make). A download waits up to `download_timeout_s` for the network at each step."""
    folder = Path(root) / CIFAR_FILES[name][0]
    cache = folder / DECODED_FILE.format(split="train" if train else "test")
    before = file_signature(name, root)
    if before is not None and (arrays := read_decoded(cache, before)) is not None:
        return arrays
    arrays = decode_cifar(name, root, train, download, root_setting, download_timeout_s)
    signature = file_signature(name, root)
    if signature is not None and (before is None or signature == before):  # not changed while torchvision read them
        write_decoded(cache, arrays, signature)
    return arrays


def decode_cifar(
    name: str,
    root: str | Path,
    train: bool,
    download: bool,
    root_setting: str = "data.root=",
    download_timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> ImageArrays:
    """CIFAR through torchvision's dataset class, which downloads it and verifies every file's MD5 checksum."""
    import socket

    import torchvision  # here: its import costs seconds, and a run that reads the decoded copy needs none of it

    dataset_class = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    archive = Path(root) / dataset_class.filename
    archive_was_there, timeout = archive.exists(), socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout_s)
    try:
        dataset = dataset_class(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found or corrupted."; OSError: no network
        if download and not archive_was_there:
            archive.unlink(missing_ok=True)  # a download cut short: nothing half-written stays behind
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = f"{archive.name} (from {dataset_class.url})"
        if download:
            remedy = (
                f"put {where} in {root} and run the same command again, or use {root_setting}DIR for a folder "
                f"that holds it (as downloaded, or unpacked)"
            )
        else:
            remedy = (
                f"put {where} in {root} and unpack it there, or use {root_setting}DIR for a folder that holds it, "
                f"or pass data.download=true on a machine with network"
            )
        folder = Path(root) / dataset_class.base_folder
        raise UserError(f"{name} not found or corrupted in {folder} ({reason}): {remedy}") from None
    finally:
        socket.setdefaulttimeout(timeout)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return ImageArrays(images, torch.tensor(dataset.targets, dtype=torch.int64))


def file_signature(name: str, root: str | Path) -> list[list] | None:
    """[file, size, modification time in ns] of every file of the archive; None if one is missing."""
    folder, files = Path(root) / CIFAR_FILES[name][0], CIFAR_FILES[name][1]
    try:
        stats = [(f, os.stat(folder / f)) for f in files]
    except OSError:
        return None
    return [[f, st.st_size, st.st_mtime_ns] for f, st in stats]


def read_decoded(cache: Path, signature: list[list]) -> ImageArrays | None:
    """The decoded copy in `cache` if it was written for files of this `signature`, not racily; else None."""
    try:
        with np.load(cache, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            if meta["files"] != signature or any(mtime > meta["written_ns"] - RACY_NS for *_, mtime in signature):
                return None
            return ImageArrays(torch.from_numpy(saved["images"]), torch.from_numpy(saved["labels"]))
    except (OSError, ValueError, KeyError):  # none yet, or unreadable: decode again (and replace it)
        return None


def write_decoded(cache: Path, arrays: ImageArrays, signature: list[list]) -> None:
    meta = json.dumps({"files": signature, "written_ns": time.time_ns()})
    images, labels = arrays.images.numpy(), arrays.labels.numpy()
    mode = os.stat(cache.parent / signature[0][0]).st_mode & 0o777  # readable by whoever can read the archive

    def write(f) -> None:
        np.savez(f, images=images, labels=labels, meta=np.array(meta))
        os.fchmod(f.fileno(), mode)

    try:
        atomic_write(cache, write, make_folder=False)
    except OSError as err:  # a read-only (shared) or full data folder: never a reason to fail the run
        log.warning(
            "cannot keep the decoded copy %s (%s): each run decodes the data set again (seconds); a writable copy "
            "of it, in data.root=DIR, keeps one",
            cache,
            err.strerror or err,
        )


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format): magic (2 zero bytes, type, ndim), big-endian int32 dims, then the data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
            raise ValueError("not an unsigned-byte idx file")
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (OSError, EOFError, ValueError) as err:
        raise UserError(
            f"corrupt Fashion-MNIST file {path} ({err}): reinstall it "
            f"(apt-get install --reinstall dataset-fashion-mnist)"
        ) from None


def load_fashion_mnist(root: str | Path, train: bool) -> ImageArrays:
    """Fashion-MNIST from the four standard idx .gz files, zero-padded from 28x28 to 32x32, grey repeated to 3 channels
    so that the paper's networks run on it unchanged."""
    root = Path(root)
    prefix = "train" if train else "test"
    paths = [root / FASHION_MNIST_FILES[f"{prefix}_{kind}"] for kind in ("images", "labels")]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise UserError(
            f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}): apt-get install dataset-fashion-mnist "
            f"(puts it in /usr/share/datasets/fashion-mnist) or set data.root to a folder with the four idx .gz files"
        )
    images, labels = (_read_idx(p) for p in paths)
    images = torch.nn.functional.pad(torch.from_numpy(images.copy()), (2, 2, 2, 2))[:, None].expand(-1, 3, -1, -1)
    return ImageArrays(images.contiguous(), torch.from_numpy(labels.astype(np.int64)))


def load_split(name: str, root: str | Path, train: bool, download: bool = False) -> ImageArrays:
    if name in CIFAR_FILES:
        return load_cifar(name, root, train, download)
    if name == "fashion_mnist":
        return load_fashion_mnist(root, train)
    raise UserError(f"unknown data set {name!r}: choose one of cifar10, cifar100, fashion_mnist, imagenet")


def load_test_set(name: str, root: str | Path) -> ImageArrays:
    """The test split, as uint8 images (for analysis: layer responses)."""
    return load_split(name, root, train=False)


def paper_split(train: ImageArrays, val_size: int) -> tuple[ImageArrays, ImageArrays]:
    """The paper's 45k/5k split: a fixed permutation (seed 0, independent of the run's seed) picks the held-out
    images."""
    if val_size >= len(train):
        raise UserError(
            f"data.val_size={val_size} leaves no training images: this copy of the data set has "
            f"{len(train)}; choose a smaller val_size, or data.split=full"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    return (
        ImageArrays(train.images[train_idx], train.labels[train_idx]),
        ImageArrays(train.images[val_idx], train.labels[val_idx]),
    )


def pixel_mean(images: torch.Tensor) -> torch.Tensor:
    """The per-pixel mean of uint8 images, scaled to [0, 1], float32. The sums are of integers, exact in any order,
    so this is images.double().mean(0) / 255 bit for bit, at a tenth of its time and without its 8-byte copy of the
    set (numpy: torch's integer sum over the first dimension is no faster than the double one)."""
    sums = np.add.reduce(images.reshape(len(images), -1).numpy(), axis=0, dtype=np.int64)
    return (torch.from_numpy(sums).view(images.shape[1:]).double().div_(len(images)) / 255).float()


class DeviceImageData:
    """Training, validation and test images on `device`; batches for iteration i computed from i alone.

    `arrays` (training split, test split) replaces loading them from data.root: benchmarks and tests pass
    images made in memory."""

    report_top5 = False  # 10 classes: top-5 error says little (ImageNet reports it)

    def __init__(
        self,
        cfg: DataConfig,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        arrays: tuple[ImageArrays, ImageArrays] | None = None,
    ):
        if arrays is None:
            arrays = (
                load_split(cfg.name, cfg.root, train=True, download=cfg.download),
                load_split(cfg.name, cfg.root, train=False, download=cfg.download),
            )
        train, test = arrays
        val = None
        if cfg.split == "paper":
            train, val = paper_split(train, cfg.val_size)
        if cfg.limit_train:
            train = ImageArrays(train.images[: cfg.limit_train], train.labels[: cfg.limit_train])
        if cfg.limit_test:
            test = ImageArrays(test.images[: cfg.limit_test], test.labels[: cfg.limit_test])
            if val is not None:
                val = ImageArrays(val.images[: cfg.limit_test], val.labels[: cfg.limit_test])

        self.cfg, self.device, self.seed, self.rank, self.world_size = cfg, device, seed, rank, world_size
        self.num_classes = NUM_CLASSES[cfg.name]
        self.input_size = tuple(train.images.shape[1:])
        self.train_size = len(train)
        self.batches_per_epoch = len(train) // cfg.batch_size  # the last partial batch of an epoch is dropped
        self.mean = pixel_mean(train.images).to(device)  # per-pixel mean of the training split
        self.train_images = CropFlipImages(train.images.to(device), self.mean)
        self.train_labels = train.labels.to(device)
        self.eval_sets = {"test": test} if val is None else {"val": val, "test": test}
        if not cfg.evaluate_test:  # validation only (split=paper, config.check_invariants): search trials
            del self.eval_sets["test"]
        self.eval_sets = {k: ImageArrays(v.images.to(device), v.labels.to(device)) for k, v in self.eval_sets.items()}
        self._epoch, self._order = -1, None

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            # Drawn on the training device: no host-to-device copy (and sync) at epoch boundaries.
            generator = stream_generator(self.seed, _STREAM_DATA_ORDER, epoch, self.device)
            self._order = torch.randperm(self.train_size, generator=generator, device=self.device)
            self._epoch = epoch
        return self._order

    def train_batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of the global batch of `iteration`, augmented and normalized."""
        epoch, step = divmod(iteration, self.batches_per_epoch)
        global_batch = self.cfg.batch_size
        index = self._epoch_order(epoch)[step * global_batch : (step + 1) * global_batch]
        local = slice(self.rank * global_batch // self.world_size, (self.rank + 1) * global_batch // self.world_size)
        index = index[local]
        if self.cfg.augment:
            generator = stream_generator(self.seed, _STREAM_AUGMENT, iteration, self.device)
            dy, dx, flip = random_crop_flip_params(global_batch, generator, self.device)
            images = self.train_images.batch(index, dy[local], dx[local], flip[local])
        else:
            images = self.train_images.center(index)
        return images, self.train_labels.index_select(0, index)

    def train_batches(self, start_iter: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        iteration = start_iter
        while True:
            yield self.train_batch(iteration)
            iteration += 1

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's shard of a held-out split, the single original view (no augmentation)."""
        arrays = self.eval_sets[split]
        shard = torch.arange(self.rank, len(arrays), self.world_size, device=self.device)
        for start in range(0, len(shard), self.cfg.eval_batch_size):
            index = shard[start : start + self.cfg.eval_batch_size]
            yield normalize(arrays.images[index], self.mean), arrays.labels[index]
