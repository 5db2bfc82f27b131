"""Checkpoints written atomically and read with a clear error: a crash never leaves a half-written file behind,
and a damaged file is never mistaken for a good one.

Every checkpoint carries a SHA-256 digest of its contents (each tensor's bytes, every number and string): a
truncated file fails to unpickle, and a flipped bit that torch.load does not notice (tensor data is not
checksummed in torch's zip format) fails the digest.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..io import atomic_write

DIGEST_KEY = "sha256"
TEST_KILL_ENV = "RESNET_REPRO_TEST_KILL"


def kill_point(point: str, iteration: int | None) -> None:
    """Fault injection for the tests of exact resume: with RESNET_REPRO_TEST_KILL=<point>@<iteration> in the
    environment the process kills itself with SIGKILL there. Points: `eval` (between the evaluation of two splits),
    `checkpoint` (a checkpoint's temporary file written, not yet renamed). Checked only at evaluations and
    checkpoints."""
    wanted = os.environ.get(TEST_KILL_ENV)
    if wanted and wanted == f"{point}@{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)


def _feed(h, obj: Any) -> None:
    """Hash `obj` by value: type tags, tensor dtypes, shapes and bytes, and the repr of plain Python values."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"N{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    else:  # None, bool, int, float (repr is exact), str, bytes, numpy scalars
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's contents, its own digest entry left out."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != DIGEST_KEY})
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path, make_folder: bool = True) -> None:
    """Write `state` with its digest, atomically (io.atomic_write: a failure raises io.WriteFailed naming `path`)."""
    state = {**state, DIGEST_KEY: state_digest(state)}

    def write(f) -> None:
        torch.save(state, f)
        f.flush()
        kill_point("checkpoint", state.get("iteration"))

    atomic_write(Path(path), write, make_folder=make_folder)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a truncated or corrupt file is a UserError naming it (never a silent fresh start)."""
    advice = (
        "move it away and resume from another checkpoint (trainer.resume=PATH, e.g. checkpoints/best.pt), "
        "or start a new run in a new directory"
    )
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist: check the path given to trainer.resume") from None
    except IsADirectoryError:
        raise UserError(f"checkpoint {path} is a directory, not a checkpoint file: check trainer.resume") from None
    except Exception as err:  # torch raises several types for truncated zip archives and bad pickles
        raise UserError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}): {advice}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} has no 'model' entry: it was not written by this repo's trainer")
    if DIGEST_KEY in state and state_digest(state) != state[DIGEST_KEY]:
        raise UserError(
            f"checkpoint {path} is corrupt (its contents do not match the checksum written with it): {advice}"
        )
    return state
