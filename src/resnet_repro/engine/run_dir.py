"""One run's directory: the paths of its records and an exclusive lock, so that two processes never write one run.

The lock is an fcntl lock on `<run>/.lock`, released by the kernel when its process ends however it ends
(SIGKILL included): readers tell a live run from a dead one by trying it (`is_live`), not by the last status
written to summary.json.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from ..errors import ANOTHER_PLACE, UserError
from ..io import remove_stale_temporaries

LOCK_NAME = ".lock"


def is_live(path: Path) -> bool:
    """True while a process holds the lock of the run directory `path` (a trainer or an evaluation writing it)."""
    lock = Path(path) / LOCK_NAME
    try:
        with open(lock) as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    except OSError:  # unreadable: nothing can be said, so do not claim that a process is there
        return False
    return False


class RunDirectory:
    """The paths of one run (config.yaml, metrics.jsonl, summary.json, checkpoints/) and its lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.init = self.checkpoints / "init.pt"
        self._lock_file = None

    def lock(self) -> None:
        """Take the lock, or fail at once with who holds it; check that the directory is writable."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.path / LOCK_NAME, "a+")
        except OSError as err:
            raise UserError(
                f"output directory {self.path} is not writable ({err.strerror}): choose {ANOTHER_PLACE}"
            ) from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip()
            self.unlock()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise UserError(
                f"run directory {self.path} is in use by {who} (it holds {self.path / LOCK_NAME}): wait "
                f"for it to finish, or choose {ANOTHER_PLACE}"
            ) from None
        for folder in (self.path, self.checkpoints):  # fail now, not at the first checkpoint
            try:
                if folder.is_dir():
                    tempfile.NamedTemporaryFile(dir=folder, prefix=".probe.", suffix=".tmp").close()
            except OSError as err:
                self.unlock()
                raise UserError(
                    f"run directory {folder} is not writable ({err.strerror}): make it writable, "
                    f"or choose {ANOTHER_PLACE}"
                ) from None
        self._lock_file.truncate(0)
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()
        # Temporary files of atomic writes whose process was killed: nobody else writes here while we hold the lock.
        remove_stale_temporaries(self.path)
        remove_stale_temporaries(self.checkpoints)

    def removed(self) -> bool:
        """True once the locked directory, or its lock file, was removed (or replaced) while this process holds the
        lock: a scratch cleaner took the run away."""
        if self._lock_file is None:
            return False
        try:
            here, held = os.stat(self.path / LOCK_NAME), os.fstat(self._lock_file.fileno())
        except (FileNotFoundError, NotADirectoryError):
            return True
        return (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino)

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
