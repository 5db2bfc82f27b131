"""The benchmark writes its documented report, runs what it says it skips when asked by name, feeds ours data made
in memory through the data module's public constructor, times the whole command as real processes, and
extrapolates a protocol segment from its records."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from resnet_repro.bench import main
from resnet_repro.bench.cases import bench_data_path, extrapolate_protocol, peak_memory_skip_reason
from resnet_repro.bench.cli import make_settings, parse_args
from resnet_repro.bench.harness import Result
from resnet_repro.bench.inputs import cifar_arrays, image_data
from resnet_repro.bench.ours import train_config
from resnet_repro.data.small_images import DeviceImageData
from support import REPO
from support.checkout import NEEDS_VENV, copy_checkout, make, output
from support.runs import child_env


def parse_settings(argv):
    return make_settings(parse_args(argv))


def test_bench_writes_its_report(tmp_path):
    """A tiny run of two benchmarks: the JSON has the documented schema and the Markdown table its rows."""
    out = tmp_path / "bench.json"
    report = main(
        [
            "--quick",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--out",
            str(out),
            "--only",
            "sgd_step_resnet110",
            "multiseed3_resnet20",
        ]
    )
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert {"host", "device", "torch", "results"} <= set(on_disk)
    sgd, multiseed = on_disk["results"]
    assert sgd["name"] == "sgd_step_resnet110" and sgd["unit"] == "steps/s"
    assert sgd["baseline"] > 0 and sgd["ours"] > 0 and sgd["ratio"] == pytest.approx(sgd["ours"] / sgd["baseline"])
    assert multiseed["ours"] is None and "skipped" in multiseed["details"]
    table = out.with_suffix(".md").read_text()
    assert "| sgd_step_resnet110 | steps/s |" in table and "--only" in table


def test_quick_scales_every_case_down_and_the_full_run_keeps_its_sizes():
    """--quick makes every case smaller, the training loop and the whole command included (they were left at their
    full 200 and 300 iterations: 9 minutes on 2 cores); the full run's sizes stay; an explicit size wins."""
    full, quick = parse_settings(["--device", "cpu"]), parse_settings(["--quick", "--device", "cpu"])
    assert (full.rounds, full.data_batches, full.e2e_iters, full.e2e_warmup) == (3, 100, 200, 50)
    assert (full.whole_command_iters, full.step_iters, full.sgd_iters) == (300, 20, 50)
    assert quick.rounds == 1
    for size in ("data_batches", "e2e_iters", "e2e_warmup", "whole_command_iters", "step_iters", "sgd_iters"):
        assert getattr(quick, size) < getattr(full, size), size
    sized = parse_settings(["--quick", "--device", "cpu", "--e2e-iters", "7", "--whole-command-iters", "9"])
    assert (sized.e2e_iters, sized.whole_command_iters) == (7, 9)


@pytest.mark.slow
@NEEDS_VENV
def test_make_bench_quick_writes_a_quick_report(tmp_path):
    """`make bench ARGS=--quick` as typed, narrowed by --only to two short cases (the whole quick run takes minutes):
    the report goes to results/bench/<device>-<date>-quick.json and .md with quick's sizes."""
    checkout = copy_checkout(tmp_path / "checkout")
    bench_dir = checkout / "results" / "bench"
    for committed in bench_dir.glob("*-quick.*"):
        committed.unlink()
    result = make(checkout, "bench", "ARGS=--quick --only sgd_step_resnet110 bf16_step_resnet20", env=child_env())
    assert result.returncode == 0, output(result)
    (report,) = bench_dir.glob("*-quick.json")
    on_disk = json.loads(report.read_text())
    assert [r["name"] for r in on_disk["results"]] == ["bf16_step_resnet20", "sgd_step_resnet110"]
    assert all(r["baseline"] > 0 and r["ours"] > 0 for r in on_disk["results"])
    settings = on_disk["settings"]
    assert settings["quick"] and settings["rounds"] == 1
    assert (settings["e2e_iters"], settings["whole_command_iters"]) == (40, 30)
    assert "| sgd_step_resnet110 | steps/s |" in report.with_suffix(".md").read_text()


def test_resnet1202_memory_runs_on_a_cpu_only_when_named():
    """Its skip message names the --only argument that runs it; that argument must then run it."""
    reason = peak_memory_skip_reason(parse_settings(["--device", "cpu"]), "resnet1202")
    named = reason.split("--only ")[1].rstrip(")")
    assert peak_memory_skip_reason(parse_settings(["--device", "cpu", "--only", named]), "resnet1202") is None
    assert peak_memory_skip_reason(parse_settings(["--device", "cpu"]), "resnet110") is None


def test_data_path_builds_ours_from_in_memory_arrays(tmp_path):
    """Without CIFAR-10 the images are made in memory and handed to DeviceImageData's constructor: its training set
    is those arrays; the data-path case then times batches of it against the DataLoader on the same images (5
    warm-up and 2 timed batches of the DataLoader: 7 x 128 images)."""
    settings = dataclasses.replace(
        parse_settings(["--quick", "--device", "cpu", "--threads", "1", "--cifar-root", str(tmp_path / "no-cifar")]),
        data_batches=2,
        workers=0,
    )
    train, test = cifar_arrays(settings, synthetic_size=(1024, 32))
    data = image_data(train_config(settings, "resnet20"), settings.device, (train, test))
    assert isinstance(data, DeviceImageData)
    assert data.train_size == 1024 and torch.equal(data.train_labels, train.labels)
    assert torch.equal(data.eval_sets["test"].images, test.images)
    images, labels = data.train_batch(0)
    assert images.shape == (128, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (128,)

    result = bench_data_path(settings, synthetic_size=(1024, 32))
    assert result.name == "cifar_data_path" and result.unit == "img/s"
    assert result.baseline > 0 and result.ours > 0 and result.ratio == pytest.approx(result.ours / result.baseline)
    assert result.details["data"].startswith("synthetic") and result.details["batches_ours"] == 40


@pytest.mark.slow
def test_data_path_times_ours_as_a_training_process_runs_it(tmp_path):
    """In a fresh process, as `make bench` starts one, ours is timed after a training step, as in training: its
    batches reuse heap pages. Timed in a process that had run no step, each batch took about 1,200 page faults and
    ran 7x slower (the data path's 7.6x against 46x, results/bench/README.md)."""
    out, no_cifar = tmp_path / "bench.json", tmp_path / "no-cifar"
    argv = ["--quick", "--threads", "1", "--device", "cpu", "--only", "cifar_data_path"]
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", *argv, "--cifar-root", str(no_cifar), "--out", str(out)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, output(result)
    (row,) = json.loads(out.read_text())["results"]
    assert row["ours"] > 0 and row["details"]["page_faults_per_batch_ours"] < 50


def test_a_time_row_has_its_ratio_the_right_way_up():
    """Seconds: baseline / ours (above 1 when ours is faster), as for the rates; errors in % have no ratio."""
    assert Result("x", "s", 30.0, 20.0).ratio == pytest.approx(1.5)
    assert Result("x", "it/s", 2.0, 3.0).ratio == pytest.approx(1.5)
    assert Result("x", "MiB", 200.0, 100.0).ratio == pytest.approx(0.5)
    assert Result("x", "%", 13.0, 13.5).ratio is None


@pytest.mark.slow
def test_whole_command_and_startup_time_our_command_as_processes(tmp_path):
    """--tiny: both commands run as processes of their own on a generated CIFAR-10 in the official format (read by
    torchvision, checksums included), 3 iterations and one evaluation of the 128 test images each; the row's
    samples are their wall times, and ours is longer than the training loop its own records give. startup_resnet20
    reads the start-up each run records, per phase, from the process's start to its first step."""
    out = tmp_path / "bench.json"
    args = ["--tiny", "--device", "cpu", "--threads", "1", "--cifar-root", str(tmp_path / "no-cifar"), "--out"]
    report = main([*args, str(out), "--only", "whole_command_resnet20", "startup_resnet20"])
    row, startup = report["results"]
    phases = startup["details"]["phases_s"]
    assert startup["name"] == "startup_resnet20" and startup["ours"] == phases["total"] and startup["baseline"] is None
    assert all(v > 0 for v in phases.values())
    assert sum(v for k, v in phases.items() if k != "total") == pytest.approx(phases["total"], abs=0.005)
    first_run = startup["details"]["first_run_s"]
    assert first_run["data"] > phases["data"]  # the first run decodes the data set; the measured ones read the copy
    assert "data.root=<generated>" in startup["details"]["command"]
    assert row["name"] == "whole_command_resnet20" and row["unit"] == "s"
    rounds, samples = row["details"]["rounds"], row["details"]["samples"]
    assert [r["wall_s"] for r in rounds["ours"]] == samples["ours"] == [row["ours"]]
    assert [r["wall_s"] for r in rounds["baseline"]] == samples["baseline"] == [row["baseline"]]
    assert rounds["ours"][0]["wall_s"] > rounds["ours"][0]["loop_s"] > 0
    assert rounds["baseline"][0]["iters"] == 3 and rounds["baseline"][0]["test_images"] == 128
    assert row["ratio"] == pytest.approx(row["baseline"] / row["ours"])
    assert "data.root=<generated CIFAR-10>" in row["details"]["ours_command"]  # no temporary path in the records
    assert "| whole_command_resnet20 | s |" in out.with_suffix(".md").read_text()


def test_a_protocol_segment_is_extrapolated_from_its_records():
    """Windows of 500 iterations at batch 128: the first 10 s (warm-up), then 5 s each; 1 s per evaluation; the
    final checkpoint 2 s. 64k iterations: 10 + 63,500 x 0.01 + 64 evaluations x 1 + 32 checkpoints x 2."""
    cfg = train_config(parse_settings(["--device", "cpu"]), "resnet20", eval_every=1000, checkpoint_every=2000)
    rows = [
        {"iter": 500, "img_per_s": 500 * 128 / 10, "wall_s": 11.0},
        {"iter": 1000, "img_per_s": 500 * 128 / 5, "wall_s": 17.0},
    ]
    summary = {"wall_s": 19.0, "iters": 1000, "status": "complete"}
    result = extrapolate_protocol(rows, summary, cfg)
    assert result["steady_s_per_iter"] == pytest.approx(0.01) and result["eval_s"] == pytest.approx(1.0)
    assert result["extrapolated_64k_s"] == pytest.approx(10 + 63_500 * 0.01 + 64 * 1 + 32 * 2)
    assert result["extrapolation"].startswith("EXTRAPOLATED from 1,000 measured iterations")


def test_the_bf16_row_times_both_precisions_of_the_trainers_step():
    """fp32 against bf16 autocast, each the Trainer's own step (ResNet-8, tiny sizes): what auto's choice rests on."""
    from resnet_repro.bench.cases import bench_bf16_step
    from resnet_repro.engine.setup import cpu_computes_bf16

    row = bench_bf16_step(parse_settings(["--tiny", "--device", "cpu", "--threads", "1"]), "resnet8")
    assert (row.name, row.unit) == ("bf16_step_resnet8", "img/s")
    assert row.baseline > 0 and row.ours > 0 and row.ratio == pytest.approx(row.ours / row.baseline)
    assert row.details["native_bf16"] == cpu_computes_bf16()
