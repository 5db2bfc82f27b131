"""Weights & Biases: one W&B run per training run, its id kept in the run directory so a resumed run continues it."""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any

from ..config import TrainConfig, to_dict
from ..errors import UserError

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class RunLogger:
    """Logs to W&B when logger.kind=wandb, otherwise does nothing."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, enabled: bool):
        self.run = None
        kind, mode = cfg.logger.kind, str(cfg.logger.mode)
        if kind != "wandb" or not enabled:
            return
        if os.environ.get("WANDB_MODE") == "offline":  # W&B's own switch wins
            mode = "offline"
        if mode == "online" and not has_wandb_credentials():
            raise UserError(
                "logger.mode=online but no W&B credentials: run `wandb login` or set WANDB_API_KEY, "
                "or use logger.mode=offline"
            )
        if mode == "auto":
            mode = "online" if has_wandb_credentials() else "offline"
            if mode == "offline":
                log.info(
                    "W&B: no credentials, logging offline under %s/wandb; "
                    "upload later with `wandb sync %s/wandb/offline-run-*`",
                    run_dir,
                    run_dir,
                )
        import wandb

        id_file = run_dir / "wandb_id.txt"
        # W&B's own id maker moved out of wandb.util (gone in 0.31): the same 8 lowercase letters and digits.
        run_id = (
            id_file.read_text().strip()
            if id_file.exists()
            else "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        )
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            mode=mode,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            group=cfg.experiment_name,
            name=f"{cfg.model.name}-seed{cfg.seed}",
            config=to_dict(cfg),
            reinit="finish_previous",
        )

    def log(self, row: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(row, step=row["iter"])

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in summary.items() if not isinstance(v, dict)})
            self.run.finish(exit_code=exit_code)
            self.run = None
