"""A copy of this checkout as a fresh clone has it, for tests that run the README's make commands as typed: the
commands then write their data, runs and results into the copy, with their default paths, and never into this
checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import REPO


def copy_checkout(dest: Path) -> Path:
    """Copy the files git tracks or would track (new ones included, ignored ones not) to `dest`, times kept (so make
    sees the virtual environment as up to date), and link this checkout's .venv there."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the work tree but still in the index is left out, as git would
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    return dest
