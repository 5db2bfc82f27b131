"""Figure 7: standard deviation of each 3x3 layer's response (after BN, before ReLU / addition) over the test set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..config import NUM_CLASSES
from .common import COLUMN_IN, STYLE, color, pretty, titled
from .runs import Group, Run

if TYPE_CHECKING:  # torch is imported where the responses are computed: drawing Figure 7 needs none of it
    import torch
    from torch import nn

FIG7_MODELS = ("plain20", "plain56", "resnet20", "resnet56", "resnet110")


def layer_responses(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """Std over all elements (images, channels, positions) of each response layer's output, in forward order.

    Sums of x and x^2 in float64 over the whole set, so the result does not depend on the batch size.
    """
    import torch

    layers = model.response_layers()
    sums = torch.zeros(len(layers), 3, dtype=torch.float64)  # count, sum, sum of squares

    def hook(i):
        def f(_module, _inp, out):
            o = out.detach().double()
            sums[i, 0] += o.numel()
            sums[i, 1] += o.sum().item()
            sums[i, 2] += o.square().sum().item()

        return f

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()  # the paper's responses are those of the trained net at test time (BN running statistics)
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n, s, ss = sums.unbind(1)
    return ((ss / n - (s / n) ** 2).clamp_min(0).sqrt()).numpy()


def responses_frame(model_name: str, seed: int, stds: np.ndarray) -> pd.DataFrame:
    """Rows: layer_index (1-based forward order), std, rank_sorted (1 = largest; the paper's bottom panel)."""
    stds = np.asarray(stds, dtype=float)
    rank = np.empty(len(stds), dtype=int)
    rank[np.argsort(-stds, kind="stable")] = np.arange(1, len(stds) + 1)
    return pd.DataFrame(
        {
            "model": model_name,
            "seed": seed,
            "layer_index": np.arange(1, len(stds) + 1),
            "std": stds,
            "rank_sorted": rank,
        }
    )


def figure7(df: pd.DataFrame, title: str = "") -> plt.Figure:
    """Top: std per layer in the original order; bottom: sorted in descending order. Plain dashed, ResNets solid.
    `title`: the runs' protocol (data set, schedule, test set), printed above the panels."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 1, figsize=(COLUMN_IN, 3.6), constrained_layout=True)
        order = [m for m in FIG7_MODELS if m in set(df.model)] + sorted(set(df.model) - set(FIG7_MODELS))
        for m in order:
            d = df[df.model == m]
            style = dict(
                color=color(m), linestyle="--" if m.startswith("plain") else "-", linewidth=0.9, label=pretty(m)
            )
            axes[0].plot(d.layer_index, d["std"], **style)
            s = d.sort_values("rank_sorted")
            axes[1].plot(s.rank_sorted, s["std"], **style)
        axes[0].set_xlabel("layer index (original)")
        axes[1].set_xlabel("layer index (sorted by magnitude)")
        for ax in axes:
            ax.set_ylabel("std")
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
            ax.legend(loc="upper right", ncol=2)
        return titled(fig, title)


def load_responses(out: Path, groups: list[Group]) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Group suffix -> (Figure 7 responses, their metadata), from the files scripts/layer_responses.py wrote.
    A file names its group by protocol slug; an older file without one belongs to the primary CIFAR group."""
    found = {}
    by_slug = {g.protocol.slug: g for g in groups}
    for meta_path in sorted((out / "tables").glob("fig7_responses*.json")):
        csv = meta_path.with_suffix(".csv")
        if not csv.exists():
            continue
        meta = json.loads(meta_path.read_text())
        group = (
            by_slug.get(meta.get("group"))
            if meta.get("group")
            else next((g for g in groups if g.family == "cifar" and not g.suffix), None)
        )
        if group is not None and group.suffix not in found:
            found[group.suffix] = (pd.read_csv(csv), meta)
    return found


# --- loading a trained net and its test set ---------------------------------------------------------------


def load_trained_model(run: Run, checkpoint: str = "last.pt", device: str | torch.device = "cpu") -> nn.Module:
    """The run's net, built from its `model` config, with the weights of checkpoints/<checkpoint> (its checksum
    verified; the trainer saves the plain module's state_dict, so the names load as they are)."""
    from omegaconf import OmegaConf

    from resnet_repro.config import ModelConfig
    from resnet_repro.engine.checkpoint import load_checkpoint
    from resnet_repro.models import build_model_from_config

    recorded = run.config.get("model") or {"name": run.model, "shortcut": run.shortcut or "A", "family": run.family}
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.create(recorded))
    model = build_model_from_config(model_cfg, NUM_CLASSES.get(run.dataset, 10))
    state = load_checkpoint(Path(run.path) / "checkpoints" / checkpoint, map_location="cpu")
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def normalized_test_set(run: Run, data_root: str, dataset: str | None = None) -> torch.Tensor:
    """The test images as the run's trainer saw them: built by the trainer's own data class from the run's data
    config, so the per-pixel mean (of the run's training split) and any test subset are the run's."""
    import torch
    from omegaconf import OmegaConf

    from resnet_repro.config import DataConfig
    from resnet_repro.data import DeviceImageData
    from resnet_repro.data.augment import normalize

    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), run.config.get("data", {}))
    cfg.root, cfg.name = data_root, dataset or cfg.name
    cfg.evaluate_test = True  # Figure 7's responses are on the test set, whichever sets the run evaluated
    data = DeviceImageData(cfg, torch.device("cpu"), seed=run.seed)
    test = data.eval_sets["test"]
    return normalize(test.images, data.mean)


def pick_fig7_runs(runs: list[Run], models=FIG7_MODELS) -> dict[str, Run]:
    """Per model the complete run with the lowest seed."""
    out = {}
    for m in models:
        done = sorted((r for r in runs if r.net == m and r.complete), key=lambda r: r.seed)
        if done:
            out[m] = done[0]
    return out
