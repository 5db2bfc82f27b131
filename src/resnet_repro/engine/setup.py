"""What a run sets up before its first step: random state, backend flags, precision, the optimizer."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from ..config import OptimConfig

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


def resolve_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 autocast on GPUs that compute it, fp32 elsewhere. On CPUs auto stays fp32 even where bf16 is native,
    until the demo-sized accuracy study (README, "Speed") has been run on such a CPU; bf16 asked for on a CPU that
    would emulate it runs, with a warning."""
    if requested == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if requested == "bf16" and device.type == "cpu" and not cpu_computes_bf16():
        log.warning(
            "trainer.precision=bf16 on a CPU without bf16 arithmetic (AVX-512 BF16 or AMX) is emulated, many times "
            "slower than fp32: use trainer.precision=auto or fp32"
        )
    return str(requested)


def autocast(precision: str, device: torch.device, cache_enabled: bool = True):
    """The forward pass's precision context: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return nullcontext()


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig, device: torch.device) -> torch.optim.SGD:
    impl = str(cfg.impl)
    if impl == "auto":
        impl = "fused" if device.type in ("cuda", "cpu") else "foreach"  # fused: one kernel; on CPU 5x foreach's speed
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}[impl]
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, **flags
    )
