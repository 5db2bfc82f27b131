"""The repository's commands as the tests run them (in a subprocess, or a script in-process), and the records a
training run leaves in its directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import torch

from resnet_repro.engine.checkpoint import TEST_KILL_ENV

from . import REPO

# The metrics that differ between two otherwise identical runs.
TIMING_KEYS = ("wall_s", "img_per_s")
# What a make passes on to the commands it runs (make test runs the suite): a make they start would take it on.
MAKE_STATE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def make_command_line() -> list[str]:
    """The variables set on the command line of a make that runs the tests (`make test ARGS=-x`): make exports them
    to its commands' environment, where they would reach the make commands a test types."""
    _, *assignments = re.split(r"(?:^| )-- ", os.environ.get("MAKEFLAGS", ""), maxsplit=1)
    return re.findall(r"(?:^|(?<= ))([A-Za-z_][A-Za-z0-9_]*)=", "".join(assignments))


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment for a training subprocess, with one thread per process (CPU kernels are then
    deterministic). The kill hook, Hydra's full tracebacks and W&B's mode and key are left out: a test sets its own.
    So is the state of a make that runs the tests (`make test`): a command a test runs is typed in a shell."""
    left_out = (TEST_KILL_ENV, "HYDRA_FULL_ERROR", "WANDB_API_KEY", "WANDB_MODE", *MAKE_STATE, *make_command_line())
    env = {k: v for k, v in os.environ.items() if k not in left_out}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **overrides)
    return env


def train_command(*overrides: str) -> list[str]:
    """argv of the training command as a user types it (run from the repository root)."""
    return [sys.executable, "scripts/train.py", *overrides]


def run_command(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `cmd` from the repository root to its end, with child_env() unless told, output captured as text.

    In a process group of its own: on a timeout (or Ctrl-C) all of it is killed, torchrun's ranks and make's
    commands too, not only `cmd`, whose children would otherwise run on after the test."""
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


USER_ERROR_EXIT = 2
# What make adds after a command of a recipe fails: "make: *** [Makefile:74: prepare-cifar] Error 2".
MAKE_TRAILER = re.compile(r"make(\[\d+\])?: \*\*\* \[")


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, no traceback, exactly one `error:` line on stderr, the last one (or, under make, followed only
    by make's own lines about the recipe that failed), holding every fragment."""
    report = f"exit {result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == USER_ERROR_EXIT, report
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr, report
    trailer = [line for line in result.stderr.splitlines() if MAKE_TRAILER.match(line)]
    assert not trailer or trailer[-1].endswith("Error 2"), report  # make exits 2 whatever its command's status
    lines = [line for line in result.stderr.splitlines() if line.strip() and not MAKE_TRAILER.match(line)]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], report
    for fragment in fragments:
        assert fragment in errors[0], report
    return errors[0]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file under `run_dir` (its lock file left out: it holds the id of the last process that took it)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def assert_unchanged(before: dict[str, bytes], run_dir: Path, ignore: tuple[str, ...] = ()) -> None:
    """The files of `run_dir` are those of the snapshot `before`, byte for byte (Hydra's train.log may only grow)."""
    before, after = dict(before), snapshot(run_dir)
    for name in ignore:
        before.pop(name, None), after.pop(name, None)
    log_before, log_after = before.pop("train.log", b""), after.pop("train.log", b"")
    assert log_after.startswith(log_before), "train.log was rewritten"
    assert after.keys() == before.keys(), f"files added or removed: {sorted(after.keys() ^ before.keys())}"
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"files changed: {changed}"


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def logged_iterations(run_dir: Path) -> list[int]:
    """Iterations in metrics.jsonl of a run that may be writing it now: none before the file exists, and a
    half-written last line left out."""
    path = run_dir / "metrics.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line)["iter"] for line in text.splitlines() if line.endswith("}")]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_same_tensors(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and numbers: equal structure, bitwise-equal tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape"):  # numpy arrays in the RNG state
        assert (a == b).all(), where
    else:
        assert a == b, where


def load_script(name: str):
    """scripts/<name>.py as a module, to call its main() in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
