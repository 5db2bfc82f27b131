"""make gpu-check's dry run on a CPU: every part runs its tiny CPU equivalent or is skipped with its reason, and the
JSON and Markdown it writes are a well-formed pair with one summary row per part."""

import json

import pytest

from resnet_repro.bench.gpu_check import main, parse_args, plan
from support import FASHION_MNIST_DIR


@pytest.mark.slow
def test_dry_run_writes_its_json_and_markdown(tmp_path):
    out = tmp_path / "check.json"
    fashion = FASHION_MNIST_DIR if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists() else None
    argv = ["--dry-run", "--out", str(out), *(["--fashion-mnist", str(fashion)] if fashion else [])]
    report = main(argv)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(report)) and on_disk["dry_run"] is True
    parts = {p["name"]: p for p in on_disk["parts"]}
    assert list(parts) == [p.name for p in plan(parse_args(argv))]  # every part, in the order of the plan
    assert all(p["status"] in ("ok", "skipped") for p in parts.values()), [
        (p["name"], p.get("reason")) for p in parts.values() if p["status"] not in ("ok", "skipped")
    ]
    assert all(p["reason"] for p in parts.values() if p["status"] == "skipped")

    # The GPU tests are selected and skip without CUDA; the GPU-only bench cases say why they did not run.
    assert parts["gpu_tests"]["tests"]["counts"]["skipped"] >= 4
    assert "torch.compile" in parts["bench_compile"]["reason"]
    multiseed = next(r for r in parts["bench_cuda_graphs"]["results"] if r["name"] == "multiseed3_resnet20")
    assert "GPU only" in multiseed["details"]["skipped"]
    # A segment is extrapolated and says so; a bench row keeps the bench's schema.
    (segment,) = parts["segment_resnet110"]["results"]
    assert segment["details"]["extrapolation"].startswith("EXTRAPOLATED") and segment["ours"] > 0
    assert {"name", "unit", "baseline", "ours", "ratio", "details"} <= set(segment)
    if fashion:
        (accuracy,) = parts["precision_accuracy"]["results"]
        for precision in ("fp32", "bf16"):
            run = accuracy["details"][precision]
            assert len(run["test_err"]) == 2 and run["test_err_stats"]["std"] is not None
            assert 0 <= run["train_err_stats"]["mean"] <= 1
    else:
        assert "Fashion-MNIST" in parts["precision_accuracy"]["results"][0]["details"]["skipped"]

    markdown = out.with_suffix(".md").read_text()
    assert markdown.startswith("# gpu-check DRY RUN")
    summary = markdown.split("## Summary")[1].split("## Every result")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == list(parts)
    assert [s["part"] for s in on_disk["summary"]] == list(parts)
    assert "| segment_resnet110 | paper_protocol_resnet110 | s |" in markdown
