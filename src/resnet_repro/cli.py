"""The scripts' error contract: what a user can fix is one `error:` line on stderr and exit status 2; a bug keeps its
traceback.

Errors inside the task are UserErrors (`exit_on_user_error`). Errors before it (a config that does not compose, an
output directory that cannot be written) come from Hydra, which prints them as a multi-line report unless
HYDRA_FULL_ERROR=1 makes it raise them: `run_hydra` sets it until the task starts, or until a launcher submits the
jobs (they must not inherit it), and turns what is raised into the one line.
"""

from __future__ import annotations

import functools
import os
import sys

from .errors import ANOTHER_PLACE, UserError

USER_ERROR_EXIT = 2
FULL_ERROR = "HYDRA_FULL_ERROR"
_set_here = False  # HYDRA_FULL_ERROR=1 is ours, not the user's own choice (which then stays for everything)


def hydra_reports_as_usual() -> None:
    """From here on Hydra reports errors its usual way: called as the task starts and before jobs are submitted."""
    global _set_here
    if _set_here:
        os.environ.pop(FULL_ERROR, None)
        _set_here = False


def exit_on_user_error(main):
    """Wrap a @hydra.main task: a UserError becomes one line on stderr and exit status 2."""

    @functools.wraps(main)
    def task(*args, **kwargs):
        hydra_reports_as_usual()
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT) from None

    return task


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


def where_runs_go(overrides: list[str]) -> str:
    """What placed the run directory that cannot be written (the override on the command line, else run_root's
    value in the config), and how to place it elsewhere."""
    for arg in overrides:
        key, _, value = arg.lstrip("+").partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir"):
            return (
                f"the run directory ({key}={value}) must be writable; choose another {key}, or leave it out and "
                f"choose {ANOTHER_PLACE}"
            )
        if key == "run_root":
            return f"the run directory (under run_root={value}) must be writable; choose {ANOTHER_PLACE}"
    return f"the run directory (under the config's run_root) must be writable; choose {ANOTHER_PLACE}"


def run_hydra(hydra_main) -> None:
    """Call a @hydra.main function whose task is wrapped in exit_on_user_error (see the module docstring)."""
    global _set_here
    if os.environ.get(FULL_ERROR) != "1":
        os.environ[FULL_ERROR], _set_here = "1", True
    try:
        return hydra_main()
    except Exception as err:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if not _set_here:  # the task had started (Hydra reported it), or the user asked for full errors
            raise
        if isinstance(err, UserError):  # raised by a launcher before any job starts
            message = str(err)
        elif isinstance(err, (HydraException, OmegaConfBaseException)):
            message = describe_config_error(err)
        elif isinstance(err, OSError):  # Hydra creates the run directory and its log file before the task runs
            message = (
                f"cannot write {err.filename or 'the output directory'} ({err.strerror or type(err).__name__}): "
                f"{where_runs_go(sys.argv[1:])}"
            )
        else:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None
    finally:
        hydra_reports_as_usual()
