"""Figures, tables, report and layer responses from synthetic run records with known values."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from resnet_repro.analysis import curves, responses, tables
from resnet_repro.analysis.report import deviations
from resnet_repro.analysis.runs import load_runs, run_from_wandb

REPO = Path(__file__).resolve().parents[1]
CIFAR = ["plain20", "plain32", "plain44", "plain56", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


def make_run(root: Path, model: str, seed: int, final_err: float, status: str = "complete", experiment="cifar10",
             family="cifar", max_iters=64000, evals=5, cfg: dict | None = None, summary: dict | None = None) -> Path:
    """A run directory as the trainer writes it; test error falls linearly from 50% to final_err."""
    d = root / experiment / model / f"seed{seed}"
    d.mkdir(parents=True)
    last = max_iters if status == "complete" else max_iters // 2
    config = {"data": {"name": "cifar10" if family == "cifar" else "imagenet", "split": "full", "limit_train": 0,
                       "batch_size": 128 if family == "cifar" else 256},
              "model": {"name": model, "shortcut": "A"}, "seed": seed, "experiment_name": experiment,
              "trainer": {"max_iters": max_iters}, "schedule": {"warmup": model == "resnet110"}}
    for k, v in (cfg or {}).items():
        OmegaConf.update(cfg_node := OmegaConf.create(config), k, v)
        config = OmegaConf.to_container(cfg_node)
    OmegaConf.save(OmegaConf.create(config), d / "config.yaml")
    its = np.linspace(last / evals, last, evals).astype(int)
    with open(d / "metrics.jsonl", "w") as f:
        for i, it in enumerate(its):
            frac = (i + 1) / evals
            te = 0.5 + (final_err - 0.5) * frac
            f.write(json.dumps({"iter": int(it), "epoch": it / 391, "lr": 0.1, "train_loss": 1.0, "train_err": te - 0.03,
                                "test_loss": 1.0, "test_err": te, "img_per_s": 1e4, "wall_s": float(it)}) + "\n")
        if status == "running":
            f.write('{"iter": 99999, "test_e')  # a half-written line
    s = {"model": model, "family": family, "depth": int(model.lstrip("plainresnet")), "shortcut": "A",
         "dataset": config["data"]["name"], "split": "full", "seed": seed, "experiment": experiment,
         "params": 269722, "flops": 41_000_000, "final_test_err": final_err, "best_test_err": final_err,
         "best_val_err": None, "iters": int(last), "max_iters": max_iters, "wall_s": 3600.0,
         "device": "NVIDIA H100 80GB HBM3", "torch": "2.14.1", "cuda": "12.8", "git_commit": "abc", "git_dirty": False,
         "status": status, "precision": "bf16", "command": f"python scripts/train.py model={model} seed={seed}"}
    (d / "summary.json").write_text(json.dumps({**s, **(summary or {})}))
    return d


@pytest.fixture
def cifar_root(tmp_path):
    root = tmp_path / "runs"
    for i, e in enumerate([0.08, 0.09, 0.10]):
        make_run(root, "resnet20", i, e)
    make_run(root, "resnet20", 3, 0.05, status="running")
    make_run(root, "resnet110", 0, 0.07, status="failed")
    for m in CIFAR:
        if m not in ("resnet20", "resnet110"):
            make_run(root, m, 0, 0.07 + 0.001 * int(m.lstrip("plainresnet")))
    return root


def test_table6_values_and_incomplete_runs(cifar_root):
    runs = load_runs(cifar_root)
    df = tables.table6(runs).set_index("method", append=True)
    r20 = tables.table6(runs).query("method == 'ResNet' and layers == 20").iloc[0]
    assert (r20.ours_best_pct, r20.ours_mean_pct, r20.ours_std_pct, r20.n) == pytest.approx((8.0, 9.0, 1.0, 3))
    assert r20.diff_best_pct == pytest.approx(8.0 - 8.75)
    assert "seed 3 (running" in r20.not_complete  # the 5% running run is not the "best"
    r110 = tables.table6(runs).query("method == 'ResNet' and layers == 110").iloc[0]
    assert r110.n == 0 and np.isnan(r110.ours_best_pct) and "failed" in r110.not_complete
    assert (r110.paper_mean_pct, r110.paper_std_pct) == (6.61, 0.16)
    assert {"Maxout", "NIN", "DSN", "FitNet", "Highway"} <= set(df.index.get_level_values("method"))
    md = tables.table6_markdown(tables.table6(runs), runs)
    assert "| 9.00 ± 1.00 (N=3) |" in md and "| -0.75 |" in md and "6.43 (6.61±0.16)" in md
    assert "Not complete" in md and "resnet110 seed 0 (failed" in md


def test_figures_panels_curves_and_status(cifar_root):
    runs = load_runs(cifar_root)
    fig = curves.figure6(runs)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_ylim() == (0, 20)
    plain, res, deep = fig.axes
    assert len(plain.lines) == 8  # 4 nets x (train dashed, test bold)
    assert [line.get_linestyle() for line in plain.lines[:2]] == ["--", "-"]
    assert plain.lines[1].get_linewidth() > plain.lines[0].get_linewidth()
    labels = [line.get_label() for line in res.lines if not line.get_label().startswith("_")]
    assert labels == ["ResNet-20 (n=3)", "ResNet-20 s3 (running)", "ResNet-32", "ResNet-44", "ResNet-56",
                      "ResNet-110 s0 (failed)"]
    assert len(res.collections) == 2  # min-max bands (train, test) of the 3 complete ResNet-20 seeds
    # ResNet-20: train mean, train of the running seed, test mean, test of the running seed
    assert res.lines[2].get_ydata()[-1] == pytest.approx(9.0)  # mean over the complete seeds, in %
    assert res.lines[3].get_linestyle() == ":" and res.lines[3].get_label() == "ResNet-20 s3 (running)"
    note = " ".join(t.get_text() for t in fig.texts)
    assert "resnet20 seed 3 (running" in note and "Not run: ResNet-1202" in note

    fig1 = curves.figure1(runs)
    assert len(fig1.axes) == 2 and [len(ax.lines) for ax in fig1.axes] == [2, 2]
    assert [ax.get_title() for ax in fig1.axes] == ["training error", "test error"]
    assert fig1.axes[0].lines[0].get_xdata()[-1] == pytest.approx(6.4)  # iterations in 1e4
    assert fig1.axes[1].lines[1].get_ydata()[-1] == pytest.approx(100 * (0.07 + 0.056))


def run_script(name, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_make_figures_end_to_end(cifar_root, tmp_path):
    make_run(cifar_root, "resnet20", 0, 0.3, experiment="demo", max_iters=2000)
    for m, sc in [("plain18", None), ("plain34", None), ("resnet34", "B"), ("resnet18", "A")]:
        make_run(cifar_root, m, 0, 0.27, experiment="imagenet", family="imagenet", max_iters=600000,
                 cfg={"model.shortcut": sc}, summary={"shortcut": sc, "eval": {
                     "center": {"top1_err": 0.30, "top5_err": 0.10}, "10crop": {"top1_err": 0.26, "top5_err": 0.08},
                     "multiscale": {"top1_err": 0.22, "top5_err": 0.06}}})
    out = tmp_path / "results"
    p = run_script("make_figures.py", "--runs", cifar_root, "--out", out)
    assert p.returncode == 0, p.stderr
    for f in ["fig1", "fig6", "fig4"]:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{f}.{ext}").stat().st_size > 1000
    assert not (out / "figures" / "fig7.png").exists()
    for t in ["table6", "table2", "table3", "table4"]:
        assert (out / "tables" / f"{t}.md").exists() and (out / "tables" / f"{t}.csv").exists()
    t3 = pd.read_csv(out / "tables" / "table3.csv")
    r34b = t3[(t3.model == "resnet34") & (t3.shortcut == "B")].iloc[0]
    assert (r34b.ours_top1_pct, r34b.ours_top5_pct, r34b.diff_top1_pct) == pytest.approx((26.0, 8.0, 26.0 - 24.52))
    assert np.isnan(t3[(t3.model == "resnet34") & (t3.shortcut == "C")].ours_top1_pct.iloc[0])
    t4 = pd.read_csv(out / "tables" / "table4.csv")
    assert t4[(t4.model == "resnet34") & (t4.shortcut == "B")].ours_top1_pct.iloc[0] == pytest.approx(22.0)
    report = (out / "REPORT.md").read_text()
    assert "left out: demo" in report  # the 2k-iteration demo is not mixed into the 64k figures
    assert "precision=bf16" in report and "python scripts/train.py model=resnet56 seed=0" in report
    assert "NVIDIA H100" in report and "| 60 min |" in report and "scripts/make_figures.py" in report and "![" in report
    assert "Figure 1 (degradation)" in report and "failed" in report


def test_deviations_from_config(tmp_path):
    make_run(tmp_path, "resnet110", 0, 0.07, max_iters=2000,
                 cfg={"data.split": "paper", "data.limit_train": 1000, "data.name": "fashion_mnist", "schedule.warmup": False})
    (run,) = load_runs(tmp_path)
    devs = " | ".join(deviations(run))
    for s in ["trainer.max_iters=2000", "data.split=paper", "data.limit_train=1000", "data.name=fashion_mnist",
              "schedule.warmup=False", "precision=bf16"]:
        assert s in devs


@pytest.mark.parametrize("partial", [False, True])
def test_no_runs_message(tmp_path, partial):
    root = tmp_path / "runs"
    root.mkdir()
    if partial:
        (root / "cifar10" / "resnet20" / "seed0").mkdir(parents=True)
        (root / "cifar10" / "resnet20" / "seed0" / "metrics.jsonl").write_text("")
    p = run_script("make_figures.py", "--runs", root, "--out", tmp_path / "out")
    assert p.returncode == 1
    assert len(p.stderr.strip().splitlines()) == 1
    assert str(root) in p.stderr and "make reproduce-cifar" in p.stderr and "make demo" in p.stderr
    assert ("without summary.json" in p.stderr) == partial
    assert not (tmp_path / "out" / "REPORT.md").exists()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))

    def response_layers(self):
        return [self.bn1, self.bn2]


def test_layer_responses_match_direct_computation():
    torch.manual_seed(0)
    net = TinyNet()
    net.train()
    net(torch.randn(64, 3, 8, 8) * 3 + 1)  # non-trivial BN running statistics
    x = torch.randn(50, 3, 8, 8)
    got = responses.layer_responses(net, x, batch_size=7)
    net.eval()
    with torch.no_grad():
        r1 = net.bn1(net.conv1(x))
        r2 = net.bn2(net.conv2(torch.relu(r1)))
    np.testing.assert_allclose(got, [r1.std(unbiased=False).item(), r2.std(unbiased=False).item()], rtol=1e-5)
    df = responses.responses_frame("resnet20", 0, np.array([0.5, 2.0, 1.0]))
    assert list(df.rank_sorted) == [3, 1, 2] and list(df.layer_index) == [1, 2, 3]


def test_layer_responses_script(tmp_path, monkeypatch):
    """The script on real (randomly initialised) nets from checkpoints; a synthetic test set stands in for CIFAR."""
    models = pytest.importorskip("resnet_repro.models")
    root = tmp_path / "runs"
    for m in ["plain20", "resnet20"]:
        d = make_run(root, m, 1, 0.1)
        make_run(root, m, 0, 0.2, status="interrupted")  # the lowest complete seed is used: 1
        (d / "checkpoints").mkdir()
        torch.save({"model": models.build_model(m, num_classes=10).state_dict()}, d / "checkpoints" / "last.pt")
    spec = importlib.util.spec_from_file_location("layer_responses", REPO / "scripts" / "layer_responses.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "normalized_test_set", lambda run, root, name: torch.randn(40, 3, 32, 32))
    out = tmp_path / "results"
    assert script.main(["--runs", str(root), "--out", str(out), "--batch-size", "16"]) == 0
    df = pd.read_csv(out / "tables" / "fig7_responses.csv")
    assert list(df.columns) == ["model", "seed", "layer_index", "std", "rank_sorted"]
    assert df.groupby("model").size().to_dict() == {"plain20": 19, "resnet20": 19}  # 1 + 6n 3x3 layers
    assert set(df.seed) == {1} and (df["std"] > 0).all()
    assert (out / "figures" / "fig7.png").exists() and (out / "figures" / "fig7.pdf").exists()
    fig = responses.figure7(df)
    assert len(fig.axes) == 2 and [len(ax.lines) for ax in fig.axes] == [2, 2]
    assert np.all(np.diff(fig.axes[1].lines[0].get_ydata()) <= 0)  # sorted panel descends
    # make_figures picks the responses up
    assert run_script("make_figures.py", "--runs", root, "--out", out).returncode == 0
    assert "Figure 7" in (out / "REPORT.md").read_text() and "layer_responses.py" in (out / "REPORT.md").read_text()


def test_normalized_test_set_fashion_mnist(tmp_path, fashion_mnist_dir):
    make_run(tmp_path, "resnet20", 0, 0.1, cfg={"data.name": "fashion_mnist", "data.split": "paper"},
             summary={"dataset": "fashion_mnist"})
    (run,) = load_runs(tmp_path)
    x = responses.normalized_test_set(run, str(fashion_mnist_dir))
    assert x.shape[0] == 10000 and x.shape[2:] == (32, 32) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.02  # mean of the training split removed; test set has nearly the same mean


class FakeWandbRun:
    """The attributes of wandb.apis.public.Run that run_from_wandb reads."""

    name, group, state = "resnet56-seed2", "cifar10", "crashed"
    config = {"model": {"name": "resnet56", "shortcut": "A"}, "seed": 2, "data": {"name": "cifar10", "split": "full"},
              "trainer": {"max_iters": 64000}, "_wandb": {"x": 1}}
    summary = {"final_test_err": 0.071, "params": 853018, "_runtime": 5}

    def history(self):
        return pd.DataFrame({"_step": [2000, 1000], "iter": [2000, 1000], "train_err": [0.2, 0.4],
                             "test_err": [0.25, 0.45], "_runtime": [1, 2]})


def test_wandb_conversion():
    run = run_from_wandb(FakeWandbRun())
    assert (run.model, run.seed, run.status, run.experiment, run.dataset) == ("resnet56", 2, "failed", "cifar10", "cifar10")
    assert run.cfg("trainer.max_iters") == 64000 and run.summary["params"] == 853018
    assert list(run.metrics.columns) == ["iter", "train_err", "test_err"] and list(run.metrics["iter"]) == [1000, 2000]
    assert run.summary["iters"] == 2000 and not run.complete
    flat = FakeWandbRun()
    flat.config = {"model.name": {"value": "plain20"}, "seed": {"value": 0}}
    flat.state = "finished"
    r = run_from_wandb(flat)
    assert (r.model, r.seed, r.complete) == ("plain20", 0, True)
    fig = curves.figure6([run])  # a W&B run plots like a local one (dotted: it crashed)
    assert fig.axes[1].lines[0].get_linestyle() == ":"
