"""REPORT.md and every figure and table in it, from run records: one section per protocol (runs.group_runs), each
table and figure titled with its data set, schedule and split, with a provenance line; the peers' published numbers;
the loss landscapes where scripts/loss_landscape.py made them; deviations from the paper's protocol (read from each
run's config); the runs with their hardware and commands. CIFAR-100 gets Table 6's rows without the paper's columns
(the paper has no CIFAR-100 numbers), beside the peers' CIFAR-100 numbers.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import curves, landscape, tables
from .curves import pretty
from .protocol import dataset_name
from .provenance import provenance
from .responses import figure7
from .runs import Group, Run, group_runs
from .search import search_blocks

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
        want_sc = "A" if run.depth < 50 else "B"
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


def deviations_section(runs: list[Run]) -> str:
    """Each deviation once, with the runs it applies to (all runs, or a list)."""
    seen: dict[str, list[str]] = {}
    for r in runs:
        for d in deviations(r):
            seen.setdefault(d, []).append(f"{r.model}/s{r.seed}")
    if not seen:
        return "None found in the runs' configs.\n"
    return "".join(
        f"- {d}: " + ("all runs" if len(who) == len(runs) else ", ".join(who)) + "\n" for d, who in seen.items()
    )


def _wall(s) -> str:
    if s is None or pd.isna(s):
        return "—"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def shown_path(path: str | Path) -> str:
    """A path as the report prints it: relative to the working directory where it lies below it (no machine paths
    in a report that may be committed)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve())) if p.is_absolute() else str(p)
    except ValueError:
        return str(p)


def runs_section(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        s = r.summary
        err = tables.final_err(r)
        rows.append(
            [
                r.experiment,
                dataset_name(r.dataset),
                pretty(r.model),
                str(r.seed),
                r.status,
                f"{s.get('iters', '?')}/{s.get('max_iters', '?')}",
                "—" if err is None else f"{100 * err:.2f}",
                str(s.get("device", "?")),
                str(s.get("precision", "?")),
                str(s.get("git_commit") or "?")[:7] + ("+" if s.get("git_dirty") else ""),
                _wall(s.get("wall_s")),
                f"`{s.get('command', '?')}`",
            ]
        )
    total = sum(r.summary.get("wall_s") or 0 for r in runs)
    header = [
        "experiment",
        "data set",
        "net",
        "seed",
        "status",
        "iters",
        "final test err (%)",
        "device",
        "precision",
        "commit",
        "wall time",
        "command",
    ]
    return tables.markdown(header, rows) + (
        f"\nTotal wall time of the runs: {_wall(total)}. Status: read from the run directory's lock where the records "
        'say "running" ("stopped (no process)": no process holds it). Commit: + marks uncommitted changes.\n'
    )


def figure_findings(runs: list[Run], responses: pd.DataFrame | None) -> list[str]:
    """One sentence per claim of the paper that the runs of one protocol can check; "reproduced" only where that
    protocol is the paper's, otherwise the observation and why it is not a reproduction."""
    protocol = tables.single_protocol(runs)
    comparable = bool(protocol and protocol.matches_paper)
    out = []
    final = {}
    for r in runs:
        if r.complete and r.family == "cifar" and len(r.metrics) and "train_err" in r.metrics:
            last = r.metrics.dropna(subset=["train_err"]).iloc[-1]
            final.setdefault(r.model, []).append((100 * last.train_err, 100 * last.get("test_err", float("nan"))))
    if "plain20" in final and "plain56" in final:
        a, b = (pd.DataFrame(final[m]).mean() for m in ("plain20", "plain56"))
        higher = b[0] > a[0] and b[1] > a[1]
        here = f"final training error plain-20 {a[0]:.2f}%, plain-56 {b[0]:.2f}%; test {a[1]:.2f}% vs {b[1]:.2f}%"
        if comparable:
            out.append(
                f"Degradation (Figure 1's claim): {here} — paper: plain-56 higher in both "
                f"({'reproduced' if higher else 'not reproduced'})."
            )
        else:
            out.append(
                f"Degradation (Figure 1's claim, on CIFAR-10: plain-56 higher in both): {here}; plain-56 "
                f"{'is' if higher else 'is not'} higher in both here. Not a reproduction: "
                f"{'; '.join(protocol.mismatches())}."
            )
    if responses is not None and len(responses):
        mean_std = responses.groupby("model")["std"].mean()
        txt = ", ".join(f"{pretty(m)} {v:.3f}" for m, v in mean_std.sort_values(ascending=False).items())
        out.append(
            f"Layer responses (Figure 7's claim, on CIFAR-10: ResNets smaller than plain nets, deeper ResNets "
            f"smaller still): mean response std per layer: {txt}."
            + ("" if comparable else f" Not a reproduction: {'; '.join(protocol.mismatches())}.")
        )
    return out


@dataclass
class Section:
    """One protocol's part of the report: Markdown blocks in order, and the files written for it."""

    group: Group
    blocks: list[str] = field(default_factory=list)
    n_tables: int = 0
    n_figures: int = 0

    def table(self, heading: str, md: str, runs: list[Run]):
        self.blocks.append(f"### {heading}\n\n{md}\n{provenance(runs).line()}")
        self.n_tables += 1

    def figure(self, caption: str, path: str, runs: list[Run], text: str = ""):
        self.blocks.append(f"### {caption}\n\n{text}![{caption}]({path})\n\n{provenance(runs).line()}")
        self.n_figures += 1

    def note(self, text: str):
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


def _save(fig, out: Path, name: str) -> str | None:
    if fig is None:
        return None
    curves.save(fig, out / "figures", name)
    return f"figures/{name}.png"


def _curves_figure(sec: Section, fig, panels, out: Path, name: str, caption: str) -> None:
    """A training-curve figure, if drawn, with the provenance of the runs of its panels."""
    wanted = {m for models, _ in panels for m in models}
    if path := _save(fig, out, name):
        sec.figure(caption, path, [r for r in sec.group.runs if r.model in wanted])


def _cifar_section(sec: Section, out: Path, responses: dict) -> None:
    g, title = sec.group, sec.group.protocol.title
    resnets = [r for r in g.runs if r.model.startswith("resnet")]
    if g.protocol.dataset == "cifar100":
        _cifar100_blocks(sec, out)
    else:
        df = tables.table6(g.runs)
        md = tables.table6_markdown(df, g.runs)
        tables.write_table(df, md, out / "tables", f"table6{g.suffix}")
        sec.table(f"Table 6 (the paper's rows): ResNet test error (%) — {title}", md, resnets or g.runs)
    _seed_blocks(sec, out)
    plain = [r for r in g.runs if r.model in ("plain20", "plain56")]
    if path := _save(curves.figure1(g.runs), out, f"fig1{g.suffix}"):
        sec.figure(f"Figure 1's layout: plain-20 vs plain-56 — {title}", path, plain)
    else:
        sec.note("Figure 1's layout not drawn: no run of plain-20 or plain-56 with this protocol.\n")
    caption = f"Figure 6's layout: training curves (dashed: training error, bold: test error) — {title}"
    _curves_figure(sec, curves.figure6(g.runs), curves.FIG6_PANELS, out, f"fig6{g.suffix}", caption)
    if g.suffix in responses:
        resp, meta = responses[g.suffix]
        curves.save(
            figure7(resp, f"std of layer responses on the test set\n{title}"), out / "figures", f"fig7{g.suffix}"
        )
        used = set((meta.get("runs") or {}).values())
        runs = [r for r in g.runs if r.path is not None and shown_path(r.path) in used] or g.runs
        n = meta.get("test_images")
        sec.figure(
            f"Figure 7's layout: std of layer responses (top: original order, bottom: sorted) — {title}",
            f"figures/fig7{g.suffix}.png",
            runs,
            f"Responses on {n} {dataset_name(g.protocol.dataset)} test images.\n\n" if n else "",
        )
    elif any(r.model in ("plain20", "plain56", "resnet20", "resnet56", "resnet110") and r.complete for r in g.runs):
        sec.note(
            "Figure 7's layout not drawn: run `python scripts/layer_responses.py` first (it writes "
            f"tables/fig7_responses{g.suffix}.csv).\n"
        )
    _landscape_blocks(sec, out)


def _cifar100_blocks(sec: Section, out: Path) -> None:
    """Table 6's rows on CIFAR-100 (ours only), then the peers' published CIFAR-100 numbers in a table of their own;
    ours stand beside theirs only where our runs follow the paper's CIFAR protocol."""
    g, title = sec.group, sec.group.protocol.title
    resnets = [r for r in g.runs if r.model.startswith("resnet")]
    df = tables.cifar100_table(g.runs)
    md = tables.cifar100_markdown(df, g.runs)
    tables.write_table(df, md, out / "tables", f"table_cifar100{g.suffix}")
    sec.table(
        f"CIFAR-100, Table 6's nets (the paper has no CIFAR-100 numbers): ResNet test error (%) — {title}",
        md,
        resnets or g.runs,
    )
    comparable = g.runs if g.protocol.follows_paper_protocol else []
    peers = tables.peers_table("cifar100", comparable)
    peers_md = tables.peers_markdown(peers, bool(comparable))
    tables.write_table(peers, peers_md, out / "tables", f"peers_cifar100{g.suffix}")
    sec.blocks.append(
        "### Published CIFAR-100 numbers of other repositories (their protocols; not rerun here)\n\n" + peers_md
    )
    sec.n_tables += 1


def _landscape_blocks(sec: Section, out: Path) -> None:
    """fig_landscape: the loss landscapes that scripts/loss_landscape.py computed for runs of this protocol."""
    g = sec.group
    found = landscape.landscapes_of(g.runs)
    if path := _save(landscape.figure(found, [ls.run for ls in found.values()]), out, f"fig_landscape{g.suffix}"):
        sec.figure(
            f"Loss landscape (Li et al. 2018): {', '.join(pretty(m) for m in found)} — {g.protocol.title}",
            path,
            [ls.run for ls in found.values()],
            landscape.describe(found),
        )
    elif any(r.model in ("plain56", "resnet56") and r.complete for r in g.runs):
        sec.note(
            "Loss landscape not drawn: run `python scripts/loss_landscape.py --run DIR` for the plain-56 and "
            "ResNet-56 runs first (it writes DIR/landscape/).\n"
        )


def _seed_blocks(sec: Section, out: Path) -> None:
    g, title = sec.group, sec.group.protocol.title
    seeds = tables.seeds_table(g.runs)
    if not len(seeds):
        return
    md = tables.seeds_markdown(seeds)
    tables.write_table(seeds, md, out / "tables", f"seeds{g.suffix}")
    done = [r for r in g.runs if r.complete]
    sec.table(f"Seed statistics: final test error per net — {title}", md, done)
    if path := _save(curves.seed_strip(g.runs), out, f"seeds{g.suffix}"):
        sec.figure(f"Seeds: one dot per seed — {title}", path, done)


def _imagenet_section(sec: Section, out: Path) -> None:
    g, title = sec.group, sec.group.protocol.title
    for t, df in tables.imagenet_tables(g.runs).items():
        md = tables.imagenet_markdown(df)
        tables.write_table(df, md, out / "tables", f"table{t}{g.suffix}")
        sec.table(f"Table {t} (the paper's rows): ImageNet val error — {title}", md, g.runs)
    _seed_blocks(sec, out)
    caption = f"Figure 4's layout: training curves (thin: training error, bold: val error) — {title}"
    _curves_figure(sec, curves.figure4(g.runs), curves.FIG4_PANELS, out, f"fig4{g.suffix}", caption)


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
    reported = [r for g in groups for r in g.runs]
    parts = [
        "# Reproduction of He et al. 2016, Deep Residual Learning — results\n",
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')} from {source}: "
        f"{sum(r.complete for r in reported)} complete runs of {len(reported)}.\n",
    ]
    notes = []
    if left_out:
        notes.append(f"Only experiment '{experiment}' is reported; left out: {', '.join(left_out)}.")
    if len(groups) > 1:
        notes.append(
            f"These records hold {len(groups)} protocols; each has its own tables and figures below "
            "(file names carry the protocol), never averaged together: "
            + "; ".join(f"{g.protocol.heading} ({len(g.runs)} runs)" for g in groups)
            + "."
        )
    for g in groups:
        p = g.protocol
        if p.dataset == "cifar100":
            notes.append(
                f"{p.heading}. The paper reports no CIFAR-100 numbers, so none is compared with the paper's; "
                + (
                    "the runs follow its CIFAR-10 protocol, and other repositories' published CIFAR-100 "
                    "numbers stand beside them in a table of their own."
                    if p.follows_paper_protocol
                    else f"not the paper's CIFAR protocol either — {'; '.join(p.training_mismatches())}."
                )
            )
            continue
        notes.append(
            f"{p.heading}. "
            + (
                "The paper's protocol: its numbers are compared with the paper's."
                if p.matches_paper
                else f"Not the paper's protocol — {'; '.join(p.mismatches())}. The paper's "
                "tables and figures give only the layout here; no number is compared with "
                "the paper's."
            )
        )
    parts.append("".join(f"- {n}\n" for n in notes))
    n_tables = n_figures = 0
    for g in groups:
        sec = Section(g)
        if g.family == "cifar":
            _cifar_section(sec, out, responses)
        else:
            _imagenet_section(sec, out)
        resp = responses.get(g.suffix, (None, None))[0]
        if findings := figure_findings(g.runs, resp):
            sec.note("### What the figures show\n\n" + "".join(f"- {f}\n" for f in findings))
        sec.note("### Deviations from the paper's protocol\n\n" + deviations_section(g.runs))
        parts.append(f"## {g.protocol.heading}\n\n" + "\n".join(sec.blocks))
        n_tables, n_figures = n_tables + sec.n_tables, n_figures + sec.n_figures
    blocks, found_figures, found_tables = search_blocks(searches or [], out, runs)
    parts += blocks
    n_figures, n_tables = n_figures + found_figures, n_tables + found_tables
    if (out / "tables" / "architectures.md").exists():
        parts.append("## Table 1 (architectures, FLOPs)\n\nSee [tables/architectures.md](tables/architectures.md).\n")
    parts += _peers_blocks(groups)
    parts.append("## Runs (hardware, wall time, exact command)\n\n" + runs_section(reported))
    from ..engine.records import git_state

    commit, dirty = git_state()
    how = [
        f"- figures, tables and this report: `{command}` (or `make figures`), at commit "
        f"{(commit or '?')[:7]}{' with uncommitted changes' if dirty else ''}"
    ]
    for _, meta in responses.values():
        how.append(
            f"- Figure 7 responses: `{meta.get('command', '?')}`"
            + (f" on {meta['device']}, {_wall(meta.get('wall_s'))}" if meta.get("device") else "")
        )
    for g in groups:
        for m, ls in landscape.landscapes_of(g.runs).items():
            how.append(
                f"- loss landscape of {pretty(m)} seed {ls.run.seed}: `{ls.meta.get('command') or '?'}` on "
                f"{ls.meta.get('device', '?')}, {_wall(ls.meta.get('wall_s'))}"
            )
    parts.append("## How this report was made\n\n" + "\n".join(how) + "\n")
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(text)
    return text, n_figures, n_tables
