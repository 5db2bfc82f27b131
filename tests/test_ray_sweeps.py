"""Training sweeps through configs/launcher/ray.yaml on a real local Ray: a head started here (2 CPUs, no GPU, on the
loopback address, token authentication as Ray's default but with a token of its own), which every sweep joins
through RAY_ADDRESS, as on a cluster.

Each sweep is `scripts/train.py -m launcher=ray ...` in a subprocess, as a user types it: ResNet-8 on 2048
Fashion-MNIST images, 40 iterations, one CPU and no GPU per job, so the 2 jobs of a sweep run side by side.
"""

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from resnet_repro.engine.checkpoint import load_checkpoint
from support import REPO
from support.runs import (
    TIMING_KEYS,
    assert_same_tensors,
    child_env,
    logged_iterations,
    read_metrics,
    read_summary,
    run_command,
    train_command,
    without_timing,
)
from support.system import require_system

pytestmark = pytest.mark.slow

ITERS = 40
RUN = [
    "data=fashion_mnist",
    "data.limit_train=2048",
    "data.limit_test=256",
    "data.val_size=256",
    "data.batch_size=32",
    "data.eval_batch_size=256",
    "model.name=resnet8",
    "model.family=cifar",
    f"trainer.max_iters={ITERS}",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.progress=log",
    "seed=0,1",
]
ON_CPUS = ["launcher=ray", "hydra.launcher.cpus_per_job=1", "hydra.launcher.gpus_per_job=0"]
# The keys of summary.json that differ between two runs of the same config (the command names its launcher).
SUMMARY_TIMING_KEYS = ("wall_s", "startup_s", "command")


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a sweep that joins the Ray head started here for this module (`ray start --head --block`,
    stopped at the end)."""
    require_system(
        importlib.util.find_spec("ray") is not None,
        'Ray not installed: pip install -c requirements/constraints.txt -e ".[ray]" (the ray extra)',
    )
    folder = tmp_path_factory.mktemp("ray_head")
    # Ray's own folder, short (its socket paths must stay under 108 characters) and apart from the machine's, so that
    # the address this head records is not left behind for a later `ray.init()` to wait on.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-"))
    token = folder / "token"
    token.write_text(secrets.token_hex(32))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray keeps every address on the loopback (else it uses the machine's own).
    env = child_env(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_TMPDIR=str(ray_tmp),
    )
    log = folder / "head.log"
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    with open(log, "w") as out:
        # --block: the command stays, and stops every Ray process it started when it gets SIGTERM.
        # cwd: not the sweeps' folder, which the jobs must go to for the relative paths of the command (_data_root).
        head = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, f"no Ray head:\n{log.read_text()}"
            time.sleep(0.2)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}", "WANDB_MODE": "disabled"}
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the head's session: the Ray processes it started
            head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _data_root(fashion_mnist_dir: Path) -> str:
    """The data as a path relative to the folder the sweeps start in."""
    return os.path.relpath(fashion_mnist_dir, REPO)


def _start(ray_env: dict[str, str], run_root: Path, data_root: Path, *overrides: str) -> subprocess.Popen:
    cmd = train_command("-m", *ON_CPUS, *RUN, f"data.root={_data_root(data_root)}", f"run_root={run_root}", *overrides)
    return subprocess.Popen(cmd, cwd=REPO, env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of the sweep once it has ended (a sweep that hangs fails the test)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"sweep still running after {timeout} s:\n" + "\n".join(proc.communicate()))


def _run_dir(run_root: Path, seed: int) -> Path:
    return run_root / "default" / "resnet8" / f"seed{seed}"


def _span(run_dir: Path) -> tuple[float, float]:
    """When the run trained: config.yaml is written as training starts, summary.json last at its end."""
    return (run_dir / "config.yaml").stat().st_mtime, (run_dir / "summary.json").stat().st_mtime


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    """Identical records but for timings, and bit-identical final weights."""
    config, ref_config = (yaml.safe_load((d / "config.yaml").read_text()) for d in (run_dir, reference))
    assert {**config, "run_root": None} == {**ref_config, "run_root": None}  # run_root: where each sweep wrote
    assert without_timing(read_metrics(run_dir)) == without_timing(read_metrics(reference))
    summary, ref_summary = read_summary(run_dir), read_summary(reference)
    assert summary["status"] == "complete" and summary["iters"] == ITERS, summary
    assert {k: v for k, v in summary.items() if k not in SUMMARY_TIMING_KEYS} == {
        k: v for k, v in ref_summary.items() if k not in SUMMARY_TIMING_KEYS
    }
    model = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location="cpu")["model"]
    ref_model = load_checkpoint(reference / "checkpoints" / "last.pt", map_location="cpu")["model"]
    assert_same_tensors(model, ref_model, "model")


def _job_pid(run_root: Path, job: int, sweep: subprocess.Popen, timeout: float = 120) -> int:
    """The pid of job `job` of the sweep, from the first line of its log (`job #N on HOST, pid P, ...`)."""
    deadline = time.monotonic() + timeout
    while True:
        for log in (run_root / "default" / ".ray").glob(f"*/{job}.log"):
            found = re.search(r"\bpid (\d+)", log.read_text())
            if found:
                return int(found.group(1))
        assert sweep.poll() is None, f"sweep ended before job {job} started:\n{sweep.communicate()}"
        assert time.monotonic() < deadline, f"job {job} has no log in {run_root} after {timeout} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def local_sweep(fashion_mnist_dir, tmp_path_factory) -> Path:
    """The same 2 runs through launcher=local, one after the other."""
    run_root = tmp_path_factory.mktemp("local")
    data = f"data.root={_data_root(fashion_mnist_dir)}"
    cmd = train_command("-m", "launcher=local", *RUN, data, f"run_root={run_root}")
    done = run_command(cmd, env=child_env(WANDB_MODE="disabled"))
    assert done.returncode == 0, done.stderr[-3000:]
    return run_root


@pytest.fixture(scope="module")
def ray_sweep(ray_env, fashion_mnist_dir, tmp_path_factory) -> Path:
    """A 2-job sweep through launcher=ray, never interrupted."""
    run_root = tmp_path_factory.mktemp("ray")
    code, out, err = _finish(_start(ray_env, run_root, fashion_mnist_dir))
    assert code == 0, out + err
    assert f"run {_run_dir(run_root, 0)}: finished" in out, out  # Hydra logs to stdout
    return run_root


def test_a_ray_sweep_leaves_the_records_of_the_local_launcher(ray_sweep, local_sweep):
    for seed in (0, 1):
        _assert_same_run(_run_dir(ray_sweep, seed), _run_dir(local_sweep, seed))
        assert [row["iter"] for row in read_metrics(_run_dir(ray_sweep, seed))] == [20, 40]
    assert set(TIMING_KEYS) <= set(read_metrics(_run_dir(ray_sweep, 0))[0])


def test_the_jobs_of_a_ray_sweep_train_at_the_same_time(ray_sweep, local_sweep):
    (start0, end0), (start1, end1) = _span(_run_dir(ray_sweep, 0)), _span(_run_dir(ray_sweep, 1))
    assert start0 < end1 and start1 < end0, ((start0, end0), (start1, end1))
    # The measure tells them apart: the local launcher's runs follow each other.
    (start0, end0), (start1, end1) = _span(_run_dir(local_sweep, 0)), _span(_run_dir(local_sweep, 1))
    assert end0 <= start1, ((start0, end0), (start1, end1))


def test_a_killed_job_is_reported_and_the_relaunched_sweep_resumes_it(ray_env, ray_sweep, fashion_mnist_dir, tmp_path):
    """SIGKILL to job 1's process once its checkpoint at iteration 20 is written: the sweep names the run, its
    directory and its log, and exits with 1 while job 0 finishes; the same command skips job 0 and resumes job 1 from
    iteration 20 to the records of a run never interrupted."""
    sweep = _start(ray_env, tmp_path, fashion_mnist_dir)
    seed0, seed1 = _run_dir(tmp_path, 0), _run_dir(tmp_path, 1)
    pid = _job_pid(tmp_path, 1, sweep)
    deadline = time.monotonic() + 120
    while not ((seed1 / "checkpoints" / "last.pt").exists() and 20 in logged_iterations(seed1)):
        assert sweep.poll() is None and time.monotonic() < deadline, f"job 1 not at iteration 20: {sweep.communicate()}"
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    code, out, err = _finish(sweep)
    assert code == 1, out + err
    log = next((tmp_path / "default" / ".ray").glob("*/1.log"))
    assert "error: 1 of 2 runs failed:" in err, err
    assert f"  run {seed1}: Ray task #1: " in err and f"    log: {log}" in err, err
    assert read_summary(seed0)["status"] == "complete"
    assert read_summary(seed1)["status"] != "complete" and logged_iterations(seed1) == [20], read_summary(seed1)
    wall0 = read_summary(seed0)["wall_s"]

    code, out, err = _finish(_start(ray_env, tmp_path, fashion_mnist_dir))
    assert code == 0, out + err
    assert "is already complete; nothing to do" in (seed0 / "train.log").read_text()
    assert read_summary(seed0)["wall_s"] == wall0  # skipped, not trained again
    assert f"resumed from {seed1 / 'checkpoints' / 'last.pt'} at iteration 20" in (seed1 / "train.log").read_text()
    for seed in (0, 1):
        _assert_same_run(_run_dir(tmp_path, seed), _run_dir(ray_sweep, seed))


def test_a_job_that_asks_for_a_missing_gpu_fails_in_one_line_before_the_sweep(ray_env, tmp_path):
    for request, says in (
        ("hydra.launcher.gpus_per_job=1", "hydra.launcher.gpus_per_job=1 but no node of"),
        ("hydra.launcher.gpus_per_job=2", "a run trains in one process on one GPU"),
    ):
        cmd = train_command(
            "-m",
            "launcher=ray",
            "hydra.launcher.cpus_per_job=1",
            request,
            *RUN,
            "data.root=nowhere",
            f"run_root={tmp_path}",
        )
        done = run_command(cmd, env=ray_env, timeout=120)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and says in errors[0], done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        # Nothing but Hydra's record of the sweep: no run directory, no job log.
        assert [p.name for p in (tmp_path / "default").iterdir()] == ["multirun.yaml"]


def test_a_local_ray_that_cannot_make_its_folder_fails_in_one_line(ray_env, tmp_path):
    """No RAY_ADDRESS: the sweep starts a local Ray, in RAY_TMPDIR, here a path below a file. The error names Ray's
    folder, not the run directory, and no run starts."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    env = {k: v for k, v in ray_env.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(blocker / "ray")}
    cmd = train_command(
        "-m", "launcher=ray", "hydra.launcher.gpus_per_job=0", *RUN, "data.root=nowhere", f"run_root={tmp_path}"
    )
    done = run_command(cmd, env=env, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert errors[0].startswith("error: cannot start Ray: ") and "RAY_TMPDIR" in errors[0], errors[0]
    assert "Traceback" not in done.stderr and not list(tmp_path.rglob("summary.json")), done.stderr
