"""Several seeds of one network trained in one job (trainer.seeds_per_job=K), in lockstep.

A ResNet-20 at batch 128 leaves most of a modern GPU idle, so the paper's seeds of a Table 6 row can share one job.
Each seed is an ordinary `Trainer` with its own model, optimizer, schedule, data order and run directory; the job
calls `step()` on each in turn, so everything a run does (records, checkpoints, resume, warm-up) is done by each
seed exactly as by a single-seed run. On CPU the seeds run one after another and each equals its single-seed run
bitwise (tests/test_speed.py); on a GPU each seed runs on its own CUDA stream, so the kernels of K small nets overlap.

Directories: seed s = seed + k writes to `<job dir>/../seed<s>` when the job's directory is named `seed<seed>` (the
default layout, results/runs/<experiment>/<model>/seed<seed>), else to `<job dir>/seed<s>`. Each seed's config.yaml
says seed=s and seeds_per_job=1: it *is* the single-seed run of its seed, and either kind of job resumes it.

One StopSignals serves the job: at a signal every seed checkpoints at the same iteration, then the job stops.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import UserError
from . import records
from .signals import StopSignals
from .trainer import Trainer

log = logging.getLogger("resnet_repro.train")


def lane_dirs(run_dir: Path, seed: int, seeds: list[int]) -> list[Path]:
    """Where each seed's run directory goes (see the module docstring)."""
    run_dir = Path(run_dir)
    if len(seeds) == 1:
        return [run_dir]
    if run_dir.name == f"seed{seed}":
        return [run_dir.parent / f"seed{s}" for s in seeds]
    return [run_dir / f"seed{s}" for s in seeds]


def lane_config(cfg: TrainConfig, seed: int, run_dir: Path) -> TrainConfig:
    """The config of the single-seed run that one seed of the job is."""
    trainer = dataclasses.replace(cfg.trainer, seeds_per_job=1)
    return dataclasses.replace(
        cfg, seed=seed, trainer=trainer, run_dir=str(run_dir) if cfg.run_dir is not None else None
    )


class MultiSeedTrainer:
    """Trains seeds cfg.seed .. cfg.seed + seeds_per_job - 1 in lockstep; see the module docstring."""

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        seeds = [cfg.seed + k for k in range(cfg.trainer.seeds_per_job)]
        self.trainers = [
            Trainer(lane_config(cfg, seed, path), path)
            for seed, path in zip(seeds, lane_dirs(run_dir, cfg.seed, seeds))
        ]
        self.streams = {id(t): torch.cuda.Stream(t.device) if t.device.type == "cuda" else None for t in self.trainers}

    def on_stream(self, trainer: Trainer):
        stream = self.streams[id(trainer)]
        return torch.cuda.stream(stream) if stream is not None else nullcontext()

    def fit(self) -> dict[str, Any]:
        summaries: dict[int, dict[str, Any]] = {}
        failed: list[UserError] = []
        running: list[Trainer] = []
        try:
            for trainer in self.trainers:
                with self.on_stream(trainer):
                    try:
                        if trainer.open():
                            running.append(trainer)
                        else:
                            summaries[trainer.cfg.seed] = records.read_json(trainer.run_dir.summary)
                    except UserError as err:  # e.g. a directory holding another config: the other seeds go on
                        log.error("seed %d: %s", trainer.cfg.seed, err)
                        failed.append(err)
            signals = StopSignals()
            with signals.installed():
                while running:
                    if signals.should_stop(0):
                        for trainer in running:
                            trainer.stop(signals.received)
                        signals.hand_over(running[0].state.iteration)
                    for trainer in list(running):
                        with self.on_stream(trainer):
                            try:
                                trainer.step()
                                if not trainer.done:
                                    continue
                                summaries[trainer.cfg.seed] = trainer.finish()
                            except UserError as err:  # this seed failed (diverged): the others go on
                                log.error("seed %d: %s", trainer.cfg.seed, err)
                                trainer.fail(str(err))
                                failed.append(err)
                        trainer.close()
                        running.remove(trainer)
        finally:
            for trainer in running:
                trainer.close()
        if failed:
            raise failed[0]
        ordered = [summaries[trainer.cfg.seed] for trainer in self.trainers]
        return {**ordered[0], "lanes": ordered}
