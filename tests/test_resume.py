"""Checkpoints and exact resume.

The slow tests launch the real training command (scripts/train.py) as a subprocess, kill it with SIGKILL at several
points (just after a checkpoint appears, between an evaluation's record and the next checkpoint, in the middle of an
evaluation, in the middle of writing a checkpoint), run the same command again until the run is complete, and
require the result to be bitwise identical to a run never interrupted: every tensor of the model, the optimizer
and the schedule, and every line of metrics.jsonl except the timings. One thread per process (OMP_NUM_THREADS=1)
in every run, the reference included: CPU kernels are then deterministic.

The fast tests check the pieces in-process: atomic writes, the checksum, the errors for damaged checkpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from resnet_repro.engine.checkpoint import TEST_KILL_ENV, load_checkpoint, save_checkpoint
from resnet_repro.errors import UserError
from resnet_repro.io import atomic_write, remove_stale_temporaries
from support import REPO
from support.runs import (
    assert_same_tensors,
    child_env,
    logged_iterations,
    read_metrics,
    read_summary,
    train_command,
    without_timing,
)

MAX_ITERS, EVAL_EVERY, CHECKPOINT_EVERY = 60, 10, 7  # checkpoints at 7, 14, ..., 56 and 60: not aligned to evaluations


def tiny_run(data_root: Path) -> list[str]:
    return [
        "data=fashion_mnist",
        f"data.root={data_root}",
        "data.limit_train=2048",
        "data.limit_test=256",
        "data.val_size=256",
        "data.batch_size=32",
        "data.eval_batch_size=64",
        "model.name=resnet8",
        "model.family=cifar",
        f"trainer.max_iters={MAX_ITERS}",
        f"trainer.eval_every={EVAL_EVERY}",
        f"trainer.checkpoint_every={CHECKPOINT_EVERY}",
        "trainer.progress=log",
        # The paper's warm-up (ResNet-110): its state, the training errors counted since the last check, must
        # survive the kills as well (the first check is at iteration 100, so lr stays 0.01 here).
        "schedule=cifar_warmup",
    ]


class Run:
    """The training command on one run directory, launched as often as a test likes."""

    def __init__(self, run_dir: Path, data_root: Path, logs: Path):
        self.dir, self.data_root, self.logs = run_dir, data_root, logs
        self.launches = 0
        self.proc: subprocess.Popen | None = None

    def start(self, kill_at: str | None = None, nice: int = 0) -> subprocess.Popen:
        self.launches += 1
        self.out = self.logs / f"{self.dir.name}.{self.launches}.out"
        cmd = train_command(*tiny_run(self.data_root), f"hydra.run.dir={self.dir}")
        env = child_env(WANDB_MODE="disabled", **({TEST_KILL_ENV: kill_at} if kill_at else {}))
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
        return self.proc

    def output(self) -> str:
        return self.out.read_text(errors="replace")[-3000:]

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"training command did not finish in {timeout} s:\n{self.output()}")

    def complete(self) -> None:
        self.start()
        assert self.wait() == 0, self.output()

    def kill_when(self, condition, what: str, timeout: float = 120) -> None:
        """Poll the run directory; SIGKILL the process as soon as `condition()` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (status {self.proc.returncode}) before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.01)
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait() == -signal.SIGKILL

    # ----- what the run directory holds ---------------------------------------------------------------------------
    _seen: tuple[int, int] | None = None

    def checkpoint_iteration(self) -> int | None:
        """Iteration of checkpoints/last.pt (read again only when the file was replaced)."""
        path = self.dir / "checkpoints" / "last.pt"
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            return None
        if self._seen is None or self._seen[0] != inode:
            self._seen = (inode, torch.load(path, map_location="cpu", weights_only=False)["iteration"])
        return self._seen[1]

    def metric_iters(self) -> list[int]:
        return logged_iterations(self.dir)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_run(reference: Path, resumed: Path) -> None:
    for name in ("init.pt", "last.pt", "best.pt"):
        ref, got = load(reference / "checkpoints" / name), load(resumed / "checkpoints" / name)
        for key in ("model", "optimizer", "schedule", "iteration", "rng", "data_state"):
            assert_same_tensors(ref[key], got[key], f"{name}:{key}")
        for key in ("iteration", "train_sums", "warm_sums", "best"):  # the loop state but its wall_s, a timing
            assert_same_tensors(ref["loop"][key], got["loop"][key], f"{name}:loop.{key}")
    assert load(resumed / "checkpoints" / "last.pt")["iteration"] == MAX_ITERS
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(reference))
    assert [row["iter"] for row in read_metrics(resumed)] == list(range(EVAL_EVERY, MAX_ITERS + 1, EVAL_EVERY))
    summary = read_summary(resumed)
    assert summary["status"] == "complete" and summary["iters"] == MAX_ITERS
    assert summary["final_test_err"] == read_summary(reference)["final_test_err"]
    leftovers = [p.name for p in (resumed / "checkpoints").iterdir() if p.name not in ("init.pt", "last.pt", "best.pt")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fashion_mnist_dir) -> Path:
    """The run never interrupted."""
    base = tmp_path_factory.mktemp("resume")
    run = Run(base / "reference", fashion_mnist_dir, base)
    run.complete()
    return run.dir


@pytest.fixture
def run(tmp_path, fashion_mnist_dir) -> Run:
    return Run(tmp_path / "run", fashion_mnist_dir, tmp_path)


# ----- the real command, killed and resumed -----------------------------------------------------------------------
@pytest.mark.slow
def test_killed_after_checkpoints_resumes_bitwise_identical(reference, run):
    """SIGKILL just after the first checkpoint, just after an evaluation's record (before the next checkpoint), and
    just after the last-but-one checkpoint; the same command each time; the end equals the reference bit for bit."""
    # The killed processes run at a lower priority, so that the polling here sees each point in time.
    run.start(nice=10)
    run.kill_when(lambda: (run.checkpoint_iteration() or 0) >= CHECKPOINT_EVERY, "the first checkpoint")

    run.start(nice=10)
    run.kill_when(lambda: 30 in run.metric_iters(), "the evaluation at iteration 30")
    killed_at = run.checkpoint_iteration()
    assert killed_at is not None and killed_at < MAX_ITERS

    run.start(nice=10)  # resumes from killed_at: drops any record after it, and makes it again
    last_but_one = (MAX_ITERS - 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY  # 56
    run.kill_when(lambda: (run.checkpoint_iteration() or 0) >= last_but_one, "the last-but-one checkpoint")
    assert run.checkpoint_iteration() < MAX_ITERS

    run.complete()
    assert "resumed from" in run.output()
    assert_same_run(reference, run.dir)


@pytest.mark.slow
def test_killed_mid_evaluation_and_mid_checkpoint_write_resumes_bitwise_identical(reference, run):
    """SIGKILL between the evaluation of the validation and the test split, and while a checkpoint's temporary file
    is written but not yet renamed (RESNET_REPRO_TEST_KILL makes the process kill itself at exactly that point)."""
    run.start(kill_at="eval@30")
    assert run.wait() == -signal.SIGKILL, run.output()
    assert 30 not in run.metric_iters()  # the evaluation never finished
    assert run.checkpoint_iteration() == 28

    run.start(kill_at="checkpoint@42")
    assert run.wait() == -signal.SIGKILL, run.output()
    checkpoints = run.dir / "checkpoints"
    assert any(p.name.endswith(".tmp") for p in checkpoints.iterdir())  # the half-done write
    assert run.checkpoint_iteration() == 35  # last.pt is still the previous, complete checkpoint
    load_checkpoint(checkpoints / "last.pt")  # and it passes its checksum

    run.complete()
    assert_same_run(reference, run.dir)


@pytest.mark.slow
def test_a_finished_run_is_not_trained_again(reference, tmp_path, fashion_mnist_dir):
    def records():
        return {p: p.read_bytes() for p in reference.rglob("*") if p.is_file() and p.name not in (".lock", "train.log")}

    before = records()
    run = Run(reference, fashion_mnist_dir, tmp_path)
    run.complete()
    assert "already complete" in run.output()
    assert records() == before


# ----- the pieces, in-process ----------------------------------------------------------------------------------
def small_state(iteration: int = 3) -> dict:
    generator = torch.Generator().manual_seed(iteration)
    return {
        "model": {"w": torch.randn(64, 64, generator=generator), "b": torch.zeros(64)},
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(8)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "iteration": iteration,
        "best": float("inf"),
        "rng": {"torch": torch.get_rng_state()},
    }


def test_atomic_write_never_leaves_a_half_written_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(small_state(1), path)
    good = path.read_bytes()

    def fail_midway(f):
        f.write(b"partial")
        raise KeyboardInterrupt  # any interruption of the writer

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail_midway)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    save_checkpoint(small_state(1), tmp_path / "last.pt")
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_checkpoint_round_trip_keeps_every_value(tmp_path):
    state = small_state(5)
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert_same_tensors({k: state[k] for k in state}, {k: loaded[k] for k in state}, "state")


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped_tensor_byte", "garbage"])
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(small_state(), path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    elif damage == "flipped_tensor_byte":  # torch.load does not notice this one: the checksum does
        weights = small_state()["model"]["w"].numpy().tobytes()
        data[bytes(data).index(weights[:64]) + 1000] ^= 0x01
    else:
        data = bytearray(b"not a checkpoint at all" * 10)
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="truncated or corrupt|is corrupt") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_checkpoint_path_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
