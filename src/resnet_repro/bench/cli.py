"""`python scripts/bench.py` / `python -m resnet_repro.bench`: the arguments, the settings they make, the run."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..cli import exit_on_user_error
from ..engine.distributed import resolve_device
from ..engine.records import git_state
from ..engine.setup import set_backend_flags
from . import report as reports
from .cases import benchmarks
from .harness import PAPER_ITERS, Settings
from .inputs import describe_data

# --quick: the training loop and the whole command over fewer iterations, so that `make bench ARGS=--quick` takes
# about 1.5 minutes on 2 CPU cores (results/bench/README.md; the full sizes are Settings' defaults: 200 and 300).
QUICK_E2E_ITERS, QUICK_WHOLE_COMMAND_ITERS = 40, 30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python scripts/bench.py",
        description="our training path against the usual way, side by side in one process",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="one round, every case scaled down (the loop 40 iterations, the whole command 30): about 1.5 minutes "
        "on 2 CPU cores",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny sizes and a few iterations per case (tests, make gpu-check's --dry-run): checks that every case "
        "runs; its numbers mean nothing",
    )
    p.add_argument(
        "--out", type=Path, help="the JSON file (a .md beside it); default results/bench/<device>-<date>.json"
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads, and the baseline's DataLoader workers (default: torch's default, the number of cores)",
    )
    p.add_argument("--compile", action="store_true", help="ours with trainer.compile=true")
    p.add_argument("--cuda-graphs", action="store_true", help="ours with trainer.cuda_graphs=true (GPU)")
    p.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds per benchmark (default 3; 1 with --quick)"
    )
    p.add_argument(
        "--e2e-iters",
        type=int,
        default=None,
        help=f"timed iterations of trainer_end_to_end_resnet20 (default {Settings.e2e_iters}; {QUICK_E2E_ITERS} with "
        "--quick)",
    )
    p.add_argument(
        "--whole-command-iters",
        type=int,
        default=None,
        help=f"training iterations of both whole_command_resnet20 commands (default {Settings.whole_command_iters}; "
        f"{QUICK_WHOLE_COMMAND_ITERS} with --quick)",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table")
    p.add_argument("--cifar-root", default="data/cifar10")
    p.add_argument(
        "--imagenet-root", default=None, help="an ImageNet folder for imagenet_decode (default: synthetic JPEGs)"
    )
    p.add_argument(
        "--imagenet-images",
        type=int,
        nargs=2,
        default=(8, 128),
        metavar=("CLASSES", "PER_CLASS"),
        help="the synthetic JPEG folder of imagenet_decode (default 8 128)",
    )
    p.add_argument("--only", nargs="*", default=(), help="run only these benchmarks (names as in the JSON)")
    p.add_argument(
        "--protocol",
        nargs="*",
        default=(),
        metavar="MODEL",
        help="also time the whole paper protocol "
        "(64k iterations with evaluations and checkpoints) of these nets, e.g. resnet20 resnet56 (GPU)",
    )
    p.add_argument("--protocol-iters", type=int, default=PAPER_ITERS, help="iterations of --protocol runs")
    p.add_argument("--protocol-seeds", type=int, default=1, help="seeds per --protocol job (trainer.seeds_per_job)")
    p.add_argument(
        "--protocol-budget-s",
        type=float,
        default=None,
        help="stop each --protocol run at its first evaluation after this many seconds of training and extrapolate "
        "the 64k-iteration time from its records (labelled as such)",
    )
    accuracy = p.add_argument_group("precision_accuracy (run with --only precision_accuracy): bf16 against fp32")
    accuracy.add_argument(
        "--nets", nargs="+", default=["resnet20", "resnet56"], help="the nets (default resnet20 resnet56)"
    )
    accuracy.add_argument("--seeds", type=int, default=3, help="seeds per net and precision (default 3)")
    accuracy.add_argument(
        "--fashion-mnist",
        default=None,
        metavar="DIR",
        help="the folder of the four Fashion-MNIST idx .gz files (default /usr/share/datasets/fashion-mnist, where "
        "apt-get install dataset-fashion-mnist puts them; nothing is downloaded: copy the files to a machine without)",
    )
    accuracy.add_argument(
        "--precision-overrides",
        nargs="*",
        default=(),
        metavar="KEY=VALUE",
        help="Hydra overrides on top of experiment=demo (default: the demo's schedule as it is)",
    )
    return p.parse_args(argv)


def make_settings(args: argparse.Namespace) -> Settings:
    device = resolve_device(args.device)
    threads = args.threads or torch.get_num_threads()
    settings = Settings(
        quick=args.quick,
        device=device,
        threads=threads,
        workers=threads,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        peak_tflops=args.peak_tflops,
        cifar_root=args.cifar_root,
        only=tuple(args.only),
        protocol=tuple(args.protocol),
        protocol_iters=args.protocol_iters,
        protocol_seeds=args.protocol_seeds,
        protocol_budget_s=args.protocol_budget_s,
        imagenet_root=args.imagenet_root,
        imagenet_images=tuple(args.imagenet_images),
        nets=tuple(args.nets),
        seeds=args.seeds,
        fashion_mnist=args.fashion_mnist,
        precision_overrides=tuple(args.precision_overrides),
    )
    if args.quick or args.tiny:
        settings.quick = True
        settings.rounds, settings.data_batches = 1, 40
        settings.e2e_iters, settings.e2e_warmup = QUICK_E2E_ITERS, 10
        settings.whole_command_iters = QUICK_WHOLE_COMMAND_ITERS
        settings.step_iters, settings.step_warmup, settings.sgd_iters = 3, 1, 10
        if device.type == "cpu":
            settings.memory_models = ("resnet20", "resnet56", "resnet110", "resnet1202")
    if args.e2e_iters is not None:
        settings.e2e_iters = args.e2e_iters
    if args.whole_command_iters is not None:
        settings.whole_command_iters = args.whole_command_iters
    if args.tiny:
        apply_tiny(settings)
    if args.rounds:
        settings.rounds = args.rounds
    return settings


# Every case's sizes at their smallest: 1,024 training and 128 test images, a few iterations, one net.
TINY_PRECISION_RUN = (
    "trainer.max_iters=2",
    "trainer.eval_every=1",
    "trainer.checkpoint_every=2",
    "schedule.milestones=[1]",
    "data.batch_size=32",
    "data.limit_train=1024",
    "data.limit_test=64",
)


def apply_tiny(settings: Settings) -> None:
    settings.data_batches, settings.e2e_iters, settings.e2e_warmup = 2, 3, 2
    settings.step_iters, settings.step_warmup, settings.sgd_iters = 2, 1, 3
    settings.step_models, settings.memory_models = ("resnet20",), ("resnet20",)
    settings.synthetic_sizes, settings.imagenet_images = (1024, 128), (4, 64)
    settings.whole_command_iters = min(settings.whole_command_iters, 3)
    settings.protocol_iters, settings.protocol_eval_every = min(settings.protocol_iters, 2), 1
    settings.nets, settings.seeds = settings.nets[:1], min(settings.seeds, 2)
    settings.precision_overrides = (*TINY_PRECISION_RUN, *settings.precision_overrides)


FASHION_MNIST_STUDY = "Fashion-MNIST's training and test images (the precision_accuracy study trains on nothing else)"


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the planned cases; the report (also returned) is rewritten after each one."""
    args = parse_args(argv)
    settings = make_settings(args)
    torch.set_num_threads(settings.threads)
    set_backend_flags(deterministic=False)  # the baselines get the backend flags our runs get
    report = {
        **reports.host_info(settings),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_commit": git_state()[0],
        "command": " ".join(["python", "scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "load_average_at_start": os.getloadavg(),
        "data": FASHION_MNIST_STUDY if list(settings.only) == ["precision_accuracy"] else describe_data(settings),
        "settings": json.loads(settings.to_json()),
        "results": [],
    }
    out = args.out or reports.default_out(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    for _, run in benchmarks(settings):
        t = time.perf_counter()
        results = run()
        for result in results if isinstance(results, list) else [results]:
            report["results"].append(asdict(result))
            print(
                f"{result.name:32s} baseline {reports.fmt(result.baseline):>10s}  ours {reports.fmt(result.ours):>10s} "
                f"{result.unit:10s} {reports.ratio_text(result.ratio):>7s}  ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
        report["load_average_at_end"] = os.getloadavg()
        reports.write(report, out)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return report
