"""REPORT.md and every figure and table in it, from run records: one section per protocol (runs.group_runs), headed by
its experiment, that states the protocol once (data set, training, split, test set, and how it differs from the
paper's, read from the runs' configs), then the paper's tables and figures in their layout, each with a provenance
line, and the loss landscapes where scripts/loss_landscape.py made them; then the hyperparameter searches, the peers'
published numbers, and the runs with their hardware and commands. CIFAR-100 gets Table 6's rows without the paper's
columns (the paper has no CIFAR-100 numbers), beside the peers' CIFAR-100 numbers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..engine.records import git_state
from . import curves, landscape, tables
from .common import markdown, pretty, save, shown_path
from .protocol import dataset_name, paper_shortcut
from .provenance import hardware, provenance
from .responses import figure7
from .runs import Group, Run, group_runs
from .search import search_blocks

# The paper's settings, read against each run's config; those that a Protocol states in words (data set, split, batch,
# subsets, length, schedule: PROTOCOL_KEYS) are said there, the others are listed under the protocol as they are.
CIFAR_PROTOCOL = {  # key: (paper value, what the paper says)
    "data.name": ("cifar10", "CIFAR-10"),
    "data.split": ("full", "train on all 50k images (Table 6); split=paper holds 5k out for validation"),
    "data.batch_size": (128, "mini-batch 128"),
    "data.augment": (True, "pad-4 crop and flip augmentation"),
    "data.limit_train": (0, "the whole training set"),
    "data.limit_test": (0, "the whole test set"),
    "trainer.max_iters": (64000, "64k iterations"),
    "schedule.kind": ("steps", "lr divided by 10 at fixed iterations"),
    "schedule.milestones": ([32000, 48000], "lr / 10 at 32k and 48k"),
    "optim.lr": (0.1, "lr 0.1"),
    "optim.momentum": (0.9, "momentum 0.9"),
    "optim.weight_decay": (1e-4, "weight decay 1e-4"),
    "optim.nesterov": (False, "plain momentum"),
    "model.shortcut": ("A", "option A (identity, zero-padded) shortcuts"),
}
IMAGENET_PROTOCOL = {
    "data.batch_size": (256, "mini-batch 256"),
    "data.normalize": ("mean_pixel", "per-pixel mean subtraction"),
    "data.scale_min": (256, "shorter side in [256, 480]"),
    "data.scale_max": (480, "shorter side in [256, 480]"),
    "data.crop_size": (224, "224x224 crops"),
    "data.pca_lighting": (0.1, "PCA colour augmentation"),
    "data.limit_train": (0, "the whole training set"),
    "data.limit_test": (0, "the whole val set"),
    "trainer.max_iters": (600000, "up to 60e4 iterations"),
    "schedule.kind": ("plateau", "lr / 10 when the error plateaus"),
    "optim.lr": (0.1, "lr 0.1"),
    "optim.momentum": (0.9, "momentum 0.9"),
    "optim.weight_decay": (1e-4, "weight decay 1e-4"),
    "model.stride_in_1x1": (True, "stride 2 on the first 1x1 of a bottleneck"),
}


def deviations(run: Run) -> list[str]:
    """Differences between a run's config/summary and the paper's protocol, each as 'key=value (paper: ...)'."""
    out = []
    protocol = IMAGENET_PROTOCOL if run.family == "imagenet" else CIFAR_PROTOCOL
    for key, (want, says) in protocol.items():
        if key == "model.shortcut" and not run.model.startswith("resnet"):
            continue
        if key == "model.stride_in_1x1" and run.depth < 50:
            continue
        have = run.cfg(key)
        if have is not None and have != want:
            out.append(f"{key}={have} (paper: {says})")
    if run.family == "imagenet" and run.model.startswith("resnet"):
        want_sc = paper_shortcut(run.family, run.depth)
        if run.shortcut and run.shortcut != want_sc:
            out.append(f"model.shortcut={run.shortcut} (paper's main nets: option {want_sc}; Table 3 compares A/B/C)")
    if run.family == "cifar":
        warm = bool(run.cfg("schedule.warmup", False))
        if run.depth == 110 and run.model.startswith("resnet") and not warm:
            out.append("schedule.warmup=False (paper: lr 0.01 until training error < 80% for ResNet-110)")
        elif warm and run.depth not in (110, 1202):
            out.append("schedule.warmup=True (paper warms up ResNet-110 only)")
    if run.summary.get("precision") == "bf16":
        out.append("precision=bf16 autocast (paper: fp32)")
    if run.summary.get("git_dirty"):
        out.append("code had uncommitted changes (git_dirty)")
    return out


PROTOCOL_KEYS = {
    "data.name",
    "data.split",
    "data.batch_size",
    "data.limit_train",
    "data.limit_test",
    "trainer.max_iters",
    "schedule.kind",
    "schedule.milestones",
}


def other_deviations(runs: list[Run]) -> list[str]:
    """The runs' deviations beyond their Protocol's fields, each once, with the runs it applies to (or all runs)."""
    seen: dict[str, list[str]] = {}
    for r in runs:
        for d in deviations(r):
            if "=" in d and d.split("=")[0] not in PROTOCOL_KEYS:  # uncommitted code: flagged in the provenance
                seen.setdefault(d, []).append(f"{r.net}/s{r.seed}")
    return [f"{d}: " + ("all runs" if len(who) == len(runs) else ", ".join(who)) for d, who in seen.items()]


def protocol_block(g: Group) -> str:
    """What the runs of one section were trained and tested on, and how that differs from the paper: stated once,
    under the section's heading."""
    p = g.protocol
    if p.dataset == "cifar100":
        verdict = "the paper reports no CIFAR-100 numbers, so none is compared with the paper's; " + (
            "the runs follow its CIFAR-10 protocol, and other repositories' published CIFAR-100 numbers stand "
            "beside them in a table of their own"
            if p.follows_paper_protocol
            else "not the paper's CIFAR protocol either:"
        )
        reasons = p.training_mismatches()
    elif p.matches_paper:
        verdict, reasons = "the paper's protocol: its numbers are compared with the paper's", []
    else:
        verdict = "not the paper's protocol, so no number is compared with the paper's (the layout only):"
        reasons = p.mismatches()
    batch = f"; batch {p.batch_size}" if p.batch_size else ""
    items = [
        f"- data set: {dataset_name(p.dataset)}",
        f"- training: {p.training_text}{batch}",
        f"- training split: {p.split_text}",
        f"- test set: {p.test_text}",
        f"- against the paper: {verdict}",
        *(f"  - {x}" for x in reasons),
    ]
    if others := other_deviations(g.runs):
        items += ["- other settings than the paper's (the runs' configs):", *(f"  - {x}" for x in others)]
    return f"Protocol of these {len(g.runs)} runs:\n\n" + "\n".join(items) + "\n"


def _wall(s) -> str:
    if s is None or pd.isna(s):
        return "—"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def runs_section(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        s = r.summary
        err = tables.final_err(r)
        rows.append(
            [
                r.experiment,
                dataset_name(r.dataset),
                pretty(r.net),
                str(r.seed),
                r.status,
                f"{s.get('iters', '?')}/{s.get('max_iters', '?')}",
                "—" if err is None else f"{100 * err:.2f}",
                hardware(s),
                str(s.get("precision", "?")),
                str(s.get("git_commit") or "?")[:7] + ("+" if s.get("git_dirty") else ""),
                _wall(s.get("wall_s")),
                f"`{s.get('command', '?')}`",
            ]
        )
    total = sum(r.summary.get("wall_s") or 0 for r in runs)
    header = ["experiment", "data set", "net", "seed", "status", "iters", "final test err (%)", "hardware"]
    header += ["precision", "commit", "wall time", "command"]
    return markdown(header, rows) + (
        f"\nTotal wall time of the runs: {_wall(total)}. Status: read from the run directory's lock where the records "
        'say "running" ("stopped (no process)": no process holds it). Commit: + marks uncommitted changes.\n'
    )


def figure_findings(runs: list[Run], responses: pd.DataFrame | None) -> list[str]:
    """One sentence per claim of the paper that the runs of one protocol can check; "reproduced" only where that
    protocol is the paper's, otherwise the observation, and that it is not a reproduction (the protocol says why)."""
    protocol = tables.single_protocol(runs)
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


@dataclass
class Section:
    """One protocol's part of the report: Markdown blocks in order, and the numbers of files written for it."""

    group: Group
    out: Path
    blocks: list[str] = field(default_factory=list)
    n_tables: int = 0
    n_figures: int = 0

    def table(self, heading: str, df: pd.DataFrame, md: str, name: str, runs: list[Run]) -> None:
        """tables/<name><suffix>.md and .csv, and the table in the report under a short heading."""
        tables.write_table(df, md, self.out / "tables", name + self.group.suffix)
        self.blocks.append(f"### {heading}\n\n{md}\n{provenance(runs).line()}")
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


def _load_responses(out: Path, groups: list[Group]) -> dict[str, tuple[pd.DataFrame, dict]]:
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


def _in_panels(runs: list[Run], panels) -> list[Run]:
    """The runs of the nets a figure's panels draw (for its provenance)."""
    wanted = {m for models, _ in panels for m in models}
    return [r for r in runs if r.net in wanted]


def _cifar_section(sec: Section, responses: dict) -> None:
    g = sec.group
    if g.protocol.dataset == "cifar100":
        _cifar100_blocks(sec)
    else:
        df = tables.table6(g.runs)
        resnets = [r for r in g.runs if r.model.startswith("resnet")] or g.runs
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
    elif any(r.net in ("plain20", "plain56", "resnet20", "resnet56", "resnet110") and r.complete for r in g.runs):
        sec.note(
            "Figure 7 not drawn: run `python scripts/layer_responses.py` first (it writes "
            f"tables/fig7_responses{g.suffix}.csv).\n"
        )


def _cifar100_blocks(sec: Section) -> None:
    """Table 6's rows on CIFAR-100 (ours only), then the peers' published CIFAR-100 numbers in a table of their own;
    ours stand beside theirs only where our runs follow the paper's CIFAR protocol."""
    g = sec.group
    resnets = [r for r in g.runs if r.model.startswith("resnet")] or g.runs
    df = tables.cifar100_table(g.runs)
    sec.table("Table 6's nets on CIFAR-100", df, tables.cifar100_markdown(df, g.runs), "table_cifar100", resnets)
    comparable = g.runs if g.protocol.follows_paper_protocol else []
    peers = tables.peers_table("cifar100", comparable)
    peers_md = tables.peers_markdown(peers, bool(comparable))
    tables.write_table(peers, peers_md, sec.out / "tables", f"peers_cifar100{g.suffix}")
    sec.blocks.append("### Other repositories' CIFAR-100 numbers (not rerun here)\n\n" + peers_md)
    sec.n_tables += 1


def _landscape_blocks(sec: Section) -> None:
    """fig_landscape: the loss landscapes that scripts/loss_landscape.py computed for runs of this protocol."""
    g = sec.group
    found = landscape.landscapes_of(g.runs)
    runs = [ls.run for ls in found.values()]
    heading = "Loss landscape: " + ", ".join(pretty(m) for m in found)
    caption = landscape.describe(found) if found else ""
    if not sec.figure(heading, landscape.figure(found, runs), "fig_landscape", runs, caption):
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
            + (f" on {on}, {_wall(meta.get('wall_s'))}" if on else "")
        )
    for g in groups:
        for m, ls in landscape.landscapes_of(g.runs).items():
            on = ls.meta.get("hardware") or ls.meta.get("device", "?")
            how.append(
                f"- loss landscape of {pretty(m)} seed {ls.run.seed}: `{ls.meta.get('command') or '?'}` on {on}, "
                f"{_wall(ls.meta.get('wall_s'))}"
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
    responses = _load_responses(out, groups)
    parts = [_intro(groups, left_out, experiment, source)]
    n_tables = n_figures = 0
    for g, heading in zip(groups, _headings(groups)):
        sec = Section(g, out)
        if g.family == "cifar":
            _cifar_section(sec, responses)
        else:
            _imagenet_section(sec)
        if findings := figure_findings(g.runs, responses.get(g.suffix, (None, None))[0]):
            sec.note("### What the figures show\n\n" + "".join(f"- {f}\n" for f in findings))
        parts.append(f"## {heading}\n\n{protocol_block(g)}\n" + "\n".join(sec.blocks))
        n_tables, n_figures = n_tables + sec.n_tables, n_figures + sec.n_figures
    blocks, found_figures, found_tables = search_blocks(searches or [], out, runs)
    parts += blocks
    n_figures, n_tables = n_figures + found_figures, n_tables + found_tables
    if (out / "tables" / "architectures.md").exists():
        parts.append("## Table 1 (architectures, FLOPs)\n\nSee [tables/architectures.md](tables/architectures.md).\n")
    parts += _peers_blocks(groups)
    parts.append("## Runs (hardware, wall time, exact command)\n\n" + runs_section([r for g in groups for r in g.runs]))
    parts.append(_how_made(command, groups, responses))
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(text)
    return text, n_figures, n_tables
