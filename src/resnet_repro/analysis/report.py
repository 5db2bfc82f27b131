"""results/REPORT.md: tables, figures, deviations from the paper's protocol (read from each run's config), runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from .curves import pretty
from .runs import Run
from .tables import markdown

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
    return "".join(f"- {d}: " + ("all runs" if len(who) == len(runs) else ", ".join(who)) + "\n"
                   for d, who in seen.items())


def _wall(s) -> str:
    if s is None or pd.isna(s):
        return "—"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def runs_section(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        s = r.summary
        err = s.get("final_test_err")
        rows.append([r.experiment, pretty(r.model), str(r.seed), r.status, f"{s.get('iters', '?')}/{s.get('max_iters', '?')}",
                     "—" if err is None else f"{100 * err:.2f}", str(s.get("device", "?")), str(s.get("precision", "?")),
                     _wall(s.get("wall_s")), f"`{s.get('command', '?')}`"])
    total = sum(r.summary.get("wall_s") or 0 for r in runs)
    return markdown(["experiment", "net", "seed", "status", "iters", "final test err (%)", "device", "precision",
                     "wall time", "command"], rows) + f"\nTotal wall time of the runs: {_wall(total)}.\n"


def figure_findings(runs: list[Run], responses: pd.DataFrame | None) -> list[str]:
    """One sentence per claim of the paper that our numbers can check directly."""
    out = []
    final = {}
    for r in runs:
        if r.complete and r.family == "cifar" and len(r.metrics) and "train_err" in r.metrics:
            last = r.metrics.dropna(subset=["train_err"]).iloc[-1]
            final.setdefault(r.model, []).append((100 * last.train_err, 100 * last.get("test_err", float("nan"))))
    if "plain20" in final and "plain56" in final:
        a, b = (pd.DataFrame(final[m]).mean() for m in ("plain20", "plain56"))
        out.append(f"Figure 1 (degradation): final training error plain-20 {a[0]:.2f}%, plain-56 {b[0]:.2f}%; "
                   f"test {a[1]:.2f}% vs {b[1]:.2f}% — paper: plain-56 higher in both "
                   f"({'reproduced' if b[0] > a[0] and b[1] > a[1] else 'not reproduced'}).")
    if responses is not None and len(responses):
        mean_std = responses.groupby("model")["std"].mean()
        txt = ", ".join(f"{pretty(m)} {v:.3f}" for m, v in mean_std.sort_values(ascending=False).items())
        out.append(f"Figure 7: mean response std per layer: {txt} — paper: ResNets smaller than plain nets, "
                   "deeper ResNets smaller still.")
    return out


def build_report(runs: list[Run], out_dir: str | Path, *, tables: dict[str, str], figures: dict[str, str],
                 notes: list[str], command: str, source: str) -> str:
    """Assemble REPORT.md (returned and written to out_dir). tables: title -> markdown; figures: caption -> path
    relative to out_dir; notes: lines about selection (left-out experiments, missing figures)."""
    out = Path(out_dir)
    resp_csv = out / "tables" / "fig7_responses.csv"
    responses = pd.read_csv(resp_csv) if resp_csv.exists() else None
    resp_meta = out / "tables" / "fig7_responses.json"
    parts = [f"# Reproduction of He et al. 2016, Deep Residual Learning — results\n",
             f"Generated {dt.datetime.now().isoformat(timespec='seconds')} from {source}: "
             f"{sum(r.complete for r in runs)} complete runs of {len(runs)}.\n"]
    if notes:
        parts.append("".join(f"- {n}\n" for n in notes))
    for title, md in tables.items():
        parts.append(f"## {title}\n\n{md}")
    if (out / "tables" / "architectures.md").exists():
        parts.append("## Table 1 (architectures, FLOPs)\n\nSee [tables/architectures.md](tables/architectures.md).\n")
    for caption, path in figures.items():
        parts.append(f"## {caption}\n\n![{caption}]({path})\n")
    if findings := figure_findings(runs, responses):
        parts.append("## What the figures show\n\n" + "".join(f"- {f}\n" for f in findings))
    parts.append("## Deviations from the paper's protocol\n\n" + deviations_section(runs))
    parts.append("## Runs (hardware, wall time, exact command)\n\n" + runs_section(runs))
    how = [f"- figures, tables and this report: `{command}` (or `make figures`)"]
    if resp_meta.exists():
        how.append(f"- Figure 7 responses: `{json.loads(resp_meta.read_text()).get('command', '?')}`")
    parts.append("## How this report was made\n\n" + "\n".join(how) + "\n")
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "REPORT.md").write_text(text)
    return text
