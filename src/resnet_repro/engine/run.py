"""train(): the entry point of a run. The composed config passes the config boundary (config.load) here, once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .. import config
from .multiseed import MultiSeedTrainer
from .trainer import Trainer


def train(cfg: DictConfig | config.TrainConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train (or resume, or skip if complete) the run in `run_dir`; return its summary."""
    cfg = config.load(cfg)
    # A full or vanished run directory fails the log file's writes too: the run's own error line says what happened,
    # where logging would print a traceback for every line it cannot write to train.log.
    logging.raiseExceptions = False
    if cfg.trainer.seeds_per_job > 1:
        return MultiSeedTrainer(cfg, Path(run_dir)).fit()
    return Trainer(cfg, Path(run_dir)).fit()
