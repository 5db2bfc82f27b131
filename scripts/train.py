"""Train one network (or a sweep with -m): python scripts/train.py [overrides]. See configs/train.yaml."""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from resnet_repro.cli import exit_on_user_error, run_hydra
from resnet_repro.config import register_configs
from resnet_repro.errors import UserError

register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    from resnet_repro.engine.run import train  # imported here: `--help` and config errors need no torch

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.runtime.choices.get("hparams_search") and hydra_cfg.mode == RunMode.RUN:
        raise UserError(
            "hparams_search=... is a search of many runs: add -m (python scripts/train.py -m hparams_search=...)"
        )
    summary = train(cfg, hydra_cfg.runtime.output_dir)
    return summary.get("final_test_err")


if __name__ == "__main__":
    run_hydra(main)
