"""Process-group set-up from torchrun's or SLURM's environment; one process per GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # A gloo group for host-side control messages (the preemption flag): agreeing on them then never waits for
    # the GPU. None: the default group (already gloo on CPUs).
    control_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_from_slurm() -> None:
    """Inside a multi-task SLURM job (srun, submitit) set the variables torch.distributed reads."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_distributed(device_kind: str) -> DistInfo:
    _env_from_slurm()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    if dist.get_backend() != "gloo":
        info.control_group = dist.new_group(backend="gloo")
    return info


def device_kind(requested: str) -> str:
    """auto | cpu | cuda -> cpu or cuda; asking for cuda where no GPU is visible is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is visible: use the cpu or auto device")
    return str(requested)


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """The device of this process: its GPU (the local rank's) or the CPU."""
    if device_kind(requested) == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.world_size > 1:
        dist.all_reduce(tensor)
    return tensor
