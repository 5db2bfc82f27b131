"""End-to-end checks of the test SLURM cluster: sbatch + sacct, submitit, Hydra's submitit launcher, requeue."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

pytestmark = pytest.mark.slurm
# Jobs cannot import this test module (tests/ is not on their sys.path): ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _wait_done(job, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while not job.done(force_check=True):
        assert time.monotonic() < deadline, f"job {job.job_id} not done after {timeout} s: {job.get_info()}"
        time.sleep(0.2)
    return job.result()


def _final_state(job, timeout: float = 30.0) -> str:
    """sacct state once the job has left RUNNING/COMPLETING (result() can return before that). job.state is
    cached by submitit and may still read UNKNOWN; get_info() forces a sacct call (docs/cluster.md, Pitfalls)."""
    deadline = time.monotonic() + timeout
    while (state := job.get_info().get("State", "")) in ("", "PENDING", "RUNNING", "COMPLETING", "REQUEUED"):
        assert time.monotonic() < deadline, f"job {job.job_id} still {state!r} {timeout} s after its result"
        time.sleep(0.2)
    return state


def _executor(folder: Path) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder / "%j")
    assert ex.cluster == "slurm"
    ex.update_parameters(timeout_min=5, slurm_partition="debug")
    return ex


def test_sbatch_completes_in_sacct(slurm_cluster, tmp_path):
    out = tmp_path / "out.txt"
    job_id = (
        subprocess.run(
            ["sbatch", "--parsable", "-o", str(out), "--wrap", "echo hello"], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .split(";")[0]
    )
    deadline, state = time.monotonic() + 60, ""
    while state != "COMPLETED":
        assert time.monotonic() < deadline, f"job {job_id} in state {state!r} after 60 s"
        assert state in ("", "PENDING", "RUNNING", "COMPLETING"), state
        time.sleep(0.2)
        state = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True
        ).stdout.strip()
    assert out.read_text().strip() == "hello"


def _multiply(a, b):
    return a * b, os.environ.get("SLURM_JOB_ID")


def test_submitit_job_returns_value(slurm_cluster, tmp_path):
    job = _executor(tmp_path).submit(_multiply, 6, 7)
    assert _wait_done(job) == (42, job.job_id)
    assert _final_state(job) == "COMPLETED"


HYDRA_APP = """\
from pathlib import Path
import hydra

@hydra.main(version_base=None, config_path=None)
def main(cfg):
    Path(cfg.out_dir, f"x{cfg.x}.txt").write_text(str(cfg.x ** 2))

if __name__ == "__main__":
    main()
"""


def test_hydra_submitit_multirun(slurm_cluster, tmp_path):
    (tmp_path / "app.py").write_text(HYDRA_APP)
    proc = subprocess.run(
        [
            sys.executable,
            "app.py",
            "-m",
            "hydra/launcher=submitit_slurm",
            "+x=1,2",
            f"+out_dir={tmp_path}",
            f"hydra.sweep.dir={tmp_path}/multirun",
            "hydra.launcher.partition=debug",
            "hydra.launcher.timeout_min=5",
            "hydra.launcher.max_num_timeout=2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "x1.txt").read_text() == "1"
    assert (tmp_path / "x2.txt").read_text() == "4"


class _SlowSum(submitit.helpers.Checkpointable):
    """Sums 1..steps, one step per 0.1 s, keeping its progress in a state file (atomically rewritten)."""

    def __call__(self, state_file: str, steps: int):
        path = Path(state_file)
        state = json.loads(path.read_text()) if path.exists() else {"step": 0, "total": 0, "starts": []}
        state["starts"].append(state["step"])
        while True:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(path)
            if state["step"] == steps:
                return state
            time.sleep(0.1)
            state["step"] += 1
            state["total"] += state["step"]


def test_checkpointable_resumes_after_usr2(slurm_cluster, tmp_path):
    state_file, steps = tmp_path / "state.json", 60
    job = _executor(tmp_path).submit(_SlowSum(), str(state_file), steps)
    deadline = time.monotonic() + 60
    while not state_file.exists() or json.loads(state_file.read_text())["step"] < 10:
        assert time.monotonic() < deadline, f"job {job.job_id} made no progress: {job.get_info()}"
        time.sleep(0.1)
    # Signal the job steps: `--batch` would kill the batch shell, and the job with it (docs/cluster.md, Pitfalls).
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    result = _wait_done(job)
    assert result["total"] == steps * (steps + 1) // 2
    assert len(result["starts"]) == 2 and 10 <= result["starts"][1] < steps, result
    assert _final_state(job) == "COMPLETED"


def test_a_node_drained_before_a_restart_takes_jobs_again(slurm_cluster, tmp_path):
    """The controller's saved state outlives a restart; a node that an earlier session left drained (its spool disk
    filled up, say) must not leave every later session's cluster waiting for a usable node."""
    if slurm_cluster.reused:
        pytest.skip("the cluster was started by scripts/slurm_cluster.py start: this test would restart it")
    node = slurm_cluster.hostname()
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DRAIN", "Reason=test"], check=True)
    assert slurm_cluster.node_state().startswith("drain")
    slurm_cluster.stop()
    slurm_cluster.start()
    assert slurm_cluster.node_state() == "idle"
    assert _wait_done(_executor(tmp_path).submit(_multiply, 6, 7))[0] == 42
