"""The report: where it ran, each result row, as JSON and as a Markdown table in results/bench/."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..engine.records import cpu_name
from .harness import Settings


def host_info(settings: Settings) -> dict[str, Any]:
    cpu = cpu_name()
    if settings.device.type == "cuda":
        device = torch.cuda.get_device_name(settings.device)
    else:
        device = f"cpu ({settings.threads} threads)"
    return {
        "host": f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def ratio_text(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "—"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {report['device']}",
        "",
        f"- host: {report['host']}",
        f"- device: {report['device']}; torch {report['torch']}"
        + (f", CUDA {report['cuda']}" if report.get("cuda") else ""),
        f"- date: {report['date']}; git {report.get('git_commit') or '?'}",
        f"- command: `{report['command']}`",
        f"- data: {report.get('data', '—')}",
        f"- load average (1, 5, 15 min) at start {report.get('load_average_at_start')}, at end "
        f"{report.get('load_average_at_end')}: other work on the machine slows both sides",
        f"- settings: {json.dumps(report['settings'])}",
        "",
        "| benchmark | unit | baseline | ours | ratio | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [row(r) for r in report["results"]]
    lines += ["", RATIO_NOTE]
    return "\n".join(lines) + "\n"


RATIO_NOTE = (
    "Baseline and ours run in alternating rounds (in one process; whole_command_*: as separate processes, one "
    "after the other); each cell is the median of the rounds (all samples are in the JSON). ratio: ours / baseline "
    "for rates (img/s, it/s, steps/s) and baseline / ours for times (s), so above 1 means ours is faster; "
    "peak_memory: ours / baseline, below 1 means ours needs less. precision_accuracy: final test error in %, "
    "baseline = fp32, ours = bf16."
)


def notes_of(d: dict[str, Any]) -> list[str]:
    from .accuracy import errors_text

    notes = []
    if "skipped" in d:
        notes.append(f"skipped: {d['skipped']}")
    if isinstance(d.get("rounds"), dict):  # whole_command_*: each round's two processes, and ours' training loop
        pairs = zip(d["rounds"]["baseline"], d["rounds"]["ours"])
        notes.append(
            "rounds, baseline / ours: " + ", ".join(f"{b['wall_s']:.0f} / {o['wall_s']:.0f} s" for b, o in pairs)
        )
        notes.append(
            "ours from its first iteration to its end: "
            + " / ".join(f"{o['loop_s']:.0f}" for o in d["rounds"]["ours"])
            + " s"
        )
        notes.append(f"data: {d['data']}")
    if "phases_s" in d:  # startup_*
        notes.append(", ".join(f"{k} {v:.2f} s" for k, v in d["phases_s"].items() if k != "total" and v is not None))
        notes.append(f"target {d['target_s']:g} s; {d['data']}")
    if "extrapolation" in d:
        notes.append(d["extrapolation"])
    if "fp32" in d and isinstance(d["fp32"], dict):
        notes.append(errors_text(d))
    for key in (
        "precision",
        "optimizer",
        "ours",
        "iters",
        "target_s_h100",
        "target_met",
        "fraction_of_bf16_peak_ours",
        "achieved_tflops_ours",
        "projected_64k_s_ours",
        "projected_64k_steps_s_ours",
    ):
        if key in d and not isinstance(d[key], dict):
            value = d[key]
            notes.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    if isinstance(d.get("ours"), dict):
        notes.append(", ".join(f"{k}={v}" for k, v in d["ours"].items()))
    return notes


def row(r: dict[str, Any]) -> str:
    """A result as a row of the Markdown table."""
    notes = notes_of(r.get("details", {}))
    return (
        f"| {r['name']} | {r['unit']} | {fmt(r['baseline'])} | {fmt(r['ours'])} | "
        f"{ratio_text(r.get('ratio'))} | {'; '.join(notes)} |"
    )


def device_label(device: torch.device) -> str:
    """The device as the result files are named: nvidia-h100-80gb-hbm3, cpu-2core."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


def default_out(settings: Settings) -> Path:
    """results/bench/<device>-<date>[-quick].json under the current folder (make runs it at the repository's root),
    as every script's default output; not beside the installed package, which may be another checkout's."""
    date = datetime.date.today().isoformat()
    kind = device_label(settings.device)
    return Path("results") / "bench" / f"{kind}-{date}{'-quick' if settings.quick else ''}.json"


def write(report: dict[str, Any], out: Path) -> None:
    """The JSON and the Markdown beside it; called after every case, so that a partial run keeps its results."""
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
