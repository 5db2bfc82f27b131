"""Helpers shared by the analysis modules: the paper's net names and order, colours, the figure style, titles, saving,
Markdown tables and paths as a report prints them. Imports nothing else of analysis/, so every module may use it."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMN_IN, TEXT_IN = 3.35, 6.9  # one column and full text width of a two-column paper

# One style for every figure: small serif-free type that survives printing in black and white.
STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "legend.fontsize": 6,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "lines.linewidth": 1.0,
    "axes.grid": True,
    "grid.linewidth": 0.3,
    "grid.alpha": 0.6,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}
DEPTH_COLOR = {18: "C0", 20: "C0", 32: "C1", 34: "C3", 44: "C2", 56: "C3", 110: "C4", 1202: "C5"}


def depth(net: str) -> int:
    return int(re.sub(r"\D", "", net) or 0)


def pretty(net: str) -> str:
    """plain20 -> plain-20, resnet110 -> ResNet-110, resnet34B -> ResNet-34 B (the paper's names)."""
    m = re.fullmatch(r"(plain|resnet)(\d+)([ABC]?)", net)
    if not m:
        return net
    return ("plain-" if m[1] == "plain" else "ResNet-") + m[2] + (f" {m[3]}" if m[3] else "")


def net_order(net: str):
    """Sort key: plain nets first, then by depth (ResNet-34 before ResNet-34 B)."""
    return (not net.startswith("plain"), depth(net), net)


def color(net: str) -> str:
    return DEPTH_COLOR.get(depth(net), "C7")


def wrap_text(text: str, fig, points: float) -> str:
    """Break `text` to the figure's width (about 0.55 em per character)."""
    width = max(20, int(fig.get_figwidth() * 72 / (0.55 * points)))
    return "\n".join(textwrap.fill(part, width, break_on_hyphens=False) for part in text.split("\n"))


def titled(fig, title: str, foot: list[str] = ()):
    """The figure's title above it and its foot notes (the provenance last) below it, wrapped to its width."""
    fig.suptitle(wrap_text(title, fig, STYLE["font.size"]), fontsize=STYLE["font.size"])
    if foot := [n for n in foot if n]:
        fig.text(0.0, -0.02, wrap_text("\n".join(foot), fig, 5.5), ha="left", va="top", fontsize=5.5)
    return fig


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """PNG (for the report) and PDF (for print)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with plt.rc_context(STYLE):
        for p in paths:
            fig.savefig(p)
    plt.close(fig)
    return paths


def markdown(df) -> str:
    """A table of cells (a DataFrame of strings, its columns the header) in Markdown: the one renderer of every table
    in the report (pandas' to_markdown needs tabulate, which the project does not depend on)."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]) + "\n"


def shown_path(path: str | Path) -> str:
    """A path as a report prints it: relative to the working directory where it lies below it (no machine paths
    in a report that may be committed)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve())) if p.is_absolute() else str(p)
    except ValueError:
        return str(p)
