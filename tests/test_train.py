"""CIFAR-style training end to end on real data (Fashion-MNIST): learning, determinism, schedule, records, W&B,
sweeps."""

import subprocess

import pytest
import torch

from resnet_repro.config import OptimConfig, ScheduleConfig
from resnet_repro.engine.records import git_state
from resnet_repro.engine.run import train
from resnet_repro.engine.schedule import build_schedule
from resnet_repro.engine.wandb_logger import RunLogger
from support import REPO
from support.configs import TINY_RUN, compose_train_config
from support.fake_data import cifar10_command, write_md5_table
from support.runs import read_metrics, read_summary, run_command, train_command, without_timing

METRIC_KEYS = set("iter epoch lr train_loss train_err test_loss test_err val_loss val_err img_per_s wall_s".split())
SUMMARY_KEYS = set(
    "model family depth shortcut dataset split seed experiment params flops final_test_err best_test_err "
    "best_val_err iters max_iters wall_s device cpu torch cuda git_commit git_dirty status precision precision_reason "
    "command world_size startup_s".split()
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fashion_mnist_dir):
    """ResNet-20 for 150 iterations on Fashion-MNIST (about 20 s on 2 cores), shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train_config(
        [
            *TINY_RUN,
            "model=resnet20",
            "trainer.max_iters=150",
            "trainer.eval_every=50",
            "trainer.checkpoint_every=50",
            "seed=3",
        ]
    )
    summary = train(cfg, run_dir)
    return run_dir, summary, cfg


@pytest.mark.slow
def test_a_short_real_run_learns(trained_run):
    run_dir, summary, _ = trained_run
    rows = read_metrics(run_dir)
    assert [r["iter"] for r in rows] == [50, 100, 150]
    assert rows[-1]["train_loss"] < 0.7 * rows[0]["train_loss"]
    # Chance is 0.9; this CPU reaches 0.502 at the commit before the engine redesign and after it alike.
    assert summary["final_test_err"] < 0.6
    assert summary["status"] == "complete" and summary["iters"] == 150


@pytest.mark.slow
def test_run_records_follow_the_schema(trained_run):
    run_dir, summary, cfg = trained_run
    for row in read_metrics(run_dir):
        assert set(row) == METRIC_KEYS
        assert all(0 <= row[k] <= 1 for k in ("train_err", "test_err", "val_err"))
    assert set(summary) == SUMMARY_KEYS
    assert read_summary(run_dir) == summary
    assert summary["params"] == 269_722 and summary["depth"] == 20 and summary["dataset"] == "fashion_mnist"
    assert summary["final_test_err"] == read_metrics(run_dir)[-1]["test_err"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert {"model", "optimizer", "schedule", "rng", "data_state", "iteration"} <= set(checkpoint)
    assert checkpoint["iteration"] == 150 and (run_dir / "checkpoints" / "best.pt").exists()
    assert (run_dir / "config.yaml").read_text().count("max_iters: 150") == 1


@pytest.mark.slow
def test_git_dirty_counts_code_changes_not_results(tmp_path):
    """A scratch repository: an edited report under results/ leaves it clean, an edited source file does not."""

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "REPORT.md").write_text("old\n")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "results" / "REPORT.md").write_text("new\n")
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "train.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (commit, True)


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(trained_run, tmp_path):
    run_dir, _, cfg = trained_run
    cfg.trainer.max_iters = 100
    train(cfg, tmp_path)
    assert without_timing(read_metrics(tmp_path)) == without_timing(read_metrics(run_dir))[:2]


def test_lr_steps_at_the_paper_milestones():
    schedule = build_schedule(ScheduleConfig(), OptimConfig().lr)
    lrs = {it: schedule.lr(it) for it in (0, 31_999, 32_000, 47_999, 48_000, 63_999)}
    assert lrs == pytest.approx({0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001, 63_999: 0.001})


def test_warmup_holds_lr_until_training_error_below_80_percent():
    schedule = build_schedule(ScheduleConfig(warmup=True), OptimConfig().lr)
    assert schedule.lr(0) == schedule.lr(40_000) == 0.01
    schedule.observe_train_error(0.85)
    assert schedule.lr(300) == 0.01
    schedule.observe_train_error(0.79)
    assert schedule.lr(300) == 0.1 and schedule.lr(32_000) == pytest.approx(0.01)
    restored = build_schedule(ScheduleConfig(warmup=True), OptimConfig().lr)
    restored.load_state_dict(schedule.state_dict())
    assert restored.lr(300) == 0.1


@pytest.mark.slow
def test_warmup_switches_in_a_real_run(tmp_path, fashion_mnist_dir):
    cfg = compose_train_config(
        [
            *TINY_RUN,
            "model.name=resnet8",
            "schedule=cifar_warmup",
            "trainer.max_iters=200",
            "trainer.eval_every=100",
            "trainer.checkpoint_every=200",
        ]
    )
    train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    # The check at iteration 100 sees training error below 80% (Fashion-MNIST learns fast), so lr goes back to 0.1.
    assert [r["lr"] for r in rows] == [0.01, 0.1]


@pytest.mark.slow
def test_wandb_offline_run_is_written_and_resumed(tmp_path, fashion_mnist_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_train_config(
        [
            *TINY_RUN,
            "model.name=resnet8",
            "model.family=cifar",
            "logger=wandb",
            "trainer.max_iters=20",
            "trainer.eval_every=10",
            "trainer.checkpoint_every=10",
        ]
    )
    train(cfg, tmp_path)
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    # A resumed run (same directory) continues the same W&B run.
    resumed = RunLogger(cfg, tmp_path, enabled=True)
    assert resumed.run.id == run_id
    resumed.finish({})


@pytest.mark.slow
def test_two_job_multirun(tmp_path, fashion_mnist_dir):
    overrides = [o for o in TINY_RUN if not o.startswith("data.limit_train")]
    cmd = train_command(
        "-m",
        "model.name=resnet8,plain8",
        "model.family=cifar",
        *overrides,
        "data.limit_train=512",
        "trainer.max_iters=10",
        "trainer.eval_every=5",
        "trainer.checkpoint_every=5",
        "experiment_name=sweep",
        f"run_root={tmp_path}",
    )
    result = run_command(cmd)
    assert result.returncode == 0, result.stderr[-2000:]
    for model in ("resnet8", "plain8"):
        summary = read_summary(tmp_path / "sweep" / model / "seed0")
        assert summary["status"] == "complete" and summary["model"] == model and summary["iters"] == 10
    # Running the sweep again skips the complete runs.
    again = run_command(cmd)
    assert again.returncode == 0 and (again.stdout + again.stderr).count("already complete") == 2


@pytest.mark.slow
def test_the_documented_overrides_train_on_cifar10(fake_cifar10, tmp_path):
    """The override line of the training issue, as written, on a fake CIFAR-10 in torchvision's layout (the real
    loading code, checksums included: tests/support/fake_data.py gives torchvision the fake files' MD5 table)."""
    root, md5 = fake_cifar10
    run_dir = tmp_path / "run"
    cmd = cifar10_command(
        write_md5_table(tmp_path / "md5.json", md5),
        "scripts/train.py",
        "data=cifar10",
        f"data.root={root}",
        "data.batch_size=25",
        "model=resnet56",
        "model.shortcut=B",
        "trainer.max_iters=4",
        "trainer.eval_every=2",
        "trainer.checkpoint_every=2",
        "seed=7",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        "data.val_size=50",
    )  # the fake set has 250 images
    result = run_command(cmd)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_summary(run_dir)
    assert (summary["model"], summary["shortcut"], summary["seed"], summary["dataset"]) == (
        "resnet56",
        "B",
        7,
        "cifar10",
    )
    assert (
        summary["status"] == "complete" and summary["iters"] == 4 and summary["params"] > 853_018
    )  # B adds projections
    assert [r["iter"] for r in read_metrics(run_dir)] == [2, 4] and (run_dir / "checkpoints" / "last.pt").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / ".venv" / ".installed").exists(),
    reason="runs the Makefile, which uses the virtual environment that `make test` builds",
)
def test_the_main_job_smoke_profile(tmp_path, fashion_mnist_dir):
    """The README's main command, `make reproduce-cifar PROFILE=smoke`: all 11 nets of the paper through training,
    records, figures, Table 6 and the report (Fashion-MNIST here, as on any machine without CIFAR-10)."""
    out = tmp_path / "smoke"
    # Fashion-MNIST: no CIFAR-10 in CIFAR_ROOT. Less than the profile (10 iterations, every training image, 128 test
    # images): ResNet-1202 takes a second per iteration, and the 11 runs in one process each prepare their images.
    fewer = "ARGS=trainer.max_iters=2 trainer.eval_every=1 trainer.checkpoint_every=2 data.limit_train=512"
    fewer += " data.limit_test=32"
    result = run_command(
        ["make", "reproduce-cifar", "PROFILE=smoke", f"SMOKE_OUT={out}", f"CIFAR_ROOT={tmp_path / 'no-cifar'}", fewer],
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    nets = sorted(p.stem for p in (REPO / "configs" / "experiment" / "cifar10").glob("*.yaml"))  # one per paper net
    assert len(nets) == 11
    for net in nets:
        summary = read_summary(out / "runs" / "fashion_mnist" / net / "seed0")  # the folder names the data set
        assert (summary["status"], summary["model"], summary["dataset"]) == ("complete", net, "fashion_mnist")
        assert summary["iters"] == 2
    report = (out / "REPORT.md").read_text()
    assert "11 complete runs of 11" in report
    for figure in ("fig1", "fig6", "fig7"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 0
    table6 = (out / "tables" / "table6.csv").read_text()
    assert "1202" in table6
