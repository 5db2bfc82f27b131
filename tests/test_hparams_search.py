"""Hyperparameter searches (`scripts/train.py -m hparams_search=cifar_lr_wd`, hydra_plugins/resnet_repro_optuna) as a
user types them, on a real Optuna study in SQLite: ResNet-8 on 512 Fashion-MNIST images, 20 iterations a trial, lr
and weight decay searched. What the search did is checked against the trials' own records on disk."""

import importlib.util
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from resnet_repro.cli import USER_ERROR_EXIT
from resnet_repro.engine.checkpoint import TEST_KILL_ENV
from support.configs import SLURM_TEST_NODE, compose_train_config, resnet8_run
from support.runs import child_env, load_script, read_summary, run_command, train_command
from support.system import require_system

pytestmark = pytest.mark.slow

STUDY = "cifar_lr_wd"
EXPERIMENT = "search_cifar_lr_wd"  # configs/hparams_search/cifar_lr_wd.yaml
# lr at most 0.2: every trial of 20 iterations trains (the file's range reaches 1.0, which may diverge this short)
SPACE = ["optim.lr=tag(log,interval(0.02,0.2))"]


@pytest.fixture(scope="module")
def optuna():
    require_system(
        importlib.util.find_spec("optuna") is not None,
        'Optuna not installed: pip install -c requirements/constraints.txt -e ".[search]" (the search extra)',
    )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _search(run_root: Path, data_root: Path, *overrides: str, trials: int = 3, env=None):
    run = resnet8_run(data_root, limit_train=512, max_iters=20, eval_every=10, checkpoint_every=20)
    cmd = train_command(
        "-m",
        "hparams_search=cifar_lr_wd",
        *run,
        "schedule.milestones=[15]",
        f"run_root={run_root}",
        f"hydra.sweeper.n_trials={trials}",
        *overrides,
    )
    return run_command(cmd, env=env, timeout=300)


def _study(optuna, run_root: Path):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_root / EXPERIMENT / 'optuna.db'}")


def _final_val_err(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["val_err"] for row in rows if "val_err" in row][-1]


def _trial_dirs(run_root: Path) -> list[Path]:
    return sorted((run_root / EXPERIMENT).glob("trial*"), key=lambda p: int(p.name[len("trial") :]))


@pytest.fixture(scope="module")
def first_search(optuna, fashion_mnist_dir, tmp_path_factory):
    """A 3-trial search, never interrupted: (its run root, its output)."""
    run_root = tmp_path_factory.mktemp("search")
    done = _search(run_root, fashion_mnist_dir, *SPACE)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_root, done


def test_the_best_trial_is_the_lowest_validation_error_on_disk(optuna, first_search):
    run_root, done = first_search
    study = _study(optuna, run_root)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    dirs = _trial_dirs(run_root)
    assert [d.name for d in dirs] == ["trial0", "trial1", "trial2"]
    assert all(read_summary(d)["status"] == "complete" and read_summary(d)["split"] == "paper" for d in dirs)
    # The trials never evaluated the test set: no test error in their records (data.evaluate_test=false).
    assert all(read_summary(d)["final_test_err"] is None for d in dirs)
    rows = [json.loads(line) for d in dirs for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("val_err" in row and not any(k.startswith("test") for k in row) for row in rows)
    on_disk = {d.name: _final_val_err(d) for d in dirs}
    for t in study.trials:  # the objective is each run's own final validation error
        assert t.value == on_disk[t.user_attrs["run_dir"]]
    best = min(on_disk, key=on_disk.get)
    assert study.best_trial.user_attrs["run_dir"] == best
    assert study.trials[0].params == {"optim.lr": 0.1, "optim.weight_decay": 1e-4}  # the paper's, enqueued
    final = study.best_trial.user_attrs["final_command"]
    assert f"best: trial {study.best_trial.number}, final_val_err" in done.stdout, done.stdout
    assert final in done.stdout and "data.split=full" in final and "hparams_search" not in final
    assert "evaluate_test" not in final  # the final run is tested once


def test_the_same_command_continues_the_study(optuna, first_search, fashion_mnist_dir):
    run_root, _ = first_search
    before = [(t.number, t.params, t.value) for t in _study(optuna, run_root).trials]
    done = _search(run_root, fashion_mnist_dir, *SPACE)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = _study(optuna, run_root)
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert [(t.number, t.params, t.value) for t in study.trials[:3]] == before  # kept, not trained again
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6  # no setting repeated
    assert [d.name for d in _trial_dirs(run_root)] == [f"trial{k}" for k in range(6)]
    on_disk = {d.name: _final_val_err(d) for d in _trial_dirs(run_root)}
    assert study.best_trial.user_attrs["run_dir"] == min(on_disk, key=on_disk.get)


def test_the_report_draws_the_trials_and_the_best_trials_then_the_final_run(optuna, first_search, tmp_path):
    run_root, _ = first_search
    make_figures = load_script("make_figures")
    assert make_figures.main(["--runs", str(run_root), "--out", str(tmp_path)]) == 0
    slug = f"search_{STUDY}"
    assert (tmp_path / "figures" / f"{slug}.png").stat().st_size > 0
    assert (tmp_path / "tables" / f"{slug}.md").exists() and (tmp_path / "tables" / f"{slug}.csv").exists()
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Hyperparameter searches (validation split only)" in report
    assert "Fashion-MNIST, 20 iterations" in report
    assert "held-out training images (data.split=paper); test set not evaluated" in report
    assert "0 complete runs of 0" in report  # the trials are not runs of a protocol (no Table 6 of trials)
    best = _study(optuna, run_root).best_trial
    final = best.user_attrs["final_command"]
    assert f"```\n{final}\n```" in report and "Not run yet" in report

    # The final run: the command the report gives, as it stands; then the report has its one test error.
    argv = shlex.split(final)
    assert argv[:2] == ["python", "scripts/train.py"]
    trained = run_command([sys.executable, *argv[1:]], timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    final_dir = run_root / f"{STUDY}_final" / "resnet8" / "seed0"
    summary = read_summary(final_dir)
    assert summary["status"] == "complete" and summary["split"] == "full"
    assert make_figures.main(["--runs", str(run_root), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert f"final test error {100 * summary['final_test_err']:.2f}%" in report


@pytest.mark.parametrize(
    "override, says",
    [
        ("data.split=full", "data.split=full leaves no validation set"),
        ("hydra.sweeper.objective=final_test_err", "would choose the setting on the test set"),
        ("data.split=choice(paper,full)", "data.split cannot be searched"),
        ("data.name=imagenet", "hparams_search on ImageNet"),
    ],
)
def test_a_search_on_the_test_set_is_refused_before_any_trial(optuna, fashion_mnist_dir, tmp_path, override, says):
    done = _search(tmp_path, fashion_mnist_dir, override)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == USER_ERROR_EXIT and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert says in lines[0], lines[0]
    assert not list(tmp_path.rglob("optuna.db")) and not list(tmp_path.rglob("summary.json"))


def test_a_search_file_without_multirun_is_refused(tmp_path):
    done = run_command(train_command("hparams_search=cifar_lr_wd", f"run_root={tmp_path}"), timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == USER_ERROR_EXIT and len(lines) == 1 and "add -m" in lines[0], done.stderr
    assert not list(tmp_path.rglob("summary.json"))


def test_failed_trials_are_fail_in_the_study_and_the_search_goes_on(optuna, fashion_mnist_dir, tmp_path):
    """Every lr of this space diverges: each trial's run raises (its `error:` line), is FAIL with that reason, and
    the next trial runs; the search ends with one line saying that no trial completed."""
    done = _search(tmp_path, fashion_mnist_dir, "optim.lr=interval(1.0e6,2.0e6)", "hydra.sweeper.enqueue=[]", trials=2)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    study = _study(optuna, tmp_path)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all("lower optim.lr" in t.user_attrs["failure"] for t in study.trials), [t.user_attrs for t in study.trials]
    assert [read_summary(d)["status"] for d in _trial_dirs(tmp_path)] == ["failed", "failed"]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: search {STUDY} has no complete trial")


def test_a_trial_killed_with_its_search_is_fail_when_the_search_is_launched_again(optuna, fashion_mnist_dir, tmp_path):
    """SIGKILL in trial 0's first evaluation kills the search (the basic launcher trains in its process): the same
    command then records trial 0 as FAIL, from its records, and goes on."""
    killed = _search(tmp_path, fashion_mnist_dir, *SPACE, trials=1, env=child_env(**{TEST_KILL_ENV: "eval@10"}))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert [t.state.name for t in _study(optuna, tmp_path).trials] == ["RUNNING"]
    done = _search(tmp_path, fashion_mnist_dir, *SPACE, trials=1)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = _study(optuna, tmp_path)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert "run killed" in study.trials[0].user_attrs["failure"], study.trials[0].user_attrs
    assert study.best_trial.user_attrs["run_dir"] == "trial1"


def test_a_search_through_ray(optuna, fashion_mnist_dir, tmp_path):
    """Two trials launched together as Ray tasks on a local Ray that the sweep starts (1 CPU each, no GPU)."""
    require_system(
        importlib.util.find_spec("ray") is not None,
        'Ray not installed: pip install -c requirements/constraints.txt -e ".[ray]" (the ray extra)',
    )
    # Ray's own folder, short (its socket paths must stay under 108 characters) and apart from the machine's: no Ray
    # of this machine is joined, and none is left behind.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-"))
    env = child_env(RAY_TMPDIR=str(ray_tmp), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", WANDB_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    try:
        done = _search(
            tmp_path,
            fashion_mnist_dir,
            *SPACE,
            "launcher=ray",
            "hydra.launcher.cpus_per_job=1",
            "hydra.launcher.gpus_per_job=0",
            "+hydra.launcher.init.num_cpus=2",
            "+hydra.launcher.init.include_dashboard=false",
            "hydra.sweeper.n_jobs=2",
            trials=2,
            env=env,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = _study(optuna, tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert sorted((tmp_path / EXPERIMENT / ".ray").glob("*/*.log"))  # the trials ran as Ray tasks
    for t in study.trials:
        assert t.value == _final_val_err(tmp_path / EXPERIMENT / t.user_attrs["run_dir"])


@pytest.mark.slurm
def test_a_search_through_slurm_goes_on_past_a_failed_trial(optuna, slurm_cluster, fashion_mnist_dir, tmp_path):
    """Two enqueued trials as one SLURM job array: lr 0.1 completes, lr 1e6 diverges. The launcher's report names the
    failed trial's run directory (trial1: its subdir is the job number), the study has it FAIL with the error its run
    recorded (the launcher returns no result of a batch with a failed run), and the complete trial is the best."""
    done = _search(
        tmp_path,
        fashion_mnist_dir,
        *SLURM_TEST_NODE,
        "optim.lr=tag(log,interval(0.02,2.0e6))",
        "hydra.sweeper.enqueue=[{optim.lr:0.1},{optim.lr:1.0e6}]",
        "hydra.sweeper.n_jobs=2",
        trials=2,
        env=child_env(WANDB_MODE="disabled"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"run {tmp_path / EXPERIMENT / 'trial1'}: job " in done.stderr, done.stderr[-3000:]
    study = _study(optuna, tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[1].params["optim.lr"] == 1.0e6
    assert "lower optim.lr" in study.trials[1].user_attrs["failure"], study.trials[1].user_attrs
    assert sorted((tmp_path / EXPERIMENT / ".submitit").glob("*_[01]"))  # the trials ran as SLURM jobs
    assert study.best_trial.value == _final_val_err(tmp_path / EXPERIMENT / "trial0")


def test_the_example_search_file_is_the_paper_split_on_a_shortened_schedule():
    cfg = compose_train_config(["hparams_search=cifar_lr_wd"])
    assert cfg.data.split == "paper" and cfg.experiment_name == EXPERIMENT and cfg.data.evaluate_test is False
    assert cfg.trainer.max_iters == 16000 and list(cfg.schedule.milestones) == [8000, 12000]
