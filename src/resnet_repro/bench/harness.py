"""The measuring: settings, a result row, alternating rounds of baseline and ours, steps per second."""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[3]
BATCH = 128
PAPER_ITERS = 64_000
CIFAR_SIZES = (50_000, 10_000)  # CIFAR-10's training and test images


# Units of a time: their ratio is baseline / ours, so that for every speed row a ratio above 1 means ours is faster.
TIME_UNITS = ("s",)
# Units whose rows compare something other than speed or memory (errors of the precision study): no ratio.
NO_RATIO_UNITS = ("%",)


@dataclass
class Result:
    """One row of the report. ratio: ours / baseline for rates (img/s, it/s, steps/s) and for memory (MiB: below 1
    means ours needs less); baseline / ours for times (s), so that above 1 means ours takes less time."""

    name: str
    unit: str
    baseline: float | None
    ours: float | None
    ratio: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.ratio is not None or self.unit in NO_RATIO_UNITS or not self.baseline or not self.ours:
            return
        self.ratio = self.baseline / self.ours if self.unit in TIME_UNITS else self.ours / self.baseline


@dataclass
class Settings:
    quick: bool
    device: torch.device
    threads: int
    workers: int
    compile: bool = False
    cuda_graphs: bool = False
    rounds: int = 3
    data_batches: int = 100
    e2e_iters: int = 200
    e2e_warmup: int = 50
    step_iters: int = 20
    step_warmup: int = 5
    sgd_iters: int = 50
    memory_models: tuple[str, ...] = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")
    step_models: tuple[str, ...] = ("resnet20", "resnet56", "resnet110")
    peak_tflops: float | None = None
    cifar_root: str = "data/cifar10"
    only: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    protocol_iters: int = PAPER_ITERS
    protocol_seeds: int = 1
    protocol_budget_s: float | None = None  # stop a protocol run after this much training time; the rest extrapolated
    protocol_eval_every: int | None = None  # None: the experiment's (1000); smaller only for --tiny runs
    imagenet_root: str | None = None
    imagenet_images: tuple[int, int] = (8, 128)  # synthetic JPEG folder: classes, images per class
    synthetic_sizes: tuple[int, int] = CIFAR_SIZES  # training and test images made when CIFAR-10 is absent
    whole_command_iters: int = 300
    nets: tuple[str, ...] = ("resnet20", "resnet56")  # precision_accuracy
    seeds: int = 3  # precision_accuracy: seeds per net and precision
    precision_overrides: tuple[str, ...] = ()  # precision_accuracy: Hydra overrides on top of experiment=demo
    fashion_mnist: str | None = None  # precision_accuracy: the folder of the four idx .gz files

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "device": str(self.device)})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        values = json.loads(text)
        values["device"] = torch.device(values["device"])
        for key in (
            "memory_models",
            "step_models",
            "only",
            "protocol",
            "imagenet_images",
            "synthetic_sizes",
            "nets",
            "precision_overrides",
        ):
            values[key] = tuple(values[key])
        return cls(**values)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(baseline: Callable[[], float], ours: Callable[[], float], rounds: int) -> tuple[float, float, dict]:
    """Alternate baseline and ours `rounds` times (the order flips each round); medians and all samples."""
    samples: dict[str, list[float]] = {"baseline": [], "ours": []}
    for r in range(rounds):
        order = (("baseline", baseline), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("baseline", baseline))
        for name, fn in order:
            gc.collect()
            samples[name].append(fn())
    return statistics.median(samples["baseline"]), statistics.median(samples["ours"]), {"samples": samples}


def steps_per_s(step: Callable[[], Any], iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters / (time.perf_counter() - t)


def fixed_batch(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalized-looking batch of CIFAR's shape: the step cases time the step, not the data."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (BATCH,), generator=g).to(device)
