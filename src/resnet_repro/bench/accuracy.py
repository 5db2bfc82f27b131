"""bf16 against fp32: does bf16 autocast change what a network learns? Final training and test errors of the same
short runs in each precision, over seeds.

The runs are `make demo`'s (configs/experiment/demo.yaml: 600 iterations of batch 128, lr 0.1 divided by 10 at 400
and 500, the first 1000 test images) on Fashion-MNIST, one job per net and precision training its seeds together
(trainer.seeds_per_job: on a GPU one CUDA stream each). The final training error is the last evaluation's: the
error on the augmented batches since the previous evaluation (50 iterations), as in the paper's curves.

    python scripts/bench.py --only precision_accuracy --nets plain20 plain56 resnet20 resnet56 --seeds 3 \\
        --fashion-mnist DIR

On a CPU without bf16 arithmetic (AVX-512 BF16 or AMX) bf16 is emulated and runs 12-16x slower than fp32: there the
study takes hours; on a GPU about a minute for two nets.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from ..engine.multiseed import lane_dirs
from ..engine.records import read_metrics
from ..engine.run import train
from .harness import Result, Settings
from .ours import experiment_config

PRECISIONS = ("fp32", "bf16")
FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"  # configs/data/fashion_mnist.yaml (dataset-fashion-mnist)
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
HOW_TO_BRING_IT = (
    "copy the four Fashion-MNIST idx .gz files (apt-get install dataset-fashion-mnist puts them in "
    f"{FASHION_MNIST_DEFAULT}) to a folder on this machine and pass --fashion-mnist DIR"
)


def fashion_mnist_folder(settings: Settings) -> tuple[str | None, str]:
    """(the folder with the four idx files, or None; why not)."""
    folder = Path(settings.fashion_mnist or FASHION_MNIST_DEFAULT)
    missing = [f for f in FASHION_MNIST_FILES if not (folder / f).is_file()]
    if missing:
        return None, f"Fashion-MNIST not in {folder} (missing {', '.join(missing)}): {HOW_TO_BRING_IT}"
    return str(folder), ""


def mean_std(values: list[float]) -> dict[str, float | None]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,  # sample std over seeds
    }


def train_seeds(net: str, precision: str, settings: Settings, data_root: str, run_dir: Path) -> dict[str, Any]:
    """One job: `settings.seeds` seeds of `net` in `precision` with the demo's schedule; each seed's final errors."""
    overrides = [
        "data=fashion_mnist",
        f"data.root={data_root}",
        f"model={net}",
        f"trainer.precision={precision}",
        f"trainer.seeds_per_job={settings.seeds}",
        f"trainer.device={settings.device.type}",
        "trainer.progress=none",
        "trainer.resume=never",
        *settings.precision_overrides,
    ]
    cfg = experiment_config("demo", overrides)
    summary = train(cfg, run_dir)
    seeds = [cfg.seed + k for k in range(settings.seeds)]
    last_rows = [read_metrics(path / "metrics.jsonl")[-1] for path in lane_dirs(run_dir, cfg.seed, seeds)]
    train_errs = [row["train_err"] for row in last_rows]
    test_errs = [row["test_err"] for row in last_rows]
    return {
        "precision": summary["precision"],
        "seeds": seeds,
        "iters": cfg.trainer.max_iters,
        "train_err": train_errs,
        "test_err": test_errs,
        "train_err_stats": mean_std(train_errs),
        "test_err_stats": mean_std(test_errs),
        "job_wall_s": summary["wall_s"],
        "overrides": overrides,
    }


def precision_accuracy(settings: Settings) -> list[Result]:
    """One row per net in settings.nets: the final test error in % (baseline fp32, ours bf16, no ratio), every
    seed's training and test errors per precision in the details."""
    data_root, why_not = fashion_mnist_folder(settings)
    if data_root is None:
        return [Result("precision_accuracy", "%", None, None, details={"skipped": why_not})]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in settings.nets:
            runs = {p: train_seeds(net, p, settings, data_root, Path(tmp) / net / p / "seed0") for p in PRECISIONS}
            details = {
                "data": f"Fashion-MNIST ({data_root})",
                "schedule": "configs/experiment/demo.yaml"
                + (" with overrides" if settings.precision_overrides else ""),
                "seeds": settings.seeds,
                **runs,
            }
            fp32, bf16 = (100 * runs[p]["test_err_stats"]["mean"] for p in PRECISIONS)
            results.append(Result(f"precision_accuracy_{net}", "%", fp32, bf16, details=details))
    return results


def errors_text(details: dict[str, Any]) -> str:
    """'fp32: train 14.70 ± 0.31%, test 13.00 ± 0.20%; bf16: ...' for the report."""

    def stat(s: dict[str, float | None]) -> str:
        std = f" ± {100 * s['std']:.2f}" if s["std"] is not None else ""
        return f"{100 * s['mean']:.2f}{std}%"

    parts = []
    for p in PRECISIONS:
        if p in details:
            run = details[p]
            parts.append(f"{p}: train {stat(run['train_err_stats'])}, test {stat(run['test_err_stats'])}")
    return "; ".join(parts) + f" (final errors, mean ± std over {details.get('seeds')} seeds)"
