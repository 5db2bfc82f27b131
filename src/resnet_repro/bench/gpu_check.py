"""`make gpu-check` (python scripts/gpu_check.py): one job of at most 8 minutes on one H100/H200 that settles every
GPU question of the speed issue, and writes results/bench/<gpu>-<date>-gpu-check.json and .md with one summary table.

The parts, in the order they run, with their budgets in seconds (BUDGET_S below). Every bench part is a
`python scripts/bench.py ...` command run in this process (each part's command is in the report, to rerun alone):

    gpu_tests           40  pytest tests/test_speed.py, its GPU tests: no host sync per iteration (CUDA's own
                            count, eager, CUDA graphs, two seeds), CUDA-graph steps follow the eager trajectory
    bench_eager         35  data path, the loop, train step of ResNet-20/56/110, fused SGD, ResNet-1202's peak memory
    bench_cuda_graphs   25  the train steps and the loop with CUDA graphs; three seeds in one job against three in turn
    bench_compile       30  ResNet-20's train step with torch.compile (compilation not timed)
    protocol_resnet20   88  the paper's 64k iterations (80 s of training, plus what earlier parts left unused)
    protocol_resnet56  148  the same (140 s of training)
    segment_resnet110   15  1,000 iterations measured, the 64k extrapolated (labelled EXTRAPOLATED)
    segment_resnet1202  25  200 iterations measured, the 64k extrapolated
    imagenet_decode     20  nvJPEG against worker decode on a generated folder of 512 JPEGs
    precision_accuracy  40  bf16 against fp32 on Fashion-MNIST, the demo's schedule, ResNet-20/56 x 3 seeds

A protocol run that has not finished within its budget stops at its next evaluation and its 64k-iteration time
is extrapolated from its records (cases.extrapolate_protocol), labelled so: the job stays within 8 minutes on a
GPU slower than the issue's targets and still says how far from them it is. A part that fails or overruns is
recorded as such and the next one runs; a part that would not fit in what is left of the 8 minutes is skipped.

--dry-run runs every part on the CPU with tiny sizes (bench --tiny): the GPU tests are collected and skip without
CUDA, torch.compile and ResNet-1202 are skipped with their reason, and the rest runs its CPU equivalent; the
numbers mean nothing, the files are checked (tests/test_gpu_check.py).

The GPU machine cannot download: CIFAR-10 is replaced by generated images of its shape (as in the bench) and
Fashion-MNIST must be brought along (--fashion-mnist DIR, see --help).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .accuracy import FASHION_MNIST_DEFAULT, HOW_TO_BRING_IT, errors_text
from .harness import ROOT

TOTAL_BUDGET_S = 480  # the issue: at most 8 minutes on one H100/H200
# Training seconds of the two full protocol runs (their parts add PROTOCOL_SETUP_S: data, graph capture, last
# evaluation); what earlier parts leave unused is added at run time.
PROTOCOL_TRAINING_S = {"resnet20": 80, "resnet56": 140}
PROTOCOL_SETUP_S = 8
SEGMENT_ITERS = {"resnet110": 1000, "resnet1202": 200}
BUDGET_S = {
    "gpu_tests": 40,
    "bench_eager": 35,
    "bench_cuda_graphs": 25,
    "bench_compile": 30,
    **{f"protocol_{net}": seconds + PROTOCOL_SETUP_S for net, seconds in PROTOCOL_TRAINING_S.items()},
    "segment_resnet110": 15,
    "segment_resnet1202": 25,
    "imagenet_decode": 20,
    "precision_accuracy": 40,
}
assert sum(BUDGET_S.values()) <= TOTAL_BUDGET_S - 10  # 10 s for this process's own start (torch, CUDA)
# The GPU tests of tests/test_speed.py (they skip without CUDA); its CPU tests run in `make test`.
GPU_TESTS = "on_gpu or cuda_graph_steps_follow"


@dataclass
class Part:
    name: str
    question: str
    bench_args: list[str] = field(default_factory=list)  # a bench part: the arguments of scripts/bench.py
    skip_reason: str | None = None  # set when the part cannot run here (dry run on a CPU)
    tests: bool = False  # the pytest part
    protocol: str | None = None  # a full protocol part: its net (its budget grows with what earlier parts left)

    @property
    def budget_s(self) -> float:
        return BUDGET_S[self.name]


def plan(args: argparse.Namespace) -> list[Part]:
    dry = args.dry_run
    fashion = ["--fashion-mnist", args.fashion_mnist] if args.fashion_mnist else []
    if dry:  # one net per case, and no subprocess per peak-memory variant: the dry run checks the code paths
        eager = ["cifar_data_path", "trainer_end_to_end_resnet20", "train_step_resnet20", "sgd_step_resnet110"]
        graphs = ["train_step_resnet20", "multiseed3_resnet20"]
    else:
        steps = ["train_step_resnet20", "train_step_resnet56", "train_step_resnet110"]
        # peak memory: the smaller nets were measured on the CPU; ResNet-1202 needs 15 GB there
        eager = [
            "cifar_data_path",
            "trainer_end_to_end_resnet20",
            *steps,
            "bf16_step_resnet20",
            "sgd_step_resnet110",
            "peak_memory_resnet1202",
        ]
        graphs = [*steps, "trainer_end_to_end_resnet20", "multiseed3_resnet20"]
    parts = [
        Part(
            "gpu_tests",
            "no host sync per training iteration (eager, CUDA graphs, two seeds); CUDA-graph steps = eager steps",
            tests=True,
        ),
        Part("bench_eager", "the bench, eager (bf16 autocast, channels_last, fused SGD)", ["--only", *eager]),
        Part(
            "bench_cuda_graphs",
            "the bench with CUDA graphs; 3 seeds in one job against 3 one after another",
            ["--cuda-graphs", "--only", *graphs],
        ),
        Part(
            "bench_compile",
            "the bench with torch.compile (ResNet-20's train step)",
            ["--compile", "--only", "train_step_resnet20"],
            skip_reason="torch.compile on a CPU compiles for minutes; measured on the GPU" if dry else None,
        ),
    ]
    parts += [
        Part(
            f"protocol_{net}",
            f"the paper's 64k-iteration protocol of {net}: wall time against the target, fraction of the bf16 peak",
            ["--cuda-graphs", "--protocol", net, "--only", f"paper_protocol_{net}"],
            protocol=net,
        )
        for net in PROTOCOL_TRAINING_S
    ]
    parts += [
        Part(
            f"segment_{net}",
            f"{net}: a measured segment of {iters:,} iterations, the 64k-iteration protocol EXTRAPOLATED",
            ["--cuda-graphs", "--protocol", net, "--only", f"paper_protocol_{net}", "--protocol-iters", str(iters)],
        )
        for net, iters in SEGMENT_ITERS.items()
    ]
    if dry:
        parts[
            -1
        ].skip_reason = (
            "ResNet-1202 on a CPU needs about 15 GB and seconds per step; its segment runs the code of ResNet-110's"
        )
    parts += [
        Part(
            "imagenet_decode",
            "ImageNet input: nvJPEG (data.gpu_decode=true) against DataLoader worker decode",
            # One round: writing the JPEGs takes most of the budget.
            ["--only", "imagenet_decode", "--imagenet-images", "8", "64", "--rounds", "1"],
        ),
        Part(
            "precision_accuracy",
            "bf16 against fp32: final training and test error, Fashion-MNIST, the demo's schedule, 3 seeds",
            ["--only", "precision_accuracy", "--nets", "resnet20", "resnet56", "--seeds", "3", *fashion],
        ),
    ]
    for part in parts:
        if part.bench_args:
            part.bench_args += ["--cifar-root", args.cifar_root]
            if dry:
                part.bench_args += ["--tiny", "--device", "cpu"]
            elif "--rounds" not in part.bench_args:
                # The GPU machine runs nothing else: two rounds show the spread, at two thirds of the bench's time.
                part.bench_args += ["--rounds", "2"]
    if args.only:
        unknown = set(args.only) - {p.name for p in parts}
        if unknown:
            raise UserError(
                f"--only: no part named {', '.join(sorted(unknown))} (parts: {', '.join(p.name for p in parts)})"
            )
        parts = [p for p in parts if p.name in args.only]
    return parts


# ----- running the parts -------------------------------------------------------------------------------------------
def run_tests(part: Part, args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    """pytest on the GPU tests of tests/test_speed.py in a subprocess; the counts from its last line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_speed.py"]
    cmd += ["-k", GPU_TESTS]
    env = dict(os.environ)
    if args.fashion_mnist:
        env["RESNET_REPRO_FASHION_MNIST"] = str(Path(args.fashion_mnist).resolve())
    if not args.dry_run:
        env["RESNET_REPRO_FAIL_ON_SKIP"] = "1"  # a missing data set fails a GPU test here instead of skipping it
    shown = f"python -m pytest tests/test_speed.py -k '{GPU_TESTS}'"
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "timed_out", "reason": f"pytest ran past {timeout_s:.0f} s", "command": shown}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else proc.stderr.strip()[-300:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", last)}
    skips = [line for line in lines if line.startswith("SKIPPED")]
    status = "ok" if proc.returncode == 0 and counts.get("passed", 0) + counts.get("skipped", 0) > 0 else "failed"
    tests = {"counts": counts, "summary": last, "skip_reasons": skips[:5], "exit_status": proc.returncode}
    if status == "failed":
        tests["output_tail"] = proc.stdout[-3000:]
    return {"status": status, "tests": tests, "command": shown}


def run_bench(part: Part, bench_args: list[str], out: Path) -> dict[str, Any]:
    from .cli import main as bench_main

    command = "python scripts/bench.py " + " ".join(bench_args)
    try:
        report = bench_main([*bench_args, "--out", str(out)])
    except SystemExit as err:  # a user error of the bench: its one line is on stderr already
        return {"status": "failed", "reason": f"scripts/bench.py exited with {err.code}", "command": command}
    except Exception as err:  # a failed case: the report says which, the next part runs
        return {"status": "failed", "reason": f"{type(err).__name__}: {str(err)[:500]}", "command": command}
    return {"status": "ok", "results": report["results"], "command": command}


def answer(part: dict[str, Any]) -> str:
    """The summary table's answer for a part, from its results."""
    from .report import fmt, ratio_text

    if "tests" in part:
        counts = part["tests"]["counts"]
        text = ", ".join(f"{n} {kind}" for kind, n in counts.items() if kind != "deselected")
        text = text or part["tests"]["summary"]
        reasons = part["tests"]["skip_reasons"]
        text += f" ({reasons[0]})" if reasons and not counts.get("passed") else ""
        return text if part["status"] == "ok" else f"FAILED: {text}"
    if part["status"] != "ok":
        return f"{part['status']}: {part.get('reason', '')}".rstrip(": ")
    texts = []
    for r in part["results"]:
        d = r.get("details", {})
        if "skipped" in d:
            texts.append(f"{r['name']}: skipped ({d['skipped']})")
        elif r["name"].startswith("paper_protocol"):
            text = f"{r['name']}: {fmt(r['ours'])} s for 64k iterations"
            if "extrapolation" in d:
                text += f" ({d['extrapolation']})"
            if d.get("target_s_h100"):
                text += f"; target {d['target_s_h100']} s: {'met' if d['target_met'] else 'NOT met'}"
            if "fraction_of_bf16_peak_ours" in d:
                text += f"; {100 * d['fraction_of_bf16_peak_ours']:.1f}% of the bf16 peak"
            texts.append(text)
        elif r["unit"] == "%":
            texts.append(f"{r['name']}: {errors_text(d)}")
        else:
            ratio = f" ({ratio_text(r['ratio'])})" if r.get("ratio") else ""
            texts.append(f"{r['name']}: {fmt(r['ours'])} {r['unit']}{ratio}")
    return "; ".join(texts)


# ----- the report --------------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    from .report import RATIO_NOTE, row

    title = "gpu-check DRY RUN on a CPU (tiny sizes: the numbers mean nothing)" if report["dry_run"] else "gpu-check"
    lines = [
        f"# {title}: {report['device']}",
        "",
        f"- host: {report['host']}",
        f"- device: {report['device']}; torch {report['torch']}"
        + (f", CUDA {report['cuda']}" if report["cuda"] else ""),
        f"- date: {report['date']}; git {report.get('git_commit') or '?'}",
        f"- command: `{report['command']}`",
        f"- wall time {report['wall_s']:.0f} s of a budget of {report['total_budget_s']} s",
        "",
        "## Summary",
        "",
        "| part | question | answer | wall s / budget s |",
        "|---|---|---|---:|",
    ]
    for p in report["parts"]:
        wall = f"{p['wall_s']:.0f} / {p['budget_s']:.0f}" if p.get("wall_s") is not None else f"— / {p['budget_s']:.0f}"
        lines.append(f"| {p['name']} | {p['question']} | {answer(p).replace('|', '/')} | {wall} |")
    lines += [
        "",
        "## Every result",
        "",
        "| part | benchmark | unit | baseline | ours | ratio | notes |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for p in report["parts"]:
        lines += [f"| {p['name']} {row(r)}" for r in p.get("results", [])]
    lines += ["", RATIO_NOTE, "", "Each part's command, to run it alone:", ""]
    lines += [f"- {p['name']}: `{p['command']}`" for p in report["parts"] if p.get("command")]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python scripts/gpu_check.py",
        description="make gpu-check: every GPU measurement of the speed issue in one job of at most 8 minutes on one "
        "H100/H200 (GPU tests, the bench eager / CUDA graphs / compile, the paper protocol of ResNet-20/56 and "
        "extrapolated segments of ResNet-110/1202 against the bf16 peak, 3 seeds in one job, nvJPEG, bf16 against "
        "fp32 accuracy). Writes results/bench/<gpu>-<date>-gpu-check.json and .md.",
        epilog=f"Nothing is downloaded. CIFAR-10 is replaced by generated images of its shape unless --cifar-root "
        f"holds it. Fashion-MNIST (bf16 against fp32, and the GPU tests) must be on the machine: {HOW_TO_BRING_IT}. "
        f"Without it those parts fail (GPU tests) or are skipped (precision_accuracy) with that reason.",
    )
    p.add_argument("--dry-run", action="store_true", help="every part on the CPU with tiny sizes (about a minute)")
    p.add_argument(
        "--fashion-mnist",
        default=None,
        metavar="DIR",
        help=f"the folder of the four Fashion-MNIST idx .gz files (default {FASHION_MNIST_DEFAULT})",
    )
    p.add_argument("--cifar-root", default="data/cifar10", help="CIFAR-10, if this machine has it (else generated)")
    p.add_argument(
        "--out", type=Path, help="the JSON file (a .md beside it); default results/bench/<gpu>-<date>-gpu-check.json"
    )
    p.add_argument(
        "--only", nargs="+", default=(), metavar="PART", help="run only these parts (names as in the report)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from ..engine.records import git_state
    from .harness import Settings
    from .report import device_label, host_info

    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise UserError(
            "no CUDA GPU here: make gpu-check runs on one (python scripts/gpu_check.py --dry-run checks it on a CPU)"
        )
    device = torch.device("cpu" if args.dry_run else "cuda")
    host = host_info(Settings(quick=True, device=device, threads=torch.get_num_threads(), workers=0))
    date = datetime.date.today().isoformat()
    suffix = "gpu-check-dry-run" if args.dry_run else "gpu-check"
    out = args.out or ROOT / "results" / "bench" / f"{device_label(device)}-{date}-{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "kind": "gpu-check",
        "dry_run": args.dry_run,
        **host,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_commit": git_state()[0],
        "command": " ".join(["python", "scripts/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]),
        "total_budget_s": TOTAL_BUDGET_S,
        "wall_s": 0.0,
        "parts": [],
    }
    parts = plan(args)
    start = time.perf_counter()
    planned = 0.0  # the budgets of the parts so far: what is left of them goes to the protocol runs
    with tempfile.TemporaryDirectory() as tmp:
        for i, part in enumerate(parts):
            elapsed = time.perf_counter() - start
            slack = max(planned - elapsed, 0.0)
            planned += part.budget_s
            entry: dict[str, Any] = {"name": part.name, "question": part.question, "budget_s": part.budget_s}
            later = sum(p.budget_s for p in parts[i + 1 :])
            if part.skip_reason:
                entry.update(status="skipped", reason=part.skip_reason, wall_s=None)
            elif not args.dry_run and elapsed + part.budget_s > TOTAL_BUDGET_S:
                entry.update(
                    status="skipped", reason=f"out of time: {TOTAL_BUDGET_S - elapsed:.0f} s left", wall_s=None
                )
            else:
                t = time.perf_counter()
                print(f"--- {part.name} (budget {part.budget_s:.0f} s)", flush=True)
                entry.update(run_part(part, args, Path(tmp) / f"{part.name}.json", slack, later, elapsed))
                entry["wall_s"] = time.perf_counter() - t
                if entry["wall_s"] > part.budget_s and not args.dry_run:
                    entry["over_budget_s"] = entry["wall_s"] - part.budget_s
            report["parts"].append(entry)
            report["wall_s"] = time.perf_counter() - start
            write(report, out)  # after every part: an interrupted check keeps what it measured
    report["summary"] = [{"part": p["name"], "question": p["question"], "answer": answer(p)} for p in report["parts"]]
    write(report, out)
    print(markdown(report).split("## Every result")[0])
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return report


def run_part(part: Part, args: argparse.Namespace, out: Path, slack: float, later: float, elapsed: float) -> dict:
    if part.tests:
        return run_tests(part, args, timeout_s=part.budget_s + 20)
    bench_args = list(part.bench_args)
    if part.protocol and not args.dry_run:
        # Its own training budget plus what earlier parts left unused, never the budgets of the parts after it.
        budget = PROTOCOL_TRAINING_S[part.protocol] + slack
        budget = min(budget, TOTAL_BUDGET_S - elapsed - later - PROTOCOL_SETUP_S)
        bench_args += ["--protocol-budget-s", f"{max(budget, 10):.0f}"]
    return run_bench(part, bench_args, out)
