"""REPORT.md and every figure and table in it, from run records: one section per protocol (runs.group_runs), headed by
its experiment, that states the protocol once (data set, training, split, test set, and how it differs from the
paper's, read from the runs' configs), then the paper's tables and figures in their layout, each with a provenance
line, and the loss landscapes where scripts/loss_landscape.py made them; then the hyperparameter searches, the peers'
published numbers, and the runs with their hardware and commands. CIFAR-100 gets Table 6's rows without the paper's
columns (the paper has no CIFAR-100 numbers), beside the peers' CIFAR-100 numbers.

This module only assembles: the tables are built as DataFrames and rendered in tables.py, the figures drawn in
curves.py, responses.py, landscape_figure.py and search.py, the protocol stated in protocol.py.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..engine.records import git_state
from . import curves, landscape_figure, tables
from .common import pretty, save, shown_path
from .protocol import dataset_name, protocol_block
from .provenance import provenance
from .responses import FIG7_MODELS, figure7, load_responses
from .runs import Group, Run, group_runs
from .search import search_blocks


@dataclass
class Section:
    """One protocol's part of the report: Markdown blocks in order, and the numbers of files written for it."""

    group: Group
    out: Path
    blocks: list[str] = field(default_factory=list)
    n_tables: int = 0
    n_figures: int = 0

    def table(self, heading: str, df: pd.DataFrame, md: str, name: str, runs: list[Run] | None) -> None:
        """tables/<name><suffix>.md and .csv, and the table in the report under a short heading, with the provenance
        of `runs` (None: numbers that are not ours)."""
        tables.write_table(df, md, self.out / "tables", name + self.group.suffix)
        self.blocks.append(f"### {heading}\n\n{md}" + ("" if runs is None else f"\n{provenance(runs).line()}"))
        self.n_tables += 1

    def figure(self, heading: str, fig, name: str, runs: list[Run], caption: str = "") -> bool:
        """figures/<name><suffix>.png and .pdf, and the figure in the report with its caption; False without one."""
        if fig is None:
            return False
        save(fig, self.out / "figures", name + self.group.suffix)
        caption = caption if not caption or caption.endswith("\n\n") else caption + "\n\n"
        path = f"figures/{name}{self.group.suffix}.png"
        self.blocks.append(f"### {heading}\n\n![{heading}]({path})\n\n{caption}{provenance(runs).line()}")
        self.n_figures += 1
        return True

    def note(self, text: str) -> None:
        self.blocks.append(text if text.endswith("\n") else text + "\n")


def _in_panels(runs: list[Run], panels) -> list[Run]:
    """The runs of the nets a figure's panels draw (for its provenance)."""
    wanted = {m for models, _ in panels for m in models}
    return [r for r in runs if r.net in wanted]


def _cifar_section(sec: Section, responses: dict) -> None:
    g = sec.group
    resnets = [r for r in g.runs if r.model.startswith("resnet")] or g.runs
    if g.protocol.dataset == "cifar100":
        _cifar100_blocks(sec, resnets)
    else:
        df = tables.table6(g.runs)
        sec.table("Table 6", df, tables.table6_markdown(df, g.runs), "table6", resnets)
    _seed_blocks(sec)
    plain = [r for r in g.runs if r.model in ("plain20", "plain56")]
    if not sec.figure("Figure 1: plain-20 vs plain-56", curves.figure1(g.runs), "fig1", plain, FIG1_CAPTION):
        sec.note("Figure 1 not drawn: no run of plain-20 or plain-56 with this protocol.\n")
    runs6 = _in_panels(g.runs, curves.FIG6_PANELS)
    sec.figure("Figure 6: training curves", curves.figure6(g.runs), "fig6", runs6, FIG6_CAPTION)
    _figure7_blocks(sec, responses)
    _landscape_blocks(sec)


FIG1_CAPTION = "Figure 1's layout. Left: training error; right: test error."
FIG6_CAPTION = "Figure 6's layout. Dashed: training error; bold: test error."


def _figure7_blocks(sec: Section, responses: dict) -> None:
    """Figure 7 from the responses that scripts/layer_responses.py wrote for this protocol, or how to make them."""
    g = sec.group
    if g.suffix in responses:
        resp, meta = responses[g.suffix]
        used = set((meta.get("runs") or {}).values())
        runs = [r for r in g.runs if r.path is not None and shown_path(r.path) in used] or g.runs
        n = meta.get("test_images")
        fig = figure7(resp, f"std of layer responses on the test set\n{g.protocol.title}")
        caption = "Figure 7's layout. Top: in the order of the layers; bottom: sorted by magnitude."
        caption += f" Responses on {n} {dataset_name(g.protocol.dataset)} test images." if n else ""
        sec.figure("Figure 7: layer responses", fig, "fig7", runs, caption)
    elif any(r.net in FIG7_MODELS and r.complete for r in g.runs):
        sec.note(
            "Figure 7 not drawn: run `python scripts/layer_responses.py` first (it writes "
            f"tables/fig7_responses{g.suffix}.csv).\n"
        )


def _cifar100_blocks(sec: Section, resnets: list[Run]) -> None:
    """Table 6's rows on CIFAR-100 (ours only), then the peers' published CIFAR-100 numbers in a table of their own;
    ours stand beside theirs only where our runs follow the paper's CIFAR protocol."""
    g = sec.group
    df = tables.cifar100_table(g.runs)
    sec.table("Table 6's nets on CIFAR-100", df, tables.cifar100_markdown(df, g.runs), "table_cifar100", resnets)
    comparable = g.runs if g.protocol.follows_paper_protocol else []
    peers = tables.peers_table("cifar100", comparable)
    md = tables.peers_markdown(peers, bool(comparable))
    sec.table("Other repositories' CIFAR-100 numbers (not rerun here)", peers, md, "peers_cifar100", None)


def _landscape_blocks(sec: Section) -> None:
    """fig_landscape: the loss landscapes that scripts/loss_landscape.py computed for runs of this protocol."""
    g = sec.group
    found = landscape_figure.landscapes_of(g.runs)
    runs = [ls.run for ls in found.values()]
    heading = "Loss landscape: " + ", ".join(pretty(m) for m in found)
    caption = landscape_figure.describe(found) if found else ""
    if not sec.figure(heading, landscape_figure.figure(found), "fig_landscape", runs, caption):
        if any(r.net in ("plain56", "resnet56") and r.complete for r in g.runs):
            sec.note(
                "Loss landscape not drawn: run `python scripts/loss_landscape.py --run DIR` for the plain-56 and "
                "ResNet-56 runs first (it writes DIR/landscape/).\n"
            )


def _seed_blocks(sec: Section) -> None:
    g = sec.group
    seeds = tables.seeds_table(g.runs)
    if not len(seeds):
        return
    done = [r for r in g.runs if r.complete]
    sec.table("Seed statistics", seeds, tables.seeds_markdown(seeds), "seeds", done)
    sec.figure("Final test error per seed", curves.seed_strip(g.runs), "seeds", done, "One dot per seed.")


def _imagenet_section(sec: Section) -> None:
    g = sec.group
    for t, df in tables.imagenet_tables(g.runs).items():
        sec.table(f"Table {t}", df, tables.imagenet_markdown(df), f"table{t}", g.runs)
    _seed_blocks(sec)
    runs4 = _in_panels(g.runs, curves.FIG4_PANELS)
    caption = "Figure 4's layout. Thin: training error; bold: val error (center crop)."
    sec.figure("Figure 4: training curves", curves.figure4(g.runs), "fig4", runs4, caption)


def _peers_blocks(groups: list[Group]) -> list[str]:
    blocks = []
    for dataset in ("cifar10", "imagenet"):
        if dataset == "imagenet" and not any(g.family == "imagenet" for g in groups):
            continue
        same = [r for g in groups if g.protocol.dataset == dataset and g.protocol.matches_paper for r in g.runs]
        df = tables.peers_table(dataset, same)
        blocks.append(
            f"## Published numbers of other repositories ({dataset_name(dataset)}, their protocols)\n\n"
            + tables.peers_markdown(df, bool(same))
        )
    return blocks


def _intro(groups: list[Group], left_out: list[str], experiment: str | None, source: str) -> str:
    reported = [r for g in groups for r in g.runs]
    notes = []
    if left_out:
        notes.append(f"Only experiment '{experiment}' is reported; left out: {', '.join(left_out)}.")
    if len(groups) > 1:
        notes.append(
            f"These records hold {len(groups)} protocols: each has its own section below, stated under its heading, "
            "and its own file names; their numbers are never averaged together."
        )
    return (
        "# Reproduction of He et al. 2016, Deep Residual Learning — results\n\n"
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')} from {source}: "
        f"{sum(r.complete for r in reported)} complete runs of {len(reported)}.\n"
        + ("\n" + "".join(f"- {n}\n" for n in notes) if notes else "")
    )


def _headings(groups: list[Group]) -> list[str]:
    """Each section's heading; protocols of one experiment with the same data set and length are numbered."""
    counts = Counter(g.protocol.heading for g in groups)
    seen: Counter = Counter()
    out = []
    for g in groups:
        seen[g.protocol.heading] += 1
        n = seen[g.protocol.heading]
        out.append(g.protocol.heading + (f" (protocol {n})" if counts[g.protocol.heading] > 1 else ""))
    return out


def _how_made(command: str, groups: list[Group], responses: dict) -> str:
    commit, dirty = git_state()
    how = [
        f"- figures, tables and this report: `{command}` (or `make figures`), at commit "
        f"{(commit or '?')[:7]}{' with uncommitted changes' if dirty else ''}"
    ]
    for _, meta in responses.values():
        on = meta.get("hardware") or meta.get("device")
        how.append(
            f"- Figure 7 responses: `{meta.get('command', '?')}`"
            + (f" on {on}, {tables.wall_time(meta.get('wall_s'))}" if on else "")
        )
    for g in groups:
        for m, ls in landscape_figure.landscapes_of(g.runs).items():
            on = ls.meta.get("hardware") or ls.meta.get("device", "?")
            how.append(
                f"- loss landscape of {pretty(m)} seed {ls.run.seed}: `{ls.meta.get('command') or '?'}` on {on}, "
                f"{tables.wall_time(ls.meta.get('wall_s'))}"
            )
    return "## How this report was made\n\n" + "\n".join(how) + "\n"


def write_report(
    runs: list[Run],
    out_dir: str | Path,
    *,
    command: str,
    source: str,
    experiment: str | None = None,
    searches: list[Path] | None = None,
) -> tuple[str, int, int]:
    """Every figure and table into out_dir/figures and out_dir/tables, then out_dir/REPORT.md (returned, with the
    numbers of figures and tables); `searches`: the folders of hyperparameter searches (analysis/search.py)."""
    out = Path(out_dir)
    groups, left_out = group_runs(runs, experiment)
    responses = load_responses(out, groups)
    parts = [_intro(groups, left_out, experiment, source)]
    n_tables = n_figures = 0
    for g, heading in zip(groups, _headings(groups)):
        sec = Section(g, out)
        if g.family == "cifar":
            _cifar_section(sec, responses)
        else:
            _imagenet_section(sec)
        if findings := curves.figure_findings(g.runs, responses.get(g.suffix, (None, None))[0]):
            sec.note("### What the figures show\n\n" + "".join(f"- {f}\n" for f in findings))
        parts.append(f"## {heading}\n\n{protocol_block(g)}\n" + "\n".join(sec.blocks))
        n_tables, n_figures = n_tables + sec.n_tables, n_figures + sec.n_figures
    blocks, found_figures, found_tables = search_blocks(searches or [], out, runs)
    parts += blocks
    n_figures, n_tables = n_figures + found_figures, n_tables + found_tables
    if (out / "tables" / "architectures.md").exists():
        parts.append("## Table 1 (architectures, FLOPs)\n\nSee [tables/architectures.md](tables/architectures.md).\n")
    parts += _peers_blocks(groups)
    if reported := [r for g in groups for r in g.runs]:
        parts.append(
            "## Runs (hardware, wall time, exact command)\n\n" + tables.runs_markdown(tables.runs_table(reported))
        )
    parts.append(_how_made(command, groups, responses))
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(text)
    return text, n_figures, n_tables
