"""The paper's test protocols, for a trained run or for torchvision's released weights.

CIFAR-10, CIFAR-100 and Fashion-MNIST runs (`single`): the whole test set (data.limit_test of the run is ignored),
each image once as it is, normalized as in training: the trainer's own evaluation, for checkpoints/last.pt (the
paper's number) and checkpoints/best.pt (selected on the validation error, or on the training error with
data.split=full). Top-1 error and the mean negative log-likelihood; results under "eval" as "last" and "best".

ImageNet runs, and torchvision's weights:

- center: the shorter side resized to data.scale_min (256), one crop_size (224) center crop.
- 10crop (Tables 2, 3): the four corner crops and the center crop of that 256 image, and their mirror images.
- multiscale (Table 4): the fully-convolutional form: the whole image, shorter side resized to each of
  {224, 256, 384, 480, 640}, through the network as it is (global average pooling is adaptive; pooling then the
  linear classifier equals averaging the classifier's score map, the fully-convolutional form of [41, 13]), and,
  by default, its mirror image too, as in VGG's dense evaluation [41] that the paper follows.

In each protocol the softmax probabilities of the views of an image are averaged (not the logits), and top-1 /
top-5 errors are those of the averaged probabilities. Results go to a run's eval.json and summary.json ("eval",
or "eval_limited" for --limit evaluations), or for torchvision's weights to results/imagenet_torchvision/<model>.json.
Records name files relative to the run directory, or the working directory, never by a machine's absolute path.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from ..config import DataConfig
from ..errors import UserError
from ..models import build_model, build_model_from_config
from . import records
from .checkpoint import load_checkpoint
from .distributed import resolve_device
from .metrics import top1_top5_wrong
from .run_dir import LOCK_NAME, RunDirectory, is_live
from .setup import autocast

log = logging.getLogger("resnet_repro.evaluate")

PROTOCOLS = ("center", "10crop", "multiscale")  # ImageNet's
SINGLE = "single"  # CIFAR and Fashion-MNIST: each test image once, as the trainer evaluates it
PAPER_SCALES = (224, 256, 384, 480, 640)  # Table 4: shorter side of the whole image
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# IMAGENET1K_V1: the classic recipe (90 epochs, step lr), the closest to the paper; DEFAULT is V2 for resnet50+.
TORCHVISION_DEFAULT_WEIGHTS = "IMAGENET1K_V1"
TORCHVISION_OUT = Path("results/imagenet_torchvision")


@dataclass
class EvalOptions:
    protocols: tuple[str, ...] = PROTOCOLS
    scales: tuple[int, ...] = PAPER_SCALES  # multiscale: shorter sides
    flip: bool = True  # multiscale: average the mirror image at every scale too
    limit: int = 0  # evaluate N evenly spaced val images only (quick checks; recorded apart from full evaluations)
    device: str = "auto"
    # run: the precision the run trained and evaluated in (summary.json), so a run's own numbers repeat; fp32 without
    # a run (--torchvision) | fp32 | bf16 (autocast)
    precision: str = "run"
    num_workers: int | None = None  # None: the run's data.num_workers
    batch_size: int | None = None  # None: the run's data.eval_batch_size (images per batch; views are chunked to it)

    def check(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise UserError(
                f"unknown protocol(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(PROTOCOLS)}"
            )
        if not self.scales or min(self.scales) <= 0:
            raise UserError(f"multiscale scales must be positive shorter sides, got {list(self.scales)}")
        if self.precision not in ("run", "fp32", "bf16"):
            raise UserError(f"unknown precision {self.precision!r}: choose run, fp32 or bf16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"unknown device {self.device!r}: choose auto, cpu or cuda")


# ----- the protocols ----------------------------------------------------------------------------------------------


class _Forward:
    """The model in eval mode on its device, fp32 or bf16 autocast; inputs chunked to at most `max_pixels` pixels."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str, max_pixels: int):
        self.model, self.device, self.max_pixels = model.eval(), device, max_pixels
        self.precision = precision
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (float32) of a batch N,3,H,W, in chunks."""
        chunk = max(1, self.max_pixels // (x.shape[-1] * x.shape[-2]))
        out = []
        for part in x.split(chunk):
            with autocast(self.precision, self.device):
                logits = self.model(part.contiguous(memory_format=self.memory_format))
            out.append(logits.float().softmax(1))
        return torch.cat(out)


def predict(
    model: torch.nn.Module,
    data,
    protocol: str,
    options: EvalOptions,
    split: str = "test",
    device: torch.device | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(averaged softmax probabilities N,K, labels N) for each batch of this process's shard of `split`."""
    device = device or data.device
    _, height, width = data.input_size
    forward = _Forward(model, device, options.precision, max_pixels=data.cfg.eval_batch_size * height * width)
    if protocol == SINGLE:
        for images, labels in data.eval_batches(split):
            yield forward.probs(images), labels
    elif protocol == "center":
        for images, labels in data.view_batches(split, "center"):
            yield forward.probs(images), labels
    elif protocol == "10crop":
        for views, labels in data.view_batches(split, "10crop"):  # N,10,3,c,c
            yield forward.probs(views.flatten(0, 1)).unflatten(0, views.shape[:2]).mean(1), labels
    elif protocol == "multiscale":
        for images, labels in data.view_batches(split, "full"):
            yield multiscale_probs(forward, data, images, options.scales, options.flip), labels
    else:
        raise UserError(f"unknown protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")


def multiscale_probs(forward: _Forward, data, images: list[torch.Tensor], scales, flip: bool) -> torch.Tensor:
    """Mean softmax over scales (and mirror images) of whole images; equal-sized inputs share a forward pass."""
    total, views = None, 0
    for s in scales:
        groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for i, image in enumerate(images):
            x = data.scaled_views(image, [s], flip)[0]  # 1 or 2,3,h,w
            groups[tuple(x.shape[-2:])].append((i, x))
        for members in groups.values():
            index = torch.tensor([i for i, _ in members], device=forward.device)
            x = torch.cat([v for _, v in members])
            p = forward.probs(x).unflatten(0, (len(members), -1)).sum(1)  # per image: sum over (flip) views
            if total is None:
                total = torch.zeros(len(images), p.shape[1], device=p.device)
            total.index_add_(0, index, p)
        views += 2 if flip else 1
    return total / views


def evaluate_protocol(
    model: torch.nn.Module, data, protocol: str, options: EvalOptions, split: str = "test"
) -> dict[str, Any]:
    """Top-1 and top-5 error (and the NLL of the averaged probabilities) of one protocol on `split`."""
    t0 = time.perf_counter()
    sums = torch.zeros(4, dtype=torch.float64)  # nll, top-1 wrong, top-5 wrong, count
    for probs, labels in predict(model, data, protocol, options, split):
        labels = labels.to(probs.device)
        wrong1, wrong5 = top1_top5_wrong(probs, labels)
        sums += (
            torch.stack(
                [
                    -probs.gather(1, labels[:, None]).clamp_min(1e-12).log().sum(),
                    wrong1,
                    wrong5,
                    torch.tensor(len(labels), device=probs.device),
                ]
            )
            .double()
            .cpu()
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        sums = sums.to(data.device)
        torch.distributed.all_reduce(sums)
        sums = sums.cpu()
    nll, wrong1, wrong5, count = sums.tolist()
    if not count:
        raise UserError(f"no images to evaluate in {split}")
    result = {"top1_err": wrong1 / count, "top5_err": wrong5 / count, "nll": nll / count, "images": int(count)}
    if not data.report_top5:  # as in the trainer's records: ImageNet only
        del result["top5_err"]
    result["wall_s"] = time.perf_counter() - t0
    cfg = data.cfg
    if protocol == SINGLE:
        result["views_per_image"] = 1
    else:
        result["averaged"] = "softmax"
        if protocol in ("center", "10crop"):
            result.update(views_per_image=1 if protocol == "center" else 10, resize=cfg.scale_min, crop=cfg.crop_size)
        else:
            result.update(
                views_per_image=len(options.scales) * (2 if options.flip else 1),
                scales=list(options.scales),
                flip=options.flip,
            )
        result["normalize"] = cfg.normalize
    if options.limit:
        result["limit"] = options.limit
    return result


def evaluate_model(model: torch.nn.Module, data, options: EvalOptions) -> dict[str, dict[str, Any]]:
    options.check()
    out = {}
    for protocol in options.protocols:
        out[protocol] = evaluate_protocol(model, data, protocol, options)
        r = out[protocol]
        log.info(
            "%s: top-1 %.2f%% top-5 %.2f%% (%d images, %.0f s)",
            protocol,
            100 * r["top1_err"],
            100 * r["top5_err"],
            r["images"],
            r["wall_s"],
        )
    return out


def _data_config(base: dict[str, Any], options: EvalOptions, device: torch.device, **overrides) -> DataConfig:
    cfg = DataConfig(**{**base, **overrides})
    cfg.limit_test = options.limit
    if options.num_workers is not None:
        cfg.num_workers = options.num_workers
    if options.batch_size is not None:
        cfg.eval_batch_size = options.batch_size
    cfg.gpu_decode = cfg.gpu_decode and device.type == "cuda"  # evaluation may run where training's GPU isn't
    return cfg


# ----- a trained run ----------------------------------------------------------------------------------------------


def evaluate_run(
    run_dir: str | Path,
    options: EvalOptions,
    checkpoint: str | Path | None = None,
    data_root: str | None = None,
    allow_incomplete: bool = False,
    imagenet_flags: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate a run's checkpoints and write eval.json and summary.json. ImageNet: checkpoints/last.pt under each
    protocol of `options`; other data sets: last.pt and best.pt on the whole test set (SINGLE). `checkpoint`: that
    one instead. `imagenet_flags`: the command's options that only ImageNet's protocols take (refused otherwise)."""
    options.check()
    dirs = RunDirectory(Path(run_dir))
    if not dirs.config.exists():
        raise UserError(f"{dirs.path} is not a run directory (no config.yaml)")
    cfg = records.read_config(dirs.config)
    imagenet = cfg.data.name == "imagenet"
    if not imagenet and imagenet_flags:
        raise UserError(
            f"{', '.join(imagenet_flags)} set ImageNet's test protocols, but {dirs.path} is a {cfg.data.name} run: "
            f"it is evaluated on its whole test set, each image once; leave {' and '.join(imagenet_flags)} out"
        )
    if not imagenet and not cfg.data.get("evaluate_test", True):
        raise UserError(
            f"{dirs.path} is a search trial (data.evaluate_test=false): its test set is never evaluated; "
            f"evaluate the final run that the search's best parameters train"
        )
    if is_live(dirs.path):
        raise UserError(
            f"run {dirs.path} is in use (a process holds {dirs.path / LOCK_NAME}, training it or evaluating it): "
            f"evaluate it when that process has finished"
        )
    summary = records.read_json(dirs.summary) if dirs.summary.exists() else {}
    if summary.get("status") != "complete" and not allow_incomplete and checkpoint is None:
        raise UserError(
            f"run {dirs.path} is {summary.get('status', 'without summary.json')}, not complete: finish it, "
            f"or pass --allow-incomplete (its last checkpoint) or --checkpoint PATH"
        )
    if options.precision == "run":
        options = replace(options, precision=summary.get("precision") or "fp32")
    if checkpoint:
        paths = [Path(checkpoint)]
    else:
        paths = [dirs.last] + ([dirs.best] if not imagenet and dirs.best.exists() else [])
    if not paths[0].exists():
        fix = "check the path given to --checkpoint" if checkpoint else "the run has not written one yet"
        raise UserError(f"checkpoint {paths[0]} does not exist: {fix}")
    dirs.lock()  # fails at once if a trainer is writing this run; keeps one from rewriting summary.json meanwhile
    try:
        states = {path: load_checkpoint(path, map_location="cpu") for path in paths}
        device = resolve_device(options.device)
        base = {**OmegaConf.to_container(cfg.data, resolve=True), **({"root": data_root} if data_root else {})}
        if imagenet:
            from ..data.imagenet import ImageNetData

            data = ImageNetData(_data_config(base, options, device), device, seed=cfg.seed, train=False)
        else:
            from ..data.small_images import DeviceImageData

            data_cfg = DataConfig(**{**base, "limit_test": 0})  # the whole test set
            if options.batch_size is not None:
                data_cfg.eval_batch_size = options.batch_size
            # built as in training (the per-pixel mean is that of the run's training split)
            data = DeviceImageData(data_cfg, device, seed=cfg.seed)
        results = {}
        for path, state in states.items():
            model = build_model_from_config(cfg.model, data.num_classes)
            model.load_state_dict(state["model"])
            model.to(device)
            if imagenet:
                found = evaluate_model(model, data, options)
            else:
                found = {path.stem: evaluate_protocol(model, data, SINGLE, options)}
                r = found[path.stem]
                log.info(
                    "%s: top-1 %.2f%% (%d images, %.0f s)", path.name, 100 * r["top1_err"], r["images"], r["wall_s"]
                )
            for r in found.values():
                r.update(
                    checkpoint=record_path(path, dirs.path),
                    iteration=state.get("iteration"),
                    precision=options.precision,
                )
            results.update(found)
        key = "eval_limited" if options.limit else "eval"
        eval_path = dirs.path / "eval.json"  # ours alone: the trainer never writes it
        saved = records.read_json(eval_path) if eval_path.exists() else {}
        saved.setdefault(key, {}).update(results)
        records.write_json(eval_path, saved)
        if dirs.summary.exists():
            summary = records.read_json(dirs.summary)
            summary.setdefault(key, {}).update(results)
            records.write_json(dirs.summary, summary)
    finally:
        dirs.unlock()
    return results


def record_path(path: str | Path, base: str | Path) -> str:
    """`path` as a record names it: relative to `base` when inside it, as given when relative, else the file's name
    alone (records hold no machine's absolute paths)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return path.name if path.is_absolute() else path.as_posix()


# ----- torchvision's released weights -----------------------------------------------------------------------------


def load_torchvision_state_dict(name: str, weights: str) -> tuple[dict[str, torch.Tensor], str]:
    """A torchvision ResNet state_dict: from a file (a state_dict, or a dict holding one under 'model' or
    'state_dict'), or by weights name (DEFAULT, IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2: downloaded by
    torchvision, checksum verified). Returns the state_dict and a label for the records."""
    import torchvision

    path = Path(weights).expanduser()
    if path.suffix in (".pt", ".pth", ".bin") or path.exists():
        if not path.exists():
            raise UserError(f"weights file {path} does not exist")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises several types for bad files
            raise UserError(f"cannot read weights {path} ({type(err).__name__}): expected a saved state_dict") from None
        for key in ("model", "state_dict"):
            if isinstance(sd, dict) and isinstance(sd.get(key), dict):
                sd = sd[key]
        return sd, path.stem
    try:
        enum = torchvision.models.get_model_weights(name)
        label = weights.split(".")[-1]
        w = enum.DEFAULT if label == "DEFAULT" else enum[label]
    except (KeyError, ValueError):
        raise UserError(
            f"unknown weights {weights!r} for {name}: a file, or one of DEFAULT, "
            f"{', '.join(w.name for w in torchvision.models.get_model_weights(name))}"
        ) from None
    try:
        return w.get_state_dict(progress=True), w.name
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise UserError(
            f"cannot download {w} ({str(err).splitlines()[0]}): on a machine with network, save it with "
            f"torch.save(torchvision.models.get_weight('{w}').get_state_dict(), 'FILE.pth') and pass "
            f"--weights FILE.pth"
        ) from None


def evaluate_torchvision(
    name: str,
    weights: str,
    data_root: str,
    options: EvalOptions,
    out_dir: str | Path = TORCHVISION_OUT,
    data_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """torchvision's weights in our network (shortcut B, stride on the 3x3: the same state_dict), with torchvision's
    mean/std normalization, under the paper's protocols. Writes <out_dir>/<name>.json, one entry per weights."""
    from ..data.imagenet import ImageNetData

    if name not in TORCHVISION_MODELS:
        raise UserError(f"torchvision has ImageNet weights for {', '.join(TORCHVISION_MODELS)}, not {name!r}")
    options.check()
    if options.precision == "run":  # no run: the weights' own arithmetic
        options = replace(options, precision="fp32")
    sd, label = load_torchvision_state_dict(name, weights)
    num_classes = sd["fc.weight"].shape[0] if "fc.weight" in sd else 1000
    model = build_model(name, num_classes=num_classes, shortcut="B", stride_in_1x1=False, family="imagenet")
    try:
        model.load_state_dict(sd)
    except RuntimeError as err:
        raise UserError(f"weights {weights} do not fit torchvision's {name}: {str(err).splitlines()[0]}") from None
    device = resolve_device(options.device)
    base = {
        "name": "imagenet",
        "root": data_root,
        "normalize": "mean_std",
        "scale_min": 256,
        "crop_size": 224,
        "eval_batch_size": 100,
        **(data_overrides or {}),
    }
    data = ImageNetData(_data_config(base, options, device), device, seed=0, train=False)
    model.to(device)
    results = evaluate_model(model, data, options)

    path = Path(out_dir) / f"{name}.json"
    saved = records.read_json(path) if path.exists() else {"model": name, "weights": {}}
    source = record_path(weights, Path.cwd()) if Path(weights).expanduser().exists() else str(weights)
    entry = saved["weights"].setdefault(label, {})
    entry["source"] = source
    entry.setdefault("eval_limited" if options.limit else "eval", {}).update(results)
    saved["data_root"] = record_path(data_root, Path.cwd())
    records.write_json(path, saved)
    return {"path": str(path), "weights": label, "eval": results}


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """One line per protocol (ImageNet) or checkpoint (other data sets)."""
    lines = []
    for name, r in results.items():
        top5 = f"  top-5 {100 * r['top5_err']:6.2f}%" if "top5_err" in r else ""
        views = r["views_per_image"]
        where = f", iteration {r['iteration']}" if r.get("iteration") is not None else ""
        lines.append(
            f"  {name:<10} top-1 {100 * r['top1_err']:6.2f}%{top5}  "
            f"({r['images']} images, {views} view{'s' if views > 1 else ''} each{where})"
        )
    return "\n".join(lines)


__all__ = [
    "PROTOCOLS",
    "SINGLE",
    "PAPER_SCALES",
    "EvalOptions",
    "predict",
    "multiscale_probs",
    "evaluate_protocol",
    "evaluate_model",
    "evaluate_run",
    "record_path",
    "evaluate_torchvision",
    "load_torchvision_state_dict",
    "format_results",
]
