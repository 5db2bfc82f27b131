"""Checkpoints written atomically and read with a clear error: a crash never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temporary file beside `path`, flush and fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a truncated or corrupt file is a UserError naming it (never a silent fresh start)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist: check the path given to trainer.resume") from None
    except Exception as err:  # torch raises several types for truncated zip archives and bad pickles
        raise UserError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}): move it away and resume from "
            f"another checkpoint (trainer.resume=PATH), or start a new run in a new directory"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} has no 'model' entry: it was not written by this repo's trainer")
    return state
