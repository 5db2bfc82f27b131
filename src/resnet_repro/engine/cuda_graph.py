"""A training step captured once as a CUDA graph and replayed every iteration (trainer.cuda_graphs, GPU only).

Small nets at batch 128 are limited by the host launching kernels one by one; a replay launches them all at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .setup import autocast

if TYPE_CHECKING:
    from .trainer import Trainer


class GraphedStep:
    """`Trainer.train_step` captured once as a CUDA graph and replayed every iteration (GPU only).

    The batch is copied into static input buffers; the graph runs forward (autocast without its weight cache, as
    capture requires), loss, backward and the fused SGD step, and writes the step's sums to a static output. The fused
    step reads the learning rate from a device tensor, refilled before a replay only when the float the loop put in
    the optimizer's param groups changes (the groups keep plain floats: checkpoints are unchanged). Capture needs a
    few eager steps first (cuDNN and the allocator warm up on a side stream): they run on the real parameters, so
    parameters, buffers and momentum are saved before and restored after, and the trajectory is the eager step's.
    Momentum buffers that did not exist yet are restored as zeros, which gives exactly the first step's `buf = grad`.
    """

    WARMUP_STEPS = 3

    def __init__(self, trainer: Trainer, images: torch.Tensor, labels: torch.Tensor):
        self.trainer = trainer
        optimizer = trainer.optimizer
        self.lr_value = float(optimizer.param_groups[0]["lr"])
        self.lr = torch.full((), self.lr_value, device=trainer.device, dtype=torch.float32)
        self.static_images = images.contiguous(memory_format=trainer.memory_format).clone()
        self.static_labels = labels.clone()
        saved = self._save_state()
        floats = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = self.lr
        device = trainer.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                self._step()
        torch.cuda.current_stream(device).wait_stream(side)
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_sums = self._step()
        for group, lr in zip(optimizer.param_groups, floats):
            group["lr"] = lr
        self._restore_state(saved)

    def _step(self) -> torch.Tensor:
        trainer = self.trainer
        with autocast(trainer.precision, trainer.device, cache_enabled=False):  # capture cannot use the weight cache
            logits = trainer.model(self.static_images)
            loss = F.cross_entropy(logits.float(), self.static_labels)
        loss.backward()
        trainer.optimizer.step()
        wrong = (logits.argmax(1) != self.static_labels).sum()
        n = len(self.static_labels)
        return torch.stack([loss.detach() * n, wrong, torch.full((), n, device=trainer.device)]).double()

    def _save_state(self) -> dict[str, Any]:
        trainer = self.trainer
        return {
            "model": [t.detach().clone() for t in trainer.raw_model.state_dict().values()],
            "momentum": {
                p: s["momentum_buffer"].clone()
                for p, s in trainer.optimizer.state.items()
                if s.get("momentum_buffer") is not None
            },
        }

    @torch.no_grad()
    def _restore_state(self, saved: dict[str, Any]) -> None:
        trainer = self.trainer
        for tensor, value in zip(trainer.raw_model.state_dict().values(), saved["model"]):
            tensor.copy_(value)
        for p, state in trainer.optimizer.state.items():
            buf = state.get("momentum_buffer")
            if buf is None:
                continue
            if p in saved["momentum"]:
                buf.copy_(saved["momentum"][p])
            else:
                buf.zero_()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lr = float(self.trainer.optimizer.param_groups[0]["lr"])
        if lr != self.lr_value:
            self.lr.fill_(lr)
            self.lr_value = lr
        self.static_images.copy_(images)
        self.static_labels.copy_(labels)
        self._replay()
        return self.static_sums.clone()

    def _replay(self) -> None:
        self.graph.replay()  # tests/test_speed.py swaps this and the capture for eager steps on CPU
