"""Training curves: Figure 1 (plain-20/56), Figure 6 (CIFAR-10, three panels), Figure 4 (ImageNet plain/ResNet).

Every function returns the matplotlib Figure; saving is the caller's job (see save()).
"""

from __future__ import annotations

import math

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .runs import Run, by_model, incomplete_note  # noqa: E402

COLUMN_IN, TEXT_IN = 3.35, 6.9  # one column and full text width of a two-column paper

# One style for every figure: small serif-free type that survives printing in black and white.
STYLE = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "legend.fontsize": 6,
    "xtick.labelsize": 6, "ytick.labelsize": 6, "lines.linewidth": 1.0,
    "axes.grid": True, "grid.linewidth": 0.3, "grid.alpha": 0.6, "legend.frameon": False,
    "legend.handlelength": 1.6, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": 300, "savefig.bbox": "tight", "pdf.fonttype": 42, "ps.fonttype": 42,
}
DEPTH_COLOR = {18: "C0", 20: "C0", 32: "C1", 34: "C3", 44: "C2", 56: "C3", 110: "C4", 1202: "C5"}
TRAIN = dict(linestyle="--", linewidth=0.8)  # paper: dashed training error
TEST = dict(linestyle="-", linewidth=1.6)  # paper: bold test error
RUNNING = dict(linestyle=":", alpha=0.6)


def pretty(model: str) -> str:
    """plain20 -> plain-20, resnet110 -> ResNet-110 (the paper's names)."""
    m = re.fullmatch(r"(plain|resnet)(\d+)", model)
    if not m:
        return model
    return ("plain-" if m[1] == "plain" else "ResNet-") + m[2]


def color(model: str) -> str:
    d = int(re.sub(r"\D", "", model) or 0)
    return DEPTH_COLOR.get(d, "C7")


def _band(runs: list[Run], col: str) -> pd.DataFrame:
    """mean/min/max of one metric over seeds, per evaluation iteration."""
    frames = [r.metrics[["iter", col]].dropna().assign(seed=r.seed) for r in runs if col in r.metrics]
    if not frames:
        return pd.DataFrame(columns=["mean", "min", "max"])
    return pd.concat(frames).groupby("iter")[col].agg(["mean", "min", "max"])


def plot_model(ax, runs: list[Run], model: str, cols=(("train_err", TRAIN), ("test_err", TEST)), c=None):
    """Mean over the complete seeds with a min-max band; other runs each as a dotted line labelled by status."""
    done, other = by_model(runs).get(model, ([], []))
    c = c or color(model)
    for col, style in cols:
        hidden = col.startswith("train")  # legend names the nets once, on the bold test line
        if done:
            b = _band(done, col)
            if len(b):
                lab = pretty(model) + (f" (n={len(done)})" if len(done) > 1 else "")
                ax.plot(b.index / 1e4, 100 * b["mean"], color=c, label=("_" if hidden else "") + lab, **style)
                if len(done) > 1:
                    ax.fill_between(b.index / 1e4, 100 * b["min"], 100 * b["max"], color=c, alpha=0.2, lw=0)
        for r in other:
            if col in r.metrics:
                m = r.metrics[["iter", col]].dropna()
                lab = f"{pretty(model)} s{r.seed} ({r.status})"
                ax.plot(m["iter"] / 1e4, 100 * m[col], color=c, label=("_" if hidden else "") + lab,
                        linewidth=style["linewidth"], **RUNNING)


def _finish(fig, axes, runs: list[Run], wanted: list[str], ylim, ylabel="error (%)"):
    for ax in axes:
        ax.set_xlabel("iter. (1e4)")
        ax.set_ylim(*ylim)
        ax.set_xlim(left=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right")
    axes[0].set_ylabel(ylabel)
    have = {r.model for r in runs}
    notes = [n for n in [incomplete_note([r for r in runs if r.model in wanted]),
                         ("Not run: " + ", ".join(pretty(m) for m in wanted if m not in have))
                         if any(m not in have for m in wanted) else ""] if n]
    if notes:
        fig.text(0.0, -0.02, "\n".join(notes), ha="left", va="top", fontsize=5.5, wrap=True)
    return fig


def _error_ylim(runs: list[Run], models: list[str], paper_top: float = 20) -> tuple[float, float]:
    """The paper's 0-20 % range, raised when a net ends above it (short runs such as `make demo`), so its curve shows."""
    final = [100 * r.metrics[c].dropna().iloc[-1] for r in runs if r.model in models
             for c in ("train_err", "test_err") if c in r.metrics and r.metrics[c].notna().any()]
    top = max([paper_top, *final])
    return (0, paper_top if top <= paper_top else min(100, 10 * math.ceil(1.5 * top / 10)))


def figure1(runs: list[Run]) -> plt.Figure:
    """Figure 1: plain-20 and plain-56 on CIFAR-10; left training error, right test error."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, 1.6), sharey=True, constrained_layout=True)
        for ax, (col, title) in zip(axes, [("train_err", "training error"), ("test_err", "test error")]):
            for m in ("plain20", "plain56"):
                plot_model(ax, runs, m, cols=((col, TEST),))
            ax.set_title(title)
        return _finish(fig, axes, runs, ["plain20", "plain56"], _error_ylim(runs, ["plain20", "plain56"]))


FIG6_PANELS = [["plain20", "plain32", "plain44", "plain56"],
               ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"],
               ["resnet110", "resnet1202"]]


def figure6(runs: list[Run]) -> plt.Figure:
    """Figure 6: CIFAR-10 training; dashed training error, bold test error, 0-20 % (raised for nets that end above)."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(TEXT_IN, 2.0), sharey=True, constrained_layout=True)
        for ax, models, title in zip(axes, FIG6_PANELS, ["plain", "ResNet", "ResNet-110 / ResNet-1202"]):
            for m in models:
                plot_model(ax, runs, m)
            ax.set_title(title)
        wanted = sorted({m for p in FIG6_PANELS for m in p})
        return _finish(fig, axes, runs, wanted, _error_ylim(runs, wanted))


def figure4(runs: list[Run]) -> plt.Figure:
    """Figure 4: ImageNet; thin training error, bold validation error (center crop); plain-18/34 and ResNet-18/34."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(TEXT_IN, 2.2), sharey=True, constrained_layout=True)
        thin = dict(linestyle="-", linewidth=0.6)
        for ax, models, title in zip(axes, [["plain18", "plain34"], ["resnet18", "resnet34"]], ["plain", "ResNet"]):
            for m in models:
                plot_model(ax, runs, m, cols=(("train_err", thin), ("test_err", TEST)))
            ax.set_title(title)
        errs = pd.concat([100 * r.metrics[c] for r in runs for c in ("train_err", "test_err") if c in r.metrics]
                         or [pd.Series([20.0, 60.0])])
        # the paper's 20-60 % range, widened when a short run sits outside it
        ylim = (min(20, 5 * (errs.min() // 5)), max(60, 5 * (errs.max() // 5 + 1)))
        return _finish(fig, axes, runs, ["plain18", "plain34", "resnet18", "resnet34"], ylim)


def save(fig: plt.Figure, out_dir: str | Path, name: str) -> list[Path]:
    """PNG (for the report) and PDF (for print)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with plt.rc_context(STYLE):
        for p in paths:
            fig.savefig(p)
    plt.close(fig)
    return paths
