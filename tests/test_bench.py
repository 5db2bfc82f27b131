"""The benchmark writes its documented report, runs what it says it skips when asked by name, and feeds ours data
made in memory through the data module's public constructor."""

import dataclasses
import json

import pytest
import torch

from resnet_repro.bench import main
from resnet_repro.bench.cases import bench_data_path, peak_memory_skip_reason
from resnet_repro.bench.cli import make_settings, parse_args
from resnet_repro.bench.inputs import cifar_arrays, image_data
from resnet_repro.bench.ours import train_config
from resnet_repro.data.small_images import DeviceImageData


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
