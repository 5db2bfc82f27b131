"""ImageNet (ILSVRC 2012) in ImageFolder layout through DataLoaders, with the paper's training and testing views.

Layout: `data.root` holds train/ and val/, one folder per class (the synset ids n01440764 ... n15075141), the
same 1000 folders in both. From the official archives:

    mkdir -p train val
    tar -xf ILSVRC2012_img_train.tar -C train
    (cd train && for f in *.tar; do d=${f%.tar}; mkdir -p $d && tar -xf $f -C $d && rm $f; done)
    tar -xf ILSVRC2012_img_val.tar -C val
    # val/ is flat: move each image into its class folder, e.g. with the widely used valprep.sh
    # (https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh), run inside val/.

Training view (Section 3.4): the shorter side resized to a random integer in [scale_min, scale_max] (256..480),
a random crop_size x crop_size crop (224), a random horizontal flip, AlexNet-style PCA colour noise of std
pca_lighting, then the per-pixel mean subtracted (normalize=mean_pixel) or torchvision's mean/std
(normalize=mean_std). Every random number of a sample comes from a generator seeded by (seed, iteration, position
in the global batch), and the data order by (seed, epoch): the batch of iteration i is a function of i alone, so
resume is exact and N DDP processes see exactly the shards of the 1-process batch.

Test views: `center` (shorter side scale_min = 256, center crop 224), `10crop` (the four corners and the center
of that 256 image, and their mirror images) and `full` (the whole image, for the fully-convolutional multi-scale
test of Table 4; resized per scale by engine/evaluate.py). These are uint8 views; normalization happens on the
device (`normalize`), PCA lighting too (training only).

Per-pixel mean: the mean of the center views (shorter side scale_min, center crop crop_size) of a fixed random
subset of `mean_images` training images (10k by default, seed 0, the same for every run), computed once and
cached as a file in data.root (or ~/.cache/resnet_repro when data.root is not writable). Inputs of another size
(the multi-scale test) subtract the mean image bilinearly resized to their size.

Decoding: libjpeg-turbo through torchvision.io in the DataLoader workers (PIL as a fallback for odd files);
data.num_workers of them, by default one fewer than the CPUs this process may use, at most 8 (loader_workers).
data.gpu_decode=true instead has the workers read the file bytes and decodes whole batches on the GPU with
torchvision.io.decode_jpeg(device="cuda") (nvJPEG), then resizes and crops there: the same random views, but
not bit-identical pixels (other decoder, other resize kernels).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode
from torchvision.transforms.v2 import functional as TF

from ..config import DataConfig
from ..errors import UserError
from ..io import atomic_write
from .streams import stream_generator, stream_seed

log = logging.getLogger(__name__)
# torchvision 0.29 deprecates its image decoders in favour of TorchCodec (not a dependency here): they still work.
warnings.filterwarnings(
    "ignore",
    message="The image decoding and encoding capabilities of TorchVision are deprecated",
    category=DeprecationWarning,
)

# AlexNet's PCA of ImageNet RGB pixels in [0, 1] (as in fb.resnet.torch): eigenvalues and eigenvectors (columns).
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
# torchvision's normalization constants (normalize=mean_std).
MEAN_STD = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
VIEWS = ("center", "10crop", "full")
_STREAM_ORDER, _STREAM_SAMPLE = 11, 12
_MEAN_SUBSET_SEED = 0


# ----- pure view functions (CPU in the workers, or CUDA after GPU decoding) ------------------------------------


def decode_rgb(data: torch.Tensor) -> torch.Tensor:
    """File bytes (uint8 1-D tensor) -> uint8 3,H,W RGB. Grey and CMYK JPEGs and PNGs too; PIL for anything else."""
    try:
        return torchvision.io.decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        from PIL import Image

        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            array = np.array(image.convert("RGB"))
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def sample_seed(seed: int, iteration: int, position: int) -> int:
    """The seed of the random view of the sample at `position` of the global batch of `iteration`."""
    return stream_seed(seed, _STREAM_SAMPLE, iteration, position)


def draw_train_params(seed: int, cfg: DataConfig) -> tuple[int, float, float, bool, torch.Tensor]:
    """(scale, crop row fraction, crop column fraction, flip, PCA alpha[3]) of one training view."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    scale = min(cfg.scale_min + int(u[0] * (cfg.scale_max - cfg.scale_min + 1)), cfg.scale_max)
    alpha = torch.randn(3, generator=generator) * cfg.pca_lighting
    return scale, u[1], u[2], u[3] < 0.5, alpha


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size`, aspect ratio kept (bilinear, antialiased when shrinking)."""
    return TF.resize(image, [size], antialias=True)


def train_view(image: torch.Tensor, scale: int, fy: float, fx: float, flip: bool, crop: int) -> torch.Tensor:
    """Scale augmentation: shorter side to `scale`, a crop x crop crop at fractions (fy, fx) of the free range, and
    a flip."""
    image = resize_shorter(image, scale)
    h, w = image.shape[-2:]
    top, left = min(int(fy * (h - crop + 1)), h - crop), min(int(fx * (w - crop + 1)), w - crop)
    image = image[..., top : top + crop, left : left + crop]
    return image.flip(-1) if flip else image


def center_view(image: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    return TF.center_crop(resize_shorter(image, resize), [crop])


def ten_crop_views(image: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """10,3,crop,crop: the four corners and the center of the image resized to `resize`, then their mirror images."""
    return torch.stack(TF.ten_crop(resize_shorter(image, resize), [crop]))


# ----- the file list and the DataLoader pieces --------------------------------------------------------------------


class ImageFiles(Dataset):
    """Relative paths as one numpy bytes array (no per-sample Python objects: forked workers share it untouched).

    An item is (index, arg): arg is the sample's seed for mode "train"; the modes are train | center | 10crop |
    full | raw (file bytes only, for GPU decoding).
    """

    def __init__(self, root: Path, paths: np.ndarray, labels: np.ndarray, mode: str, cfg: DataConfig):
        self.root, self.paths, self.labels, self.mode, self.cfg = str(root), paths, labels, mode, cfg

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> torch.Tensor:
        path = os.path.join(self.root, os.fsdecode(self.paths[index]))
        try:
            return torchvision.io.read_file(path)
        except RuntimeError as err:
            raise UserError(f"cannot read {path} ({err}): check the ImageNet folder data.root") from None

    def __getitem__(self, item: tuple[int, Any]):
        index, arg = item
        label = int(self.labels[index])
        data = self.read(index)
        if self.mode == "raw":
            return data, label, arg
        try:
            image = decode_rgb(data)
        except Exception as err:  # noqa: BLE001 - PIL raises several types for broken files
            raise UserError(
                f"cannot decode {self.paths[index].decode(errors='replace')} in {self.root} "
                f"({type(err).__name__}): replace or remove the file"
            ) from None
        cfg = self.cfg
        if self.mode == "train":
            if not cfg.augment:
                return center_view(image, cfg.scale_min, cfg.crop_size), label, torch.zeros(3)
            scale, fy, fx, flip, alpha = draw_train_params(arg, cfg)
            return train_view(image, scale, fy, fx, flip, cfg.crop_size), label, alpha
        if self.mode == "center":
            return center_view(image, cfg.scale_min, cfg.crop_size), label, None
        if self.mode == "10crop":
            return ten_crop_views(image, cfg.scale_min, cfg.crop_size), label, None
        if self.mode == "full":
            return image, label, None
        raise ValueError(self.mode)


def collate(items: list) -> tuple:
    """Stack equal-sized views; keep lists where sizes differ (raw bytes, whole images)."""
    views, labels, extras = zip(*items)
    views = torch.stack(views) if all(v.shape == views[0].shape and v.dim() > 1 for v in views) else list(views)
    labels = torch.tensor(labels, dtype=torch.int64)
    extras = torch.stack(extras) if all(isinstance(e, torch.Tensor) for e in extras) else list(extras)
    return views, labels, extras


class IterationBatches(Sampler):
    """This process's part of the global batch of iterations start_iter, start_iter+1, ...: lists of
    (image index, sample seed). Data order: a permutation per epoch seeded by (seed, epoch); the last partial
    batch of an epoch is dropped; process r of W takes positions [r*B/W, (r+1)*B/W) of each global batch."""

    def __init__(self, data: ImageNetData, start_iter: int):
        self.data, self.start_iter = data, start_iter

    def __iter__(self):
        iteration = self.start_iter
        while True:
            yield self.data.local_batch(iteration)
            iteration += 1


def _subset(n: int, limit: int) -> np.ndarray:
    """`limit` evenly spaced indices of range(n) (all classes represented), or all of them."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _scan(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Classes, relative paths and labels of an ImageFolder tree (torchvision's ImageFolder does the scan)."""
    if not folder.is_dir():
        raise UserError(
            f"ImageNet folder {folder} does not exist: data.root must hold train/ and val/ with one folder per class "
            f"(see the README, 'ImageNet', for preparing them from the official archives)"
        )
    try:
        dataset = torchvision.datasets.ImageFolder(str(folder), loader=lambda path: path)
    except (FileNotFoundError, RuntimeError) as err:
        raise UserError(
            f"no images found under {folder} ({str(err).splitlines()[0]}): expected one folder per class of JPEG files"
        ) from None
    root = str(folder) + os.sep
    paths = np.array(
        [os.fsencode(p[len(root) :] if p.startswith(root) else os.path.relpath(p, folder)) for p, _ in dataset.samples],
        dtype=np.bytes_,
    )
    labels = np.array([label for _, label in dataset.samples], dtype=np.int64)
    return dataset.classes, paths, labels


def loader_workers(requested: int | None) -> int:
    """DataLoader workers: data.num_workers, or for null one fewer than the CPUs this process may use (the main
    process needs one), at most 8 (more rarely speeds up one GPU's input)."""
    if requested is not None:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, cpus - 1)


def _dist_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class ImageNetData:
    """The trainer's data interface for ImageNet (see data/small_images.py for the CIFAR counterpart)."""

    report_top5 = True

    def __init__(
        self, cfg: DataConfig, device: torch.device, seed: int, rank: int = 0, world_size: int = 1, train: bool = True
    ):
        """train=False: only val/ is read (evaluation); the per-pixel mean must then be in its cache already,
        unless train/ is there to compute it from."""
        if cfg.gpu_decode and device.type != "cuda":
            raise UserError(
                "data.gpu_decode=true decodes JPEGs on a CUDA GPU but training runs on the CPU here: "
                "set data.gpu_decode=false (the default)"
            )
        if isinstance(cfg, DictConfig):  # a plain dataclass: the workers read it per sample
            cfg = DataConfig(**OmegaConf.to_container(cfg, resolve=True))
        self.cfg, self.device, self.seed, self.rank, self.world_size = cfg, device, seed, rank, world_size
        self.root = Path(cfg.root).expanduser()
        self.num_workers = loader_workers(cfg.num_workers)

        classes, val_paths, val_labels = _scan(self.root / "val")
        keep = _subset(len(val_labels), cfg.limit_test)
        self.val = (val_paths[keep], val_labels[keep])
        self.classes = classes
        self.num_classes = len(classes)
        self.input_size = (3, cfg.crop_size, cfg.crop_size)
        self.eval_sets = {"test": self.val}  # ImageNet's val set is the paper's test set of Tables 2-4
        self._train: tuple[np.ndarray, np.ndarray] | None = None
        self.train_size, self.batches_per_epoch = 0, 0
        if train:
            self._load_train()
            if cfg.batch_size > self.train_size:  # before the per-pixel mean is computed and cached
                raise UserError(
                    f"data.batch_size={cfg.batch_size} is larger than the {self.train_size} training images in "
                    f"{self.root / 'train'}: set data.batch_size={self.train_size} or less"
                )
        chosen = "null: from the CPUs" if cfg.num_workers is None else cfg.num_workers
        log.info("%d DataLoader workers (data.num_workers=%s)", self.num_workers, chosen)
        self.mean = self._mean_image() if cfg.normalize == "mean_pixel" else None
        self._epoch, self._order = -1, None
        self._eval_loaders: dict[tuple[str, str], DataLoader] = {}

    def _load_train(self) -> None:
        classes, paths, labels = _scan(self.root / "train")
        if classes != self.classes:
            raise UserError(
                f"train/ and val/ of {self.root} have different class folders ({len(classes)} and "
                f"{len(self.classes)}): both need the same one folder per class"
            )
        keep = _subset(len(labels), self.cfg.limit_train)
        self._train = (paths[keep], labels[keep])
        self.train_size = len(keep)
        self.batches_per_epoch = self.train_size // self.cfg.batch_size

    # ----- normalization on the device ---------------------------------------------------------------------
    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    def normalize(self, images: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 N,3,H,W on the device -> float: [0, 1], plus PCA lighting `alpha` (N,3; training), minus the mean."""
        x = images.float().div_(255)
        if alpha is not None and self.cfg.pca_lighting > 0:
            rgb = (alpha.to(x.device) * PCA_EIGVAL.to(x.device)) @ PCA_EIGVEC.to(x.device).T  # N,3
            x += rgb[:, :, None, None]
        if self.mean is None:
            mean, std = (t.to(x.device)[:, None, None] for t in MEAN_STD)
            return x.sub_(mean).div_(std)
        return x.sub_(self.mean_for(x.shape[-2:]))

    def mean_for(self, size: Sequence[int]) -> torch.Tensor:
        """The per-pixel mean at `size` (bilinearly resized from crop_size when the input is not a crop)."""
        if tuple(size) == tuple(self.mean.shape[-2:]):
            return self.mean
        return F.interpolate(self.mean[None], size=tuple(size), mode="bilinear", align_corners=False)[0]

    # ----- the per-pixel mean ---------------------------------------------------------------------------------
    def _mean_cache_paths(self) -> list[Path]:
        """Where the per-pixel mean is cached: in data.root, else (read-only data) under ~/.cache/resnet_repro."""
        cfg = self.cfg
        name = f"mean_image_{cfg.mean_images}img_{cfg.scale_min}resize_{cfg.crop_size}crop"
        name += f"_limit{cfg.limit_train}.pt" if cfg.limit_train else ".pt"
        key = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        return [self.root / name, Path.home() / ".cache" / "resnet_repro" / f"imagenet_{key}_{name}"]

    def _read_mean_cache(self) -> torch.Tensor | None:
        for path in self._mean_cache_paths():
            if path.exists():
                state = torch.load(path, map_location="cpu")
                # train/ changed since (images added or removed): the cached mean is of another subset
                if self._train is None or state["train_images"] == self.train_size:
                    return state["mean"]
        return None

    def _mean_image(self) -> torch.Tensor:
        if not _dist_initialized():
            return self._cached_or_computed_mean().to(self.device)
        # Rank 0 reads or computes the mean; the others read what it cached. Every process takes the same path to the
        # barrier: one that found a fresh cache early and skipped it would leave the others waiting for ever.
        if self.rank == 0:
            mean = self._cached_or_computed_mean()
        torch.distributed.barrier()
        if self.rank != 0:
            mean = self._read_mean_cache()
            if mean is None:
                raise UserError(
                    f"process {self.rank} cannot read the per-pixel mean rank 0 cached at "
                    f"{' or '.join(map(str, self._mean_cache_paths()))}: "
                    f"put data.root on a shared, writable file system"
                )
        return mean.to(self.device)

    def _cached_or_computed_mean(self) -> torch.Tensor:
        """The cached per-pixel mean if it is of this training set, else computed now and cached."""
        mean = self._read_mean_cache()
        if mean is not None:
            return mean
        if self._train is None:
            if not (self.root / "train").is_dir():
                raise UserError(
                    f"no cached per-pixel mean ({self._mean_cache_paths()[0].name}) in {self.root} and no "
                    f"train/ to compute it from: use the data.root of training, or data.normalize=mean_std"
                )
            self._load_train()
        mean = self.compute_mean_image()
        state = {
            "mean": mean,
            "images": min(self.cfg.mean_images, self.train_size) or self.train_size,
            "train_images": self.train_size,
            "resize": self.cfg.scale_min,
            "crop": self.cfg.crop_size,
            "subset_seed": _MEAN_SUBSET_SEED,
        }
        for path in self._mean_cache_paths():
            try:
                atomic_write(path, lambda f: torch.save(state, f))
                log.info("per-pixel mean of %d training images cached in %s", state["images"], path)
                break
            except OSError:
                continue
        else:
            log.warning("could not cache the per-pixel mean (%s and %s not writable)", *self._mean_cache_paths())
        return mean

    def compute_mean_image(self) -> torch.Tensor:
        """Mean of the center views of a fixed subset (seed 0) of the training images, float32 3,crop,crop in [0, 1]."""
        paths, labels = self._train
        n = min(self.cfg.mean_images, len(labels)) if self.cfg.mean_images > 0 else len(labels)
        subset = (
            torch.randperm(len(labels), generator=stream_generator(_MEAN_SUBSET_SEED, 0, 0))[:n].sort().values.tolist()
        )
        files = ImageFiles(self.root / "train", paths, labels, "center", self.cfg)
        batches = [[(i, None) for i in subset[s : s + 256]] for s in range(0, n, 256)]
        loader = DataLoader(
            files,
            batch_sampler=batches,
            num_workers=self.num_workers,
            collate_fn=collate,
            generator=torch.Generator(),
        )  # its own: never draws from the global RNG (weight init)
        total = torch.zeros(self.input_size, dtype=torch.float64)
        t0 = time.perf_counter()
        for views, _, _ in loader:
            total += views.double().sum(0)
        log.info("per-pixel mean of %d training images computed in %.0f s", n, time.perf_counter() - t0)
        return (total / (255 * n)).float()

    # ----- training ----------------------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._order = torch.randperm(self.train_size, generator=stream_generator(self.seed, _STREAM_ORDER, epoch))
            self._epoch = epoch
        return self._order

    def local_batch(self, iteration: int) -> list[tuple[int, int]]:
        """(image index, sample seed) for this process's positions of the global batch of `iteration`."""
        epoch, step = divmod(iteration, self.batches_per_epoch)
        batch = self.cfg.batch_size
        lo, hi = self.rank * batch // self.world_size, (self.rank + 1) * batch // self.world_size
        index = self._epoch_order(epoch)[step * batch + lo : step * batch + hi].tolist()
        return [(i, sample_seed(self.seed, iteration, lo + k)) for k, i in enumerate(index)]

    def _loader(self, files: Dataset, batch_sampler, persistent: bool) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            files,
            batch_sampler=batch_sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent and workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            # Views draw from per-sample generators; the loader's own seed must not consume the global
            # RNG (the model's initialization follows build_data).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_batches(self, start_iter: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized, augmented images and labels on the device for iterations start_iter, start_iter+1, ..."""
        if self._train is None:
            self._load_train()
        paths, labels = self._train
        mode = "raw" if self.cfg.gpu_decode else "train"
        files = ImageFiles(self.root / "train", paths, labels, mode, self.cfg)
        for views, labels, extras in self._loader(files, IterationBatches(self, start_iter), persistent=True):
            if self.cfg.gpu_decode:
                views, extras = self._gpu_train_views(views, extras)
            yield self.normalize(self._to_device(views), extras if self.cfg.augment else None), self._to_device(labels)

    def _gpu_train_views(self, data: list[torch.Tensor], seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, views, alphas = self.cfg, [], []
        for image, seed in zip(self._gpu_decode(data), seeds):
            if cfg.augment:
                scale, fy, fx, flip, alpha = draw_train_params(seed, cfg)
                views.append(train_view(image, scale, fy, fx, flip, cfg.crop_size))
                alphas.append(alpha)
            else:
                views.append(center_view(image, cfg.scale_min, cfg.crop_size))
                alphas.append(torch.zeros(3))
        return torch.stack(views), torch.stack(alphas)

    def _gpu_decode(self, data: list[torch.Tensor]) -> list[torch.Tensor]:
        """nvJPEG on whole batches; files it cannot decode (PNG in disguise, CMYK) fall back to the CPU one by one."""
        try:
            return torchvision.io.decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            out = []
            for d in data:
                try:
                    out.append(torchvision.io.decode_jpeg(d, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    out.append(decode_rgb(d).to(self.device))
            return out

    # ----- evaluation --------------------------------------------------------------------------------------------
    def view_batches(self, split: str, view: str = "center") -> Iterator[tuple[Any, torch.Tensor]]:
        """This process's shard of `split` in batches of eval_batch_size images, on the device:
        center: N,3,c,c normalized | 10crop: N,10,3,c,c normalized | full: a list of N uint8 3,H,W whole images."""
        if view not in VIEWS:
            raise UserError(f"unknown test view {view!r}: choose one of {', '.join(VIEWS)}")
        key = (split, view)
        if key not in self._eval_loaders:
            paths, labels = self.eval_sets[split]
            shard = list(range(self.rank, len(labels), self.world_size))
            size = self.cfg.eval_batch_size
            batches = [[(i, None) for i in shard[s : s + size]] for s in range(0, len(shard), size)]
            mode = "raw" if self.cfg.gpu_decode else view
            files = ImageFiles(self.root / "val", paths, labels, mode, self.cfg)
            self._eval_loaders[key] = self._loader(files, batches, persistent=True)
        for views, labels, _ in self._eval_loaders[key]:
            if self.cfg.gpu_decode:
                views = self._gpu_eval_views(views, view)
            labels = self._to_device(labels)
            if view == "full":
                yield [self._to_device(v) for v in views], labels
            elif view == "10crop":
                views = self._to_device(views)
                yield self.normalize(views.flatten(0, 1)).unflatten(0, views.shape[:2]), labels
            else:
                yield self.normalize(self._to_device(views)), labels

    def _gpu_eval_views(self, data: list[torch.Tensor], view: str):
        images = self._gpu_decode(data)
        if view == "center":
            return torch.stack([center_view(im, self.cfg.scale_min, self.cfg.crop_size) for im in images])
        if view == "10crop":
            return torch.stack([ten_crop_views(im, self.cfg.scale_min, self.cfg.crop_size) for im in images])
        return images

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The trainer's evaluation: single center crops (the view of the paper's Figure 4 curves)."""
        return self.view_batches(split, "center")

    def scaled_views(self, image: torch.Tensor, scales: Sequence[int], flip: bool) -> list[torch.Tensor]:
        """The multi-scale test inputs of one whole uint8 image: per scale a normalized 1 or 2 (with flip),3,h,w."""
        out = []
        for s in scales:
            x = resize_shorter(image, s)[None]
            out.append(self.normalize(torch.cat([x, x.flip(-1)]) if flip else x))  # mirror, then subtract the mean
        return out


__all__ = [
    "ImageNetData",
    "ImageFiles",
    "loader_workers",
    "IterationBatches",
    "decode_rgb",
    "train_view",
    "center_view",
    "ten_crop_views",
    "resize_shorter",
    "draw_train_params",
    "sample_seed",
]
