"""Loss landscapes of a run (Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018), computed here;
read back and drawn by landscape_figure.py.

The loss is the mean cross-entropy (without weight decay) on a fixed subset of the training images as the trainer
sees them (unaugmented, per-pixel mean subtracted), in eval mode, after BN's running statistics are recomputed for
the weights of that point on the same images (torch.optim.swa_utils.update_bn; Garipov et al., NeurIPS 2018, do this
for every point of a path between two nets). Statistics stored with other weights do not belong to the point: at the
initial weights of ResNet-56 they are mean 0 and variance 1, and its 27 residual branches then add up unnormalized
to a loss in the hundreds or more (642 and 1041 for seeds 1 and 0 on 128 Fashion-MNIST images, against 3.48 and 2.76
with the statistics recomputed) that says nothing about the weights.

- surface: theta = theta_final + x * d1 + y * d2 over the parameters, on a grid of (x, y) in [-span, span]^2. d1, d2
  are Gaussian; each filter (the slice of a weight for one output channel) is rescaled to the norm of the same filter
  of theta_final ("filter normalization"); they are zero on every 1-D parameter (BN's scale and shift, the
  classifier's bias).
- line: every floating-point parameter at (1 - a) * init + a * final for a in [0, 1], Li et al.'s interpolation
  between two models: a = 0 has the weights of checkpoints/init.pt and a = 1 those of checkpoints/last.pt.

Results go to <run>/landscape/: surface.csv (x, y, loss, err), line.csv (alpha, loss, err) and landscape.json (how
they were made: checkpoints, the image subset, the options, the command).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from ..engine.records import git_state
from ..errors import UserError
from .common import shown_path
from .landscape_figure import BN_MODE, RESULT_DIR
from .provenance import machine

SUBSET_SEED = 0  # the image subset does not depend on the run's seed: two nets of one protocol see the same images


@dataclass(frozen=True)
class Options:
    """What a landscape depends on besides the checkpoints; a result with other options is recomputed."""

    grid: int = 21  # points per axis of the surface (odd, so that the final weights are on the grid)
    span: float = 1.0  # the surface covers [-span, span]^2 in units of the filter-normalized directions
    line_points: int = 21  # points on the line from the initial to the final weights
    images: int = 2000  # training images in the fixed subset
    direction_seed: int = 0

    def check(self) -> None:
        if self.grid < 3 or self.grid % 2 == 0:
            raise UserError(
                f"--grid {self.grid}: choose an odd number of points, 3 or more (the centre is the final weights)"
            )
        if not self.span > 0:
            raise UserError(f"--span {self.span}: must be greater than 0")
        if self.line_points < 2:
            raise UserError(f"--line-points {self.line_points}: choose 2 or more (both ends are the checkpoints)")
        if self.images < 1:
            raise UserError(f"--images {self.images}: choose 1 or more")


# --- directions ------------------------------------------------------------------------------------------------


def normalize_filters(direction: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`direction` with each filter (slice along dim 0) rescaled to the norm of the same filter of `weight`."""
    d_norm = direction.flatten(1).norm(dim=1)
    w_norm = weight.flatten(1).norm(dim=1)
    scale = w_norm / (d_norm + 1e-10)
    return direction * scale.view(-1, *([1] * (direction.dim() - 1)))


def random_direction(params: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A Gaussian direction over `params`, filter-normalized, zero on every 1-D parameter (BN and biases)."""
    out = {}
    for name, w in params.items():
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w.device, w.dtype)
        out[name] = torch.zeros_like(w) if w.dim() <= 1 else normalize_filters(d, w)
    return out


# --- the loss on a fixed subset ----------------------------------------------------------------------------------


@torch.inference_mode()
def subset_loss(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 error of `model` in eval mode on (images, labels), summed in float64."""
    model.eval()
    loss_sum, wrong = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start : start + batch_size]).float()
        y = labels[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().item()
        wrong += int((logits.argmax(1) != y).sum())
    return loss_sum / len(labels), wrong / len(labels)


@torch.no_grad()
def point_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500):
    """subset_loss at the model's current weights, after BN's running statistics are recomputed for them on the same
    images (their average over the batches of `batch_size`)."""
    update_bn((images[start : start + batch_size] for start in range(0, len(images), batch_size)), model)
    return subset_loss(model, images, labels, batch_size)


def line(
    model: nn.Module, init_state: dict, final_state: dict, alphas, images, labels, batch_size: int = 500
) -> pd.DataFrame:
    """The loss along (1 - a) * init + a * final of every floating-point parameter, BN statistics recomputed at
    every point (point_loss)."""
    rows = []
    for a in alphas:
        state = {
            k: torch.lerp(init_state[k], v, float(a)) if v.is_floating_point() else v for k, v in final_state.items()
        }  # lerp: exactly init at 0 and exactly final at 1
        model.load_state_dict(state)
        loss, err = point_loss(model, images, labels, batch_size)
        rows.append({"alpha": float(a), "loss": loss, "err": err})
    return pd.DataFrame(rows)


def surface(
    model: nn.Module, final_state: dict, directions: tuple[dict, dict], xs, ys, images, labels, batch_size: int = 500
) -> pd.DataFrame:
    """The loss at final + x * d1 + y * d2 for every (x, y) of the grid xs by ys, BN statistics recomputed at every
    point (point_loss); the model is left with the final state."""
    model.load_state_dict(final_state)
    params = dict(model.named_parameters())
    base = {n: p.detach().clone() for n, p in params.items()}
    moved = [n for n in params if directions[0][n].abs().sum() or directions[1][n].abs().sum()]
    rows = []
    with torch.no_grad():
        for x in xs:
            for y in ys:
                for n in moved:
                    params[n].copy_(base[n]).add_(directions[0][n], alpha=float(x)).add_(
                        directions[1][n], alpha=float(y)
                    )
                loss, err = point_loss(model, images, labels, batch_size)
                rows.append({"x": float(x), "y": float(y), "loss": loss, "err": err})
    model.load_state_dict(final_state)
    return pd.DataFrame(rows)


def axis(points: int, span: float) -> np.ndarray:
    """`points` values from -span to span, the centre exactly 0 (the final weights themselves)."""
    values = span * np.linspace(-1.0, 1.0, points)
    values[points // 2] = 0.0
    return values


# --- one run ---------------------------------------------------------------------------------------------------


def run_configs(run_dir: Path):
    """The run's config, model config and data config; a UserError if `run_dir` is not a run directory."""
    from omegaconf import OmegaConf

    from ..config import DataConfig, ModelConfig

    path = run_dir / "config.yaml"
    if not path.exists():
        raise UserError(
            f"{run_dir} holds no config.yaml: --run takes a run directory (results/runs/<experiment>/<net>/seed<k>)"
        )
    cfg = OmegaConf.load(path)
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), cfg.get("model") or {})
    data_cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), cfg.get("data") or {})
    return cfg, model_cfg, data_cfg


def training_subset(
    data_cfg, n: int, seed: int = 0, data_root: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The first n of a fixed permutation (SUBSET_SEED) of the training split as the trainer builds it (its split and
    limit_train), unaugmented and mean-subtracted as its evaluations are; with their labels and indices."""
    from ..data import DeviceImageData

    if data_root is not None:
        data_cfg.root = data_root
    data = DeviceImageData(data_cfg, torch.device("cpu"), seed=seed)
    if n > data.train_size:
        raise UserError(f"--images {n}: the run's training split has only {data.train_size} images")
    index = torch.randperm(data.train_size, generator=torch.Generator().manual_seed(SUBSET_SEED))[:n]
    return data.train_images.center(index), data.train_labels[index], index.tolist()


def _checkpoint(run_dir: Path, name: str) -> dict | None:
    from ..engine.checkpoint import load_checkpoint

    path = run_dir / "checkpoints" / name
    return load_checkpoint(path) if path.exists() else None


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def up_to_date(out_dir: Path, options: Options, final_digest: str | None) -> bool:
    """A result in out_dir made with these options and this BN treatment from this final checkpoint."""
    meta_path = out_dir / "landscape.json"
    if not meta_path.exists() or not (out_dir / "surface.csv").exists():
        return False
    meta = json.loads(meta_path.read_text())
    same = meta.get("options") == vars(options) and meta.get("bn") == BN_MODE
    return same and meta.get("final", {}).get("sha256") == final_digest


def compute(
    run_dir: str | Path,
    options: Options,
    *,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 500,
    data_root: str | None = None,
    command: str = "",
    force: bool = False,
    subset_cache: dict | None = None,
) -> tuple[dict, bool]:
    """Line and surface of one run, written to out_dir (default <run>/landscape); returns (its metadata, whether it
    was computed: False when an up-to-date result was there). `subset_cache` shares the images between runs of
    the same data config."""
    options.check()
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / RESULT_DIR
    cfg, model_cfg, data_cfg = run_configs(run_dir)
    final = _checkpoint(run_dir, "last.pt")
    if final is None:
        raise UserError(f"{run_dir / 'checkpoints' / 'last.pt'} does not exist: train the run first")
    if not force and up_to_date(out, options, final.get("sha256")):
        return json.loads((out / "landscape.json").read_text()), False
    init = _checkpoint(run_dir, "init.pt")

    t0 = time.perf_counter()
    cache = subset_cache if subset_cache is not None else {}
    model, images, labels, indices, channels_last = _model_and_images(
        cfg, model_cfg, data_cfg, options.images, device, data_root, cache
    )
    final_state = {k: v.to(device) for k, v in final["model"].items()}
    generator = torch.Generator().manual_seed(options.direction_seed)
    model.load_state_dict(final_state)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    directions = (random_direction(weights, generator), random_direction(weights, generator))
    xs = axis(options.grid, options.span)
    surf = surface(model, final_state, directions, xs, xs, images, labels, batch_size)
    line_df, line_note = None, "computed"
    if init is None:
        line_note = "not computed: the run has no checkpoints/init.pt (it was started before the trainer saved it)"
    else:
        alphas = np.linspace(0.0, 1.0, options.line_points)
        line_df = line(
            model, {k: v.to(device) for k, v in init["model"].items()}, final_state, alphas, images, labels, batch_size
        )

    out.mkdir(parents=True, exist_ok=True)
    surf.to_csv(out / "surface.csv", index=False, float_format="%.6g")
    if line_df is not None:
        line_df.to_csv(out / "line.csv", index=False, float_format="%.6g")
    elif (out / "line.csv").exists():
        (out / "line.csv").unlink()  # a line of an earlier final checkpoint would not match this surface
    meta = _metadata(run_dir, cfg, options, final, init, line_note, indices)
    meta.update(device=str(device), hardware=machine(device), channels_last=channels_last, command=command)
    meta["wall_s"] = time.perf_counter() - t0
    (out / "landscape.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta, True


def _model_and_images(cfg, model_cfg, data_cfg, n: int, device, data_root: str | None, cache: dict):
    """The run's net on `device` in the trainer's memory format; the first n images of the fixed training subset
    (shared through `cache` by runs of the same data config), their labels and indices; and whether the format is
    channels_last."""
    from omegaconf import OmegaConf

    from ..config import NUM_CLASSES
    from ..models import build_model_from_config

    key = json.dumps(OmegaConf.to_container(data_cfg, resolve=True), sort_keys=True, default=str) + str(data_root)
    if key not in cache or len(cache[key][2]) < n:
        cache[key] = training_subset(data_cfg, n, int(cfg.get("seed", 0)), data_root)
    images, labels, indices = (x[:n] for x in cache[key])
    # the trainer's memory format (channels_last by default: faster convolutions on CPUs and GPUs)
    channels_last = bool(OmegaConf.select(cfg, "trainer.channels_last", default=True))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model_from_config(model_cfg, NUM_CLASSES[str(data_cfg.name)]).to(device, memory_format=memory_format)
    images = images.to(device).contiguous(memory_format=memory_format)
    return model, images, labels.to(device), indices, channels_last


def _metadata(run_dir: Path, cfg, options: Options, final: dict, init: dict | None, line_note: str, indices) -> dict:
    """landscape.json: what was computed from which checkpoints and images, and how."""
    commit, dirty = git_state()

    def checkpoint(name: str, ckpt: dict) -> dict:
        return {"checkpoint": f"checkpoints/{name}", "iteration": ckpt.get("iteration"), "sha256": ckpt.get("sha256")}

    return {
        "run": shown_path(run_dir),
        "model": str(cfg.model.name),
        "seed": int(cfg.get("seed", 0)),
        "dataset": str(cfg.data.name),
        "experiment": str(cfg.get("experiment_name", "default")),
        "status": _summary(run_dir).get("status", "?"),
        "final": checkpoint("last.pt", final),
        "init": None if init is None else checkpoint("init.pt", init),
        "line": line_note,
        "loss": "mean cross-entropy on the image subset, without weight decay",
        "bn": BN_MODE,
        "directions": "two Gaussian directions over the parameters, filter-normalized to the final weights, zero on "
        "every 1-D parameter (BN scale and shift, biases)",
        "line_path": "every floating-point parameter at (1 - alpha) * init + alpha * final",
        "subset": f"the first {options.images} of a fixed permutation (seed {SUBSET_SEED}) of the run's training "
        "split, unaugmented, per-pixel mean subtracted",
        "indices": indices,
        "options": vars(options),
        "torch": torch.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
    }
