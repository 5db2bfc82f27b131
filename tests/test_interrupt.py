"""Ctrl-C: the first SIGINT checkpoints at the current iteration, records `interrupted`, says in one line how to
resume and exits with 130; the same command then resumes, bitwise equal to a run never interrupted (CPU, one
thread). A second Ctrl-C ends the process at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_repro.engine.signals import INTERRUPTED_EXIT, StopSignals
from support.processes import alive, children

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("wall_s", "img_per_s")


def command(run_dir: Path, data_root: Path, max_iters: int = 80) -> list[str]:
    # checkpoint_every beyond max_iters: the only checkpoints are the interrupted one and the final one
    return [
        sys.executable,
        "scripts/train.py",
        "data=fashion_mnist",
        f"data.root={data_root}",
        "data.limit_train=2048",
        "data.limit_test=128",
        "data.val_size=128",
        "data.batch_size=32",
        "data.eval_batch_size=128",
        "model.name=resnet8",
        "model.family=cifar",
        f"trainer.max_iters={max_iters}",
        "trainer.eval_every=10",
        "trainer.checkpoint_every=1000",
        "trainer.progress=log",
        f"hydra.run.dir={run_dir}",
    ]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    return env


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.mark.slow
def test_ctrl_c_checkpoints_where_it_is_and_the_same_command_resumes(tmp_path, fashion_mnist_dir):
    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(
        command(run_dir, fashion_mnist_dir),
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(metrics(run_dir)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # training, past its first evaluations
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED_EXIT, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("interrupted at iteration ") and last_line.endswith(
        ": run the same command again to resume"
    ), stderr[-3000:]
    stopped_at = int(last_line.split()[3].rstrip(":"))
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 20 <= stopped_at < 80 and state["iteration"] == stopped_at == summary["iters"]
    assert summary["status"] == "interrupted"

    resumed = subprocess.run(
        command(run_dir, fashion_mnist_dir), cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        f"resumed from {run_dir / 'checkpoints' / 'last.pt'} at iteration {stopped_at}"
        in resumed.stdout + resumed.stderr
    )
    reference = tmp_path / "uninterrupted"
    done = subprocess.run(
        command(reference, fashion_mnist_dir), cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert metrics(run_dir) == metrics(reference)
    a, b = (torch.load(d / "checkpoints" / "last.pt", weights_only=False) for d in (run_dir, reference))
    for key, value in b["model"].items():
        assert torch.equal(a["model"][key], value), key
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"


def test_a_second_ctrl_c_ends_the_process_at_once():
    """After the first SIGINT the default handler is back: the next one kills the process without a checkpoint."""
    signals = StopSignals()
    before = signal.getsignal(signal.SIGINT)
    with signals.installed():
        assert signal.getsignal(signal.SIGINT) == signals._handle
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while signals.received is None and time.monotonic() < deadline:
            time.sleep(0.01)  # Python runs the handler between bytecodes of the main thread
        assert signals.should_stop(0) and signals.received == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == before


def test_the_interrupted_line_and_exit_status():
    signals = StopSignals()
    signals.received = signal.SIGINT
    with pytest.raises(SystemExit) as stopped:
        signals.hand_over(1234)
    assert stopped.value.code == 130


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds W&B's service process through /proc (Linux)")
def test_a_sigterm_that_also_ends_the_wandb_service_still_checkpoints(tmp_path, fashion_mnist_dir):
    """SLURM's SIGTERM (scancel, preemption) reaches every process of the job, W&B's service too, which exits at once.
    W&B then refuses the run's next log line: the run says so in a warning, goes on, and at the signal checkpoints,
    records `interrupted` and exits like a process ended by SIGTERM, with no traceback."""
    run_dir = tmp_path / "run"
    env = {**environment(), "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [*command(run_dir, fashion_mnist_dir, max_iters=2000), "logger=wandb"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(metrics(run_dir)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        (service,) = [pid for pid, name in children(proc.pid).items() if name.startswith("wandb-core")]
        os.kill(service, signal.SIGTERM)
        while alive(service) and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = len(metrics(run_dir))
        while len(metrics(run_dir)) < rows + 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)  # two more evaluations, each logged to W&B after its service has gone
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    assert "W&B's service has gone" in (run_dir / "train.log").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert summary["status"] == "interrupted" and state["iteration"] == summary["iters"] >= 10 * (rows + 2)
