"""What the scripts share: one-line errors for what a user can fix, and the training entry point under Hydra."""

from __future__ import annotations

import functools
import logging
import os
import sys

from .errors import UserError

log = logging.getLogger("resnet_repro")
USER_ERROR_EXIT = 2
_FULL_ERROR = "HYDRA_FULL_ERROR"
_hydra = {"task_started": False, "restore_env": False}


def _task_starts() -> None:
    """Called as the task starts: from here on Hydra reports exceptions its usual way (see run_hydra)."""
    _hydra["task_started"] = True
    if _hydra["restore_env"]:
        os.environ.pop(_FULL_ERROR, None)
        _hydra["restore_env"] = False


def exit_on_user_error(main):
    """Print a UserError as one line on stderr and exit with status 2; everything else is a bug and keeps its traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        _task_starts()
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT) from None

    return wrapper


def describe_config_error(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line reports as one line: the message, its cause, the options it lists."""
    lines = str(err).splitlines()
    text = next((line.strip() for line in lines if line.strip()), type(err).__name__).rstrip(".")
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        text += ": " + str(cause).strip().splitlines()[0].rstrip(".")
    options = [line.strip() for line in lines if line.startswith("\t") and "provider=" not in line]
    if options:
        text += f" (available: {', '.join(options)})"
    return f"config: {text} (every key is in src/resnet_repro/config.py; `--cfg job` prints the composed config)"


def run_hydra(hydra_main) -> None:
    """Call a @hydra.main function (whose task is wrapped in exit_on_user_error) so that what fails before the task
    runs is one line on stderr and exit status 2, like a UserError: a config that does not compose (unknown key,
    wrong type, unknown config group option) and an output directory that cannot be created or written.

    Hydra prints such errors as a multi-line report; with HYDRA_FULL_ERROR=1 it raises them instead, so we set it
    until the task starts (the task then runs under Hydra's usual reporting). A user's own HYDRA_FULL_ERROR=1 wins.
    """
    if os.environ.get(_FULL_ERROR) == "1":
        return hydra_main()
    os.environ[_FULL_ERROR] = "1"
    _hydra["restore_env"] = True
    try:
        return hydra_main()
    except Exception as err:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if _hydra["task_started"]:
            raise
        if isinstance(err, (HydraException, OmegaConfBaseException)):
            message = describe_config_error(err)
        elif isinstance(err, OSError):  # Hydra creates the run directory and its log file before the task runs
            message = (f"cannot write {err.filename or 'the output directory'} ({err.strerror or type(err).__name__}): "
                       f"the run directory must be writable; choose another hydra.run.dir or run_root")
        else:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None
    finally:
        if _hydra["restore_env"]:
            os.environ.pop(_FULL_ERROR, None)
            _hydra["restore_env"] = False
