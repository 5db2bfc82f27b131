"""Training sweeps through configs/launcher/slurm.yaml on the real single-node SLURM of tests/conftest.py.

Each sweep is `scripts/train.py -m launcher=slurm ...` in a subprocess, as a user would type it: ResNet-8 on 512
Fashion-MNIST images, 80 iterations, one CPU per job (the node has 2, so the 2 jobs of a sweep run side by side).
Interruptions: `scancel --signal=USR2` (SLURM's warning before a time limit or preemption: checkpoint, submitit
requeues) and plain `scancel` (SIGTERM: checkpoint, the job ends CANCELLED, a re-launched sweep resumes it).
"""

import re
import subprocess
import time
from pathlib import Path

import pytest

from resnet_repro.engine.checkpoint import load_checkpoint
from support import REPO, runs
from support.configs import SLURM_TEST_NODE, TINY_RUN

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ITERS = 80
RUN = [o for o in TINY_RUN if not o.startswith(("data.limit_train", "trainer.progress"))] + [
    "data.limit_train=512",
    "model.name=resnet8",
    "model.family=cifar",
    "trainer.device=cpu",
    "trainer.progress=log",
    f"trainer.max_iters={ITERS}",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=40",
]


def _start(run_root: Path, data_root: Path, *overrides: str) -> subprocess.Popen:
    cmd = runs.train_command("-m", *SLURM_TEST_NODE, *RUN, f"data.root={data_root}", f"run_root={run_root}", *overrides)
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=runs.child_env(WANDB_MODE="offline", WANDB_SILENT="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 150) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"sweep still running after {timeout} s:\n{out}\n{_queue()}")
    return proc.returncode, out


def _queue() -> str:
    return subprocess.run(["squeue"], capture_output=True, text=True).stdout


def _run_dir(run_root: Path, seed: int) -> Path:
    return run_root / "default" / "resnet8" / f"seed{seed}"


def _job_id(run_root: Path, task: int, timeout: float = 60) -> str:
    """SLURM id of array task `task` of the newest sweep in run_root (from submitit's folders)."""
    deadline = time.monotonic() + timeout
    while True:
        ids = [p.name for p in (run_root / "default" / ".submitit").glob(f"*_{task}") if p.is_dir()]
        if ids:
            return max(ids, key=lambda i: int(i.split("_")[0]))
        assert time.monotonic() < deadline, f"no submitit folder for task {task} in {run_root}"
        time.sleep(0.2)


def _wait_for_iteration(run_dir: Path, proc: subprocess.Popen, iteration: int = 20, timeout: float = 90) -> None:
    """Until metrics.jsonl has a row at `iteration` or later (the run is then mid-way, 80 iterations in all)."""
    deadline = time.monotonic() + timeout
    while not any(logged >= iteration for logged in runs.logged_iterations(run_dir)):
        assert proc.poll() is None, f"sweep ended before iteration {iteration}:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"{run_dir} not at iteration {iteration} after {timeout} s\n{_queue()}"
        time.sleep(0.1)


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    """Same metrics (all but timings) and bit-identical final weights as the uninterrupted reference run."""
    assert runs.read_summary(run_dir)["status"] == "complete"
    assert runs.without_timing(runs.read_metrics(run_dir)) == runs.without_timing(runs.read_metrics(reference))
    model = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location="cpu")["model"]
    ref_model = load_checkpoint(reference / "checkpoints" / "last.pt", map_location="cpu")["model"]
    runs.assert_same_tensors(model, ref_model, "model")


def _interruption(run_dir: Path) -> int:
    """The iteration at which the run's log says the signal's checkpoint was written, and that it resumed there."""
    log = (run_dir / "train.log").read_text()
    written = re.findall(r"signal \d+: checkpoint written at iteration (\d+)", log)
    resumed = re.findall(r"resumed from \S+last\.pt at iteration (\d+)", log)
    assert written and resumed and written[0] == resumed[0], log
    assert 20 <= int(written[0]) < ITERS, log
    return int(written[0])


def _assert_one_wandb_run(run_dir: Path, starts: int) -> None:
    """Every start logged to the same W&B run (offline here: one offline-run-<time>-<id> folder per start)."""
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == starts and all(f.name.endswith(f"-{run_id}") for f in folders), folders


@pytest.fixture(scope="module")
def reference(slurm_cluster, fashion_mnist_dir, tmp_path_factory) -> Path:
    """A 2-job sweep (seeds 0 and 1), never interrupted: the reference for the others."""
    run_root = tmp_path_factory.mktemp("reference")
    code, out = _finish(_start(run_root, fashion_mnist_dir, "seed=0,1"))
    assert code == 0, out
    return run_root


def test_two_job_sweep_finishes_with_both_records(reference):
    for seed in (0, 1):
        run_dir = _run_dir(reference, seed)
        summary = runs.read_summary(run_dir)
        assert summary["status"] == "complete" and summary["iters"] == ITERS and summary["seed"] == seed
        assert summary["world_size"] == 1
        assert [row["iter"] for row in runs.read_metrics(run_dir)] == [20, 40, 60, 80]
        assert (run_dir / "checkpoints" / "last.pt").is_file()
    # One job array, one task per run.
    assert len({p.name.split("_")[0] for p in (reference / "default" / ".submitit").glob("*_[01]")}) == 1


def test_interrupted_runs_resume_with_the_same_results(reference, fashion_mnist_dir, tmp_path):
    """Seed 0 gets USR2 (requeued by submitit, resumes in the same job); seed 1 is cancelled (SIGTERM: checkpoint,
    then the sweep reports it failed); re-launching the sweep skips seed 0 and resumes seed 1. Both end equal to the
    uninterrupted reference, each in a single W&B run."""
    sweep = _start(tmp_path, fashion_mnist_dir, "seed=0,1", "logger=wandb")
    # Each job is signalled once it is mid-way (they need not run at the same time).
    _wait_for_iteration(_run_dir(tmp_path, 0), sweep)
    # Signal the job steps: `--batch` would kill the batch shell, and the job with it (docs/cluster.md, Pitfalls).
    subprocess.run(["scancel", "--signal=USR2", _job_id(tmp_path, 0)], check=True)
    _wait_for_iteration(_run_dir(tmp_path, 1), sweep)
    second = _job_id(tmp_path, 1)
    subprocess.run(["scancel", second], check=True)
    code, out = _finish(sweep)
    assert code == 1, out
    assert "1 of 2 runs failed" in out and f"job {second} CANCELLED" in out, out
    assert f"log: {tmp_path}/default/.submitit/{second}/{second}_0_log.err" in out, out
    assert second not in _queue()  # the sweep returned only once the cancelled job's processes had ended

    seed0, seed1 = _run_dir(tmp_path, 0), _run_dir(tmp_path, 1)
    _interruption(seed0)
    _assert_same_run(seed0, _run_dir(reference, 0))
    _assert_one_wandb_run(seed0, starts=2)
    summary1 = runs.read_summary(seed1)
    assert summary1["status"] == "interrupted" and 20 <= summary1["iters"] < ITERS, summary1
    wall0 = runs.read_summary(seed0)["wall_s"]

    code, out = _finish(_start(tmp_path, fashion_mnist_dir, "seed=0,1", "logger=wandb"))
    assert code == 0, out
    assert "is already complete; nothing to do" in (seed0 / "train.log").read_text()
    assert runs.read_summary(seed0)["wall_s"] == wall0  # skipped, not retrained
    assert _interruption(seed1) == summary1["iters"]
    _assert_same_run(seed1, _run_dir(reference, 1))
    _assert_one_wandb_run(seed1, starts=2)


def test_failed_jobs_are_reported_with_their_logs(slurm_cluster, tmp_path):
    """Inside a job the error contract holds too: the data error is the job's one `error:` line, and the job does
    not inherit the HYDRA_FULL_ERROR=1 that the submitting command sets for its own composition errors."""
    show_env = 'hydra.launcher.setup=["export OMP_NUM_THREADS=1","echo full_error=[$HYDRA_FULL_ERROR]"]'
    code, out = _finish(_start(tmp_path, tmp_path / "nowhere", "seed=0,1", show_env))
    assert code == 1, out
    assert "error: 2 of 2 runs failed:" in out, out
    for seed in (0, 1):
        job = _job_id(tmp_path, seed)
        log = tmp_path / "default" / ".submitit" / job / f"{job}_0_log.err"
        assert f"run {_run_dir(tmp_path, seed)}: job {job} FAILED: error: Fashion-MNIST not found" in out, out
        assert f"log: {log}" in out, out
        errors = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Fashion-MNIST not found" in errors[0], log.read_text()
        assert "full_error=[]" in log.with_suffix(".out").read_text()
    assert "Traceback" not in out, out


def test_two_process_ddp_job_stops_together_and_resumes(slurm_cluster, fashion_mnist_dir, tmp_path):
    """tasks_per_node=2: one job, 2 processes (gloo on CPU), torch.distributed set up from SLURM's environment.
    USR2 reaches both processes; they checkpoint at the same iteration and the requeued job finishes."""
    sweep = _start(tmp_path, fashion_mnist_dir, "seed=0", "hydra.launcher.tasks_per_node=2")
    run_dir = _run_dir(tmp_path, 0)
    _wait_for_iteration(run_dir, sweep)
    job = next(p.name for p in (tmp_path / "default" / ".submitit").iterdir() if p.name.isdigit())
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    code, out = _finish(sweep)
    assert code == 0, out
    summary = runs.read_summary(run_dir)
    assert summary["status"] == "complete" and summary["world_size"] == 2 and summary["iters"] == ITERS
    assert _interruption(run_dir) % 10 == 0  # the processes agree on a stop every StopSignals.SYNC_EVERY
    logs = [(tmp_path / "default" / ".submitit" / job / f"{job}_{rank}_log.out").read_text() for rank in (0, 1)]
    stops = [re.findall(r"checkpoint written at iteration (\d+)", log) for log in logs]
    assert stops[0] and stops[0] == stops[1], stops
    assert [row["iter"] for row in runs.read_metrics(run_dir)] == [20, 40, 60, 80]
