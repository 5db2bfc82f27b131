"""Files written atomically: a crash never leaves half a file behind under the real name. A write that fails (a full
disk, a read-only or vanished folder) raises WriteFailed, which names the file that was being written."""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

TMP_SUFFIX = ".tmp"
# A write refused for lack of room: what happened, and what to do before running the same command again.
NO_ROOM = {
    errno.ENOSPC: ("no space left on device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space"),
    errno.EFBIG: ("file size limit exceeded", "raise the limit (ulimit -f)"),
}


class WriteFailed(OSError):
    """An OSError while writing `filename` (the real name, never a temporary one), raised by atomic_write and
    append_bytes: its errno says why (ENOSPC, EDQUOT, EROFS, ENOENT...)."""


def os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind `err`: itself, or one it was raised from or while handling (torch's zip writer reports a
    failed write as a RuntimeError raised while handling the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def writing(path: Path):
    """Turn an OSError while writing `path` into a WriteFailed naming it."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as err:
        cause = os_error_in(err)
        if cause is None:
            raise
        raise WriteFailed(cause.errno, cause.strerror or str(cause), str(path)) from err


def atomic_write(path: Path, write, make_folder: bool = True) -> None:
    """Call write(file) on a temporary file beside `path`, flush and fsync it, then rename it over `path`. A failure
    leaves `path` as it was and no temporary file. `make_folder=False`: the folder must exist (a run directory that
    was removed is an error, not made again)."""
    path = Path(path)
    with writing(path):
        if make_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)


def append_bytes(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created if missing, in a folder that must exist) and fsync it. A failure leaves the
    file as it was: never part of a line."""
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)  # frees space: never fails for a lack of it
                except OSError:
                    pass  # not a regular file (a device)
                raise
        finally:
            os.close(fd)


def probe_writable(folder: Path) -> None:
    """Make `folder` if missing and write (and drop) a file in it: raises the OSError of a folder that cannot be
    written (read-only, not permitted, full)."""
    folder.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=folder).close()


def writable_folder(folder: Path, key: str) -> Path:
    """`folder`, made if missing, once a file could be written in it; else a UserError naming it and `key`, the
    option that chose it. Called before any work whose results go there."""
    folder = Path(folder)
    try:
        probe_writable(folder)
    except OSError as err:
        raise UserError(
            f"cannot write to {folder} ({err.strerror or type(err).__name__}): {key} must name a writable folder"
        ) from None
    return folder


@contextmanager
def incomplete_without_room(marker: Path, result: str, incomplete: str):
    """A full disk while writing a result whose `marker` file is written last, to say the result is whole: the marker
    is removed (a half result never looks complete) and the error is one line. `result` names what was being written,
    `incomplete` says what is left."""
    try:
        yield
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        Path(marker).unlink(missing_ok=True)
        what, fix = NO_ROOM[err.errno]
        raise UserError(
            f"{what} writing {err.filename or result}; {incomplete}: {fix} and run the same command"
        ) from None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in `folder` (call with the run locked)."""
    stale = sorted(Path(folder).glob(f".*{TMP_SUFFIX}")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
