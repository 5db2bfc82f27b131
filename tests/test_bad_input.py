"""Every bad input gives one line on stderr ("error: ..."), a non-zero exit status, and changes nothing.

Each test runs the real command (scripts/train.py, or torchrun) in a subprocess. Where it points at an existing
run directory, the directory's files are compared byte for byte before and after: nothing may change, except that
.lock holds the id of the last process that took the lock, and Hydra's train.log may only grow.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from resnet_repro.config import DataConfig
from resnet_repro.data.small_images import load_cifar
from resnet_repro.engine.checkpoint import TEST_KILL_ENV, save_checkpoint
from resnet_repro.engine.distributed import DistInfo
from resnet_repro.engine.run_dir import RunDirectory
from resnet_repro.engine.trainer import LoopState, Trainer
from resnet_repro.errors import UserError
from support.configs import resnet8_run
from support.fake_data import CIFAR10_FOLDER, cifar10_command, write_md5_table
from support.runs import (
    assert_one_line_error,
    assert_unchanged,
    child_env,
    run_command,
    snapshot,
    train_command,
)

REPO = Path(__file__).resolve().parents[1]


def tiny(data_root: Path | str = "/usr/share/datasets/fashion-mnist") -> list[str]:
    return resnet8_run(data_root, limit_train=1024, max_iters=20, eval_every=10, checkpoint_every=10)


def train(
    run_dir: Path | str,
    *overrides: str,
    env: dict | None = None,
    data_root=None,
    timeout: float = 180,
    cmd: list[str] | None = None,
) -> subprocess.CompletedProcess:
    base = tiny(data_root) if data_root else tiny()
    return run_command([*(cmd or train_command()), *base, f"hydra.run.dir={run_dir}", *overrides], env, timeout)


def is_empty_run(run_dir: Path) -> bool:
    """Nothing of a run was written (Hydra may have made the directory and its train.log)."""
    return not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= {".lock", "train.log"}


# ----- a run directory to misuse -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, fashion_mnist_dir) -> Path:
    """A real run killed (SIGKILL) while writing its final checkpoint: checkpoints/last.pt at iteration 10, best.pt,
    two lines in metrics.jsonl (10 and 20), summary.json saying `running`: what a crash leaves."""
    run_dir = tmp_path_factory.mktemp("bad_input") / "run"
    result = train(run_dir, env=child_env(**{TEST_KILL_ENV: "checkpoint@20"}), data_root=fashion_mnist_dir)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    for tmp in (run_dir / "checkpoints").glob("*.tmp"):
        tmp.unlink()
    return run_dir


@pytest.fixture
def existing_run(interrupted_run, tmp_path) -> Path:
    """A copy of interrupted_run for one test to misuse."""
    return Path(shutil.copytree(interrupted_run, tmp_path / "run"))


@pytest.fixture
def made_up_run(tmp_path) -> Path:
    """A run directory with files in it, for errors that must stop before anything reads it."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    (run_dir / "metrics.jsonl").write_text('{"iter": 10}\n')
    (run_dir / "checkpoints" / "last.pt").write_bytes(os.urandom(1000))
    (run_dir / "train.log").write_text("earlier log\n")
    return run_dir


# ----- config -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, fragments",
    [
        ("trainer.max_iter=5", ["trainer.max_iter", "not in 'TrainerConfig'"]),  # Hydra refuses it
        (
            "+trainer.foo=5",
            ["unknown config key trainer.foo"],
        ),  # Hydra adds it (the + says so); the schema check refuses
        ("model=resnet21", ["model/resnet21", "resnet20"]),  # no such config file: the error lists the options
    ],
    ids=["unknown_key", "added_unknown_key", "unknown_config_option"],
)
def test_unknown_config_key(made_up_run, override, fragments):
    before = snapshot(made_up_run)
    assert_one_line_error(train(made_up_run, override), *fragments)
    assert_unchanged(before, made_up_run)


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("trainer.max_iters=many", ["trainer.max_iters=many", "could not be converted to Integer"]),
        ("optim.lr=fast", ["optim.lr=fast", "Float"]),
        ("trainer.eval_every=2.5", ["trainer.eval_every", "Integer"]),
    ],
)
def test_wrong_type(made_up_run, override, fragments):
    before = snapshot(made_up_run)
    assert_one_line_error(train(made_up_run, override), *fragments)
    assert_unchanged(before, made_up_run)


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("data.batch_size=0", ["data.batch_size=0: must be a positive whole number"]),
        ("trainer.eval_every=0", ["trainer.eval_every=0: must be a positive whole number"]),
        ("trainer.checkpoint_every=0", ["trainer.checkpoint_every=0: must be a positive whole number"]),
        ("optim.lr=-1", ["optim.lr=-1.0: the learning rate must be greater than 0"]),
        ("trainer.max_iters=0", ["trainer.max_iters=0: must be a positive whole number"]),
        ("trainer.max_iters=-5", ["trainer.max_iters=-5: must be a positive whole number"]),
        ("data.val_size=60000", ["data.val_size=60000 leaves no training images: fashion_mnist has 60000"]),
        ("trainer.precision=bf61", ["trainer.precision", "bf61", "auto, bf16, fp32"]),  # an Enum: refused by Hydra
    ],
    ids=[
        "batch_size",
        "eval_every",
        "checkpoint_every",
        "lr",
        "max_iters_0",
        "max_iters_negative",
        "val_size",
        "precision",
    ],
)
def test_a_value_out_of_range(made_up_run, override, fragments):
    """Refused before anything is read or written; a run of 0 iterations is never recorded as complete."""
    before = snapshot(made_up_run)
    assert_one_line_error(train(made_up_run, override), *fragments)
    assert_unchanged(before, made_up_run)
    assert not (made_up_run / "summary.json").exists()


@pytest.mark.slow
def test_depth_not_6n_plus_2(tmp_path, fashion_mnist_dir):
    assert_one_line_error(train(tmp_path / "run", "model.name=plain21", data_root=fashion_mnist_dir), "6n+2", "got 21")
    assert is_empty_run(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("shortcut", ["D"])
def test_shortcut_not_a_b_or_c(tmp_path, fashion_mnist_dir, shortcut):
    line = assert_one_line_error(
        train(tmp_path / "run", f"model.shortcut={shortcut}", data_root=fashion_mnist_dir), f"'{shortcut}'", "A, B, C"
    )
    assert "shortcut" in line
    assert is_empty_run(tmp_path / "run")


# ----- data -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_missing_data_set(existing_run, tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    before = snapshot(existing_run)
    assert_one_line_error(train(existing_run, data_root=empty), "Fashion-MNIST not found", str(empty))
    assert_unchanged(before, existing_run)


def test_missing_cifar10(tmp_path):
    result = train(tmp_path / "run", "data=cifar10", f"data.root={tmp_path / 'nothing'}", timeout=120)
    assert_one_line_error(result, "cifar10 not found or corrupted", str(tmp_path / "nothing"), "data.download=true")
    assert is_empty_run(tmp_path / "run")


@pytest.mark.slow
def test_corrupt_fashion_mnist_file(existing_run, tmp_path, fashion_mnist_dir):
    """A truncated .gz (an interrupted copy): the error names the file."""
    data = tmp_path / "fashion"
    data.mkdir()
    for source in fashion_mnist_dir.iterdir():
        (data / source.name).symlink_to(source)
    broken = data / "train-labels-idx1-ubyte.gz"
    content = (fashion_mnist_dir / broken.name).read_bytes()
    broken.unlink()
    broken.write_bytes(content[: len(content) // 2])
    before = snapshot(existing_run)
    assert_one_line_error(train(existing_run, data_root=data), "corrupt Fashion-MNIST file", str(broken))
    assert_unchanged(before, existing_run)


def test_corrupt_fashion_mnist_header(tmp_path):
    """A file that decompresses but is not an idx file."""
    from resnet_repro.data.small_images import FASHION_MNIST_FILES, load_fashion_mnist

    for name in FASHION_MNIST_FILES.values():
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(b"<html>not found</html>")
    with pytest.raises(UserError, match="corrupt Fashion-MNIST file"):
        load_fashion_mnist(tmp_path, train=True)


def flip_byte(path: Path, position: int | None = None) -> None:
    """Invert one byte (the middle one unless told)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if position is None else position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("file", ["data_batch_3", "test_batch", "batches.meta"])
def test_corrupt_cifar10_file_in_process(fake_cifar10, file):
    root, _ = fake_cifar10
    train_split = file != "test_batch"
    assert len(load_cifar("cifar10", root, train=train_split)) == (250 if train_split else 100)  # intact: accepted
    flip_byte(root / CIFAR10_FOLDER / file)
    with pytest.raises(UserError, match="cifar10 not found or corrupted") as err:
        load_cifar("cifar10", root, train=train_split)
    assert str(root / CIFAR10_FOLDER) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_corrupt_cifar10_file(fake_cifar10, tmp_path):
    """The command on a fake CIFAR-10 whose MD5 table torchvision was given: intact it trains; one byte changed in
    one batch file, it stops with one line."""
    root, md5 = fake_cifar10
    table = write_md5_table(tmp_path / "md5.json", md5)
    command = cifar10_command(table, "scripts/train.py")
    cifar = [
        "data=cifar10",
        f"data.root={root}",
        "data.val_size=50",
        "data.batch_size=25",
        "data.limit_test=0",
        "trainer.max_iters=2",
        "trainer.eval_every=2",
    ]
    good = train(tmp_path / "good", *cifar, cmd=command)
    assert good.returncode == 0, good.stderr[-3000:]
    flip_byte(root / CIFAR10_FOLDER / "data_batch_2", 5000)
    result = train(tmp_path / "run", *cifar, cmd=command)
    assert_one_line_error(result, "cifar10 not found or corrupted", str(root / CIFAR10_FOLDER))
    assert is_empty_run(tmp_path / "run")


# ----- checkpoints ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "flipped_byte"])
def test_corrupt_checkpoint(existing_run, damage):
    """Never a fresh start over a damaged checkpoint: one line naming the file, and every file as it was."""
    last = existing_run / "checkpoints" / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    else:  # inside the tensor data, which torch.load does not check: the checkpoint's checksum does
        flip_byte(last, last.stat().st_size // 2)
    before = snapshot(existing_run)
    assert_one_line_error(train(existing_run), f"checkpoint {last}", "corrupt", "trainer.resume=")
    assert_unchanged(before, existing_run)


@pytest.mark.slow
def test_resume_from_a_path_that_does_not_exist(existing_run, tmp_path):
    before = snapshot(existing_run)
    missing = tmp_path / "nope.pt"
    assert_one_line_error(train(existing_run, f"trainer.resume={missing}"), str(missing), "does not exist")
    assert_unchanged(before, existing_run)


@pytest.mark.slow
def test_resume_never_refuses_to_overwrite_a_checkpoint(existing_run):
    before = snapshot(existing_run)
    assert_one_line_error(train(existing_run, "trainer.resume=never"), "last.pt exists", "trainer.resume=never")
    assert_unchanged(before, existing_run)


@pytest.mark.slow
def test_corrupt_metrics_line(existing_run, tmp_path):
    """A damaged line in the middle of metrics.jsonl: resume and make figures each stop with one line naming the file
    and the line; nothing changes. (A half-written last line is normal after a kill and is left out.)"""
    metrics = existing_run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(lines[0][:5] + "\n" + "".join(lines[1:]))
    before = snapshot(existing_run)
    assert_one_line_error(train(existing_run), f"{metrics} line 1 is not JSON")
    assert_unchanged(before, existing_run)
    figures = subprocess.run(
        [sys.executable, "scripts/make_figures.py", "--runs", str(existing_run.parent), "--out", str(tmp_path / "out")],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(figures, f"{metrics} line 1 is not JSON")
    assert_unchanged(before, existing_run)


# ----- divergence -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_loss_that_becomes_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, fashion_mnist_dir):
    """The learning rate jumps to 1e9 at iteration 20 (a milestone with gamma 1e10): the loss is NaN by the next
    check. The command stops with the iteration window; last.pt stays the one of iteration 20; running the command
    again stops the same way and changes none of the files."""
    run_dir = tmp_path / "run"
    diverge = ["trainer.max_iters=40", "schedule.milestones=[20]", "schedule.gamma=1e10"]
    first = train(run_dir, *diverge, data_root=fashion_mnist_dir)
    error = assert_one_line_error(first, "became nan between iterations 20 and 30", "last.pt (iteration 20)")
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert state["iteration"] == 20
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert [json.loads(line)["iter"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and error == f"error: {summary['error']}", summary  # the run's own record

    before = snapshot(run_dir)
    again = train(run_dir, *diverge, data_root=fashion_mnist_dir)
    assert_one_line_error(again, "became nan between iterations 20 and 30", "last.pt (iteration 20)")
    assert_unchanged(before, run_dir, ignore=("summary.json",))  # rewritten: status `failed` again
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_non_finite_weights_never_replace_the_last_good_checkpoint(tmp_path):
    """The check before each checkpoint covers the weights too (a step can overflow them after a finite loss)."""
    trainer = Trainer.__new__(Trainer)  # only what save() reads
    trainer.raw_model = torch.nn.Linear(4, 4)
    trainer.dist, trainer.device, trainer.is_main = DistInfo(), torch.device("cpu"), True
    trainer.run_dir = RunDirectory(tmp_path)
    trainer.state = LoopState.fresh(trainer.device)
    trainer.state.iteration = 14
    save_checkpoint({"model": trainer.raw_model.state_dict(), "iteration": 7}, trainer.run_dir.last)
    good = trainer.run_dir.last.read_bytes()
    trainer.finite_since, trainer.last_good = 7, (trainer.run_dir.last, 7)
    with torch.no_grad():
        trainer.raw_model.weight[0, 0] = float("inf")
    with pytest.raises(UserError, match=r"a weight of the model became nan between iterations 7 and 14.*iteration 7\)"):
        trainer.save()
    assert trainer.run_dir.last.read_bytes() == good


# ----- processes ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_batch_size_not_divisible_by_the_processes(tmp_path, fashion_mnist_dir):
    """Two gloo processes under torchrun, batch 33: each stops with the one line (torchrun then reports the failed
    processes in its own words)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "scripts/train.py"]  # --standalone: a free port
    result = train(tmp_path / "run", "data.batch_size=33", data_root=fashion_mnist_dir, cmd=cmd)
    assert result.returncode != 0
    message = "error: data.batch_size=33 is not divisible by the 2 processes"
    assert message in result.stderr, result.stderr[-3000:]
    assert f'File "{REPO / "src"}' not in result.stderr and f'File "{REPO / "scripts"}' not in result.stderr
    assert is_empty_run(tmp_path / "run")


def test_each_process_takes_its_share_of_the_global_batch(tmp_path):
    """The data class gives every process batch_size / world_size images of each global batch."""
    from resnet_repro.data import small_images

    folder = tmp_path / "fm"
    folder.mkdir()
    rng = torch.Generator().manual_seed(0)
    for name, count in [("train", 64), ("t10k", 16)]:
        images = torch.randint(0, 256, (count, 28, 28), generator=rng, dtype=torch.uint8).numpy().tobytes()
        labels = torch.randint(0, 10, (count,), generator=rng, dtype=torch.uint8).numpy().tobytes()
        with gzip.open(folder / f"{name}-images-idx3-ubyte.gz", "wb") as f:
            f.write(b"\x00\x00\x08\x03" + count.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + images)
        with gzip.open(folder / f"{name}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\x00\x00\x08\x01" + count.to_bytes(4, "big") + labels)
    cfg = DataConfig(name="fashion_mnist", root=str(folder), split="full", batch_size=32)
    halves = [
        small_images.DeviceImageData(cfg, torch.device("cpu"), seed=0, rank=r, world_size=2).train_batch(0)
        for r in (0, 1)
    ]
    whole = small_images.DeviceImageData(cfg, torch.device("cpu"), seed=0).train_batch(0)
    assert [h[0].shape[0] for h in halves] == [16, 16]
    assert torch.equal(torch.cat([h[0] for h in halves]), whole[0])
    assert torch.equal(torch.cat([h[1] for h in halves]), whole[1])


def test_second_process_on_a_run_directory_in_use(made_up_run):
    """Another process holds the run's lock (here: this test's process, as a running training would)."""
    with open(made_up_run / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        before = snapshot(made_up_run)
        result = train(made_up_run)
    assert_one_line_error(result, f"run directory {made_up_run} is in use by process {os.getpid()}", "run_root=")
    assert_unchanged(before, made_up_run)


@pytest.mark.slow
def test_second_training_command_on_a_running_run(tmp_path, fashion_mnist_dir):
    """Two real training commands on one run directory: the second is refused while the first trains on."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "scripts/train.py",
        *tiny(fashion_mnist_dir),
        "trainer.max_iters=100000",
        f"hydra.run.dir={run_dir}",
    ]
    first = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "config.yaml").exists():  # written with the lock held
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        result = train(run_dir, "trainer.max_iters=100000", data_root=fashion_mnist_dir)
        assert_one_line_error(result, f"is in use by process {first.pid}")
        assert first.poll() is None  # the first one goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


# ----- logging, output directory, run directory -------------------------------------------------------------------
@pytest.mark.slow
def test_wandb_online_without_credentials(existing_run, tmp_path):
    home = tmp_path / "home"  # no ~/.netrc, no WANDB_API_KEY
    home.mkdir()
    before = snapshot(existing_run)
    result = train(existing_run, "logger=wandb", "logger.mode=online", env=child_env(HOME=str(home)))
    assert_one_line_error(result, "logger.mode=online but no W&B credentials", "wandb login", "logger.mode=offline")
    assert_unchanged(before, existing_run)


def test_output_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    result = train(blocker / "run")
    assert_one_line_error(result, f"cannot write {blocker / 'run'}", "another run_root=DIR")
    assert blocker.read_text() == "not a directory\n"
    result = subprocess.run(
        [sys.executable, "scripts/train.py", *tiny(), f"run_root={blocker}"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(result, f"cannot write {blocker}", "another run_root=DIR")


@contextmanager
def read_only(*paths: Path):
    """Directories nobody may write into: mode 555, or for root (who ignores modes) the immutable attribute."""
    if os.geteuid() != 0:
        modes = [path.stat().st_mode for path in paths]
        for path in paths:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path, mode in zip(paths, modes):
                path.chmod(mode)
        return
    chattr, done = shutil.which("chattr"), []
    try:
        for path in paths:
            result = (
                subprocess.run([chattr or "chattr", "+i", str(path)], capture_output=True, text=True)
                if chattr
                else None
            )
            if result is None or result.returncode:
                pytest.skip(
                    "running as root, and `chattr +i` (to make a directory read-only for root) does not work "
                    f"here: {result.stderr.strip() if result else 'chattr not installed'}"
                )
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run([chattr, "-i", str(path)], check=True)


def test_output_directory_without_write_permission(tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir()
    with read_only(parent):
        assert_one_line_error(train(parent / "run"), f"cannot write {parent / 'run'}", "run_root=")
    assert list(parent.iterdir()) == []


def test_existing_run_directory_without_write_permission(made_up_run):
    (made_up_run / ".lock").touch()
    before = snapshot(made_up_run)
    with read_only(made_up_run, made_up_run / "checkpoints"):
        result = train(made_up_run)
    assert_one_line_error(result, f"run directory {made_up_run} is not writable", "run_root=")
    assert_unchanged(before, made_up_run)


@pytest.mark.slow
def test_run_directory_made_by_a_different_config(existing_run):
    before = snapshot(existing_run)
    line = assert_one_line_error(
        train(existing_run, "trainer.max_iters=30", "optim.lr=0.05"),
        f"run directory {existing_run} holds a run with a different config",
        "optim.lr: 0.1 -> 0.05",
        "trainer.max_iters: 20 -> 30",
        "another run_root=DIR (make: RUN_ROOT=DIR, or SMOKE_OUT=DIR with PROFILE=smoke)",
    )
    assert "delete" in line
    assert_unchanged(before, existing_run)


@pytest.mark.slow
def test_run_directory_with_a_damaged_config(existing_run):
    (existing_run / "config.yaml").write_text("data: [unclosed\n")
    before = snapshot(existing_run)
    assert_one_line_error(train(existing_run), f"{existing_run / 'config.yaml'} is unreadable")
    assert_unchanged(before, existing_run)


@pytest.mark.slow
def test_the_interrupted_run_itself_resumes(existing_run):
    """The control for the tests above: the same directory with the right input resumes and completes."""
    result = train(existing_run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout + result.stderr
    assert json.loads((existing_run / "summary.json").read_text())["status"] == "complete"
