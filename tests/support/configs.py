"""Compose the training config the way scripts/train.py does, and the overrides of a run small enough for a test."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from resnet_repro.config import register_configs

from . import FASHION_MNIST_DIR, FASHION_MNIST_ENV, REPO

CONFIG_DIR = REPO / "configs"

# A Fashion-MNIST run small enough for a test on 2 cores: a few seconds per 50 iterations of ResNet-20.
TINY_RUN = [
    "data=fashion_mnist",
    *([f"data.root={FASHION_MNIST_DIR}"] if os.environ.get(FASHION_MNIST_ENV) else []),  # else configs/data's
    "data.limit_train=2048",
    "data.limit_test=500",
    "data.val_size=500",
    "data.batch_size=32",
    "data.eval_batch_size=500",
    "trainer.progress=none",
]


def resnet8_run(
    data_root: Path | str, *, limit_train: int, max_iters: int, eval_every: int, checkpoint_every: int
) -> list[str]:
    """Overrides of the training command's quickest real run: ResNet-8 (the smallest CIFAR net) on `limit_train`
    Fashion-MNIST images from `data_root`, 128 validation and 128 test images, progress logged to train.log."""
    values = {
        "data": "fashion_mnist",
        "data.root": data_root,
        "data.limit_train": limit_train,
        "data.limit_test": 128,
        "data.val_size": 128,
        "data.batch_size": 32,
        "data.eval_batch_size": 128,
        "model.name": "resnet8",
        "model.family": "cifar",
        "trainer.max_iters": max_iters,
        "trainer.eval_every": eval_every,
        "trainer.checkpoint_every": checkpoint_every,
        "trainer.progress": "log",
    }
    return [f"{key}={value}" for key, value in values.items()]


# launcher=slurm on the test node of support/slurm_cluster.py: no GPUs, 2 CPUs, one CPU per job (so 2 jobs run side by
# side). timeout_min <= 10 makes submitit count every USR2 as a time limit, hence max_num_timeout=2 (docs/cluster.md,
# "Short time limits").
SLURM_TEST_NODE = [
    "launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.timeout_min=5",
    "hydra.launcher.max_num_timeout=2",
    'hydra.launcher.setup=["export OMP_NUM_THREADS=1"]',
]


def compose_train_config(overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)
