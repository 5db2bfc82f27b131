"""How a sweep reports its failed runs, whatever ran them: one `error: N of M runs failed:` line on stderr, then each
failed run with its directory, its job, its error line and its log, and exit status 1."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from hydra.core.utils import JobReturn, JobStatus

_ERROR_LINE = re.compile(r"^(error: |[\w.]*(Error|Exception|Interrupt)\b)")


def failed_run(name: str, job: str, reason: str, log: object) -> str:
    """The lines of one failed run in the report."""
    return f"  {name}: {job}{': ' + reason if reason else ''}\n    log: {log}"


def exit_if_any_failed(failures: Sequence[str], total: int) -> None:
    """Print the report and exit with status 1 if a run failed (failures from failed_run)."""
    if failures:
        print(f"error: {len(failures)} of {total} runs failed:\n" + "\n".join(failures), file=sys.stderr, flush=True)
        raise SystemExit(1)


def task_error(ret: JobReturn) -> str | None:
    """The exception of a task that Hydra caught inside the job as one line; None if the task returned."""
    if ret.status != JobStatus.FAILED:
        return None
    try:
        ret.return_value  # noqa: B018 - raises the run's exception
    except Exception as err:  # noqa: BLE001 - whatever the run raised is what the report names
        return f"{type(err).__name__}: {err}"
    return None


def error_line(text: str) -> str:
    """The last line of a log that states an error (ours: `error: ...`; Python's: `SomeError: ...`)."""
    for line in reversed(text.splitlines()):
        if _ERROR_LINE.match(line.strip()):
            return line.strip()
    return ""
