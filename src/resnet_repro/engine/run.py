"""train(): the entry point of a run. The composed config passes the config boundary (config.load) here, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .. import config
from .multiseed import MultiSeedTrainer
from .trainer import Trainer


def train(cfg: DictConfig | config.TrainConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train (or resume, or skip if complete) the run in `run_dir`; return its summary."""
    cfg = config.load(cfg)
    if cfg.trainer.seeds_per_job > 1:
        return MultiSeedTrainer(cfg, Path(run_dir)).fit()
    return Trainer(cfg, Path(run_dir)).fit()
