"""Ours: run configs built as TrainConfig dataclasses, trainers set up as train() sets them up, on in-memory data."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import config
from ..config import DataConfig, Device, ModelConfig, ProgressStyle, Split, TrainConfig, TrainerConfig
from ..data.small_images import ImageArrays
from ..engine import records
from ..engine.multiseed import MultiSeedTrainer
from ..engine.trainer import Trainer
from .harness import BATCH, ROOT, Settings, fixed_batch, sync
from .inputs import image_data, synthetic_arrays


def train_config(settings: Settings, model_name: str, limit_test: int = 0, **trainer_options: Any) -> TrainConfig:
    """A CIFAR-10 run at batch 128 (split=full) of `model_name` with the paper's settings, on this device."""
    cfg = TrainConfig(
        data=DataConfig(root=settings.cifar_root, split=Split.full, batch_size=BATCH, limit_test=limit_test),
        model=ModelConfig(name=model_name),
        trainer=TrainerConfig(
            device=Device(settings.device.type),
            progress=ProgressStyle.none,
            compile=settings.compile,
            cuda_graphs=settings.cuda_graphs,
            **trainer_options,
        ),
    )
    return config.load(cfg, processes=1)


def experiment_config(experiment: str, overrides: list[str]) -> TrainConfig:
    """configs/experiment/<experiment>.yaml composed as scripts/train.py composes it (the protocol is defined there)."""
    from hydra import compose, initialize_config_dir

    config.register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return config.load(compose("train", overrides=[f"experiment={experiment}", *overrides]), processes=1)


def build_trainer(settings: Settings, model_name: str, run_dir: Path, **trainer_options: Any) -> Trainer:
    """A Trainer set up as `train()` sets it up (model, optimizer, precision, memory format, compile), on as few
    images as the data object takes: the step cases feed it a fixed batch. `trainer_options`: TrainerConfig keys."""
    cfg = train_config(settings, model_name, **trainer_options)
    trainer = Trainer(
        cfg, run_dir, data=image_data(cfg, settings.device, (synthetic_arrays(BATCH, 0), synthetic_arrays(16, 1)))
    )
    trainer.build()
    return trainer


def trainer_step(
    settings: Settings, model_name: str, run_dir: Path, **trainer_options: Any
) -> tuple[Trainer, Callable[[], torch.Tensor]]:
    """The trainer's own step on a fixed batch (Trainer.train_step, or its CUDA graph with --cuda-graphs on a GPU)."""
    trainer = build_trainer(settings, model_name, run_dir, **trainer_options)
    images, labels = fixed_batch(settings.device)
    trainer.set_lr(0)  # what the loop does before each step
    step = trainer.graphed if trainer.use_cuda_graphs else trainer.train_step
    return trainer, lambda: step(images, labels)


def fit(
    cfg: TrainConfig,
    run_dir: Path,
    device: torch.device,
    arrays: tuple[ImageArrays, ImageArrays],
    budget_s: float | None = None,
) -> dict:
    """train()'s path for `cfg` (one Trainer, or one per seed for seeds_per_job > 1), every seed on `arrays`.
    `budget_s` (one seed only): stop at the first evaluation after that much training time (see fit_within)."""
    if cfg.trainer.seeds_per_job == 1:
        trainer = Trainer(cfg, run_dir, data=image_data(cfg, device, arrays))
        return trainer.fit() if budget_s is None else fit_within(trainer, budget_s)
    if budget_s is not None:
        raise ValueError("a time budget is for single-seed runs")
    job = MultiSeedTrainer(cfg, run_dir)
    for trainer in job.trainers:
        trainer.data = image_data(trainer.cfg, trainer.device, arrays)  # each seed's data order is its own
    sync(device)  # the data was made on the default stream; each seed reads it from its own
    return job.fit()


def fit_within(trainer: Trainer, budget_s: float) -> dict:
    """Trainer.fit() that also stops at the first evaluation after `budget_s` seconds of training, so that the run's
    records end at an evaluation and a benchmark can extrapolate from them. The summary's `iters` and `status`
    ("interrupted" when the budget stopped it) say how far it got."""
    if not trainer.open():
        return records.read_json(trainer.run_dir.summary)
    try:
        deadline = time.perf_counter() + budget_s
        eval_every = trainer.cfg.trainer.eval_every
        while not trainer.done:
            trainer.step()
            if trainer.state.iteration % eval_every == 0 and time.perf_counter() > deadline:
                break
        if trainer.done:
            return trainer.finish()
        summary = trainer.write_summary("interrupted")
        trainer.logger.finish({}, exit_code=1)
        return summary
    finally:
        trainer.close()
