"""Structured configs: every key the trainer reads, with its default and what it means.

Hydra merges the YAML files under configs/ into these dataclasses, so a misspelt key or a value of the
wrong type fails before anything runs. Defaults follow the paper (Section 4.2, CIFAR-10); every
deviation from the paper is an option named here and listed in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | fashion_mnist | imagenet
    root: str = "data/cifar10"  # holds cifar-10-batches-py/ (cifar10), the idx .gz files (fashion_mnist), train/ val/ (imagenet)
    download: bool = False  # let torchvision download the archive (needs network; checksums verified)
    split: str = "paper"  # paper: train 45k, validate on the held-out 5k | full: train on all 50k (Table 6)
    val_size: int = 5000  # size of the held-out validation split with split=paper
    batch_size: int = 128  # global mini-batch over all processes (paper: 128 on CIFAR, 256 on ImageNet)
    eval_batch_size: int = 1000  # batch for evaluation only; does not change results
    augment: bool = True  # paper: 4-pixel zero padding, random 32x32 crop, random horizontal flip
    limit_train: int = 0  # keep only the first N training images (0 = all); smoke runs and tests only
    limit_test: int = 0  # evaluate on the first N test images (0 = all); smoke runs and tests only
    # ImageNet only
    num_workers: int = 8  # DataLoader worker processes
    normalize: str = "mean_pixel"  # mean_pixel: subtract the per-pixel mean (paper) | mean_std: torchvision's normalization
    scale_min: int = 256  # shorter side resized at random in [scale_min, scale_max] (paper: 256..480)
    scale_max: int = 480
    crop_size: int = 224
    pca_lighting: float = 0.1  # std of AlexNet-style PCA colour noise (0 disables)
    gpu_decode: bool = False  # decode JPEGs on the GPU with torchvision.io.decode_jpeg (faster; not the paper's pipeline)
    mean_images: int = 10000  # mean_pixel: the per-pixel mean over this many training images (fixed subset; 0 = all), cached in data.root


@dataclass
class ModelConfig:
    name: str = "resnet20"  # plain20..plain110, resnet20..resnet1202 (any 6n+2 depth), plain18/34, resnet18..152
    family: str = "auto"  # auto | cifar | imagenet (resnet50 and resnet152 are also 6n+2 depths: say cifar to get those)
    shortcut: str = "A"  # A: identity, zero-padded when shapes change (paper, CIFAR) | B: projections there | C: all projections
    stride_in_1x1: bool = True  # bottlenecks: stride on the first 1x1 (paper) | False: on the 3x3 (torchvision)
    num_classes: Optional[int] = None  # None: taken from the data set


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    impl: str = "auto"  # auto: fused (GPU and CPU) | foreach | fused | loop (per-parameter, for benchmarks)


@dataclass
class ScheduleConfig:
    kind: str = "steps"  # steps: divide by `gamma` at `milestones` iterations (paper, CIFAR) | plateau (paper, ImageNet)
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])
    milestones_unit: str = "iters"  # iters | epochs (milestones times the data's batches per epoch; ImageNet's 30-epoch steps)
    gamma: float = 0.1
    warmup: bool = False  # paper, ResNet-110/1202: lr = warmup_lr until the training error falls below warmup_until_err
    warmup_lr: float = 0.01
    warmup_until_err: float = 0.8
    plateau_patience: int = 3  # plateau: evaluations without a relative improvement of plateau_threshold
    plateau_threshold: float = 0.001
    min_lr: float = 1e-5  # plateau: stop dividing below this


@dataclass
class TrainerConfig:
    max_iters: int = 64000  # paper: stop at 64k iterations
    eval_every: int = 1000  # iterations between evaluations (a line in metrics.jsonl each)
    checkpoint_every: int = 2000  # iterations between checkpoints (always one at the end)
    resume: str = "auto"  # auto: continue from checkpoints/last.pt if there | never | a checkpoint path
    device: str = "auto"  # auto: cuda if available, else cpu | cpu | cuda
    precision: str = "auto"  # auto: bf16 autocast on GPUs that support it, fp32 on CPU | bf16 | fp32
    channels_last: bool = True  # NHWC memory format for convolutions (faster with cuDNN and with oneDNN on CPUs)
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU; CPU runs are deterministic anyway)
    progress: str = "auto"  # auto: a progress bar on a terminal, plain log lines otherwise | bar | log | none
    # Several seeds in one job: seeds seed..seed+K-1, each written to its own ordinary run directory (seed<k>/ beside
    # the job's); on a GPU each seed runs on its own CUDA stream. Results equal K single-seed runs (engine/multiseed.py).
    seeds_per_job: int = 1
    cuda_graphs: bool = False  # GPU: replay each training step as one CUDA graph (no per-kernel launch cost); ignored on CPU


@dataclass
class LoggerConfig:
    kind: str = "none"  # wandb | none
    project: str = "resnet-repro"
    entity: Optional[str] = None
    mode: str = "auto"  # auto: online where credentials exist, otherwise offline | online | offline


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    experiment_name: str = "default"  # the group of runs: results/runs/<experiment_name>/<model>/seed<k>, the W&B group
    seed: int = 0
    run_root: str = "results/runs"
    # Set from Hydra's output directory (hydra.run.dir / hydra.sweep.dir + subdir) by scripts/train.py.
    run_dir: Optional[str] = None


def register_configs() -> None:
    """Make the schema known to Hydra: configs/train.yaml lists `train_schema` first in its defaults, so every
    YAML file merged on top of it is checked against these dataclasses."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
