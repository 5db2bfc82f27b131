"""The config boundary: every value a user can set has a range or a choice, checked by config.load before anything
is loaded or written (the real command's one-line errors for these are in test_bad_input.py)."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from resnet_repro import config
from resnet_repro.errors import UserError


def load(*overrides: str, processes: int = 1) -> config.TrainConfig:
    merged = OmegaConf.merge(OmegaConf.structured(config.TrainConfig), OmegaConf.from_dotlist(list(overrides)))
    return config.load(merged, processes=processes)


def numeric_keys(node=config.TrainConfig, prefix: str = "") -> list[str]:
    """Every int and float key of the schema, as a dotted path."""
    keys = []
    for f in dataclasses.fields(node):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys += numeric_keys(type(default), f"{prefix}{f.name}.")
        elif f.type in ("int", "float", "int | None") and not isinstance(default, bool):
            keys.append(prefix + f.name)
    return keys


def test_the_defaults_pass():
    cfg = load()
    assert isinstance(cfg, config.TrainConfig) and isinstance(cfg.trainer, config.TrainerConfig)
    assert cfg.trainer.precision == "auto" and cfg.data.name == "cifar10"


def test_every_numeric_key_refuses_a_negative_value():
    """No number a user can set is unchecked: -1 is refused for every one, with the key named in the message."""
    keys = numeric_keys()
    assert {"data.batch_size", "optim.lr", "trainer.max_iters", "seed", "model.num_classes"} <= set(keys)
    for key in keys:
        with pytest.raises(UserError, match=key.replace(".", r"\.")):
            load(f"{key}=-1", "schedule.warmup=true")  # warm-up on: its keys are checked only then


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.batch_size=0", "data.batch_size=0: must be a positive whole number"),
        ("data.eval_batch_size=0", "data.eval_batch_size=0: must be a positive"),
        ("trainer.eval_every=0", "trainer.eval_every=0: must be a positive"),
        ("trainer.checkpoint_every=0", "trainer.checkpoint_every=0: must be a positive"),
        ("trainer.max_iters=0", "trainer.max_iters=0: must be a positive"),
        ("trainer.max_iters=-5", "trainer.max_iters=-5: must be a positive"),
        ("trainer.seeds_per_job=0", "trainer.seeds_per_job=0"),
        ("optim.lr=0", "optim.lr=0.0: the learning rate must be greater than 0"),
        ("optim.lr=-1", "optim.lr=-1.0: the learning rate must be greater than 0"),
        ("optim.momentum=1", "optim.momentum=1.0: choose a value in [0, 1)"),
        ("seed=-1", "seed=-1: must be 0 or more"),
        ("data.val_size=50000", "data.val_size=50000 leaves no training images: cifar10 has 50000"),
        ("data.val_size=0", "data.val_size=0: must be positive with data.split=paper"),
        ("data.batch_size=60000", "data.batch_size=60000 is larger than the 45000 training images"),
        ("schedule.milestones=[48000,32000]", "must be positive and increasing"),
        ("schedule.gamma=0", "schedule.gamma=0.0: the lr factor must be greater than 0"),
        ("model.num_classes=5", "model.num_classes=5 does not cover the 10 classes of cifar10"),
        ("data.crop_size=300", "need data.crop_size <= data.scale_min <= data.scale_max"),
    ],
)
def test_a_value_out_of_range_is_refused(override, fragment):
    with pytest.raises(UserError) as raised:
        load(override)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_val_size_is_checked_against_the_data_set_and_the_limit():
    load("data.name=fashion_mnist", "data.val_size=50000")  # 60k training images: 10k remain
    with pytest.raises(UserError, match="larger than the 128 training images"):
        load("data.limit_train=128", "data.batch_size=256")


def test_cross_field_rules():
    with pytest.raises(UserError, match="cuda_graphs and trainer.compile exclude each other"):
        load("trainer.cuda_graphs=true", "trainer.compile=true")
    with pytest.raises(UserError, match="needs the fused SGD step"):
        load("trainer.cuda_graphs=true", "optim.impl=foreach")
    with pytest.raises(UserError, match="does not log to W&B yet"):
        load("trainer.seeds_per_job=3", "logger.kind=wandb")
    with pytest.raises(UserError, match="data.batch_size=128 is not divisible by the 3 processes"):
        load(processes=3)
    with pytest.raises(UserError, match="seeds_per_job > 1 runs in one process"):
        load("trainer.seeds_per_job=2", processes=2)
    load(processes=4)
    with pytest.raises(UserError, match="data.evaluate_test=false evaluates the validation split only"):
        load("data.evaluate_test=false", "data.split=full")
    with pytest.raises(UserError, match="data.evaluate_test=false"):
        load("data.evaluate_test=false", "data.name=imagenet")
    load("data.evaluate_test=false")  # split=paper: the validation split is evaluated


def test_closed_choices_are_enums_that_list_the_valid_values():
    with pytest.raises(ValidationError, match=r"expected one of \[auto, bf16, fp32\]"):
        OmegaConf.merge(OmegaConf.structured(config.TrainConfig), OmegaConf.from_dotlist(["trainer.precision=bf61"]))
    cfg = load("trainer.precision=bf16", "model.shortcut=B")
    assert cfg.trainer.precision == "bf16" and f"{cfg.model.shortcut}" == "B"
    assert config.to_dict(cfg)["trainer"]["precision"] == "bf16"  # records store plain strings


def test_an_unknown_key_is_refused():
    cfg = OmegaConf.to_container(OmegaConf.structured(config.TrainConfig))
    cfg["trainer"]["max_iter"] = 5
    with pytest.raises(UserError, match="unknown config key trainer.max_iter"):
        config.load(OmegaConf.create(cfg))
