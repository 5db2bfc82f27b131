"""Faults from the machine, not the config: a full disk, a read-only or vanished folder, a broken W&B environment.

Each one is made real: a small tmpfs that the test fills (or, where nothing may be mounted, a file size limit set
with setrlimit in the child), a read-only bind mount, `rm -rf` of a running run's directory, W&B's own variables.
Each ends as one `error:` line with exit status 2, and a run resumed after the fault is repaired ends bitwise as a
run never stopped (the comparison of tests/test_resume.py). Every line of the README's "When something goes wrong"
is produced here (assert_readme_shows).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

import pytest
import torch

from resnet_repro.analysis.runs import STOPPED, load_run
from resnet_repro.config import load as load_config
from resnet_repro.data.small_images import DECODED_FILE, load_cifar
from resnet_repro.engine import records
from resnet_repro.engine.run_dir import is_live
from resnet_repro.engine.setup import resolve_precision
from resnet_repro.engine.trainer import LoopState, Trainer
from resnet_repro.engine.wandb_logger import RunLogger
from resnet_repro.errors import UserError
from resnet_repro.io import WriteFailed
from support import REPO
from support.configs import compose_train_config, resnet8_run
from support.fake_data import CIFAR10_FOLDER, make_fake_cifar10, patch_cifar10_md5
from support.mounts import fill, mount_refused, read_only, require_mount, tmpfs
from support.runs import (
    assert_one_line_error,
    assert_same_tensors,
    assert_unchanged,
    child_env,
    load_script,
    read_metrics,
    read_summary,
    run_command,
    snapshot,
    train_command,
    without_timing,
)

MAX_ITERS, EVAL_EVERY, CHECKPOINT_EVERY = 40, 2, 10
# logger=none ignores W&B's variables, even broken ones: the reference run has these in its environment.
BROKEN_WANDB = {"WANDB_MODE": "bogus", "WANDB_PROJECT": "a/b", "WANDB_ENTITY": "x:y", "WANDB_DIR": "/proc/none"}


def command(run_dir: Path, data_root: Path, *overrides: str) -> list[str]:
    """The training command of every run here: ResNet-8, a row of metrics.jsonl every 2 iterations (a 4 KiB page of
    it fills at about iteration 32), a checkpoint every 10."""
    run = resnet8_run(
        data_root, limit_train=1024, max_iters=MAX_ITERS, eval_every=EVAL_EVERY, checkpoint_every=CHECKPOINT_EVERY
    )
    return train_command(*run, f"hydra.run.dir={run_dir}", *overrides)


def checkpoint_iteration(run_dir: Path) -> int | None:
    try:
        return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["iteration"]
    except (FileNotFoundError, RuntimeError, EOFError):  # none yet, or replaced while read
        return None


def start(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    """The command in the background, at a lower priority: the polling of a test sees each point in time."""
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.nice(10),
    )


def wait_until(proc: subprocess.Popen, condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"no {what} (exit {proc.returncode}):\n{err[-3000:]}")
        time.sleep(0.01)


def finish(proc: subprocess.Popen, cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")]


# ----- the README's lines -----------------------------------------------------------------------------------------
def readme_templates() -> list[str]:
    """The messages that the README's "When something goes wrong" shows (`error: ...`, `interrupted ...`)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## When something goes wrong") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"`((?:error: |interrupted at )[^`]+)`", section)


def assert_readme_shows(line: str) -> None:
    """`line` is one of the README's messages, its <placeholders> and ... standing for any text."""
    templates = readme_templates()
    for template in templates:
        parts = re.split(r"(<[^>]+>|\.\.\.)", template)
        pattern = "".join(".+?" if part.startswith("<") or part == "..." else re.escape(part) for part in parts)
        if re.fullmatch(pattern, line):
            return
    pytest.fail(
        f"the README's 'When something goes wrong' does not show\n  {line}\nit shows\n  " + "\n  ".join(templates)
    )


# ----- runs: one never stopped, one stopped with Ctrl-C --------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory, fashion_mnist_dir) -> Path:
    """The run never stopped; with W&B variables that W&B would refuse in its environment, which logger=none
    ignores."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    result = run_command(command(run_dir, fashion_mnist_dir), env=child_env(**BROKEN_WANDB))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, fashion_mnist_dir) -> tuple[Path, int]:
    """The same run stopped with Ctrl-C (SIGINT) soon after its first checkpoint: it checkpoints where it is, says
    how to resume and exits with 130. Returns the run directory and the iteration of its last checkpoint."""
    run_dir = tmp_path_factory.mktemp("faults") / "interrupted"
    cmd = command(run_dir, fashion_mnist_dir)
    proc = start(cmd)
    wait_until(proc, lambda: checkpoint_iteration(run_dir) is not None, "first checkpoint")
    proc.send_signal(signal.SIGINT)
    result = finish(proc, cmd)
    assert result.returncode == 130, result.stderr[-3000:]
    iteration = checkpoint_iteration(run_dir)
    assert iteration < 32 and read_summary(run_dir)["status"] == "interrupted"
    assert [row["iter"] for row in read_metrics(run_dir)] == list(range(EVAL_EVERY, iteration + 1, EVAL_EVERY))
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"interrupted at iteration {iteration}: run the same command again to resume"
    assert_readme_shows(last)
    return run_dir, iteration


def assert_same_run(reference: Path, resumed: Path) -> None:
    """Every checkpoint's tensors and every record but the timings as in the run never stopped."""
    for name in ("init.pt", "last.pt", "best.pt"):
        ref, got = (torch.load(d / "checkpoints" / name, weights_only=False) for d in (reference, resumed))
        for key in ("model", "optimizer", "schedule", "iteration", "rng", "data_state"):
            assert_same_tensors(ref[key], got[key], f"{name}:{key}")
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(reference))
    summary = read_summary(resumed)
    assert summary["status"] == "complete" and summary["iters"] == MAX_ITERS and "error" not in summary
    assert summary["final_test_err"] == read_summary(reference)["final_test_err"]
    assert not temporaries(resumed)


@contextmanager
def on_two_small_disks(source: Path, base: Path):
    """A copy of the run `source` whose directory is one tmpfs (1 MiB) and whose checkpoints/ another (8 MiB): a test
    fills one of them."""
    run = base / "run"
    with tmpfs(run, "1m"), tmpfs(run / "checkpoints", "8m"):
        for path in source.rglob("*"):
            if path.is_file():
                shutil.copy2(path, run / path.relative_to(source))
        yield run


def resume_after_freeing(filler: Path, run: Path, reference: Path, data_root: Path) -> None:
    """Space freed, the same command resumes the run and ends as the run never stopped."""
    filler.unlink()
    result = run_command(command(run, data_root))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(reference, run)


# ----- a full disk ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_full_disk_at_summary_json(interrupted, reference, fashion_mnist_dir, tmp_path):
    """The run directory's disk full when the run resumes: summary.json is its first write (config.yaml and
    metrics.jsonl need none). Nothing changes; the lock, released, tells readers that no process holds the run."""
    source, iteration = interrupted
    with on_two_small_disks(source, tmp_path) as run:
        filler = fill(run)
        before = snapshot(run)
        line = assert_one_line_error(
            run_command(command(run, fashion_mnist_dir)),
            f"error: no space left on device writing {run / 'summary.json'}; the last good checkpoint is at "
            f"iteration {iteration}; free space and run the same command to resume",
        )
        assert_readme_shows(line)
        assert_unchanged(before, run)
        assert not is_live(run) and load_run(run).status == "interrupted"
        resume_after_freeing(filler, run, reference, fashion_mnist_dir)


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint(interrupted, reference, fashion_mnist_dir, tmp_path):
    """checkpoints/ full at the next checkpoint: the last good one is kept, summary.json says `failed` with the error.
    Where nothing may be mounted, a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) refuses the checkpoint instead."""
    source, iteration = interrupted
    with ExitStack() as stack:
        if mount_refused():
            run = Path(shutil.copytree(source, tmp_path / "run"))

            def limit_file_size():
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))

            kept = (run / "checkpoints" / "last.pt").read_bytes()
            result = subprocess.run(
                command(run, fashion_mnist_dir),
                cwd=REPO,
                env=child_env(),
                capture_output=True,
                text=True,
                preexec_fn=limit_file_size,
                timeout=180,
            )
            cause, fix, repair = "file size limit exceeded", "raise the limit (ulimit -f)", lambda: None
        else:
            run = stack.enter_context(on_two_small_disks(source, tmp_path))
            kept = (run / "checkpoints" / "last.pt").read_bytes()
            filler = fill(run / "checkpoints")
            result = run_command(command(run, fashion_mnist_dir))
            cause, fix, repair = "no space left on device", "free space", filler.unlink
        line = assert_one_line_error(result)
        assert re.fullmatch(
            f"error: {cause} writing {run}/checkpoints/(best|last).pt; the last good checkpoint is at iteration "
            f"{iteration}; {re.escape(fix)} and run the same command to resume",
            line,
        ), line
        if cause.startswith("no space"):
            assert_readme_shows(line)
        summary = read_summary(run)
        assert summary["status"] == "failed" and f"error: {summary['error']}" == line
        assert (run / "checkpoints" / "last.pt").read_bytes() == kept and not temporaries(run)
        repair()
        result = run_command(command(run, fashion_mnist_dir))
        assert result.returncode == 0, result.stderr[-3000:]
        assert_same_run(reference, run)


@pytest.mark.slow
def test_a_full_disk_at_the_metrics_rows(interrupted, reference, fashion_mnist_dir, tmp_path):
    """The run directory's disk fills once the resumed run trains: the row of metrics.jsonl that needs a new block
    fails, whole (no part of a line is left). train.log fills first: logging drops its lines without a traceback.
    summary.json cannot say `failed` either: it says `running`, and readers see that no process holds the run."""
    source, interrupted_at = interrupted
    with on_two_small_disks(source, tmp_path) as run:
        # train.log's last block all but full: the resume's first two lines fit in it, the evaluations' lines do not
        log = run / "train.log"
        stamp = "[2000-01-01 00:00:00,000][resnet_repro.train][INFO] - "
        precision, reason = resolve_precision("auto", torch.device("cpu"), "resnet8")
        first_lines = (
            f"{stamp}resnet8 on cpu, precision {precision} ({reason})\n"
            f"{stamp}resumed from {run / 'checkpoints' / 'last.pt'} at iteration {interrupted_at}\n"
        )
        padding = -(log.stat().st_size + len(first_lines.encode()) + 16) % 4096 or 4096
        with open(log, "a") as f:
            f.write("." * (padding - 1) + "\n")
        summary_inode = os.stat(run / "summary.json").st_ino
        cmd = command(run, fashion_mnist_dir)
        proc = start(cmd)
        wait_until(proc, lambda: os.stat(run / "summary.json").st_ino != summary_inode, "summary.json `running`")
        proc.send_signal(signal.SIGSTOP)  # the disk fills between two iterations, before the rows need a block
        filler = fill(run)
        proc.send_signal(signal.SIGCONT)
        result = finish(proc, cmd)
        iteration = checkpoint_iteration(run)
        line = assert_one_line_error(
            result,
            f"error: no space left on device writing {run / 'metrics.jsonl'}; the last good checkpoint is at "
            f"iteration {iteration}; free space and run the same command to resume",
        )
        assert_readme_shows(line)
        assert "resumed from" in log.read_text() and f"iter {interrupted_at + EVAL_EVERY} " not in log.read_text()
        text = (run / "metrics.jsonl").read_text()
        assert text.endswith("\n") and all(json.loads(row) for row in text.splitlines())
        assert read_summary(run)["status"] == "running" and load_run(run).status == STOPPED
        assert not temporaries(run)
        resume_after_freeing(filler, run, reference, fashion_mnist_dir)


@pytest.mark.slow
def test_a_full_disk_at_the_wandb_folder(tmp_path, fashion_mnist_dir):
    """WANDB_DIR on a full disk: W&B's offline writer fails quietly while the run trains, closing its run fails
    loudly: one line naming W&B's folder; with space freed, the same command records the run complete."""
    run, wandb_dir = tmp_path / "run", tmp_path / "wandb-dir"
    cmd = train_command(
        *resnet8_run(fashion_mnist_dir, limit_train=1024, max_iters=4, eval_every=2, checkpoint_every=2),
        f"hydra.run.dir={run}",
        "logger=wandb",
    )
    env = child_env(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(wandb_dir))
    with tmpfs(wandb_dir, "256k"):
        filler = fill(wandb_dir)
        line = assert_one_line_error(
            run_command(cmd, env=env),
            f"error: no space left on device writing {wandb_dir / 'wandb'}; the last good checkpoint is at "
            f"iteration 4; free space and run the same command to resume",
        )
        assert_readme_shows(line)
        assert read_summary(run)["status"] == "failed"
        filler.unlink()
        result = run_command(cmd, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert read_summary(run)["status"] == "complete"


def test_a_full_device_refuses_a_whole_metrics_row():
    """/dev/full: one write, refused with ENOSPC, named."""
    with pytest.raises(WriteFailed) as err:
        records.append_metrics(Path("/dev/full"), {"iter": 1})
    assert err.value.errno == errno.ENOSPC and err.value.filename == "/dev/full"


# ----- a vanished or read-only run directory ---------------------------------------------------------------------
@pytest.mark.slow
def test_run_directory_removed_while_the_run_is_going(tmp_path, fashion_mnist_dir):
    """A scratch cleaner (`rm -rf`) between two checkpoints: one line at the next write, and no half run made again."""
    run = tmp_path / "run"
    cmd = command(run, fashion_mnist_dir)
    proc = start(cmd)
    wait_until(proc, lambda: checkpoint_iteration(run) is not None, "first checkpoint")
    proc.send_signal(signal.SIGSTOP)
    subprocess.run(["rm", "-rf", str(run)], check=True)
    proc.send_signal(signal.SIGCONT)
    line = assert_one_line_error(
        finish(proc, cmd), f"error: run directory {run} was removed while the run was going (writing {run}/"
    )
    assert_readme_shows(line)
    assert not run.exists()


@pytest.mark.parametrize("key", ["hydra.run.dir", "run_root"])
def test_run_directory_in_a_read_only_folder(tmp_path, key):
    """Refused before anything runs, in one line naming the folder and the key that placed the run there."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if key == "hydra.run.dir":
        value = run = folder / "run"
        where = f"(hydra.run.dir={run})"
    else:
        value, run = folder, folder / "default"  # <run_root>/<experiment>/...: the first folder Hydra cannot make
        where = f"(under run_root={folder})"
    with read_only(folder):
        result = run_command(train_command("data=fashion_mnist", f"{key}={value}"))
    line = assert_one_line_error(result, f"error: cannot write {run} (", f"the run directory {where} must be writable")
    if not mount_refused():  # a read-only mount; else a mode, which says "Permission denied"
        assert_readme_shows(line)
    assert list(folder.iterdir()) == []


# ----- the decoded CIFAR cache ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_cifar_cache_that_cannot_be_written(tmp_path, monkeypatch, caplog, fault):
    """A shared, read-only data set (or a full disk): the run goes on without the decoded copy, and says so once."""
    root = tmp_path / "cifar10"
    folder = root / CIFAR10_FOLDER
    with tmpfs(root, "1500k") if fault == "full" else nullcontext():  # the data set fits, its decoded copy not
        patch_cifar10_md5(monkeypatch, make_fake_cifar10(root))
        with read_only(folder) if fault == "read-only" else nullcontext(), caplog.at_level(logging.WARNING):
            arrays = load_cifar("cifar10", root, train=True)
        assert len(arrays) == 250
        assert not (folder / DECODED_FILE.format(split="train")).exists() and not temporaries(folder)
    notes = [r.getMessage() for r in caplog.records if "decoded copy" in r.getMessage()]
    assert len(notes) == 1 and "each run decodes the data set again" in notes[0], notes


# ----- a broken W&B environment -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_wandb_mode_empty_is_one_line_before_anything_is_written(tmp_path, fashion_mnist_dir):
    """As measured in issue 25: WANDB_MODE set but empty, logger=wandb."""
    run = tmp_path / "run"
    result = run_command(command(run, fashion_mnist_dir, "logger=wandb"), env=child_env(WANDB_MODE=""))
    line = assert_one_line_error(result, "error: WANDB_MODE='' in the environment is not a W&B mode: set it to one of")
    assert "online, offline" in line and "logger=none" in line
    assert_readme_shows(line)
    assert {p.name for p in run.iterdir()} <= {".lock", "train.log"}


@pytest.mark.parametrize(
    "variable, value, fragments",
    [
        ("WANDB_MODE", "bogus", ["WANDB_MODE='bogus'", "not a W&B mode", "online, offline"]),
        ("WANDB_PROJECT", "a/b", ["WANDB_PROJECT='a/b'", "not a W&B project name (it holds /)", "/ \\ # ? % :"]),
        ("WANDB_ENTITY", "x:y", ["WANDB_ENTITY='x:y'", "not a W&B entity name (it holds :)"]),
        ("WANDB_DIR", "read-only", ["WANDB_DIR=", "is not a writable folder", "unset it"]),
    ],
)
def test_broken_wandb_variable(tmp_path, monkeypatch, variable, value, fragments):
    """Each variable that W&B would refuse (or that cannot hold its files) is named with what it accepts, before
    wandb.init or any file of the run."""
    cfg = load_config(compose_train_config(["logger=wandb", f"run_root={tmp_path}"]))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = tmp_path / "wandb"
    folder.mkdir()
    monkeypatch.setenv(variable, str(folder) if value == "read-only" else value)
    run = tmp_path / "run"
    run.mkdir()
    with read_only(folder) if value == "read-only" else nullcontext():
        with pytest.raises(UserError) as err:
            RunLogger(cfg, run, enabled=True)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert "\n" not in str(err.value) and str(err.value).endswith("or use logger=none")
    assert not list(run.iterdir()) and not list(folder.iterdir())


# ----- figures and loss landscapes --------------------------------------------------------------------------------
@pytest.mark.slow
def test_figures_and_landscape_on_a_read_only_folder(reference, tmp_path, capsys):
    """Refused before anything is drawn or computed, naming the folder and --out."""
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        for script, args in [
            ("make_figures", ["--runs", str(reference.parent), "--out", str(out)]),
            ("loss_landscape", ["--run", str(reference), "--out", str(out)]),
        ]:
            with pytest.raises(SystemExit) as exit_status:
                load_script(script).main(args)
            assert exit_status.value.code == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"error: cannot write to {out} (") and err.endswith(
                "--out must name a writable folder"
            )
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_figures_on_a_full_disk_leave_no_report(reference, tmp_path, capsys):
    out = tmp_path / "out"
    with tmpfs(out, "40k"):
        (out / "REPORT.md").write_text("the report of an earlier run\n")
        with pytest.raises(SystemExit) as exit_status:
            load_script("make_figures").main(["--runs", str(reference.parent), "--out", str(out)])
        assert exit_status.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: no space left on device writing ") and "\n" not in err
        assert "the report there is incomplete (no REPORT.md): free space and run the same command" in err
        assert not (out / "REPORT.md").exists()


# ----- a diverged run (the README's last line) ---------------------------------------------------------------------
def test_a_diverged_run_says_which_checkpoint_is_kept(tmp_path):
    trainer = Trainer.__new__(Trainer)  # only what check_finite reads
    trainer.state = LoopState.fresh(torch.device("cpu"))
    trainer.state.iteration, trainer.finite_since = 30, 20
    trainer.last_good = (tmp_path / "checkpoints" / "last.pt", 20)
    with pytest.raises(UserError) as err:
        trainer.check_finite(math.nan)
    assert_readme_shows(f"error: {err.value}")


def test_ci_stops_at_once_on_a_disk_too_full_for_the_suite(tmp_path):
    """.ci/run's first check: a temporary folder with too little room is one line, before anything is installed."""
    require_mount()
    small = tmp_path / "small"
    small.mkdir()
    with tmpfs(small, "1m"):
        result = run_command(["bash", ".ci/run"], env=child_env(TMPDIR=str(small)), timeout=60)
    assert_one_line_error(result, "GB free at", str(small), "free space and run again")
    assert "installing" not in result.stdout
