"""Training curves in the layout of the paper's Figure 1 (plain-20/56), Figure 6 (three panels) and Figure 4 (ImageNet
plain/ResNet), and a strip plot of the seeds. Each figure holds the runs of one protocol and is titled with it
(data set, schedule, split, test set); a panel without runs is left out, never drawn as an empty axis.

Every function returns the matplotlib Figure, or None when it would have no panel; saving is the caller's job.
"""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .common import COLUMN_IN, STYLE, TEXT_IN, color, depth, net_order, pretty, titled
from .provenance import provenance
from .runs import Run, by_model, incomplete_note, single_protocol
from .tables import final_err, paper_resnets

TRAIN = dict(linestyle="--", linewidth=0.8)  # paper: dashed training error
TEST = dict(linestyle="-", linewidth=1.6)  # paper: bold test error
RUNNING = dict(linestyle=":", alpha=0.6)


def _band(runs: list[Run], col: str) -> pd.DataFrame:
    """mean/min/max of one metric over seeds, per evaluation iteration."""
    frames = [r.metrics[["iter", col]].dropna().assign(seed=r.seed) for r in runs if col in r.metrics]
    if not frames:
        return pd.DataFrame(columns=["mean", "min", "max"])
    return pd.concat(frames).groupby("iter")[col].agg(["mean", "min", "max"])


def plot_model(ax, runs: list[Run], model: str, cols=(("train_err", TRAIN), ("test_err", TEST)), c=None, scale=1.0):
    """Mean over the complete seeds with a min-max band; other runs each as a dotted line labelled by status; the
    iterations divided by `scale` (iteration_axis)."""
    done, other = by_model(runs).get(model, ([], []))
    c = c or color(model)
    for col, style in cols:
        hidden = col.startswith("train")  # legend names the nets once, on the bold test line
        if done:
            b = _band(done, col)
            if len(b):
                lab = pretty(model) + (f" (n={len(done)})" if len(done) > 1 else "")
                ax.plot(b.index / scale, 100 * b["mean"], color=c, label=("_" if hidden else "") + lab, **style)
                if len(done) > 1:
                    ax.fill_between(b.index / scale, 100 * b["min"], 100 * b["max"], color=c, alpha=0.2, lw=0)
        for r in other:
            if col in r.metrics:
                m = r.metrics[["iter", col]].dropna()
                label = ("_" if hidden else "") + f"{pretty(model)} s{r.seed}: {r.status}"
                ax.plot(m["iter"] / scale, 100 * m[col], color=c, label=label, linewidth=style["linewidth"], **RUNNING)


def iteration_axis(runs: list[Run]) -> tuple[float, str]:
    """The x axis's unit for these runs' length: iterations up to 5000, else thousands of iterations."""
    last = max((r.metrics["iter"].max() for r in runs if "iter" in r.metrics and len(r.metrics)), default=0)
    return (1.0, "iterations") if last <= 5000 else (1e3, "k iterations")


def titled_runs(fig, runs: list[Run], what: str, notes: list[str] = ()):
    """The figure's title (what it shows, then the runs' protocol) and its foot (notes, then the provenance)."""
    protocol = single_protocol(runs)
    return titled(fig, what + (f"\n{protocol.title}" if protocol else ""), [*notes, provenance(runs).short()])


def _finish(fig, axes, runs: list[Run], wanted: list[str], ylim, what: str, ylabel="error (%)", notes=()):
    for ax in axes:
        ax.set_xlabel(iteration_axis(runs)[1])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # whole, round numbers
        ax.set_ylim(*ylim)
        ax.set_xlim(left=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right")
    axes[0].set_ylabel(ylabel)
    have = {r.net for r in runs}
    missing = sorted((m for m in wanted if m not in have), key=net_order)
    not_run = ("Not run: " + ", ".join(pretty(m) for m in missing)) if missing else ""
    return titled_runs(fig, runs, what, [incomplete_note([r for r in runs if r.net in wanted]), not_run, *notes])


def _panels(runs: list[Run], panels: list[tuple[list[str], str]]) -> tuple[list[tuple[list[str], str]], list[str]]:
    """The panels with at least one run of their nets, and the titles of those left out."""
    have = {r.net for r in runs}
    kept = [(models, title) for models, title in panels if have & set(models)]
    return kept, [title for models, title in panels if not have & set(models)]


def _error_ylim(runs: list[Run], models: list[str], paper_top: float = 20) -> tuple[float, float]:
    """The paper's 0-20 % range, raised when a net ends above it (short runs such as `make demo`), so its curve
    shows."""
    final = [
        100 * r.metrics[c].dropna().iloc[-1]
        for r in runs
        if r.net in models
        for c in ("train_err", "test_err")
        if c in r.metrics and r.metrics[c].notna().any()
    ]
    top = max([paper_top, *final])
    return (0, paper_top if top <= paper_top else min(100, 10 * math.ceil(1.5 * top / 10)))


def figure1(runs: list[Run]) -> plt.Figure | None:
    """Figure 1's layout: plain-20 and plain-56; left training error, right test error. None without either net."""
    wanted = ["plain20", "plain56"]
    if not any(r.model in wanted for r in runs):
        return None
    scale = iteration_axis(runs)[0]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, 1.9), sharey=True, constrained_layout=True)
        for ax, (col, title) in zip(axes, [("train_err", "training error"), ("test_err", "test error")]):
            for m in wanted:
                plot_model(ax, runs, m, cols=((col, TEST),), scale=scale)
            ax.set_title(title)
        return _finish(fig, axes, runs, wanted, _error_ylim(runs, wanted), "plain-20 vs plain-56 (Figure 1's layout)")


FIG6_PANELS = [
    (["plain20", "plain32", "plain44", "plain56"], "plain"),
    (["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"], "ResNet"),
    (["resnet110", "resnet1202"], "ResNet-110 / ResNet-1202"),
]


def figure6(runs: list[Run]) -> plt.Figure | None:
    """Figure 6's layout: dashed training error, bold test error, 0-20 % (raised for nets that end above).
    Panels without runs are left out (said so under the figure); None when no panel has a run."""
    return _panel_figure(
        runs,
        FIG6_PANELS,
        figsize=lambda n: (TEXT_IN * max(n, 2) / 3, 2.3),
        cols=(("train_err", TRAIN), ("test_err", TEST)),
        ylim=lambda wanted: _error_ylim(runs, wanted),
        what="training curves (Figure 6's layout; dashed: training error, bold: test error)",
    )


FIG4_PANELS = [(["plain18", "plain34"], "plain"), (["resnet18", "resnet34"], "ResNet")]


def figure4(runs: list[Run]) -> plt.Figure | None:
    """Figure 4's layout: thin training error, bold validation error (center crop); plain-18/34 and ResNet-18/34."""

    def ylim(_wanted):  # the paper's 20-60 % range, widened when a short run sits outside it
        errs = pd.concat(
            [100 * r.metrics[c] for r in runs for c in ("train_err", "test_err") if c in r.metrics]
            or [pd.Series([20.0, 60.0])]
        )
        return (min(20, 5 * (errs.min() // 5)), max(60, 5 * (errs.max() // 5 + 1)))

    return _panel_figure(
        runs,
        FIG4_PANELS,
        figsize=lambda n: (TEXT_IN * n / 2, 2.5),
        cols=(("train_err", dict(linestyle="-", linewidth=0.6)), ("test_err", TEST)),
        ylim=ylim,
        what="training curves (Figure 4's layout; thin: training error, bold: val error)",
    )


def _panel_figure(runs: list[Run], panel_defs, *, figsize, cols, ylim, what: str) -> plt.Figure | None:
    """One panel per group of nets that has runs, the groups without runs named under the figure; None when no group
    has a run. `figsize(n)` and `ylim(nets drawn)` size the figure and its error axis."""
    panels, empty = _panels(runs, panel_defs)
    if not panels:
        return None
    scale = iteration_axis(runs)[0]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(panels), figsize=figsize(len(panels)), sharey=True, constrained_layout=True, squeeze=False
        )
        axes = list(axes[0])
        for ax, (models, title) in zip(axes, panels):
            for m in models:
                plot_model(ax, runs, m, cols=cols, scale=scale)
            ax.set_title(title)
        wanted = sorted({m for models, _ in panels for m in models})
        notes = [f"Panel left out (no runs): {', '.join(empty)}."] if empty else []
        return _finish(fig, axes, runs, wanted, ylim(wanted), what, notes=notes)


def seed_strip(runs: list[Run]) -> plt.Figure | None:
    """One small panel per net: one dot per complete seed (final test error); the paper's number as a line where the
    runs follow the paper's protocol (dashed: its best of 5, dotted: its mean). None without complete runs."""
    protocol = single_protocol(runs)
    groups = by_model(runs)
    models = sorted(
        (m for m, (done, _) in groups.items() if any(final_err(r) is not None for r in done)), key=net_order
    )
    if not models:
        return None
    draw_paper = protocol is not None and protocol.family == "cifar" and protocol.matches_paper
    paper = paper_resnets()
    ncols = min(len(models), 6)
    nrows = math.ceil(len(models) / ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(min(TEXT_IN, 1.2 * ncols + 0.4), 1.5 * nrows + 0.5),
            squeeze=False,
            constrained_layout=True,
        )
        for ax, m in zip(axes.flat, models):
            done = sorted((r for r in groups[m][0] if final_err(r) is not None), key=lambda r: r.seed)
            y = [100 * final_err(r) for r in done]
            x = np.linspace(-0.15, 0.15, len(y)) if len(y) > 1 else np.zeros(1)  # spread, so equal values stay visible
            ax.scatter(x, y, s=9, color=color(m), zorder=3, label="seeds")
            if draw_paper and re.fullmatch(r"resnet\d+", m) and depth(m) in paper.index:
                row = paper.loc[depth(m)]
                ax.axhline(row.paper_err_pct, color="k", linestyle="--", linewidth=0.8, label="paper")
                if not math.isnan(row.paper_mean_pct):
                    ax.axhline(row.paper_mean_pct, color="k", linestyle=":", linewidth=0.8, label="paper mean")
            ax.set_title(f"{pretty(m)} (N={len(y)})")
            ax.set_xlim(-0.5, 0.5)
            ax.set_xticks([])
            ax.grid(axis="x", visible=False)
        for ax in axes.flat[len(models) :]:
            ax.remove()  # no empty axes in the grid
        for row in axes:
            row[0].set_ylabel("final test error (%)")
        if draw_paper:
            note = "Dashed: the paper's CIFAR-10 number (ResNet-110: its best of 5; dotted: its mean of 5)."
        else:
            note = "The paper's numbers are not drawn: " + (protocol.not_comparable if protocol else "no runs") + "."
        return titled_runs(fig, runs, "final test error per seed", [note])


def figure_findings(runs: list[Run], responses: pd.DataFrame | None) -> list[str]:
    """One sentence per claim of the paper that the runs of one protocol can check; "reproduced" only where that
    protocol is the paper's, otherwise the observation, and that it is not a reproduction (the protocol says why)."""
    protocol = single_protocol(runs)
    comparable = bool(protocol and protocol.matches_paper)
    not_here = "" if comparable else " Not a reproduction: not the paper's protocol (see protocol)."
    out = []
    final = {}
    for r in runs:
        if r.complete and r.family == "cifar" and len(r.metrics) and "train_err" in r.metrics:
            last = r.metrics.dropna(subset=["train_err"]).iloc[-1]
            final.setdefault(r.net, []).append((100 * last.train_err, 100 * last.get("test_err", float("nan"))))
    if "plain20" in final and "plain56" in final:
        a, b = (pd.DataFrame(final[m]).mean() for m in ("plain20", "plain56"))
        higher = b[0] > a[0] and b[1] > a[1]
        here = f"final training error plain-20 {a[0]:.2f}%, plain-56 {b[0]:.2f}%; test {a[1]:.2f}% vs {b[1]:.2f}%"
        if comparable:
            verdict = f" — paper: plain-56 higher in both ({'reproduced' if higher else 'not reproduced'})."
            out.append(f"Degradation (Figure 1's claim): {here}{verdict}")
        else:
            out.append(
                f"Degradation (Figure 1's claim, on CIFAR-10: plain-56 higher in both): {here}; plain-56 "
                f"{'is' if higher else 'is not'} higher in both here.{not_here}"
            )
    if responses is not None and len(responses):
        mean_std = responses.groupby("model")["std"].mean()
        txt = ", ".join(f"{pretty(m)} {v:.3f}" for m, v in mean_std.sort_values(ascending=False).items())
        out.append(
            f"Layer responses (Figure 7's claim, on CIFAR-10: ResNets smaller than plain nets, deeper ResNets "
            f"smaller still): mean response std per layer: {txt}.{not_here}"
        )
    return out
