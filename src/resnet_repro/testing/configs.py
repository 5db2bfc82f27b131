"""Compose the training config the way scripts/train.py does, for tests and notebooks."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ..config import register_configs

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"

# A Fashion-MNIST run small enough for a test on 2 cores: a few seconds per 50 iterations of ResNet-20.
TINY_RUN = [
    "data=fashion_mnist", "data.limit_train=2048", "data.limit_test=500", "data.val_size=500",
    "data.batch_size=32", "data.eval_batch_size=500", "trainer.progress=none",
]


def compose_train_config(overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)
