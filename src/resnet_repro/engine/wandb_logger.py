"""Weights & Biases: one W&B run per training run, its id kept in the run directory so a resumed run continues it.

W&B reads WANDB_* variables from the environment, and a bad one (WANDB_MODE empty, say) makes `wandb.init` raise a
validation report: `check_environment` names the variable and its allowed values in one line first. WANDB_MODE and
WANDB_DIR are W&B's own switches and win over logger.mode and the run directory."""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import string
import typing
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..config import TrainConfig, to_dict
from ..errors import UserError
from ..io import NO_ROOM, WriteFailed, atomic_write, os_error_in, probe_writable

log = logging.getLogger(__name__)

# W&B's rule for project names (wandb.Settings.validate_project), applied to entities too: they are path segments of
# the run's URL.
NAME_LIMIT, NAME_FORBIDDEN = 128, "/\\#?%:"
MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older names W&B still accepts


def wandb_modes() -> tuple[str, ...]:
    """The values W&B accepts for WANDB_MODE (its Settings.mode)."""
    import wandb

    return typing.get_args(wandb.Settings.model_fields["mode"].annotation)


def name_problem(value: str) -> str | None:
    if len(value) > NAME_LIMIT:
        return f"longer than {NAME_LIMIT} characters"
    found = sorted({c for c in value if c in NAME_FORBIDDEN})
    return f"it holds {' '.join(found)}" if found else None


def check_mode_variable() -> None:
    """One line if WANDB_MODE is set to a value W&B refuses (an empty one included)."""
    env = os.environ
    modes = wandb_modes()  # () if a later W&B stops listing them: W&B's own check then decides
    if "WANDB_MODE" in env and modes and env["WANDB_MODE"] not in modes:
        raise UserError(
            f"WANDB_MODE={env['WANDB_MODE']!r} in the environment is not a W&B mode: set it to one of "
            f"{', '.join(modes)}, or unset it (logger.mode then decides), or use logger=none"
        )


def check_environment(cfg: TrainConfig) -> None:
    """One line naming the WANDB_* variable (or logger key) that W&B would refuse, and what it accepts."""
    env = os.environ
    check_mode_variable()
    names = {"WANDB_PROJECT": env.get("WANDB_PROJECT"), "WANDB_ENTITY": env.get("WANDB_ENTITY")}
    names.update({"logger.project": cfg.logger.project, "logger.entity": cfg.logger.entity})
    for key, value in names.items():
        if value and (problem := name_problem(value)):
            where = "in the environment" if key.startswith("WANDB_") else "in the config"
            kind = "project" if key.endswith(("PROJECT", "project")) else "entity"
            raise UserError(
                f"{key}={value!r} {where} is not a W&B {kind} name ({problem}): W&B takes at most {NAME_LIMIT} "
                f"characters and none of {' '.join(NAME_FORBIDDEN)}; correct or unset it, or use logger=none"
            )
    if env.get("WANDB_DIR"):
        folder = Path(env["WANDB_DIR"])
        try:
            probe_writable(folder)
        except OSError as err:
            raise UserError(
                f"WANDB_DIR={str(folder)!r} in the environment is not a writable folder ({err.strerror}): set it to "
                f"one, or unset it (W&B's files then go to the run directory), or use logger=none"
            ) from None


@contextmanager
def out_of_room(folder: Path):
    """W&B's writes to its folder that fail for lack of room (a full disk), as io.WriteFailed naming the folder."""
    try:
        yield
    except Exception as err:
        cause = os_error_in(err)
        if cause is None or cause.errno not in NO_ROOM:
            raise
        raise WriteFailed(cause.errno, cause.strerror, str(folder)) from err


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
        check_environment(cfg)
        if os.environ.get("WANDB_MODE"):  # W&B's own switch wins
            mode = MODE_ALIASES.get(os.environ["WANDB_MODE"], os.environ["WANDB_MODE"])
        wandb_dir = Path(os.environ.get("WANDB_DIR") or run_dir)
        self.folder = wandb_dir / "wandb"
        if mode == "online" and not has_wandb_credentials():
            chosen = "WANDB_MODE=online" if os.environ.get("WANDB_MODE") else "logger.mode=online"
            raise UserError(
                f"{chosen} but no W&B credentials: run `wandb login` or set WANDB_API_KEY, or use logger.mode=offline"
            )
        if mode == "auto":
            mode = "online" if has_wandb_credentials() else "offline"
            if mode == "offline":
                log.info(
                    "W&B: no credentials, logging offline under %s/wandb; "
                    "upload later with `wandb sync %s/wandb/offline-run-*`",
                    wandb_dir,
                    wandb_dir,
                )
        import wandb
        from pydantic import ValidationError

        id_file = run_dir / "wandb_id.txt"
        # W&B's own id maker moved out of wandb.util (gone in 0.31): the same 8 lowercase letters and digits.
        run_id = (
            id_file.read_text().strip()
            if id_file.exists()
            else "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        )
        try:
            self.run = wandb.init(
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                mode=mode,
                id=run_id,
                resume="allow",
                dir=str(wandb_dir),
                group=cfg.experiment_name,
                name=f"{cfg.model.name}-seed{cfg.seed}",
                config=to_dict(cfg),
                reinit="finish_previous",
            )
        except (wandb.errors.Error, ValidationError) as err:  # a setting check_environment does not know
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"W&B cannot start ({first}): check the WANDB_* variables in the environment (`env | grep WANDB_`), "
                f"or use logger=none"
            ) from None
        if not id_file.exists():
            atomic_write(id_file, lambda f: f.write(f"{run_id}\n".encode()), make_folder=False)

    def log(self, row: dict[str, Any]) -> None:
        if self.run is not None:
            with self.reporting_failures():
                self.run.log(row, step=row["iter"])

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        """Close the W&B run. Its files that cannot be written (a full disk) end it as io.WriteFailed, naming
        W&B's folder: the next run of the same command continues the W&B run and writes its summary again."""
        if self.run is not None:
            run, self.run = self.run, None
            with self.reporting_failures():
                run.summary.update({k: v for k, v in summary.items() if not isinstance(v, dict)})
                run.finish(exit_code=exit_code)

    @contextmanager
    def reporting_failures(self):
        """A full disk fails the run (io.WriteFailed). A W&B service that has gone does not: SLURM's SIGTERM (scancel,
        preemption) reaches every process of the job, W&B's service too, which exits at once while the run still
        has its checkpoint to write. W&B only mirrors the run's own records, so the run goes on without it."""
        try:
            with out_of_room(self.folder):
                yield
        except ConnectionError as err:
            import wandb

            self.run = None
            # Forget the service: no traceback from W&B's exit hook, and a later run in this process starts a new one.
            with suppress(ConnectionError):
                wandb.teardown()
            log.warning(
                "W&B's service has gone (%s): this start logs no more to W&B; the run goes on, its records are in "
                "its directory, and the next start of the same command continues the W&B run",
                err,
            )
