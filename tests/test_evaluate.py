"""scripts/evaluate.py on a CIFAR-style run (Fashion-MNIST, real data): the README's command as typed evaluates the
last and the best checkpoint on the full test set and writes the results beside the run; ImageNet's protocol
options and runs in use are refused with one line. (ImageNet and torchvision's weights: test_imagenet.py.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from resnet_repro.engine.run_dir import RunDirectory
from support import REPO
from support.configs import TINY_RUN
from support.runs import read_metrics, read_summary, run_command, train_command

FULL_TEST_SET = 10_000  # Fashion-MNIST's test images
pytestmark = pytest.mark.slow  # every test evaluates, or is refused on, a run trained here (15 s on 2 cores)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fashion_mnist_dir):
    """ResNet-8, 60 iterations, evaluated by the trainer on the full test set (data.limit_test=0) at 30 and 60, so
    that its own records hold the test error of last.pt and of best.pt (selected on the 500 validation images). In
    fp32: bf16 convolutions round differently with the batch size, and evaluate.py batches the images its own way."""
    run_root = tmp_path_factory.mktemp("evaluate")
    overrides = [o for o in TINY_RUN if not o.startswith("data.limit_test")]
    result = run_command(
        train_command(
            *overrides,
            "data.limit_test=0",
            "model.name=resnet8",
            "model.family=cifar",
            "trainer.max_iters=60",
            "trainer.eval_every=30",
            "trainer.checkpoint_every=30",
            f"run_root={run_root}",
            "experiment_name=evaluate",
            "trainer.precision=fp32",
        )
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_root / "evaluate" / "resnet8" / "seed0"
    assert read_summary(run)["status"] == "complete"
    return run


def readme_command(fragment: str) -> str:
    """The command of the README's "Other commands" table that contains `fragment`, as the README types it."""
    commands = re.findall(r"^\| `([^`]+)` \|", (REPO / "README.md").read_text(), flags=re.MULTILINE)
    matching = [c for c in commands if fragment in c]
    assert len(matching) == 1, commands
    return matching[0]


def as_typed(command: str, **placeholders: str) -> list[str]:
    """argv of a README command with its placeholders filled in; `python` is this interpreter."""
    argv = [placeholders.get(word, word) for word in shlex.split(command)]
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The `error:` line of a command that failed as the project's errors do: exit 2, one line, no traceback."""
    report = f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, report
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], report
    return lines[-1]


def test_the_readme_command_evaluates_last_and_best_on_the_full_test_set(run_dir):
    before = read_summary(run_dir)
    rows = {row["iter"]: row for row in read_metrics(run_dir)}
    result = run_command(as_typed(readme_command("scripts/evaluate.py --run"), DIR=str(run_dir)))
    assert result.returncode == 0, result.stderr[-3000:]

    saved = json.loads((run_dir / "eval.json").read_text())["eval"]
    assert set(saved) == {"last", "best"}
    best_iteration = min(rows.values(), key=lambda row: row["val_err"])["iter"]
    for name, iteration in (("last", 60), ("best", best_iteration)):
        r = saved[name]
        assert (r["checkpoint"], r["iteration"], r["images"]) == (f"checkpoints/{name}.pt", iteration, FULL_TEST_SET)
        assert r["precision"] == before["precision"]  # the run's own arithmetic, so its own numbers repeat
        # The trainer's own evaluation of the same weights on the same 10000 images.
        assert r["top1_err"] == rows[iteration]["test_err"], name
        assert r["nll"] == pytest.approx(rows[iteration]["test_loss"], rel=1e-5), name
        assert f"{name}       top-1 {100 * r['top1_err']:6.2f}%  ({FULL_TEST_SET} images" in result.stdout

    after = read_summary(run_dir)  # the run's summary keeps everything it had, and gains "eval"
    assert after.pop("eval") == saved and after == before


def test_imagenet_protocol_options_are_refused_for_a_cifar_style_run(run_dir):
    records = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    for options, named in ((["--protocols", "10crop"], "--protocols"), (["--scales", "224,256"], "--scales")):
        result = run_command([sys.executable, "scripts/evaluate.py", "--run", str(run_dir), *options])
        line = one_error_line(result)
        assert named in line and "fashion_mnist" in line and "ImageNet" in line, line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == records  # nothing written


def test_a_run_in_use_is_refused(run_dir):
    """A process holds the run's lock (a trainer that writes it): one line, and the run is left to it."""
    holder = RunDirectory(run_dir)
    holder.lock()
    try:
        result = run_command([sys.executable, "scripts/evaluate.py", "--run", str(run_dir)])
    finally:
        holder.unlock()
    assert "in use" in one_error_line(result)
