"""A copy of this checkout as a fresh clone has it, for tests that run the README's make commands as typed: the
commands then write their data, runs and results into the copy, with their default paths, and never into this
checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from . import REPO


def repository_files(repo: Path = REPO) -> list[Path]:
    """Tracked files, and new ones not yet added that git does not ignore (they are about to be committed)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [repo / name for name in sorted(set(out.split("\0"))) if name]


def copy_checkout(dest: Path) -> Path:
    """Copy the files git tracks or would track (new ones included, ignored ones not) to `dest`, times kept (so make
    sees the virtual environment as up to date), and link this checkout's .venv there."""
    for source in repository_files():
        if source.is_file():  # a file deleted in the work tree but still in the index is left out, as git would
            (dest / source.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / source.relative_to(REPO))
    (dest / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    return dest


# The sweep's overrides for a test: a few iterations of a small batch on a generated CIFAR set (250 training images).
TINY_ARGS = "ARGS=trainer.max_iters=4 trainer.eval_every=2 trainer.checkpoint_every=2 data.batch_size=16"
NEEDS_VENV = pytest.mark.skipif(
    not (REPO / ".venv" / ".installed").exists(),
    reason="runs the Makefile, which uses the virtual environment that `make test` builds",
)


def make(checkout: Path, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`make ARGS...` in the copy `checkout`, output captured as text."""
    return subprocess.run(["make", *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)


def output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
