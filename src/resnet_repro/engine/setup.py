"""What a run sets up before its first step: random state, backend flags, precision, the optimizer."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import OptimConfig
from ..models import MODEL_NAME
from .sgd import FusedSGD

log = logging.getLogger("resnet_repro.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_backend_flags(deterministic: bool) -> None:
    """TF32 matmuls and convolutions where the precision is fp32 (Ampere and later), cuDNN autotuning unless the run
    asks for deterministic algorithms."""
    if deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = not deterministic


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX), asked through torch's own capability query.
    Without it bf16 autocast is emulated, many times slower than fp32 (results/bench/README.md)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def emulates_bf16(precision: str, device: torch.device) -> bool:
    return precision == "bf16" and device.type == "cpu" and not cpu_computes_bf16()


def deep_plain_net(model_name: str) -> bool:
    """A plain net deeper than 20 layers: where the CPU study found bf16 changing what the net learns (below)."""
    name = MODEL_NAME.fullmatch(model_name)
    return name is not None and name.group(1) == "plain" and int(name.group(2)) > 20


def resolve_precision(requested: str, device: torch.device, model_name: str) -> tuple[str, str]:
    """The precision a run trains in, and why (summary.json's precision_reason and the run's first log line, a
    warning where bf16 is emulated). auto: bf16 autocast where the chip computes bf16 (GPUs that support it; CPUs
    with AVX-512 BF16 or AMX), fp32 elsewhere, and fp32 for plain nets deeper than 20 layers on CPUs: in the
    Fashion-MNIST study of results/bench/README.md bf16 and fp32 gave the same errors over 3 seeds for plain-20,
    ResNet-20 and ResNet-56, but plain-56, the net that shows the degradation problem, had a lower test error in bf16
    in every seed (26.8 against 32.9 % on average) and a lower training error on average (30.6 against 34.1 %)."""
    if requested != "auto":
        if emulates_bf16(requested, device):
            return "bf16", (
                "trainer.precision=bf16 on a CPU without bf16 arithmetic (AVX-512 BF16 or AMX): emulated, many times "
                "slower than fp32; use trainer.precision=auto or fp32"
            )
        return str(requested), f"trainer.precision={requested}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU computes bf16"
        return "fp32", "auto: this GPU has no bf16 arithmetic"
    if not cpu_computes_bf16():
        return "fp32", "auto: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 is emulated and slow"
    if deep_plain_net(model_name):
        return "fp32", (
            "auto: this CPU computes bf16, but a plain net deeper than 20 layers trains in fp32 on a CPU: bf16 changed "
            "plain-56's errors in the study of results/bench/README.md"
        )
    return "bf16", "auto: this CPU computes bf16 with AVX-512 BF16 or AMX"


def autocast(precision: str, device: torch.device, cache_enabled: bool = True):
    """The forward pass's precision context: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return nullcontext()


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> FusedSGD | torch.optim.SGD:
    """auto and fused: our FusedSGD (engine/sgd.py: torch's fused update, one kernel, without torch.optim's import of
    torch._dynamo at the first call); foreach and loop: torch.optim.SGD, for the benchmarks."""
    settings = {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay, "nesterov": cfg.nesterov}
    if str(cfg.impl) in ("auto", "fused"):
        return FusedSGD(params, **settings)
    return torch.optim.SGD(params, **settings, foreach=str(cfg.impl) == "foreach")


def process_started_at() -> float | None:
    """When this process started, in time.time()'s seconds (to 10 ms), from Linux's /proc; None without it."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


class StartupClock:
    """Where a training process's start-up goes (summary.json's startup_s; make bench's startup_resnet20): from the
    process's start to the trainer (Python, imports, Hydra, the config), then data, model and optimizer, and resuming
    and the first records, to the first training step. Only the first trainer of a process counts from the process's
    start; a later one (the next job of a sweep run in the same process, another seed of the job) from its creation."""

    PHASES = ("imports_and_config", "data", "model_and_optimizer", "resume_and_records")
    process_start_unclaimed = True

    def __init__(self):
        started = process_started_at() if StartupClock.process_start_unclaimed else None
        StartupClock.process_start_unclaimed = False
        self.times = [started, time.time()]

    def mark(self) -> None:
        """The end of the next phase."""
        if len(self.times) <= len(self.PHASES):
            self.times.append(time.time())

    def seconds(self) -> dict[str, float | None]:
        if len(self.times) <= len(self.PHASES):
            return {}  # before the first step
        start, *ends = self.times
        phases = {"imports_and_config": None if start is None else round(ends[0] - start, 3)}
        phases |= {name: round(b - a, 3) for name, a, b in zip(self.PHASES[1:], ends, ends[1:])}
        return {**phases, "total": round(ends[-1] - (ends[0] if start is None else start), 3)}
