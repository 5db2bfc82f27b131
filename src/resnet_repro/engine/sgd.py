"""The trainer's SGD: torch.optim.SGD(fused=True)'s update, bit for bit (tests/test_sgd.py), without torch.optim's
Optimizer class, whose first call imports torch._dynamo (0.8 s of a training process's start-up on a 2-core VM,
README "Speed").

One kernel per step (torch._fused_sgd_) updates every parameter, its momentum buffer and, with weight decay, the
gradient term, as torch's fused path does. state_dict() and load_state_dict() use torch.optim.SGD's layout, so
checkpoints written by either load in the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# torch.optim.SGD's param-group keys besides "params", in its order: its state_dict() and ours match key for key.
GROUP_DEFAULTS = {"dampening": 0.0, "maximize": False, "foreach": None, "differentiable": False, "fused": True}


class FusedSGD:
    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float, nesterov: bool
    ):
        group = {"params": list(params), "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.param_groups = [{**group, "nesterov": nesterov, **GROUP_DEFAULTS}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        momentum = group["momentum"]
        buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        first_step = momentum != 0 and all(b is None for b in buffers)
        if first_step:  # the kernel sets buffer = gradient
            buffers = [torch.empty_like(p.grad) for p in params]
        torch._fused_sgd_(
            params,
            [p.grad for p in params],
            buffers if momentum != 0 else [],
            weight_decay=group["weight_decay"],
            momentum=momentum,
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            is_first_step=first_step,
        )
        if momentum != 0:
            for p, buffer in zip(params, buffers):
                self.state[p] = {"momentum_buffer": buffer}

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Optimizer.state_dict()'s layout: parameters by their index."""
        group = self.param_groups[0]
        index = {id(p): i for i, p in enumerate(group["params"])}
        return {
            "state": {index[id(p)]: dict(s) for p, s in self.state.items()},
            "param_groups": [{**{k: v for k, v in group.items() if k != "params"}, "params": list(range(len(index)))}],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        params = self.param_groups[0]["params"]
        (saved_group,) = state_dict["param_groups"]
        if len(saved_group["params"]) != len(params):
            raise ValueError(f"the saved optimizer has {len(saved_group['params'])} parameters, this one {len(params)}")
        self.param_groups[0].update({k: v for k, v in saved_group.items() if k != "params"})
        self.state = {
            params[i]: {k: v.to(params[i].device, params[i].dtype) for k, v in s.items()}
            for i, s in state_dict["state"].items()
        }
