"""The cluster, Ray, search and set-up commands of README.md and docs/cluster.md as a user types them, run for real at
a small scale (SEEDS=1, NETS=resnet20, 4 iterations): `make reproduce-cifar` through SLURM (the single-node cluster
of tests/support/slurm_cluster.py) and through Ray (one that the sweep starts, and one of `ray start --head`), the
hyperparameter search, its final run and `make figures`, `scripts/slurm_cluster.py`, and `make venv
EXTRAS=dev,search`. The make commands run in a copy of the checkout with their default paths
(tests/support/checkout.py), on a generated CIFAR-10 unpacked in a folder of its own (CIFAR_ROOT=...), which
torchvision verifies as it would the real one (tests/support/cifar_server.py).

Left to other files: requeues, failures inside jobs and DDP jobs (tests/test_slurm_sweeps.py); Ray runs against
local ones, killed runs, GPU requests of 1 and 2 (tests/test_ray_sweeps.py); what a search chooses, its refusals,
failed and killed trials, searches through Ray and SLURM (tests/test_hparams_search.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from support import REPO
from support.checkout import NEEDS_VENV, TINY_ARGS, copy_checkout, make, output
from support.cifar_server import closed_port_url, make_archive, redirect_env
from support.runs import assert_one_line_error, child_env, read_summary
from support.system import require_system

# docs/cluster.md's worked example on the test cluster: its partition, and a node without GPUs ("On a partition
# without GPUs"), one CPU per job.
SLURM_ARGS = (
    "hydra.launcher.partition=debug hydra.launcher.account=myproj hydra.launcher.timeout_min=240 "
    "hydra.launcher.gpus_per_node=null hydra.launcher.tasks_per_node=1 hydra.launcher.cpus_per_task=1"
)
# The search's trials (2) and the final run, as small: 4 iterations, 50 of the 250 training images held out.
SEARCH_ARGS = [
    "data.val_size=50",
    "data.batch_size=16",
    "trainer.max_iters=4",
    "trainer.eval_every=2",
    "trainer.checkpoint_every=2",
    "schedule.milestones=[2]",
    "hydra.sweeper.n_trials=2",
]


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The generated CIFAR-10 unpacked in a folder of its own (for CIFAR_ROOT=), and the environment in which
    torchvision verifies it as the real one (nothing listens at its download URL: nothing is downloaded)."""
    folder = tmp_path_factory.mktemp("cifar10")
    archive, attributes = make_archive("cifar10", folder)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "root", filter="data")
    env = child_env(**redirect_env(folder / "sources.json", closed_port_url(), {"cifar10": (archive, attributes)}))
    env.pop("RAY_ADDRESS", None)
    return folder / "root", env


@pytest.fixture
def checkout(tmp_path) -> Path:
    return copy_checkout(tmp_path / "checkout")


def run_records(checkout: Path) -> list[Path]:
    return sorted((checkout / "results").rglob("summary.json"))


def assert_one_complete_resnet20(checkout: Path, result: subprocess.CompletedProcess) -> None:
    """The sweep of `result` trained its one run, and the figures step drew from it without a traceback (the step
    goes on past one: `|| echo "Figure 7 skipped"`)."""
    assert result.returncode == 0 and "Traceback" not in result.stderr, output(result)
    summary = read_summary(checkout / "results" / "runs" / "cifar10" / "resnet20" / "seed0")
    assert (summary["status"], summary["dataset"], summary["iters"]) == ("complete", "cifar10", 4), summary
    assert "1 complete runs of 1" in (checkout / "results" / "REPORT.md").read_text()
    assert (checkout / "results" / "figures" / "fig6.png").stat().st_size > 0


# ----- SLURM: docs/cluster.md, "Worked example" ---------------------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.slow
@NEEDS_VENV
def test_the_slurm_worked_example_trains_on_the_cluster_then_draws_the_figures(slurm_cluster, checkout, cifar10):
    """`make reproduce-cifar LAUNCHER=slurm SEEDS=5 ARGS='hydra.launcher.partition=gpu hydra.launcher.account=myproj
    hydra.launcher.timeout_min=240'` with one seed of ResNet-20 on the test cluster's partition: the job array runs,
    the keys reach sbatch, and make draws the figures from the record."""
    root, env = cifar10
    args = f"{TINY_ARGS} {SLURM_ARGS}"
    result = make(
        checkout, "reproduce-cifar", "LAUNCHER=slurm", "SEEDS=1", "NETS=resnet20", args, f"CIFAR_ROOT={root}", env=env
    )
    assert_one_complete_resnet20(checkout, result)
    scripts = list((checkout / "results" / "runs" / "cifar10" / ".submitit").glob("*/*_submission.sh"))
    assert len(scripts) == 1, scripts  # one job array
    sbatch = scripts[0].read_text()
    for option in ("--partition=debug", "--account=myproj", "--time=240"):
        assert f"#SBATCH {option}\n" in sbatch, sbatch


@pytest.mark.slurm
@pytest.mark.slow
@NEEDS_VENV
def test_the_slurm_worked_example_on_a_cluster_without_gpus_is_one_error_line(slurm_cluster, checkout, cifar10):
    """The same command as typed (a GPU per run, partition gpu) on the test cluster, which has neither: sbatch
    refuses the array, and the sweep says so in one line (sbatch's own lines above it), before any run."""
    root, env = cifar10
    docs_args = "ARGS=hydra.launcher.partition=gpu hydra.launcher.account=myproj hydra.launcher.timeout_min=240"
    result = make(
        checkout,
        "reproduce-cifar",
        "LAUNCHER=slurm",
        "SEEDS=5",
        docs_args,
        "NETS=resnet20",
        f"CIFAR_ROOT={root}",
        env=env,
    )
    assert_one_line_error(result, "sbatch refused the sweep: ", "hydra.launcher keys", "`sinfo`")
    assert not run_records(checkout)


def _path_without(command: str, folder: Path) -> str:
    """A PATH of one folder that links every command of this PATH but `command` (a machine without it)."""
    folder.mkdir()
    for directory in map(Path, os.environ["PATH"].split(os.pathsep)):
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.name != command and not os.path.lexists(folder / entry.name):  # the first on PATH wins
                (folder / entry.name).symlink_to(entry)
    assert shutil.which(command, path=str(folder)) is None
    return str(folder)


@NEEDS_VENV
def test_reproduce_cifar_through_slurm_without_slurm_is_one_error_line(checkout, cifar10, tmp_path):
    """`make reproduce-cifar LAUNCHER=slurm` on a machine without SLURM's sbatch: one line that says so and what to
    use instead, in seconds, before any run (it was submitit's FileNotFoundError traceback)."""
    root, env = cifar10
    env = {**env, "PATH": _path_without("sbatch", tmp_path / "bin")}
    result = make(checkout, "reproduce-cifar", "LAUNCHER=slurm", f"CIFAR_ROOT={root}", env=env, timeout=120)
    assert_one_line_error(result, "sbatch, which is not on PATH", "launcher=local or launcher=ray")
    assert not run_records(checkout)


# ----- Ray: README, "Several GPUs on one machine, or a Ray cluster" -------------------------------------------------
@pytest.fixture
def ray_env(cifar10, tmp_path):
    """The environment of a user's shell for Ray: a Ray folder of its own (short: Ray's socket paths must stay under
    108 characters), so that no Ray of this machine is joined and none is left behind, and a token of its own (Ray
    would otherwise write one in the home folder); addresses on the loopback."""
    require_system(
        importlib.util.find_spec("ray") is not None,
        'Ray not installed: pip install -c requirements/constraints.txt -e ".[ray]" (the ray extra)',
    )
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-"))
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **cifar10[1],
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every address on the loopback, not the machine's own
    }
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _processes_of(folder: str) -> list[str]:
    """Command lines of the processes that name `folder` (Ray's processes name their temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # not a process, or it has ended
            continue
        if folder in line:
            found.append(line)
    return found


@pytest.mark.slow
@NEEDS_VENV
def test_reproduce_cifar_through_a_ray_that_the_sweep_starts_and_stops(checkout, cifar10, ray_env):
    """`make reproduce-cifar LAUNCHER=ray` with `ARGS='hydra.launcher.gpus_per_job=0'` (README: on a machine without
    GPUs): Ray starts on this machine for the sweep, the run trains as a Ray task, make draws the figures, and no
    Ray process is left once make returns."""
    root = cifar10[0]
    args = f"{TINY_ARGS} hydra.launcher.gpus_per_job=0 +hydra.launcher.init.include_dashboard=false"  # 2 cores
    result = make(
        checkout, "reproduce-cifar", "LAUNCHER=ray", "SEEDS=1", "NETS=resnet20", args, f"CIFAR_ROOT={root}", env=ray_env
    )
    assert_one_complete_resnet20(checkout, result)
    assert "Ray: 1 jobs on the Ray cluster at 127.0.0.1:" in result.stdout, output(result)
    assert list((checkout / "results" / "runs" / "cifar10" / ".ray").glob("*/0.log"))  # it ran as a Ray task
    deadline = time.monotonic() + 30
    while left := _processes_of(ray_env["RAY_TMPDIR"]):
        assert time.monotonic() < deadline, "Ray processes left after the sweep:\n" + "\n".join(left)
        time.sleep(0.5)


@pytest.mark.slow
@NEEDS_VENV
def test_reproduce_cifar_joins_the_ray_cluster_of_ray_start(checkout, cifar10, ray_env):
    """`ray start --head --port=PORT` (no GPU), then `RAY_ADDRESS=HEAD:PORT make reproduce-cifar LAUNCHER=ray` with
    gpus_per_job=0 trains on it; `make reproduce-cifar LAUNCHER=ray ARGS='hydra.launcher.gpus_per_job=0.5'` as typed
    (no RAY_ADDRESS: the newest `ray start` here) asks it for a GPU it does not have: one `error:` line before any run.
    `ray stop` at the end, whatever happened."""
    root = cifar10[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    head = [
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=false",
    ]
    try:
        started = subprocess.run(
            [ray, "start", "--head", *head, "--disable-usage-stats"],
            env=ray_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, output(started)

        env = {**ray_env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        args = f"{TINY_ARGS} hydra.launcher.gpus_per_job=0"
        result = make(
            checkout, "reproduce-cifar", "LAUNCHER=ray", "SEEDS=1", "NETS=resnet20", args, f"CIFAR_ROOT={root}", env=env
        )
        assert_one_complete_resnet20(checkout, result)
        assert f"Ray: 1 jobs on the Ray cluster at 127.0.0.1:{port} (1 node)" in result.stdout, output(result)

        half = make(
            checkout,
            "reproduce-cifar",
            "LAUNCHER=ray",
            "ARGS=hydra.launcher.gpus_per_job=0.5",
            f"CIFAR_ROOT={root}",
            env=ray_env,
        )
        assert_one_line_error(
            half,
            f"hydra.launcher.gpus_per_job=0.5 but no node of the Ray cluster at 127.0.0.1:{port}",
            "hydra.launcher.gpus_per_job=0 to train on CPUs",
        )
        assert [p.parent.parent.name for p in run_records(checkout)] == ["resnet20"]  # no other run started
    finally:
        subprocess.run([ray, "stop"], env=ray_env, capture_output=True, timeout=120)


# ----- README, "Hyperparameter search (validation split only)" ------------------------------------------------------
@pytest.mark.slow
@NEEDS_VENV
def test_the_readme_search_its_final_run_and_make_figures(checkout, cifar10):
    """`python scripts/train.py -m hparams_search=cifar_lr_wd` (2 trials of ResNet-20 on CIFAR-10, 4 iterations),
    then the final command it prints, as printed, then `make figures`: the report gives the final command and the
    final run's test error, the only test error of the search."""
    require_system(
        importlib.util.find_spec("optuna") is not None,
        'Optuna not installed: pip install -c requirements/constraints.txt -e ".[search]" (the search extra)',
    )
    root, env = cifar10

    def python(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *argv], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
        )

    search = python("scripts/train.py", "-m", "hparams_search=cifar_lr_wd", f"data.root={root}", *SEARCH_ARGS)
    assert search.returncode == 0, output(search)
    trials = sorted((checkout / "results" / "runs" / "search_cifar_lr_wd").glob("trial*/summary.json"))
    assert len(trials) == 2, trials
    printed = re.search(r"test it once: (python scripts/train\.py .*)$", search.stdout, re.MULTILINE)
    assert printed, output(search)
    final = printed.group(1)
    argv = shlex.split(final)
    assert argv[:2] == ["python", "scripts/train.py"] and "data.split=full" in argv, final
    assert "experiment_name=cifar_lr_wd_final" in argv, final

    trained = python(*argv[1:])
    assert trained.returncode == 0, output(trained)
    (summary_file,) = (checkout / "results" / "runs" / "cifar_lr_wd_final").rglob("summary.json")
    summary = read_summary(summary_file.parent)
    assert (summary["status"], summary["split"], summary["dataset"]) == ("complete", "full", "cifar10"), summary

    figures = make(checkout, "figures", env=env)
    assert figures.returncode == 0 and "Traceback" not in figures.stderr, output(figures)
    report = (checkout / "results" / "REPORT.md").read_text()
    assert f"```\n{final}\n```" in report
    assert f"final test error {100 * summary['final_test_err']:.2f}%" in report


# ----- docs/cluster.md, "Running the test cluster" ------------------------------------------------------------------
@pytest.mark.slurm
@pytest.mark.slow
def test_the_slurm_cluster_script_starts_reports_and_stops(slurm_cluster):
    """`python scripts/slurm_cluster.py start --clean`, `start`, `status`, `stop`, `status`: a fresh cluster (job ids
    from 1 again), then the same one reused, healthy (exit 0), stopped, not running (exit 1). The session's cluster
    is restarted at the end, as it was (its own, or one started with this script)."""

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "scripts/slurm_cluster.py", *args], cwd=REPO, capture_output=True, text=True, timeout=180
        )

    try:
        clean = script("start", "--clean")
        assert clean.returncode == 0 and "SLURM cluster started in" in clean.stdout, output(clean)
        job = subprocess.run(["sbatch", "--parsable", "--wrap", "true"], capture_output=True, text=True, timeout=30)
        assert job.stdout.strip() == "1", output(job)  # state and database wiped together

        again = script("start")
        assert again.returncode == 0 and "SLURM cluster already running, reused" in again.stdout, output(again)
        status = script("status")
        assert status.returncode == 0 and "SLURM cluster healthy" in status.stdout, output(status)

        stop = script("stop")
        assert stop.returncode == 0 and "SLURM cluster stopped" in stop.stdout, output(stop)
        status = script("status")
        assert status.returncode == 1 and "SLURM cluster not running" in status.stdout, output(status)
    finally:
        if slurm_cluster.reused:  # the session reuses a cluster started with this script, and leaves it running
            script("start")
        else:
            slurm_cluster.start()
    assert slurm_cluster.is_healthy()


# ----- README, "Hyperparameter search": make venv EXTRAS=dev,search -------------------------------------------------
@NEEDS_VENV
def test_make_venv_with_the_search_extra_does_nothing_once_installed(checkout):
    """`make venv EXTRAS=dev,search` where .venv has those extras: exit 0, nothing installed, the stamp untouched;
    an extra it lacks would be installed (the dry run shows it). The checkout's .venv is this one's: the dry run
    first, so that nothing is ever installed into it from here."""
    stamp = REPO / ".venv" / ".installed"
    require_system(
        {"dev", "search"} <= set(stamp.read_text().split()),
        f"this .venv lacks the search extra ({stamp.name}: {stamp.read_text().strip()}); make venv EXTRAS=dev,search",
    )
    planned = make(checkout, "-n", "venv", "EXTRAS=dev,search", env=child_env())
    assert planned.returncode == 0 and "pip install" not in planned.stdout, output(planned)
    missing = make(checkout, "-n", "venv", "EXTRAS=dev,search,not-installed", env=child_env())
    assert "pip install" in missing.stdout and ".[dev,search,not-installed]" in missing.stdout, output(missing)

    before = stamp.stat().st_mtime_ns
    result = make(checkout, "venv", "EXTRAS=dev,search", env=child_env(), timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), output(result)
    assert stamp.stat().st_mtime_ns == before
