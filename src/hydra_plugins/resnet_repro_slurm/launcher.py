"""The SLURM launcher of configs/launcher/slurm.yaml: hydra-submitit-launcher's, with one change. A sweep waits for
all of its jobs, then names every failed run with its SLURM state, its error line and its log file, and exits with
status 1; the original raises on the first failed job, with a traceback that names neither the run nor the log. A
sweep that cannot be submitted (no sbatch here, or sbatch refuses it) is one `error:` line and exit status 2.

Everything that runs inside the jobs (`__call__`, and `checkpoint`, which requeues a preempted or timed-out job with
the same overrides, so the run resumes in its own directory) is hydra-submitit-launcher's, unchanged.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf, open_dict

from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.resnet_repro_launchers.report import error_line, exit_if_any_failed, failed_run, task_error

log = logging.getLogger(__name__)
# How long a finished job may take to show its result file (slow shared file systems), counted once per sweep; a job
# that SLURM says failed gets at most FAILED_GRACE_S (it may still have written an error report).
RESULT_GRACE_S = 15.0
FAILED_GRACE_S = 2.0
# How long a job may stay COMPLETING after it ended in sacct: SLURM's KillWait (30 s by default) and its epilog.
COMPLETING_GRACE_S = 120.0
FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # Submission: as BaseSubmititLauncher.launch (hydra-submitit-launcher 1.2.0).
        import submitit

        from resnet_repro.cli import USER_ERROR_EXIT, hydra_reports_as_usual
        from resnet_repro.errors import UserError

        if shutil.which("sbatch") is None:
            raise UserError(
                "launcher=slurm submits the sweep with sbatch, which is not on PATH: run it on a machine of the SLURM "
                "cluster (a login node), or use launcher=local or launcher=ray"
            )
        hydra_reports_as_usual()  # the jobs inherit this environment: inside them Hydra reports its usual way

        assert self.config is not None
        assert len(job_overrides) > 0
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=self.params["submitit_folder"],
            slurm_max_num_timeout=self.params["max_num_timeout"],
        )
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                for k, v in self.params.items()
                if k not in init_keys
            }
        )
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        try:
            jobs = executor.map_array(self, *zip(*job_params))
        except submitit.core.utils.FailedJobError as refused:  # submitit has printed sbatch's own lines above
            # Hydra reports as usual by now (the jobs must not inherit HYDRA_FULL_ERROR): the error line is ours.
            print(f"error: {sbatch_refusal(str(refused))}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT) from None
        names = [self._describe(overrides, idx) for idx, overrides in enumerate(job_overrides, start=initial_job_idx)]
        return collect_results(jobs, names)

    def _describe(self, overrides: Sequence[str], idx: int) -> str:
        """The run directory of a job (what a user looks for), else its overrides."""
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):  # as inside the job, where a sweep subdir may use the job's number (search trials)
                cfg.hydra.job.num = idx
            return f"run {Path(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))}"
        except Exception:  # noqa: BLE001 - a description must never hide the report
            return " ".join(filter_overrides(overrides))


def sbatch_refusal(stderr: str) -> str:
    """Why sbatch refused the sweep, in one line: its last line (the most specific: "Invalid partition name
    specified", "Unable to contact slurm controller", "Unable to process configuration file")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else "?"
    for prefix in ("sbatch: ", "error: ", "fatal: ", "Batch job submission failed: "):
        reason = reason.removeprefix(prefix)
    return (
        f"sbatch refused the sweep: {reason}; check the hydra.launcher keys (partition, account, gpus_per_node, "
        f"cpus_per_task, ...: docs/cluster.md, 'The keys') and that this machine reaches the cluster (`sinfo`)"
    )


def collect_results(jobs: Sequence[Any], names: Sequence[str]) -> list[JobReturn]:
    """Wait for every job; return their JobReturns, or report each failed run on stderr and exit with status 1."""
    for job in jobs:
        job.wait()
    wait_until_processes_ended([job.job_id for job in jobs])
    deadline = time.monotonic() + RESULT_GRACE_S
    returns, failures = [], []
    for job, name in zip(jobs, names):
        failure = None
        for rank in range(job.num_tasks):
            task = job.task(rank)
            # submitit waits this long for each missing result file; one grace period for the whole sweep is enough.
            grace = max(0.0, deadline - time.monotonic())
            failed = (task.state.split() or [""])[0] in FAILED_STATES  # e.g. "CANCELLED by 0"
            task._results_timeout_s = min(grace, FAILED_GRACE_S) if failed else grace
            error = task.exception()
            if error is not None:
                failure = (task, error_line(task.stderr() or "") or error_line(str(error)))
                break
        if failure is None:
            task = job.task(0)
            ret = task.results()[0]
            reason = task_error(ret)  # the run's exception, caught by Hydra inside the job
            if reason is not None:
                failure = (task, reason)
            returns.append(ret)
        if failure is not None:
            task, reason = failure
            state = task.get_info().get("State", "")  # sacct may still say RUNNING for a job that ended in Python
            state = "" if state in ("", "PENDING", "RUNNING", "COMPLETING", "REQUEUED") else f" {state}"
            failures.append(failed_run(name, f"job {task.job_id}{state}", reason, task.paths.stderr))
    exit_if_any_failed(failures, len(jobs))
    return returns


def wait_until_processes_ended(job_ids: Sequence[str], timeout: float = COMPLETING_GRACE_S) -> None:
    """sacct says CANCELLED the moment `scancel` runs, while the job is still checkpointing on its SIGTERM; a sweep that
    returned then would report records that are still being written, and a relaunch would race the ending job. squeue
    lists a job (state COMPLETING) until SLURM has seen all of its processes end."""
    if shutil.which("squeue") is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["squeue", "--noheader", "--format=%i", f"--jobs={','.join(job_ids)}"], capture_output=True, text=True
        )
        if listed.returncode != 0 or not listed.stdout.strip():  # non-zero: no job id is known any more
            return
        time.sleep(1.0)
    log.warning(f"jobs still completing after {timeout:.0f} s: {' '.join(listed.stdout.split())}")
