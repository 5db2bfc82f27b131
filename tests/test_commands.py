"""The README's commands as a user types them, run for real (small overrides only).

`make reproduce-cifar` runs in a copy of the checkout (tests/support/checkout.py), with its default paths, on a
generated CIFAR archive that a local HTTP server hands to torchvision's own download, extraction and checksum
verification (tests/support/cifar_server.py): the prepare step, the sweep, the figures and the report all run as on
the real data set.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from support import REPO
from support.checkout import NEEDS_VENV, TINY_ARGS, copy_checkout, make, output
from support.cifar_server import closed_port_url, make_archive, redirect_env, serve, silent_server
from support.runs import assert_one_line_error, child_env, read_summary, run_command

SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("*.py"))


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The generated CIFAR-10 and CIFAR-100 archives, and torchvision's attributes that describe them."""
    folder = tmp_path_factory.mktemp("archives")
    return {dataset: make_archive(dataset, folder) for dataset in ("cifar10", "cifar100")}


@pytest.fixture
def checkout(tmp_path) -> Path:
    return copy_checkout(tmp_path / "checkout")


# ----- every script starts ------------------------------------------------------------------------------------------
# Every script run with --help, each as __main__ in one process (torch is imported once): the scripts that fail.
HELP_ALL = """
import contextlib, io, runpy, sys
for script in sys.argv[1:]:
    sys.argv, out = [script, "--help"], io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(script, run_name="__main__")
        print(f"{script}: returned without printing its help and exiting")
    except SystemExit as stop:
        if stop.code not in (0, None) or not out.getvalue().strip():
            print(f"{script}: exit {stop.code}, {out.getvalue()[:200]!r}")
    except BaseException as err:
        print(f"{script}: {type(err).__name__}: {err}")
"""


@pytest.mark.slow
def test_every_script_answers_help():
    """`python scripts/X.py --help` for every script: a broken import fails here in seconds."""
    result = subprocess.run(
        [sys.executable, "-c", HELP_ALL, *(f"scripts/{s}" for s in SCRIPTS)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout == "", output(result)


# ----- make reproduce-cifar -----------------------------------------------------------------------------------------
@pytest.mark.slow
@NEEDS_VENV
def test_reproduce_cifar_downloads_trains_and_reports(checkout, archives, tmp_path):
    """`make reproduce-cifar` on a machine without CIFAR-10: torchvision downloads the archive and verifies it, the
    sweep trains, the figures and the report are written; the same command again downloads nothing, skips the
    complete runs and says so."""
    with serve(archives["cifar10"][0].parent) as (url, requests):
        env = child_env(**redirect_env(tmp_path / "sources.json", url, archives))
        command = ["reproduce-cifar", "SEEDS=1", "NETS=plain20,resnet20", TINY_ARGS]
        first = make(checkout, *command, env=env)
        assert first.returncode == 0 and "Traceback" not in first.stderr, output(first)
        downloads = len(requests)
        assert set(requests) == {"/cifar-10-python.tar.gz"}  # torchvision asks once for redirects, then downloads
        for net in ("plain20", "resnet20"):
            summary = read_summary(checkout / "results" / "runs" / "cifar10" / net / "seed0")
            assert (summary["status"], summary["dataset"], summary["iters"]) == ("complete", "cifar10", 4)
        assert (checkout / "data" / "cifar10" / "cifar-10-batches-py" / "decoded-v1-train.npz").exists()
        assert "2 complete runs of 2" in (checkout / "results" / "REPORT.md").read_text()
        for figure in ("fig1", "fig6"):
            assert (checkout / "results" / "figures" / f"{figure}.png").stat().st_size > 0

        again = make(checkout, *command, env=env)
        assert again.returncode == 0, output(again)
        assert len(requests) == downloads  # nothing downloaded again
        assert (again.stdout + again.stderr).count("already complete") == 2, output(again)


@pytest.mark.slow
@NEEDS_VENV
def test_reproduce_cifar100_downloads_and_trains(checkout, archives, tmp_path):
    """`make reproduce-cifar DATASET=cifar100`: the CIFAR-100 archive through the same path, into data/cifar100."""
    with serve(archives["cifar100"][0].parent) as (url, requests):
        env = child_env(**redirect_env(tmp_path / "sources.json", url, archives))
        result = make(checkout, "reproduce-cifar", "DATASET=cifar100", "SEEDS=1", "NETS=resnet20", TINY_ARGS, env=env)
    assert result.returncode == 0, output(result)
    assert set(requests) == {"/cifar-100-python.tar.gz"}
    summary = read_summary(checkout / "results" / "runs" / "cifar100" / "resnet20" / "seed0")
    assert (summary["status"], summary["dataset"]) == ("complete", "cifar100")
    assert (checkout / "results" / "REPORT.md").exists()


@pytest.mark.slow
@NEEDS_VENV
def test_reproduce_cifar_on_an_unpacked_copy_needs_no_network(checkout, archives, tmp_path):
    """CIFAR-10 already unpacked in CIFAR_ROOT: verified there, not downloaded (nothing listens at the URL). Then the
    README's wall-time snippet on the records of the sweep."""
    root = tmp_path / "my-cifar"
    with tarfile.open(archives["cifar10"][0]) as tar:
        tar.extractall(root, filter="data")
    env = child_env(**redirect_env(tmp_path / "sources.json", closed_port_url(), archives))
    result = make(checkout, "reproduce-cifar", f"CIFAR_ROOT={root}", "SEEDS=1", "NETS=resnet20", TINY_ARGS, env=env)
    assert result.returncode == 0, output(result)
    assert "verified" in result.stdout and "Traceback" not in result.stderr, output(result)
    summary = read_summary(checkout / "results" / "runs" / "cifar10" / "resnet20" / "seed0")
    assert (summary["status"], summary["dataset"]) == ("complete", "cifar10")

    snippet = subprocess.run(
        [".venv/bin/python", "-c", wall_time_snippet()], cwd=checkout, capture_output=True, text=True, env=env
    )
    hours = summary["wall_s"] / 3600
    assert snippet.stdout.splitlines() == [f"1 runs on 1 GPU(s): {hours:.1f} h", f"1 runs on 8 GPU(s): {hours:.1f} h"]


def wall_time_snippet() -> str:
    """The README's Python snippet that computes a sweep's wall time from the runs' records."""
    block = re.search(r'```bash\n\.venv/bin/python -c "\n(.*?)"\n```', (REPO / "README.md").read_text(), re.S)
    assert block, "README.md no longer shows the wall-time snippet: update this test"
    return block.group(1)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@NEEDS_VENV
def test_prepare_cifar_takes_an_archive_placed_by_hand(checkout, archives, tmp_path, dataset):
    """The archive put in data/<dataset> by hand (the README's second way): unpacked and verified, no network."""
    archive = archives[dataset][0]
    (checkout / "data" / dataset).mkdir(parents=True)
    shutil.copy(archive, checkout / "data" / dataset / archive.name)
    env = child_env(**redirect_env(tmp_path / "sources.json", closed_port_url(), archives))
    result = make(checkout, "prepare-cifar", f"DATASET={dataset}", env=env)
    assert result.returncode == 0, output(result)
    assert f"{dataset} train:" in result.stdout and f"{dataset} test:" in result.stdout, output(result)


@NEEDS_VENV
def test_reproduce_cifar_without_network_is_one_error_line(checkout, archives, tmp_path):
    """No data and no network: one `error:` line that says where to put the archive or how to point CIFAR_ROOT at a
    copy, exit 2, in seconds; no half-downloaded file stays behind."""
    env = child_env(**redirect_env(tmp_path / "sources.json", closed_port_url(), archives))
    result = make(checkout, "reproduce-cifar", env=env, timeout=120)
    assert_one_line_error(result, "cifar10 not found", "cifar-10-python.tar.gz", "data/cifar10", "CIFAR_ROOT=DIR")
    assert not (checkout / "results" / "runs").exists()


def test_a_network_that_hangs_fails_within_the_download_timeout(archives, tmp_path):
    """A server that accepts and never answers: `python scripts/prepare_data.py` gives up after its download timeout
    (1 s here; DOWNLOAD_TIMEOUT_S by default), not minutes, in one error line that names the timeout."""
    root = tmp_path / "cifar10"
    with silent_server() as url:
        env = child_env(**redirect_env(tmp_path / "sources.json", url, archives))
        start = time.monotonic()
        command = [sys.executable, "scripts/prepare_data.py", "cifar10", "--root", str(root), "--download-timeout", "1"]
        result = run_command(command, env=env, timeout=120)
        elapsed = time.monotonic() - start
    assert_one_line_error(result, "cifar10 not found", "timed out", "--root")
    assert elapsed < 30, elapsed  # start-up, then 1 s; without the timeout it would wait until run_command's 120 s
    assert not (root / "cifar-10-python.tar.gz").exists()


# ----- the other make targets ---------------------------------------------------------------------------------------
@pytest.mark.slow
@NEEDS_VENV
def test_make_demo(checkout, fashion_mnist_dir):
    """`make demo` at a small scale (a few iterations, a 3x3 landscape): Fashion-MNIST without CIFAR-10, the four nets,
    the loss landscapes of the 56-layer nets, the figures and the report, in results/demo of the checkout."""
    result = make(
        checkout,
        "demo",
        f"{TINY_ARGS} data.limit_test=64 data.limit_train=1024",
        "DEMO_LANDSCAPE=--grid 3 --line-points 3 --images 16",
        env=child_env(),
    )
    assert result.returncode == 0, output(result)
    demo = checkout / "results" / "demo"
    for net in ("plain20", "plain56", "resnet20", "resnet56"):
        summary = read_summary(demo / "runs" / "demo_fashion_mnist" / net / "seed0")
        assert (summary["status"], summary["dataset"], summary["iters"]) == ("complete", "fashion_mnist", 4)
    for net in ("plain56", "resnet56"):
        assert (demo / "runs" / "demo_fashion_mnist" / net / "seed0" / "landscape" / "line.csv").exists()
    assert "4 complete runs of 4" in (demo / "REPORT.md").read_text()


@pytest.mark.slow
@NEEDS_VENV
def test_make_model_table_writes_the_committed_table(checkout):
    """`make model-table` rewrites results/tables/architectures.md: the committed file is what the code gives."""
    committed = (checkout / "results" / "tables" / "architectures.md").read_text()
    (checkout / "results" / "tables" / "architectures.md").unlink()
    result = make(checkout, "model-table", env=child_env())
    assert result.returncode == 0, output(result)
    assert (checkout / "results" / "tables" / "architectures.md").read_text() == committed


@pytest.mark.slow
@NEEDS_VENV
def test_make_figures_without_runs_is_one_error_line(checkout):
    """`make figures` on a fresh clone (no runs yet): one `error:` line that says to train first, exit 2."""
    result = make(checkout, "figures", env=child_env())
    assert_one_line_error(result, "no run records", "make reproduce-cifar")
    assert "Figure 7 skipped" in result.stdout  # a note: the error is make_figures' own
    assert not (checkout / "results" / "REPORT.md").exists()


@pytest.mark.slow
def test_figures_from_wandb_without_credentials_is_one_error_line(tmp_path):
    """`python scripts/make_figures.py --wandb ENTITY/PROJECT` without a W&B login (or with a WANDB_MODE W&B refuses):
    one `error:` line that says how to log in or to read the local records, exit 2."""
    home = tmp_path / "home"  # no ~/.netrc
    home.mkdir()
    argv = [sys.executable, "scripts/make_figures.py", "--wandb", "ENTITY/PROJECT", "--out", str(tmp_path / "out")]
    result = subprocess.run(argv, cwd=REPO, env=child_env(HOME=str(home)), capture_output=True, text=True)
    assert_one_line_error(result, "W&B project ENTITY/PROJECT needs W&B credentials", "wandb login", "--runs DIR")
    result = subprocess.run(
        argv, cwd=REPO, env=child_env(HOME=str(home), WANDB_MODE=""), capture_output=True, text=True
    )
    assert_one_line_error(result, "WANDB_MODE=''", "offline")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_figure7_without_its_runs(tmp_path):
    """`layer_responses.py` alone without the runs it draws: one `error:` line; under make figures
    (--skip-if-none) a note, and make figures goes on."""
    argv = [sys.executable, "scripts/layer_responses.py", "--runs", str(tmp_path), "--out", str(tmp_path / "out")]
    result = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True)
    assert_one_line_error(result, "no complete CIFAR-style run of plain20", "make reproduce-cifar")
    skipped = subprocess.run([*argv, "--skip-if-none"], cwd=REPO, env=child_env(), capture_output=True, text=True)
    assert skipped.returncode == 0 and "Figure 7 skipped" in skipped.stdout, output(skipped)


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["evaluate.py", "--run", "{empty}"], ["{empty} is not a run directory (no config.yaml)"]),
        (
            ["loss_landscape.py", "--run", "{missing}"],
            ["{missing} holds no config.yaml", "--run takes a run directory"],
        ),
        (["make_figures.py", "--runs", "{missing}", "--out", "{out}"], ["no run records", "make reproduce-cifar"]),
        (["train.py", "data.root={empty}", "hydra.run.dir={out}"], ["cifar10 not found", "data.root=DIR"]),
        (
            ["prepare_data.py", "cifar10", "--root", "{empty}", "--download-timeout", "0"],
            ["--download-timeout 0: give a positive number of seconds"],
        ),
    ],
    ids=[
        "evaluate-empty-folder",
        "landscape-missing-run",
        "figures-missing-root",
        "train-missing-data",
        "prepare-zero-timeout",
    ],
)
def test_scripts_on_a_missing_run_or_data_set_are_one_error_line(tmp_path, argv, fragments):
    """The README's scripts pointed at a run or a data set that is not there: one `error:` line, exit 2."""
    (tmp_path / "empty").mkdir()
    where = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "out": tmp_path / "out"}
    argv = [arg.format(**where) for arg in argv]
    result = subprocess.run(
        [sys.executable, f"scripts/{argv[0]}", *argv[1:]], cwd=REPO, env=child_env(), capture_output=True, text=True
    )
    assert_one_line_error(result, *(fragment.format(**where) for fragment in fragments))
    assert not (tmp_path / "missing").exists() and list((tmp_path / "empty").iterdir()) == []


@NEEDS_VENV
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["reproduce-cifar", "DATASET=cifar1000"], ["DATASET=cifar1000 is unknown", "DATASET=cifar100"]),
        (["reproduce-cifar", "PROFILE=fast"], ["PROFILE=fast is unknown", "PROFILE=smoke"]),
        (["reproduce-cifar", "NETS=resnet21"], ["NETS=resnet21", "resnet20"]),
        (["reproduce-imagenet"], ["DATA=DIR is required"]),
        (["reproduce-imagenet", "DATA=no-such-folder"], ["no-such-folder/val does not exist"]),
        (["evaluate-torchvision"], ["DATA=DIR is required"]),
        (["gpu-check"], ["no CUDA GPU here", "--dry-run"]),
    ],
    ids=["dataset", "profile", "nets", "imagenet-no-data", "imagenet-missing-folder", "torchvision-no-data", "no-gpu"],
)
def test_make_targets_refuse_bad_input_in_one_line(checkout, args, fragments):
    """A bad variable, a missing data set or a missing GPU: one `error:` line that says what to do, exit 2."""
    assert_one_line_error(make(checkout, *args, env=child_env(), timeout=120), *fragments)


# ----- one training run, then what the README offers on it ----------------------------------------------------------
@pytest.mark.slow
@NEEDS_VENV
def test_one_run_then_its_evaluation_and_landscape(checkout, archives, tmp_path):
    """`python scripts/train.py model=resnet56 seed=1` (CIFAR-10 unpacked in data/cifar10; a few iterations), then
    `python scripts/evaluate.py --run DIR` and `python scripts/loss_landscape.py --run DIR` on it, as typed."""
    with tarfile.open(archives["cifar10"][0]) as tar:
        tar.extractall(checkout / "data" / "cifar10", filter="data")
    env = child_env(**redirect_env(tmp_path / "sources.json", closed_port_url(), archives))
    python = [str(checkout / ".venv" / "bin" / "python")]

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*python, *argv], cwd=checkout, env=env, capture_output=True, text=True, timeout=300)

    small = ["trainer.max_iters=4", "trainer.eval_every=2", "trainer.checkpoint_every=2", "data.batch_size=16"]
    small.append("data.val_size=50")  # the generated set has 250 training images
    trained = run("scripts/train.py", "model=resnet56", "seed=1", *small)
    assert trained.returncode == 0, output(trained)
    run_dir = Path("results/runs/default/resnet56/seed1")
    summary = read_summary(checkout / run_dir)
    assert (summary["status"], summary["model"], summary["seed"], summary["dataset"]) == (
        "complete",
        "resnet56",
        1,
        "cifar10",
    )
    evaluated = run("scripts/evaluate.py", "--run", str(run_dir))
    assert evaluated.returncode == 0, output(evaluated)
    assert (checkout / run_dir / "eval.json").exists()
    landscape = run(
        "scripts/loss_landscape.py", "--run", str(run_dir), "--grid", "3", "--line-points", "3", "--images", "64"
    )
    assert landscape.returncode == 0, output(landscape)
    assert (checkout / run_dir / "landscape" / "surface.csv").exists()
    printed = run("scripts/train.py", "model=resnet56", "seed=1", "--cfg", "job")
    assert printed.returncode == 0 and "name: resnet56" in printed.stdout, output(printed)


# ----- every command of the README and docs/ has its test -----------------------------------------------------------
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:make|python|\.venv/bin/python|ray) ")
# A command as the docs show it -> the tests that run it, or why it cannot run here.
CANNOT_RUN = "cannot run here: "
TESTED_BY = {
    "make reproduce-cifar": ["test_commands.py::test_reproduce_cifar_downloads_trains_and_reports"],
    "make test": [
        CANNOT_RUN + "the suite itself; .ci/run runs it (test_setup.py::test_ci_runs_the_readme_test_command)"
    ],
    "make reproduce-cifar PROFILE=smoke": ["test_train.py::test_the_main_job_smoke_profile"],
    "make reproduce-cifar DATASET=cifar100": ["test_commands.py::test_reproduce_cifar100_downloads_and_trains"],
    "make demo": ["test_commands.py::test_make_demo"],
    "make figures": [
        "test_commands.py::test_reproduce_cifar_downloads_trains_and_reports",
        "test_commands.py::test_make_demo",
        "test_commands.py::test_make_figures_without_runs_is_one_error_line",
    ],
    "make model-table": ["test_commands.py::test_make_model_table_writes_the_committed_table"],
    "python scripts/model_table.py": ["test_commands.py::test_make_model_table_writes_the_committed_table"],
    "python scripts/train.py model=resnet56 seed=1": [
        "test_commands.py::test_one_run_then_its_evaluation_and_landscape"
    ],
    "python scripts/train.py model=resnet56 seed=2": [
        "test_commands.py::test_one_run_then_its_evaluation_and_landscape"
    ],
    "python scripts/evaluate.py --run DIR": [
        "test_commands.py::test_one_run_then_its_evaluation_and_landscape",
        "test_evaluate.py::test_the_readme_command_evaluates_last_and_best_on_the_full_test_set",
    ],
    "make reproduce-imagenet DATA=/path/to/imagenet": [
        CANNOT_RUN + "ImageNet: run on a tiny JPEG folder with the smoke profile; its refusals are tested",
        "test_imagenet.py::test_the_smoke_profile_fits_a_tiny_folder_and_this_machine",
        "test_commands.py::test_make_targets_refuse_bad_input_in_one_line",
    ],
    "make evaluate-torchvision DATA=...": ["test_commands.py::test_make_evaluate_torchvision"],
    "python scripts/make_figures.py --wandb ENTITY/PROJECT": [
        CANNOT_RUN + "reading W&B needs a login and network; the refusals are tested, the reader on W&B's records",
        "test_commands.py::test_figures_from_wandb_without_credentials_is_one_error_line",
        "test_analysis.py::test_wandb_conversion",
    ],
    "python scripts/loss_landscape.py --run DIR [DIR ...]": [
        "test_commands.py::test_one_run_then_its_evaluation_and_landscape"
    ],
    '.venv/bin/python -c "': ["test_commands.py::test_reproduce_cifar_on_an_unpacked_copy_needs_no_network"],
    "make gpu-check FASHION_MNIST=DIR": [
        CANNOT_RUN + "needs a GPU; its refusal on a CPU and its dry run are tested",
        "test_commands.py::test_make_targets_refuse_bad_input_in_one_line",
        "test_gpu_check.py::test_dry_run_writes_its_json_and_markdown",
    ],
    "make gpu-check": [
        CANNOT_RUN + "needs a GPU; its refusal on a CPU and its dry run are tested",
        "test_commands.py::test_make_targets_refuse_bad_input_in_one_line",
        "test_gpu_check.py::test_dry_run_writes_its_json_and_markdown",
    ],
    "python scripts/gpu_check.py --dry-run": ["test_gpu_check.py::test_dry_run_writes_its_json_and_markdown"],
    "mkdir -p train val": [CANNOT_RUN + "unpacking the ImageNet archives, which cannot be downloaded here"],
    "tar -xf ILSVRC2012_img_train.tar -C train": [CANNOT_RUN + "ImageNet's archives cannot be downloaded here"],
    "tar -xf ILSVRC2012_img_val.tar -C val": [CANNOT_RUN + "ImageNet's archives cannot be downloaded here"],
    "(cd train && for f in *.tar; do d=${f%.tar}; mkdir -p $d && tar -xf $f -C $d && rm $f; done)": [
        CANNOT_RUN + "ImageNet's archives cannot be downloaded here"
    ],
    "make reproduce-cifar LAUNCHER=slurm SEEDS=5 ARGS='hydra.launcher.partition=gpu hydra.launcher.account=myproj "
    "hydra.launcher.timeout_min=240'": [
        "test_cluster_commands.py::test_the_slurm_worked_example_trains_on_the_cluster_then_draws_the_figures",
        "test_cluster_commands.py::test_the_slurm_worked_example_on_a_cluster_without_gpus_is_one_error_line",
        "test_cluster_commands.py::test_reproduce_cifar_through_slurm_without_slurm_is_one_error_line",
    ],
    "make reproduce-cifar LAUNCHER=ray": [
        "test_cluster_commands.py::test_reproduce_cifar_through_a_ray_that_the_sweep_starts_and_stops"
    ],
    "make reproduce-cifar LAUNCHER=ray ARGS='hydra.launcher.gpus_per_job=0.5'": [
        "test_cluster_commands.py::test_reproduce_cifar_joins_the_ray_cluster_of_ray_start"
    ],
    "RAY_ADDRESS=HEAD:6379 make reproduce-cifar LAUNCHER=ray": [
        "test_cluster_commands.py::test_reproduce_cifar_joins_the_ray_cluster_of_ray_start"
    ],
    "ray start --head --port=6379": [
        "test_cluster_commands.py::test_reproduce_cifar_joins_the_ray_cluster_of_ray_start"
    ],
    "ray start --address=HEAD:6379": [CANNOT_RUN + "a second machine joining the Ray cluster"],
    "ray start": ["test_cluster_commands.py::test_reproduce_cifar_joins_the_ray_cluster_of_ray_start"],
    "ray stop": ["test_cluster_commands.py::test_reproduce_cifar_joins_the_ray_cluster_of_ray_start"],
    "ray start --head --block": ["test_ray_sweeps.py::test_a_ray_sweep_leaves_the_records_of_the_local_launcher"],
    "ray get-auth-token": [CANNOT_RUN + "Ray's own command on a cluster with token authentication"],
    "make venv EXTRAS=dev,search": [
        "test_cluster_commands.py::test_make_venv_with_the_search_extra_does_nothing_once_installed"
    ],
    "python scripts/train.py -m hparams_search=cifar_lr_wd": [
        "test_cluster_commands.py::test_the_readme_search_its_final_run_and_make_figures"
    ],
    "python scripts/train.py -m hparams_search=cifar_lr_wd launcher=ray hydra.sweeper.n_jobs=8": [
        "test_hparams_search.py::test_a_search_through_ray"
    ],
    "python scripts/train.py -m hparams_search=cifar_lr_wd launcher=slurm hydra.sweeper.n_jobs=16 "
    "hydra.launcher.partition=gpu": ["test_hparams_search.py::test_a_search_through_slurm_goes_on_past_a_failed_trial"],
    "python scripts/train.py optim.lr=0.0871 optim.weight_decay=0.000231 data.split=full "
    "experiment_name=cifar_lr_wd_final": [
        "test_cluster_commands.py::test_the_readme_search_its_final_run_and_make_figures"
    ],
    "python scripts/slurm_cluster.py start [--clean]": [
        "test_cluster_commands.py::test_the_slurm_cluster_script_starts_reports_and_stops"
    ],
    "python scripts/slurm_cluster.py status": [
        "test_cluster_commands.py::test_the_slurm_cluster_script_starts_reports_and_stops"
    ],
    "python scripts/slurm_cluster.py stop": [
        "test_cluster_commands.py::test_the_slurm_cluster_script_starts_reports_and_stops"
    ],
    "make test-fast": [CANNOT_RUN + "a part of the suite itself (make test runs it)"],
    "make test ARGS='-m slurm'": [CANNOT_RUN + "a part of the suite itself (make test runs it)"],
    "make test ARGS=tests/test_ray_sweeps.py": [CANNOT_RUN + "a part of the suite itself (make test runs it)"],
    "python scripts/train.py -m experiment=cifar10/plain20,...,cifar10/resnet1202 'seed=range(0,5)' launcher=slurm "
    "data.root=data/cifar10 hydra.launcher.partition=gpu hydra.launcher.account=myproj "
    "hydra.launcher.timeout_min=240": [
        "test_cluster_commands.py::test_the_slurm_worked_example_trains_on_the_cluster_then_draws_the_figures"
    ],
    "make reproduce-imagenet LAUNCHER=slurm DATA=/path/to/imagenet ARGS='hydra.launcher.partition=gpu "
    "hydra.launcher.gpus_per_node=8 hydra.launcher.cpus_per_task=10 hydra.launcher.mem_gb=480 "
    "hydra.launcher.timeout_min=2880 hydra.launcher.constraint=a100'": [
        CANNOT_RUN + "ImageNet on 8-GPU nodes; the same launcher runs the CIFAR worked example",
        "test_cluster_commands.py::test_the_slurm_worked_example_trains_on_the_cluster_then_draws_the_figures",
    ],
    "make bench": [
        CANNOT_RUN + "the full benchmark takes about half an hour; make bench ARGS=--quick runs as typed (two cases)",
        "test_bench.py::test_make_bench_quick_writes_a_quick_report",
    ],
    "python scripts/bench.py": ["test_bench.py::test_bench_writes_its_report"],
    "python scripts/bench.py --out results/bench/cpu-2core-2026-12-06.json": [
        "test_bench.py::test_bench_writes_its_report"
    ],
    "python scripts/train.py model=resnet20 trainer.max_iters=300 data.split=full": [
        "test_bench.py::test_whole_command_and_startup_time_our_command_as_processes"
    ],
    "python scripts/bench.py --only imagenet_decode --imagenet-root DIR": [
        CANNOT_RUN + "nvJPEG needs a GPU; make gpu-check runs it, and its dry run on a CPU is tested",
        "test_gpu_check.py::test_dry_run_writes_its_json_and_markdown",
    ],
    "make ... LAUNCHER=ray": [CANNOT_RUN + "a pattern for any make target, not a command"],
    "CUDA_VISIBLE_DEVICES=0,1,2,3 make ...": [CANNOT_RUN + "a pattern for any make target, not a command"],
}


def documented_commands() -> dict[str, str]:
    """Every command README.md and docs/ show: the lines of their bash blocks (a multi-line `python -c "` as its
    first line) and inline code that starts like a command, each with the file it is in."""
    found = {}
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            lines = iter(re.sub(r"\\\n\s*", " ", block).splitlines())
            for line in lines:
                command = re.split(r"\s+#", line)[0].strip()
                if command.endswith('-c "'):  # a multi-line program: skip to its closing quote
                    next(line for line in lines if line.rstrip().endswith('"'))
                if command and not command.startswith("#"):
                    found.setdefault(" ".join(command.split()), doc.name)
        for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
            if COMMAND_START.match(span):
                found.setdefault(" ".join(span.split()), doc.name)
    return found


def test_every_documented_command_has_a_test():
    """A command added to README.md or docs/ must name the test that runs it as typed (or why it cannot run here);
    every test named here must exist."""
    missing = {command: doc for command, doc in documented_commands().items() if command not in TESTED_BY}
    assert not missing, f"commands the docs show without a test in TESTED_BY: {missing}"
    for tests in TESTED_BY.values():
        for test in tests:
            if test.startswith(CANNOT_RUN):
                continue
            file, name = test.split("::")
            assert re.search(rf"^def {re.escape(name)}\(", (REPO / "tests" / file).read_text(), re.M), test


# ----- ImageNet without ImageNet: the tiny JPEG folder ---------------------------------------------------------------
# The tiny folder's images are 64x80: evaluate on 32-pixel crops at two scales (the paper's sizes need real images).
TINY_IMAGENET_EVAL = "IMAGENET_EVAL_ARGS=--data scale_min=40 --data crop_size=32 --scales 32,40 --workers 0"


@pytest.mark.slow
@NEEDS_VENV
def test_make_evaluate_torchvision(checkout, tmp_path):
    """`make evaluate-torchvision DATA=...` with torchvision's ResNet-18 weights saved as a file (downloading them
    needs network): the three protocols into results/imagenet_torchvision/; without network and without a file, one
    `error:` line that says how to save the weights."""
    import torch
    import torchvision

    from support.fake_data import make_image_folder

    data = make_image_folder(tmp_path / "imagenet")
    weights = tmp_path / "resnet18_weights.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    env = child_env(TORCH_HOME=str(tmp_path / "torch-home"))  # no cached download
    result = make(
        checkout, "evaluate-torchvision", f"DATA={data}", "TV_MODELS=resnet18", f"TV_WEIGHTS={weights}",
        TINY_IMAGENET_EVAL, env=env,
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    saved = json.loads((checkout / "results" / "imagenet_torchvision" / "resnet18.json").read_text())
    assert set(saved["weights"]["resnet18_weights"]["eval"]) == {"center", "10crop", "multiscale"}

    no_network = {name: closed_port_url() for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")}
    offline = make(
        checkout,
        "evaluate-torchvision",
        f"DATA={data}",
        "TV_MODELS=resnet18",
        TINY_IMAGENET_EVAL,
        env={**env, **no_network},
    )
    assert_one_line_error(offline, "cannot download ResNet18_Weights.IMAGENET1K_V1", "torch.save")
