"""Loss landscapes read back from <run>/landscape/ (what scripts/loss_landscape.py wrote through landscape.py), and
the figure that sets them side by side (fig_landscape: plain-56 against ResNet-56 in the usual case). Without torch:
drawing the report's figures needs none of it, and its import costs a second in every `make figures`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import FuncFormatter

from .common import STYLE, TEXT_IN, color, net_order, pretty
from .curves import titled_runs
from .runs import Run

RESULT_DIR = "landscape"
BN_MODE = (
    "eval mode, BN running statistics recomputed at every point for its weights on the image subset "
    "(torch.optim.swa_utils.update_bn, Garipov et al. 2018)"
)


@dataclass
class Landscape:
    run: Run
    meta: dict
    surface: pd.DataFrame
    line: pd.DataFrame | None

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """xs, ys and the loss as a len(ys) x len(xs) array."""
        table = self.surface.pivot(index="y", columns="x", values="loss").sort_index().sort_index(axis=1)
        return table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy()

    @property
    def origin_loss(self) -> float:
        s = self.surface
        return float(s[(s.x == 0) & (s.y == 0)].loss.iloc[0])


def load_landscape(run: Run) -> Landscape | None:
    """The run's landscape results (<run>/landscape/), or None when there are none."""
    if run.path is None:
        return None
    folder = Path(run.path) / RESULT_DIR
    if not (folder / "landscape.json").exists() or not (folder / "surface.csv").exists():
        return None
    line_path = folder / "line.csv"
    return Landscape(
        run,
        json.loads((folder / "landscape.json").read_text()),
        pd.read_csv(folder / "surface.csv"),
        pd.read_csv(line_path) if line_path.exists() else None,
    )


def landscapes_of(runs: list[Run]) -> dict[str, Landscape]:
    """Per net with results, that of its complete run with the lowest seed (else its lowest seed), nets in the
    paper's order (plain first, then by depth)."""
    found: dict[str, Landscape] = {}
    for r in sorted(runs, key=lambda r: (not r.complete, r.seed)):
        if r.net not in found and (result := load_landscape(r)) is not None:
            found[r.net] = result
    return {m: found[m] for m in sorted(found, key=net_order)}


def shared_levels(surfaces: list[np.ndarray], n: int = 16) -> np.ndarray:
    """One set of contour levels for every panel: log-spaced when the losses span more than a factor of 10."""
    values = np.concatenate([s[np.isfinite(s)].ravel() for s in surfaces])
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-6
    if lo > 0 and hi / lo > 10:
        return np.geomspace(lo, hi, n)
    return np.linspace(lo, hi, n)


def figure(landscapes: dict[str, Landscape]) -> plt.Figure | None:
    """One contour panel per net on the same levels (the final weights at the centre), then the loss along the line
    from the initial to the final weights of each net (log scale where it spans decades). None without results."""
    if not landscapes:
        return None
    grids = {m: ls.grid() for m, ls in landscapes.items()}
    levels = shared_levels([g[2] for g in grids.values()])
    log_levels = levels[0] > 0 and levels[-1] / levels[0] > 10
    norm = LogNorm(levels[0], levels[-1]) if log_levels else Normalize(levels[0], levels[-1])
    lines = {m: ls.line for m, ls in landscapes.items() if ls.line is not None}
    n_panels = len(grids) + bool(lines)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, n_panels, figsize=(min(TEXT_IN, 2.3 * n_panels), 2.5), constrained_layout=True, squeeze=False
        )
        axes = list(axes[0])
        contour = None
        for ax, (m, (xs, ys, z)) in zip(axes, grids.items()):
            ls = landscapes[m]
            contour = ax.contour(
                xs, ys, np.clip(z, levels[0], levels[-1]), levels=levels, norm=norm, cmap="viridis", linewidths=0.7
            )
            ax.plot([0], [0], marker="+", color="k", markersize=5)
            it = ls.meta.get("final", {}).get("iteration")
            at = f", iteration {it}" if it is not None else ""
            ax.set_title(f"{pretty(m)} (seed {ls.meta.get('seed', ls.run.seed)}{at})")
            ax.set_xlabel("direction 1")
            ax.set_aspect("equal")
            ax.grid(False)
        axes[0].set_ylabel("direction 2")
        if contour is not None:
            bar = fig.colorbar(contour, ax=axes[: len(grids)], shrink=0.85, pad=0.02)
            bar.set_ticks(levels[::3])
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            bar.ax.minorticks_off()
            bar.set_label("training loss (same levels in all panels)")
        if lines:
            _line_panel(axes[-1], lines)
        first = next(iter(landscapes.values())).meta
        what = (
            f"Loss landscape (Li et al. 2018): {first.get('options', {}).get('images', '?')} training images, "
            f"{_bn_text(first, short=True)}; contours around the final weights along two random filter-normalized "
            "directions"
        )
        notes = [f"{pretty(m)}: {ls.meta['line']}" for m, ls in landscapes.items() if ls.line is None]
        return titled_runs(fig, [ls.run for ls in landscapes.values()], what, notes)


def _line_panel(ax, lines: dict[str, pd.DataFrame]) -> None:
    """The loss along the straight line from the initial to the final weights, one curve per net."""
    for m, df in lines.items():
        ax.plot(df.alpha, df.loss, color=color(m), linestyle="--" if m.startswith("plain") else "-", label=pretty(m))
    losses = pd.concat([df.loss for df in lines.values()])
    if losses.min() > 0 and losses.max() / losses.min() > 10:
        ax.set_yscale("log")  # losses over decades (a net that diverges on the way)
    ax.set_xlabel("α: initial (0) to final (1) weights")
    ax.set_ylabel("training loss")
    ax.set_title("straight line init → final")
    ax.legend(loc="upper right")


def _bn_text(meta: dict, short: bool = False) -> str:
    """How BN was treated in a result: statistics recomputed at every point, or (results of older code) stored."""
    if meta.get("bn") == BN_MODE:
        if short:
            return "eval mode, BN statistics recomputed at every point"
        return (
            "in eval mode, after BN's running statistics are recomputed at every point for its weights on the same "
            "images (torch.optim.swa_utils.update_bn, as Garipov et al. 2018 do along a path; statistics stored "
            "with other weights do not belong to the point)"
        )
    return "BN in eval mode with the stored running statistics (an older result: rerun scripts/loss_landscape.py)"


def describe(landscapes: dict[str, Landscape]) -> str:
    """The sentences under the figure: how it was made, and each net's loss at the final and initial weights and at
    the edge of the grid."""
    first = next(iter(landscapes.values())).meta
    o = first.get("options", {})
    parts = [
        "As Li et al. 2018 draw them. "
        f"Loss: mean cross-entropy (no weight decay) on {o.get('images', '?')} training images ({first['subset']}"
        f"), {_bn_text(first)}. Surface: {o.get('grid')}x{o.get('grid')} grid "
        f"over [-{o.get('span')}, {o.get('span')}]^2 of two random directions, filter-normalized, zero on BN "
        f"parameters and biases (direction seed {o.get('direction_seed')}). Line: {o.get('line_points')} points "
        "from the weights of checkpoints/init.pt to those of checkpoints/last.pt."
    ]
    for m, ls in landscapes.items():
        xs, ys, z = ls.grid()
        edge = np.concatenate([z[0], z[-1], z[:, 0], z[:, -1]])
        text = (
            f"{pretty(m)}: loss {ls.origin_loss:.3g} at the final weights, {np.nanmean(edge):.3g} on average at "
            "the edge of the grid"
        )
        if ls.line is not None:
            start = float(ls.line.loss.iloc[0])
            text += (
                f", {start:.3g} at the initial weights"
                if math.isfinite(start)
                else ", not finite at the initial weights"
            ) + f", at most {ls.line.loss.max():.3g} on the line"
        parts.append(text + ".")
    return " ".join(parts) + "\n\n"
