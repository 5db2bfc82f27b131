"""Structured configs: every key a run reads, declared once with its default and a one-line meaning.

These dataclasses are the only home of defaults: the YAML files under configs/ set only what differs. Hydra
checks every composed config against them, so a misspelt key, a wrong type or a value outside a closed choice
(an Enum below) fails at composition with the valid choices listed. `load()` is called once at the start of a run:
it turns the composed config into these dataclasses and `check_invariants()` applies every range and cross-field
rule, before anything is loaded or written. Defaults follow the paper (Section 4.2, CIFAR-10); every deviation
from it is an option named here and listed in the README.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from functools import reduce

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .errors import UserError


class Choice(str, Enum):
    """A closed choice: compares equal to its name, prints as it, and is written to records as a plain string."""

    def __str__(self) -> str:
        return self.value


Dataset = Choice("Dataset", {n: n for n in ("cifar10", "cifar100", "fashion_mnist", "imagenet")})
Split = Choice("Split", {n: n for n in ("paper", "full")})
Normalize = Choice("Normalize", {n: n for n in ("mean_pixel", "mean_std")})
Family = Choice("Family", {n: n for n in ("auto", "cifar", "imagenet")})
Shortcut = Choice("Shortcut", {n: n for n in ("A", "B", "C")})
OptimizerImpl = Choice("OptimizerImpl", {n: n for n in ("auto", "foreach", "fused", "loop")})
ScheduleKind = Choice("ScheduleKind", {n: n for n in ("steps", "plateau")})
MilestoneUnit = Choice("MilestoneUnit", {n: n for n in ("iters", "epochs")})
Device = Choice("Device", {n: n for n in ("auto", "cpu", "cuda")})
Precision = Choice("Precision", {n: n for n in ("auto", "bf16", "fp32")})
ProgressStyle = Choice("ProgressStyle", {n: n for n in ("auto", "bar", "log", "none")})
LoggerKind = Choice("LoggerKind", {n: n for n in ("wandb", "none")})
WandbMode = Choice("WandbMode", {n: n for n in ("auto", "online", "offline")})

# Training-set sizes of the data sets as published; data.limit_train and data.val_size are checked against them.
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "fashion_mnist": 60_000, "imagenet": 1_281_167}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10, "imagenet": 1000}


@dataclass
class DataConfig:
    name: Dataset = Dataset.cifar10  # cifar10 | cifar100 | fashion_mnist | imagenet
    # holds cifar-10-batches-py/ (cifar10), cifar-100-python/ (cifar100), the idx .gz files (fashion_mnist),
    # train/ and val/ (imagenet)
    root: str = "data/cifar10"
    download: bool = False  # let torchvision download the archive (needs network; checksums verified)
    split: Split = Split.paper  # paper: train 45k, validate on the held-out 5k | full: train on all 50k (Table 6)
    val_size: int = 5000  # size of the held-out validation split with split=paper
    # false: evaluate the validation split only (split=paper), as search trials do: the test set is never evaluated
    evaluate_test: bool = True
    batch_size: int = 128  # global mini-batch over all processes (paper: 128 on CIFAR, 256 on ImageNet)
    eval_batch_size: int = 1000  # batch for evaluation only (per process); does not change results
    augment: bool = True  # paper: 4-pixel zero padding, random 32x32 crop, random horizontal flip
    limit_train: int = 0  # keep only the first N training images (0 = all); smoke runs and tests only
    limit_test: int = 0  # evaluate on the first N test (and validation) images (0 = all); smoke runs and tests only
    # ImageNet only
    # DataLoader worker processes per training process (decoding and resizing run there); null: one fewer than the
    # CPUs this process may use (its affinity), at most 8, so that a small machine is not oversubscribed
    num_workers: int | None = None
    normalize: Normalize = (
        Normalize.mean_pixel
    )  # mean_pixel: subtract the per-pixel mean (paper) | mean_std: torchvision's
    scale_min: int = (
        256  # shorter side resized at random in [scale_min, scale_max] (paper: 256..480); test views use it
    )
    scale_max: int = 480
    crop_size: int = 224
    pca_lighting: float = 0.1  # std of AlexNet-style PCA colour noise (0 disables)
    gpu_decode: bool = False  # decode JPEGs on the GPU with nvJPEG (faster; not bit-identical to the CPU path)
    mean_images: int = 10000  # mean_pixel: the per-pixel mean over this many training images (0 = all), cached in root


@dataclass
class ModelConfig:
    name: str = "resnet20"  # plain20..plain110, resnet20..resnet1202 (any 6n+2 depth), plain18/34, resnet18..152
    family: Family = Family.auto  # auto | cifar | imagenet (resnet50 and resnet152 are also 6n+2 depths)
    shortcut: Shortcut = (
        Shortcut.A
    )  # A: identity, zero-padded (paper, CIFAR) | B: projections there | C: all projections
    stride_in_1x1: bool = True  # bottlenecks: stride on the first 1x1 (paper) | False: on the 3x3 (torchvision)
    num_classes: int | None = None  # None: taken from the data set


@dataclass
class OptimConfig:
    lr: float = 0.1  # paper, Sections 3.4 and 4.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    # auto and fused: engine/sgd.py; foreach and loop (per parameter): torch.optim.SGD, for the benchmarks
    impl: OptimizerImpl = OptimizerImpl.auto


@dataclass
class ScheduleConfig:
    kind: ScheduleKind = ScheduleKind.steps  # steps: divide by gamma at milestones (paper, CIFAR) | plateau (ImageNet)
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])  # paper, CIFAR: 32k and 48k iterations
    milestones_unit: MilestoneUnit = MilestoneUnit.iters  # iters | epochs (times the data's batches per epoch)
    gamma: float = 0.1
    warmup: bool = False  # paper, ResNet-110/1202: lr = warmup_lr until the training error falls below warmup_until_err
    warmup_lr: float = 0.01
    warmup_until_err: float = 0.8
    plateau_patience: int = 3  # plateau: evaluations without a relative improvement of plateau_threshold
    plateau_threshold: float = 0.001
    min_lr: float = 1e-5  # plateau: stop dividing below this


@dataclass
class TrainerConfig:
    max_iters: int = 64000  # paper, CIFAR: stop at 64k iterations
    eval_every: int = 1000  # iterations between evaluations (a line in metrics.jsonl each; the curves of Figs 1 and 6)
    checkpoint_every: int = 2000  # iterations between checkpoints (always one at the end, and at a stop signal)
    resume: str = "auto"  # auto: continue from checkpoints/last.pt if there | never | a checkpoint path
    device: Device = Device.auto  # auto: cuda if available, else cpu | cpu | cuda
    # auto: bf16 autocast where the chip computes bf16 (GPUs that support it; CPUs with AVX-512 BF16 or AMX, except for
    # plain nets deeper than 20 layers: engine/setup.py), else fp32
    precision: Precision = Precision.auto  # auto | bf16 | fp32
    channels_last: bool = True  # NHWC memory format for convolutions (faster with cuDNN and with oneDNN on CPUs)
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU; CPU runs are deterministic anyway)
    progress: ProgressStyle = ProgressStyle.auto  # auto: a bar on a terminal, log lines otherwise | bar | log | none
    # Seeds seed..seed+K-1 in one job, each in its own ordinary run directory (seed<k>/ beside the job's); on a GPU
    # each seed runs on its own CUDA stream. Results equal K single-seed runs (engine/multiseed.py).
    seeds_per_job: int = 1
    cuda_graphs: bool = False  # GPU: replay each training step as one CUDA graph (no per-kernel launch cost)


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.none  # wandb | none
    project: str = "resnet-repro"
    entity: str | None = None
    mode: WandbMode = WandbMode.auto  # auto: online where credentials exist, otherwise offline | online | offline


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
    run_dir: str | None = None


def register_configs() -> None:
    """Make the schema known to Hydra: configs/train.yaml lists `train_schema` first in its defaults, so every
    YAML file merged on top of it is checked against these dataclasses."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def processes_from_env() -> int:
    """The number of training processes this run is launched with (torchrun's WORLD_SIZE, SLURM's tasks)."""
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def load(cfg: DictConfig | TrainConfig, processes: int | None = None) -> TrainConfig:
    """The composed config as TrainConfig dataclasses, with every rule of check_invariants() applied."""
    if not isinstance(cfg, TrainConfig):
        try:
            merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.to_container(cfg, resolve=True))
            cfg = OmegaConf.to_object(merged)
        except ConfigKeyError as err:  # `+key=value` adds a key that Hydra does not check against the schema
            raise UserError(
                f"unknown config key {err.full_key}: no such setting (the keys are in "
                f"src/resnet_repro/config.py and `python scripts/train.py --cfg job` prints them)"
            ) from None
        except OmegaConfBaseException as err:
            raise UserError(f"config: {str(err).splitlines()[0]} (key {getattr(err, 'full_key', '?')})") from None
    check_invariants(cfg, processes_from_env() if processes is None else processes)
    return cfg


def to_dict(cfg: TrainConfig) -> dict:
    """The config as plain Python values (Enums as their names): what run records and checkpoints store."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def check_invariants(cfg: TrainConfig, processes: int = 1) -> None:
    """Every range and cross-field rule of a run, checked before anything is loaded or written."""
    data, model, optim, schedule, trainer = cfg.data, cfg.model, cfg.optim, cfg.schedule, cfg.trainer

    def require(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    def value(key: str):
        return reduce(getattr, key.split("."), cfg)

    for key in (
        "data.batch_size",
        "data.eval_batch_size",
        "data.scale_min",
        "data.crop_size",
        "trainer.max_iters",
        "trainer.eval_every",
        "trainer.checkpoint_every",
        "trainer.seeds_per_job",
        "schedule.plateau_patience",
    ):
        require(value(key) > 0, f"{key}={value(key)}: must be a positive whole number")
    for key in (
        "data.limit_train",
        "data.limit_test",
        "data.mean_images",
        "seed",
        "optim.weight_decay",
        "data.pca_lighting",
        "schedule.plateau_threshold",
        "schedule.min_lr",
    ):
        require(value(key) >= 0, f"{key}={value(key)}: must be 0 or more")
    require(
        data.num_workers is None or data.num_workers >= 0,
        f"data.num_workers={data.num_workers}: must be 0 or more (null: chosen from the CPUs)",
    )
    require(optim.lr > 0, f"optim.lr={optim.lr}: the learning rate must be greater than 0 (paper: 0.1)")
    require(0 <= optim.momentum < 1, f"optim.momentum={optim.momentum}: choose a value in [0, 1) (paper: 0.9)")
    require(not optim.nesterov or optim.momentum > 0, "optim.nesterov=true needs optim.momentum > 0")
    require(schedule.gamma > 0, f"schedule.gamma={schedule.gamma}: the lr factor must be greater than 0 (paper: 0.1)")
    require(
        all(m > 0 for m in schedule.milestones) and list(schedule.milestones) == sorted(schedule.milestones),
        f"schedule.milestones={list(schedule.milestones)}: must be positive and increasing",
    )
    if schedule.warmup:
        require(schedule.warmup_lr > 0, f"schedule.warmup_lr={schedule.warmup_lr}: must be greater than 0")
        require(
            0 < schedule.warmup_until_err <= 1,
            f"schedule.warmup_until_err={schedule.warmup_until_err}: choose an error rate in (0, 1]",
        )
    require(
        data.crop_size <= data.scale_min <= data.scale_max,
        f"need data.crop_size <= data.scale_min <= data.scale_max, got {data.crop_size}, {data.scale_min}, "
        f"{data.scale_max} (paper: 224, 256, 480)",
    )

    require(
        data.evaluate_test or (data.split == "paper" and data.name != "imagenet"),
        "data.evaluate_test=false evaluates the validation split only: it needs data.split=paper (ImageNet has no "
        "validation split apart from its test set)",
    )

    # Sizes against the data set's (as published; data.limit_train keeps fewer).
    train_size = TRAIN_SIZES[data.name]
    if data.limit_train:
        train_size = min(train_size, data.limit_train)
    if data.split == "paper" and data.name != "imagenet":
        require(
            data.val_size > 0,
            f"data.val_size={data.val_size}: must be positive with data.split=paper (or use data.split=full)",
        )
        require(
            data.val_size < TRAIN_SIZES[data.name],
            f"data.val_size={data.val_size} leaves no training images: {data.name} has "
            f"{TRAIN_SIZES[data.name]}; choose a smaller val_size, or data.split=full",
        )
        train_size = min(train_size, TRAIN_SIZES[data.name] - data.val_size)
    require(
        data.batch_size <= train_size,
        f"data.batch_size={data.batch_size} is larger than the {train_size} training images: choose a smaller batch",
    )
    require(
        model.num_classes is None or model.num_classes >= NUM_CLASSES[data.name],
        f"model.num_classes={model.num_classes} does not cover the {NUM_CLASSES[data.name]} classes of "
        f"{data.name}: leave it unset (null) to take the data set's",
    )
    require(
        data.batch_size % processes == 0,
        f"data.batch_size={data.batch_size} is not divisible by the {processes} processes: choose a multiple of "
        f"{processes}, or another number of processes",
    )

    # Options that exclude each other.
    require(
        not (trainer.cuda_graphs and trainer.compile),
        "trainer.cuda_graphs and trainer.compile exclude each other: choose one",
    )
    require(
        not (trainer.cuda_graphs and processes > 1),
        "trainer.cuda_graphs does not support several processes (DDP) yet: run without it",
    )
    require(
        not (trainer.cuda_graphs and optim.impl not in ("auto", "fused")),
        "trainer.cuda_graphs needs the fused SGD step: set optim.impl=auto or fused",
    )
    if trainer.seeds_per_job > 1:
        require(
            processes == 1, "trainer.seeds_per_job > 1 runs in one process: launch it without torchrun or srun tasks"
        )
        require(
            cfg.logger.kind != "wandb",
            "trainer.seeds_per_job > 1 does not log to W&B yet (one W&B run per "
            "process): use logger=none, or one job per seed",
        )
