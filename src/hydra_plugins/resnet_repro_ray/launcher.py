"""The Ray launcher of configs/launcher/ray.yaml: every job of a sweep is one Ray task, in a process of its own, that
asks Ray for `gpus_per_job` GPUs and `cpus_per_job` CPUs. Ray sets CUDA_VISIBLE_DEVICES for each, so N GPUs train
N runs at once (0.5 packs two runs on one GPU). Inside its task a job runs as under Hydra's basic launcher, in its
usual run directory, where the trainer skips a complete run and resumes an unfinished one.

The sweep joins a running Ray (`address`, else RAY_ADDRESS, else the newest `ray start` on this machine) or starts
a local one, refuses in one line what no node can give (the task would wait for ever), waits for every job, and
reports every failed run as the SLURM launcher does (hydra_plugins/resnet_repro_launchers/report.py).

hydra-ray-launcher is not used: its 1.2.2 runs on Ray 2.60 and Hydra 1.3, but it pins cloudpickle<3 (a downgrade of
what submitit uses in the default install), pulls in boto3 for its AWS launcher, and ends the sweep at the first job
whose process died, after Ray's silent retries, without naming the run.
"""

import fnmatch
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.resnet_repro_launchers.report import error_line, exit_if_any_failed, failed_run, task_error
from resnet_repro.errors import UserError

log = logging.getLogger(__name__)
# Set in the driver only while Hydra must raise (resnet_repro.cli): a job gets it only where the user set it.
FULL_ERROR = "HYDRA_FULL_ERROR"


@dataclass
class RayLauncherConf:
    """hydra.launcher with launcher=ray; configs/launcher/ray.yaml says what each key does."""

    _target_: str = "hydra_plugins.resnet_repro_ray.launcher.RayLauncher"
    address: str | None = None
    gpus_per_job: float = 1.0
    cpus_per_job: float = 2.0
    max_retries: int = 0
    check_resources: bool = True
    forward_env: list[str] = field(default_factory=lambda: ["WANDB_*", "OMP_NUM_THREADS", "MKL_NUM_THREADS"])
    log_folder: str = "${hydra.sweep.dir}/.ray/${now:%Y-%m-%d_%H-%M-%S}"
    init: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/launcher", name="resnet_repro_ray", node=RayLauncherConf, provider="resnet_repro"
)


class JobExit(Exception):
    """A job whose task ended with SystemExit (a UserError's `error:` line, or an interrupted run)."""


@dataclass
class _Job:
    idx: int
    overrides: list[str]
    config: DictConfig
    run_dir: Path
    log_file: Path


class RayLauncher(Launcher):
    def __init__(
        self,
        address: str | None,
        gpus_per_job: float,
        cpus_per_job: float,
        max_retries: int,
        check_resources: bool,
        forward_env: Sequence[str],
        log_folder: str,
        init: dict[str, Any],
    ) -> None:
        self.address = address
        self.gpus = float(gpus_per_job)
        self.cpus = float(cpus_per_job)
        self.max_retries = int(max_retries)
        self.check_resources = bool(check_resources)
        self.forward_env = [*forward_env, FULL_ERROR]
        self.log_folder = Path(log_folder)
        self.init = OmegaConf.to_container(init, resolve=True) if isinstance(init, DictConfig) else dict(init)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from resnet_repro.cli import hydra_reports_as_usual

        assert self.config is not None and self.hydra_context is not None and len(job_overrides) > 0
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        self._check_request()
        # Every job's config first: an override that does not compose fails before Ray starts.
        jobs = [self._job(list(overrides), idx) for idx, overrides in enumerate(job_overrides, start=initial_job_idx)]
        ray = self._connect()
        try:
            where = self._check_cluster(ray)
            hydra_reports_as_usual()  # from here on Hydra reports its usual way, in this process and in the jobs
            log.info(
                f"Ray: {len(jobs)} jobs on {where}, gpus_per_job={self.gpus:g} cpus_per_job={self.cpus:g}; "
                f"their logs: {self.log_folder}"
            )
            refs = self._submit(ray, jobs)
            outcomes = _collect(ray, refs)
        finally:
            ray.shutdown()
        failures = [
            failed_run(f"run {job.run_dir}", f"Ray task #{job.idx}", reason, job.log_file)
            for job in jobs
            if (reason := outcomes[job.idx][1]) is not None
        ]
        exit_if_any_failed(failures, len(jobs))
        return [outcomes[job.idx][0] for job in jobs]

    def _check_request(self) -> None:
        if self.gpus < 0 or self.cpus < 0:
            raise UserError(
                f"hydra.launcher.gpus_per_job={self.gpus:g} and cpus_per_job={self.cpus:g}: neither can be negative"
            )
        if self.gpus > 1:
            raise UserError(
                f"hydra.launcher.gpus_per_job={self.gpus:g}: a run trains in one process on one GPU, so "
                f"at most 1 (0.5 packs two runs on a GPU); one run on several GPUs: launcher=slurm"
            )

    def _job(self, overrides: list[str], idx: int) -> _Job:
        assert self.config is not None and self.hydra_context is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):  # as Hydra's basic launcher numbers its jobs
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        run_dir = Path(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
        return _Job(idx, overrides, cfg, run_dir, self.log_folder / f"{idx}.log")

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise UserError('launcher=ray needs Ray: pip install -c requirements/constraints.txt -e ".[ray]"') from None
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address and address != "auto" and not _answers(address):
            raise UserError(
                f"nothing answers at {address} (hydra.launcher.address or RAY_ADDRESS): is Ray running "
                f"there? `ray status --address {address}` tells"
            )
        try:
            ray.init(address=self.address if address else _newest_local_ray(), **self.init)
        except (OSError, RuntimeError, ValueError) as err:  # OSError: also ConnectionError, TimeoutError
            first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
            if address:
                hint = (
                    "; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token in "
                    "RAY_AUTH_TOKEN (docs/cluster.md, Ray)"
                )
            elif isinstance(err, OSError) and not isinstance(err, (ConnectionError, TimeoutError)):
                hint = "; Ray keeps its sockets and logs in RAY_TMPDIR (else the temporary folder): it must be writable"
            else:
                hint = ""
            raise UserError(f"cannot {'join Ray at ' + address if address else 'start Ray'}: {first}{hint}") from None
        return ray

    def _check_cluster(self, ray: Any) -> str:
        """Where the jobs run, in words; a UserError if no node has what one job asks for (it would wait for ever)."""
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        count = f"{len(nodes)} node" + ("" if len(nodes) == 1 else "s")
        where = f"the Ray cluster at {ray.get_runtime_context().gcs_address} ({count})"
        if not self.check_resources:
            return where
        for kind, need, key in (("GPU", self.gpus, "gpus_per_job"), ("CPU", self.cpus, "cpus_per_job")):
            most = max((node.get(kind, 0.0) for node in nodes), default=0.0)
            if need > most:
                fix = (
                    "set hydra.launcher.gpus_per_job=0 to train on CPUs, or join a cluster with GPUs (RAY_ADDRESS)"
                    if kind == "GPU"
                    else f"set hydra.launcher.cpus_per_job={most:g} or less"
                )
                raise UserError(
                    f"hydra.launcher.{key}={need:g} but no node of {where} has {need:g} {kind}"
                    f"{'' if need == 1 else 's'} (the most on one node: {most:g}): {fix}; on a cluster "
                    f"that adds nodes on demand, hydra.launcher.check_resources=false"
                )
        return where

    def _submit(self, ray: Any, jobs: Sequence[_Job]) -> dict[Any, _Job]:
        assert self.hydra_context is not None
        # A fresh process per job (max_calls=1): nothing of a run (CUDA context, threads, seeds) leaks into the next.
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_calls=1, max_retries=self.max_retries)(_run_job)
        shared = ray.put((self.hydra_context, self.task_function, Singleton.get_state()))
        env = {
            name: value
            for name, value in os.environ.items()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.forward_env)
        }
        refs = {}
        for job in jobs:
            log.info(f"\t#{job.idx} : {' '.join(filter_overrides(job.overrides))}")
            ref = task.options(name=str(job.run_dir)).remote(shared, job.config, env, str(job.log_file))
            refs[ref] = job
        return refs


def _answers(address: str, timeout_s: float = 5.0) -> bool:
    """Whether something listens at host:port (ray://host:port too): Ray itself would retry for minutes."""
    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _newest_local_ray() -> str | None:
    """None (Ray joins the newest `ray start` on this machine) if that one still answers, else "local" (a new Ray
    here): Ray would wait for minutes on the address a `ray start` left behind when it ended without `ray stop`."""
    try:
        from ray._common.utils import get_ray_address_file  # where `ray start` records its address

        recorded = Path(get_ray_address_file(None)).read_text().strip()
    except (ImportError, OSError):
        return None
    if not recorded or _answers(recorded):
        return None
    log.warning(
        f"the Ray that `ray start` left at {recorded} has ended: starting a new one here (`ray stop` "
        f"forgets the old address)"
    )
    return "local"


def _collect(ray: Any, refs: dict[Any, _Job]) -> dict[int, tuple[JobReturn | None, str | None]]:
    """{job index: (its JobReturn, or None; why it failed, or None)} once every job has ended. A first Ctrl-C asks
    every run to stop (each checkpoints where it is, as on a Ctrl-C of its own), a second one ends the sweep at once."""
    pending, outcomes = dict(refs), {}

    def wait_for_all(then: str) -> None:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                outcomes[job.idx] = _outcome(ray, ref)
                reason = outcomes[job.idx][1]
                if reason is None:
                    log.info(f"run {job.run_dir}: finished ({len(outcomes)} of {len(refs)})")
                else:
                    log.error(f"run {job.run_dir}: failed ({reason}){then}; log: {job.log_file}")

    try:
        wait_for_all("; the others go on")
    except KeyboardInterrupt:
        log.warning("interrupted: every run still going checkpoints and stops (Ctrl-C again to end at once)")
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the job, which the trainer takes as its own Ctrl-C
        wait_for_all("")
    return outcomes


def _outcome(ray: Any, ref: Any) -> tuple[JobReturn | None, str | None]:
    try:
        ret = ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # raised in the task outside Hydra's run_job
        cause = getattr(err, "cause", None)
        return None, str(cause) if isinstance(cause, JobExit) else error_line(str(err)) or type(err).__name__
    except ray.exceptions.WorkerCrashedError:
        return None, "its process died (killed, or out of memory?): WorkerCrashedError"
    except ray.exceptions.RayError as err:  # its node died, or it was cancelled before it started
        first = (str(err).strip().splitlines() or [""])[0]
        return None, f"{type(err).__name__}: {first}".rstrip(": ")
    return ret, task_error(ret)


def _run_job(shared: tuple, config: DictConfig, env: dict[str, str], log_file: str) -> JobReturn:
    """The task: run one job as Hydra's basic launcher does, its output into log_file."""
    hydra_context, task_function, singleton_state = shared
    os.environ.pop(FULL_ERROR, None)
    os.environ.update(env)
    try:  # the sweep's folder: relative paths (run_root, data.root, the log) mean what they mean there
        os.chdir(str(config.hydra.runtime.cwd))
    except OSError as err:
        raise JobExit(
            f"{socket.gethostname()} has no {err.filename}: every node needs the project, run_root and the "
            f"data at the same paths (a shared file system)"
        ) from None
    log_path = Path(log_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "a") as out:  # the descriptors themselves: C libraries and subprocesses write there too
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    print(
        f"job #{config.hydra.job.num} on {socket.gethostname()}, pid {os.getpid()}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}",
        flush=True,
    )
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    try:
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except SystemExit as stop:  # exit_on_user_error's `error:` line (printed above), or an interrupted run
        sys.stderr.flush()
        text = log_path.read_text(errors="replace")
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        raise JobExit(error_line(text) or f"exit status {stop.code}" + (f" ({last})" if last else "")) from None
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    if ret.status == JobStatus.FAILED:  # a bug: its traceback goes to the log, the report names its last line
        traceback.print_exception(ret._return_value)
        sys.stderr.flush()
    return ret
