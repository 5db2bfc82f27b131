"""Real file-system faults for tests: a small tmpfs that a test fills up, a read-only folder.

Mounting needs root (CAP_SYS_ADMIN); where the kernel refuses it, the tests that need it skip with the reason, or
fail in CI (RESNET_REPRO_FAIL_ON_SKIP=1, support.system.require_system). A process that is not root gets a
read-only folder from its mode instead (root ignores modes)."""

from __future__ import annotations

import errno
import functools
import os
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .system import require_system


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=True, capture_output=True)


@functools.cache
def mount_refused() -> str:
    """Why this process cannot mount a tmpfs ("" if it can), tried once on a scratch folder."""
    folder = Path(tempfile.mkdtemp(prefix="mount-probe."))
    try:
        result = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder))
        if result.returncode:
            return f"cannot mount a tmpfs here (`mount -t tmpfs` as uid {os.geteuid()}: {result.stderr.strip()})"
        _umount(folder)
        return ""
    except FileNotFoundError:
        return "cannot mount a tmpfs here: no `mount` command"
    finally:
        folder.rmdir()


def require_mount() -> None:
    reason = mount_refused()
    require_system(not reason, f"{reason}; run the tests as root (CI does)")


@contextmanager
def tmpfs(folder: Path, size: str):
    """A tmpfs of `size` (mount's syntax: 64k, 8m) on `folder` (made if missing) for the duration of the block."""
    require_mount()
    folder.mkdir(parents=True, exist_ok=True)
    result = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    assert result.returncode == 0, result.stderr
    try:
        yield folder
    finally:
        _umount(folder)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` with a file of zeros until it has no free block left; delete the file to
    free the space again."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        size = 1 << 16
        while size:  # halved at each refusal, down to the last byte of the last block
            try:
                f.write(bytes(size))
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
                size //= 2
    assert os.statvfs(folder).f_bavail == 0
    return filler


@contextmanager
def read_only(folder: Path):
    """`folder` read-only for the duration of the block: a read-only bind mount of itself where this process may
    mount, else (not root) mode 555."""
    if mount_refused() and os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    require_mount()
    assert _mount("--bind", str(folder), str(folder)).returncode == 0
    try:
        result = _mount("-o", "remount,ro,bind", str(folder))
        assert result.returncode == 0, result.stderr
        yield folder
    finally:
        _umount(folder)
