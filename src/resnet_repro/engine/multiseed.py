"""Several seeds of one network trained in one job (trainer.seeds_per_job=K), and CUDA-graphed steps (trainer.cuda_graphs).

A ResNet-20 at batch 128 leaves most of a modern GPU idle, so the paper's 3 seeds of a Table 6 row can share one
job. Each seed is a *lane*: a `Trainer` for that seed, with its own model, optimizer, schedule, data order (the data
path derives everything from (seed, iteration)) and its own ordinary run directory (config.yaml, metrics.jsonl,
summary.json, checkpoints/). A lane runs the trainer's own code, `Trainer.fit_steps()`, which yields after every
iteration; the job steps the lanes in turn, so everything a run does (records, checkpoints, resume, warm-up, signals)
is done by each lane exactly as by a single-seed run:

- on CPU the lanes run one after another, and each seed's model and records equal bitwise those of its single-seed
  run (tests/test_speed.py); the job is then as fast as K runs in a row, which is the point of it only on a GPU;
- on a GPU each lane runs on its own CUDA stream, so the kernels of K small nets overlap; with trainer.cuda_graphs
  each lane's step (forward, backward, SGD) is one CUDA-graph replay, which also takes the per-kernel launch cost,
  the limit of small nets, off the host.

Directories: lane k (seed s = seed + k) writes to `<job dir>/../seed<s>` when the job's directory is named
`seed<seed>` (the default Hydra layout, results/runs/<experiment>/<model>/seed<seed>), else to `<job dir>/seed<s>`.
Each lane's config.yaml says seed=s and seeds_per_job=1: a lane *is* the single-seed run of its seed, and either kind
of job resumes it (or skips it when complete).

SIGTERM/SIGUSR2: each lane installs the trainer's handler in turn, so the signal reaches the last lane, whose
hand-over calls the previous lane's handler, and so on: every lane checkpoints and stops, and the first lane hands
over to the handler that was there before the job (submitit's requeue).
"""

from __future__ import annotations

import copy
import logging
import signal
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, open_dict

from ..errors import UserError
from .trainer import PreemptionSignals, Trainer

log = logging.getLogger("resnet_repro.train")


def lane_seeds(cfg: DictConfig) -> list[int]:
    k = int(cfg.trainer.get("seeds_per_job", 1))
    if k < 1:
        raise UserError(f"trainer.seeds_per_job={k}: choose 1 or more")
    return [cfg.seed + i for i in range(k)]


def lane_dirs(run_dir: Path, seed: int, seeds: list[int]) -> list[Path]:
    """Where each seed's run directory goes (see the module docstring)."""
    run_dir = Path(run_dir)
    if len(seeds) == 1:
        return [run_dir]
    if run_dir.name == f"seed{seed}":
        return [run_dir.parent / f"seed{s}" for s in seeds]
    return [run_dir / f"seed{s}" for s in seeds]


def lane_config(cfg: DictConfig, seed: int, run_dir: Path) -> DictConfig:
    """The config of the single-seed run that a lane is."""
    lane = copy.deepcopy(cfg)
    with open_dict(lane):
        lane.seed = seed
        lane.trainer.seeds_per_job = 1
        if lane.get("run_dir") is not None:
            lane.run_dir = str(run_dir)
    return lane


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
        if not all(group.get("fused") for group in optimizer.param_groups):
            raise UserError("trainer.cuda_graphs needs the fused SGD step: set optim.impl=auto or fused")
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
        autocast = (torch.autocast(trainer.device.type, dtype=torch.bfloat16, cache_enabled=False)
                    if trainer.precision == "bf16" else nullcontext())
        with autocast:
            logits = trainer.forward(self.static_images)
            loss = F.cross_entropy(logits.float(), self.static_labels)
        loss.backward()
        trainer.optimizer.step()
        wrong = (logits.argmax(1) != self.static_labels).sum()
        n = len(self.static_labels)
        return torch.stack([loss.detach() * n, wrong, torch.full((), n, device=trainer.device)]).double()

    def _save_state(self) -> dict[str, Any]:
        trainer = self.trainer
        return {
            "model": [t.detach().clone() for t in trainer.model.state_dict().values()],
            "momentum": {p: s["momentum_buffer"].clone() for p, s in trainer.optimizer.state.items()
                         if s.get("momentum_buffer") is not None},
        }

    @torch.no_grad()
    def _restore_state(self, saved: dict[str, Any]) -> None:
        trainer = self.trainer
        for tensor, value in zip(trainer.model.state_dict().values(), saved["model"]):
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
        self.graph.replay()  # (tests/test_speed.py replaces this and the capture with eager steps to test the rest on CPU)


class Lane(Trainer):
    """One seed of a job: a Trainer whose work runs on its own CUDA stream, its step optionally a CUDA graph."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        super().__init__(cfg, run_dir)
        self.use_graphs = use_cuda_graphs(cfg, self)
        self.graphed: GraphedStep | None = None
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def stream_context(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.use_graphs:
            return super().train_step(images, labels)
        if self.graphed is None:
            self.graphed = GraphedStep(self, images, labels)
        return self.graphed(images, labels)


def use_cuda_graphs(cfg: DictConfig, trainer: Trainer) -> bool:
    if not cfg.trainer.get("cuda_graphs", False):
        return False
    if trainer.device.type != "cuda":
        log.info("trainer.cuda_graphs is for GPUs: training on %s without", trainer.device)
        return False
    if cfg.trainer.compile:
        raise UserError("trainer.cuda_graphs and trainer.compile exclude each other: choose one")
    if trainer.dist.world_size > 1:
        raise UserError("trainer.cuda_graphs does not support several processes (DDP) yet: run without it")
    return True


class MultiSeedTrainer:
    """Trains seeds cfg.seed .. cfg.seed + seeds_per_job - 1 in lockstep; see the module docstring."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        seeds = lane_seeds(cfg)
        if cfg.logger.kind == "wandb" and len(seeds) > 1:
            raise UserError("trainer.seeds_per_job > 1 does not log to W&B yet (one W&B run per process): "
                            "use logger=none, or one job per seed")
        self.lanes = [Lane(lane_config(cfg, seed, path), path) for seed, path in zip(seeds, lane_dirs(run_dir, cfg.seed, seeds))]
        if len(self.lanes) > 1 and self.lanes[0].dist.world_size > 1:
            raise UserError("trainer.seeds_per_job > 1 runs in one process: launch it without torchrun or srun tasks")

    def fit(self) -> dict[str, Any]:
        handlers = {sig: signal.getsignal(sig) for sig in PreemptionSignals.SIGNALS}
        running = [(lane, lane.fit_steps()) for lane in self.lanes]
        summaries: dict[int, dict[str, Any]] = {}
        failed: list[UserError] = []
        stopped: list[SystemExit] = []
        try:
            while running:
                for entry in list(running):
                    lane, steps = entry
                    with lane.stream_context():
                        try:
                            next(steps)
                            continue
                        except StopIteration as stop:
                            summaries[lane.cfg.seed] = stop.value
                        except UserError as err:  # this seed failed (diverged): the others go on
                            log.error("seed %d: %s", lane.cfg.seed, err)
                            failed.append(err)
                        except SystemExit as exit_:  # a signal: this lane checkpointed; the others follow
                            stopped.append(exit_)
                    running.remove(entry)
        finally:
            for _, steps in running:
                steps.close()  # an exception left these mid-run: their `finally`s release the run directories
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if stopped:
            raise stopped[-1]
        if failed:
            raise failed[0]
        ordered = [summaries[lane.cfg.seed] for lane in self.lanes]
        return {**ordered[0], "lanes": ordered}
