"""Figures, tables, report and layer responses from synthetic run records with known values."""

from __future__ import annotations

import ast
import fcntl
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from resnet_repro.analysis import curves, responses, tables
from resnet_repro.analysis.protocol import deviations
from resnet_repro.analysis.provenance import command_template, provenance
from resnet_repro.analysis.report import write_report
from resnet_repro.analysis.runs import STOPPED, group_runs, load_run, load_runs, run_from_wandb

REPO = Path(__file__).resolve().parents[1]
CIFAR = ["plain20", "plain32", "plain44", "plain56", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
FASHION = {"data.name": "fashion_mnist"}
SHORT = {"trainer.max_iters": 600, "schedule.milestones": [400, 500], "data.limit_test": 1000}  # the demo's schedule


def depth_of(model: str) -> int:
    return int(re.sub(r"\D", "", model))


def make_run(
    root: Path,
    model: str,
    seed: int,
    final_err: float,
    status: str = "complete",
    experiment="cifar10",
    family="cifar",
    max_iters=64000,
    evals=5,
    cfg: dict | None = None,
    summary: dict | None = None,
    test_errs: list[float] | None = None,
) -> Path:
    """A run directory as the trainer writes it, with the paper's CIFAR-10 protocol unless `cfg` says otherwise;
    test error falls linearly from 50% to final_err (or follows `test_errs`)."""
    d = root / experiment / model / f"seed{seed}"
    d.mkdir(parents=True)
    config = {
        "data": {
            "name": "cifar10" if family == "cifar" else "imagenet",
            "split": "full",
            "limit_train": 0,
            "limit_test": 0,
            "batch_size": 128 if family == "cifar" else 256,
        },
        "model": {"name": model, "shortcut": "A"},
        "seed": seed,
        "experiment_name": experiment,
        "trainer": {"max_iters": max_iters},
        "schedule": {"warmup": model == "resnet110", "kind": "steps" if family == "cifar" else "plateau"},
    }
    node = OmegaConf.create(config)
    for k, v in (cfg or {}).items():
        OmegaConf.update(node, k, v)
    config = OmegaConf.to_container(node)
    OmegaConf.save(OmegaConf.create(config), d / "config.yaml")
    last = config["trainer"]["max_iters"] if status == "complete" else config["trainer"]["max_iters"] // 2
    errs = test_errs or [0.5 + (final_err - 0.5) * (i + 1) / evals for i in range(evals)]
    its = np.linspace(last / len(errs), last, len(errs)).astype(int)
    with open(d / "metrics.jsonl", "w") as f:
        for it, te in zip(its, errs):
            f.write(
                json.dumps(
                    {
                        "iter": int(it),
                        "epoch": it / 391,
                        "lr": 0.1,
                        "train_loss": 1.0,
                        "train_err": te - 0.03,
                        "test_loss": 1.0,
                        "test_err": te,
                        "img_per_s": 1e4,
                        "wall_s": float(it),
                    }
                )
                + "\n"
            )
        if status == "running":
            f.write('{"iter": 99999, "test_e')  # a half-written line
    s = {
        "model": model,
        "family": family,
        "depth": depth_of(model),
        "shortcut": "A",
        "dataset": config["data"]["name"],
        "split": config["data"]["split"],
        "seed": seed,
        "experiment": experiment,
        "params": 269722,
        "flops": 41_000_000,
        "final_test_err": errs[-1],
        "best_test_err": min(errs),
        "best_val_err": None,
        "iters": int(last),
        "max_iters": config["trainer"]["max_iters"],
        "wall_s": 3600.0,
        "device": "NVIDIA H100 80GB HBM3",
        "world_size": 1,
        "torch": "2.14.1",
        "cuda": "12.8",
        "git_commit": "abc1234def",
        "git_dirty": False,
        "status": status,
        "precision": "bf16",
        "command": f"python scripts/train.py experiment={experiment} model={model} seed={seed}",
    }
    (d / "summary.json").write_text(json.dumps({**s, **(summary or {})}))
    return d


def text_of(fig) -> str:
    """The figure's title and foot notes as one line (they are wrapped to the figure's width)."""
    parts = [fig._suptitle.get_text() if fig._suptitle else ""] + [t.get_text() for t in fig.texts]
    return " ".join(" ".join(parts).split())


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@contextmanager
def holding_lock(run_dir: Path):
    """Hold the run directory's lock as a live trainer does (an fcntl lock conflicts across open files)."""
    with open(run_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


@pytest.fixture
def cifar_root(tmp_path):
    root = tmp_path / "runs"
    for i, e in enumerate([0.08, 0.09, 0.10]):
        make_run(root, "resnet20", i, e)
    make_run(root, "resnet20", 3, 0.05, status="running")  # no process holds its lock: a dead run
    make_run(root, "resnet110", 0, 0.07, status="failed")
    for m in CIFAR:
        if m not in ("resnet20", "resnet110"):
            make_run(root, m, 0, 0.07 + 0.001 * depth_of(m))
    return root


def test_table6_values_and_incomplete_runs(cifar_root):
    runs = load_runs(cifar_root)
    df = tables.table6(runs)
    r20 = df.query("method == 'ResNet' and layers == 20").iloc[0]
    assert (r20.ours_best_pct, r20.ours_mean_pct, r20.ours_std_pct, r20.n) == pytest.approx((8.0, 9.0, 1.0, 3))
    assert r20.comparable and r20.diff_mean_pct == pytest.approx(9.0 - 8.75)  # mean against the paper's number
    assert "resnet20 seed 3: stopped (no process)" in r20.not_complete  # the 5% dead run is not the "best"
    r110 = df.query("method == 'ResNet' and layers == 110").iloc[0]
    assert r110.n == 0 and np.isnan(r110.ours_best_pct) and "failed" in r110.not_complete
    assert (r110.paper_mean_pct, r110.paper_std_pct, r110.paper_best_of) == (6.61, 0.16, 5)
    assert {"Maxout", "NIN", "DSN", "FitNet", "Highway"} <= set(df.method)
    md = tables.table6_markdown(df, runs)
    assert "| 9.00 ± 1.00 (N=3) |" in md and "| +0.25 |" in md and "6.43 (mean 6.61 ± 0.16)" in md
    assert "Not complete" in md and "resnet110 seed 0: failed" in md
    assert tables.TEST_SELECTED in md


def test_best_of_n_only_where_the_paper_reports_best_of_5(tmp_path):
    for seed, e in enumerate([0.066, 0.062, 0.070]):
        make_run(tmp_path, "resnet110", seed, e)
        make_run(tmp_path, "resnet56", seed, e + 0.01)
    df = tables.table6(load_runs(tmp_path))
    r110 = df.query("method == 'ResNet' and layers == 110").iloc[0]
    assert r110.ours_best_pct == pytest.approx(6.2)
    assert r110.diff_mean_pct == pytest.approx(6.6 - 6.61) and r110.diff_best_pct == pytest.approx(6.2 - 6.43)
    assert np.isnan(df.query("method == 'ResNet' and layers == 56").iloc[0].diff_best_pct)
    md = tables.table6_markdown(df)
    assert "6.20 (best of 3)" in md and "mean -0.01, best -0.23" in md
    line56 = next(line for line in md.splitlines() if line.startswith("| ResNet | 56 |"))
    assert "best of" not in line56


def test_test_selected_column_from_the_metrics_rows(tmp_path):
    """The lowest test error over evaluations, per seed, from metrics.jsonl; the headline stays the final error."""
    curves_by_seed = {0: [0.5, 0.2, 0.12, 0.15], 1: [0.4, 0.11, 0.13, 0.14], 2: [0.3, 0.25, 0.2, 0.1]}
    for seed, errs in curves_by_seed.items():
        make_run(
            tmp_path, "resnet20", seed, errs[-1], test_errs=errs, summary={"best_test_err": 0.99}
        )  # a stale summary field must not be what is shown
    runs = load_runs(tmp_path)
    direct = []
    for seed in curves_by_seed:
        rows = [json.loads(x) for x in (tmp_path / "cifar10" / "resnet20" / f"seed{seed}" / "metrics.jsonl").open()]
        direct.append(100 * min(r["test_err"] for r in rows))
    final = [100 * errs[-1] for errs in curves_by_seed.values()]
    r20 = tables.table6(runs).query("method == 'ResNet' and layers == 20").iloc[0]
    assert r20.test_selected_mean_pct == pytest.approx(np.mean(direct))  # 11.0
    assert r20.test_selected_std_pct == pytest.approx(np.std(direct, ddof=1))
    assert r20.ours_mean_pct == pytest.approx(np.mean(final))  # 13.0: not the selected one
    assert [tables.best_test_err_during_training(r) for r in runs] == pytest.approx([d / 100 for d in direct])
    seeds = tables.seeds_table(runs).iloc[0]
    assert seeds.test_selected_mean_pct == pytest.approx(np.mean(direct)) and seeds.n == 3
    assert seeds.seeds == "0: 15.00, 1: 14.00, 2: 10.00"


def test_the_tables_are_tidy_frames_of_plain_values_before_any_markdown(tmp_path):
    """Data first: each table is a DataFrame of numbers and names (its CSV), checked here as data; one renderer
    then turns a frame of cells into Markdown."""
    make_run(tmp_path, "resnet20", 0, 0.08)
    make_run(tmp_path, "resnet20", 1, 0.10, summary={"git_dirty": True, "wall_s": 90.0})
    make_run(tmp_path, "resnet56", 0, 0.07, status="interrupted")
    runs = load_runs(tmp_path)
    seeds = tables.seeds_table(runs)
    assert seeds.to_dict("records") == [
        {
            "model": "resnet20",
            "n": 2,
            "mean_pct": pytest.approx(9.0),
            "std_pct": pytest.approx(2**0.5),
            "best_pct": pytest.approx(8.0),
            "seeds": "0: 8.00, 1: 10.00",
            "test_selected_mean_pct": pytest.approx(9.0),  # make_run's curves fall to the final error
            "test_selected_n": 2,
        }
    ]
    t6 = tables.table6(runs).set_index("method")
    r20, r56 = (t6[t6.layers == d].iloc[0] for d in (20, 56))
    assert (r20.n, r20.ours_mean_pct, r20.ours_seeds_pct, r20.params_M_ours) == (
        2,
        pytest.approx(9.0),
        "8.00 / 10.00",
        0.269722,
    )
    assert (r20.paper_err_pct, r20.diff_mean_pct, r20.comparable) == (8.75, pytest.approx(0.25), True)
    assert r56.n == 0 and r56.not_complete == "resnet56 seed 0: interrupted at 32000/64000 iters"
    assert (t6.loc["Highway"].iloc[0].paper_mean_pct, t6.loc["Highway"].iloc[0].paper_std_pct) == (7.72, 0.16)
    df = tables.runs_table(runs)
    assert df[["net", "seed", "status", "iters", "max_iters", "git_dirty", "wall_s"]].values.tolist() == [
        ["resnet20", 0, "complete", 64000, 64000, False, 3600.0],
        ["resnet20", 1, "complete", 64000, 64000, True, 90.0],
        ["resnet56", 0, "interrupted", 32000, 64000, False, 3600.0],
    ]
    assert list(df.final_test_err_pct) == pytest.approx([8.0, 10.0, 7.0])
    assert set(df.hardware) == {"NVIDIA H100 80GB HBM3"} and set(df.git_commit) == {"abc1234def"}
    lines = tables.runs_markdown(df).splitlines()
    assert lines[0] == (
        "| experiment | data set | net | seed | status | iters | final test err (%) | hardware | precision | commit "
        "| wall time | command |"
    )
    assert lines[3].startswith("| cifar10 | CIFAR-10 | ResNet-20 | 1 | complete | 64000/64000 | 10.00 | NVIDIA H100")
    assert "| abc1234+ | 90 s | `python scripts/train.py" in lines[3]
    assert "Total wall time of the runs: 2.0 h." in tables.runs_markdown(df)


@pytest.mark.parametrize(
    "cfg, reason",
    [
        (FASHION, "Fashion-MNIST (paper: CIFAR-10)"),
        (
            {**FASHION, **SHORT},
            "Fashion-MNIST (paper: CIFAR-10); 600 iterations (paper: 64k); lr ÷10 at 400, 500 "
            "(paper: at 32k, 48k); first 1000 test images (paper: the full test set)",
        ),
        (SHORT, "600 iterations (paper: 64k)"),
    ],
)
def test_no_comparison_with_the_paper_off_its_protocol(tmp_path, cfg, reason):
    for m in ["plain20", "plain56", "resnet20", "resnet56", "resnet110"]:
        for seed in range(2):
            make_run(tmp_path, m, seed, 0.1 + 0.01 * seed, cfg=cfg)
    runs = load_runs(tmp_path)
    df = tables.table6(runs)
    assert not df.comparable.any() and df.diff_mean_pct.isna().all() and df.diff_best_pct.isna().all()
    assert df.query("method == 'ResNet'").not_comparable.str.startswith(f"not comparable: {reason}").all()  # CSV
    md = tables.table6_markdown(df, runs)
    rows = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| ResNet |")}
    for layers in ("20", "56", "110"):  # the report states the reasons once, in its protocol block
        assert "| not comparable: see protocol |" in rows[layers]
        assert not re.search(r"\| [+-]\d", rows[layers])  # no signed difference anywhere
    assert "not the paper's protocol" in md
    findings = " ".join(curves.figure_findings(runs, None))
    assert "reproduced" not in findings and "not a reproduction" in findings.lower()
    strip = curves.seed_strip(runs)
    assert all(not ax.lines for ax in strip.axes)  # no paper line beside non-comparable dots


@pytest.mark.slow
def test_mixed_records_give_separate_titled_tables_and_figures(tmp_path):
    """Two data sets and two schedules under one run root and one experiment name: three protocols, three sets of
    tables and figures, each titled with its own data set and schedule, none averaged with another."""
    root = tmp_path / "runs"
    kinds = {"paper": ({}, 0.07), "fashion": (FASHION, 0.10), "short": (SHORT, 0.30)}
    for cfg, err in kinds.values():
        for m in ["plain20", "plain56", "resnet20", "resnet56"]:
            for seed in range(2):
                make_run(root / str(err), m, seed, err + 0.01 * seed, cfg=cfg)
    # the same experiment name in all three: grouping is by protocol, not by folder or name
    runs = load_runs(root)
    groups, _ = group_runs(runs)
    assert len(groups) == 3 and [g.suffix for g in groups][0] == ""
    assert groups[0].protocol.matches_paper  # the paper's protocol is the primary group
    with pytest.raises(ValueError, match="never pooled"):
        tables.table6(runs)
    out = tmp_path / "out"
    text, n_figures, n_tables = write_report(runs, out, command="test", source="test records")
    titles = {}
    for g in groups:
        t6 = pd.read_csv(out / "tables" / f"table6{g.suffix}.csv")
        r20 = t6.query("method == 'ResNet' and layers == 20").iloc[0]
        base = min(r.summary["final_test_err"] for r in g.runs)  # 0.07, 0.10 or 0.30: seeds at base and base + 0.01
        assert r20.ours_mean_pct == pytest.approx(100 * base + 0.5) and r20.n == 2  # this group's seeds only
        assert t6.protocol.iloc[0] == g.protocol.title
        titles[g.suffix] = g.protocol.title
        for name in ("fig1", "fig6", "seeds"):
            assert (out / "figures" / f"{name}{g.suffix}.png").exists()
        for fig in (curves.figure1(g.runs), curves.figure6(g.runs), curves.seed_strip(g.runs)):
            assert g.protocol.title in text_of(fig)
        section = text.split(f"## {g.protocol.heading}\n")[1].split("\n## ")[0]  # its own section, protocol stated
        assert f"- training: {g.protocol.training_text}; batch 128\n" in section and "### Table 6\n" in section
    assert titles[""].startswith("CIFAR-10, 64000 iterations, lr ÷10 at 32k, 48k; batch 128")
    assert any(t.startswith("Fashion-MNIST, 64000 iterations") for t in titles.values())
    assert any(t.startswith("CIFAR-10, 600 iterations, lr ÷10 at 400, 500;") for t in titles.values())
    assert "3 protocols" in text and "never averaged together" in text
    assert n_figures == 3 * 3 and n_tables == 3 * 2


def test_strip_plot_one_point_per_seed(cifar_root):
    for seed in range(1, 3):
        make_run(cifar_root, "plain20", seed, 0.09 + 0.001 * seed)
    runs = load_runs(cifar_root)
    fig = curves.seed_strip(runs)
    done = {m: sum(r.complete for r in runs if r.model == m) for m in {r.model for r in runs}}
    shown = {ax.get_title().split(" (")[0]: ax for ax in fig.axes}
    assert set(shown) == {curves.pretty(m) for m, n in done.items() if n}  # ResNet-110 failed: no panel
    for m, n in done.items():
        if n:
            ax = shown[curves.pretty(m)]
            assert sum(len(c.get_offsets()) for c in ax.collections) == n
            assert ax.get_title() == f"{curves.pretty(m)} (N={n})"
    assert [line.get_ydata()[0] for line in shown["ResNet-20"].lines] == [8.75]  # the paper's number as a line
    assert not shown["plain-20"].lines  # the paper gives no plain-net number


def test_empty_panels_are_left_out(tmp_path):
    for m in ["plain20", "plain56", "resnet20", "resnet56"]:
        make_run(tmp_path, m, 0, 0.1)
    runs = load_runs(tmp_path)
    fig = curves.figure6(runs)
    assert [ax.get_title() for ax in fig.axes] == ["plain", "ResNet"]  # no ResNet-110/1202 panel
    assert all(ax.lines for ax in fig.axes)
    assert "Panel left out (no runs): ResNet-110 / ResNet-1202" in text_of(fig)
    only_resnets = [r for r in runs if r.model.startswith("resnet")]
    assert curves.figure1(only_resnets) is None  # nothing to draw: no figure rather than empty axes
    assert [ax.get_title() for ax in curves.figure6(only_resnets).axes] == ["ResNet"]
    imagenet = tmp_path / "imagenet"
    make_run(imagenet, "resnet18", 0, 0.3, family="imagenet", max_iters=600000)
    assert [ax.get_title() for ax in curves.figure4(load_runs(imagenet)).axes] == ["ResNet"]


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
    assert labels == [
        "ResNet-20 (n=3)",
        f"ResNet-20 s3: {STOPPED}",
        "ResNet-32",
        "ResNet-44",
        "ResNet-56",
        "ResNet-110 s0: failed",
    ]
    assert len(res.collections) == 2  # min-max bands (train, test) of the 3 complete ResNet-20 seeds
    assert res.lines[2].get_ydata()[-1] == pytest.approx(9.0)  # mean over the complete seeds, in %
    assert res.lines[3].get_linestyle() == ":"
    note = text_of(fig)
    assert "resnet20 seed 3: stopped (no process)" in note and "Not run: ResNet-1202" in note
    assert "commit abc1234" in note and "NVIDIA H100" in note  # the provenance at the foot
    assert note.startswith("training curves (Figure 6's layout")
    assert "CIFAR-10, 64000 iterations, lr ÷10 at 32k, 48k; batch 128; trained on the full training set" in note
    assert "k iterations" in [ax.get_xlabel() for ax in fig.axes]  # a 64k-iteration run

    fig1 = curves.figure1(runs)
    assert len(fig1.axes) == 2 and [len(ax.lines) for ax in fig1.axes] == [2, 2]
    assert [ax.get_title() for ax in fig1.axes] == ["training error", "test error"]
    assert fig1.axes[0].lines[0].get_xdata()[-1] == pytest.approx(64)  # k iterations
    assert fig1.axes[1].lines[1].get_ydata()[-1] == pytest.approx(100 * (0.07 + 0.056))


def test_live_and_dead_runs_are_told_apart_by_the_lock(tmp_path):
    d = make_run(tmp_path, "resnet20", 0, 0.1, status="running")
    with holding_lock(d):
        run = load_run(d)
        assert run.live and run.status == "running" and "running" in run.label
    run = load_run(d)
    assert not run.live and run.status == STOPPED and run.summary["status"] == "running"
    d2 = make_run(tmp_path, "resnet56", 0, 0.1, status="interrupted")
    with holding_lock(d2):
        assert load_run(d2).status == "running"  # a resume that has not rewritten the summary yet
    assert load_run(d2).status == "interrupted"
    d3 = make_run(tmp_path, "plain20", 0, 0.1)
    with holding_lock(d3):  # an evaluation holds the lock of a complete run
        assert load_run(d3).status == "complete"


@pytest.mark.slow
def test_a_killed_trainer_is_stopped_not_running(tmp_path, fashion_mnist_dir):
    """A real training process: running while it lives; after SIGKILL its summary still says "running", and every
    reader says it stopped."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "scripts/train.py",
        "data=fashion_mnist",
        f"data.root={fashion_mnist_dir}",
        "data.limit_train=2048",
        "data.limit_test=256",
        "data.val_size=256",
        "data.batch_size=32",
        "model=resnet20",
        "trainer.max_iters=100000",
        "trainer.eval_every=10",
        "trainer.progress=none",
        f"hydra.run.dir={run_dir}",
    ]
    log = (tmp_path / "train.log").open("w")
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"},
    )
    try:
        deadline = time.monotonic() + 240
        # summary.json is written when training starts; wait for a first evaluation too, so there is a curve
        while not (
            (run_dir / "summary.json").exists()
            and (run_dir / "metrics.jsonl").exists()
            and (run_dir / "metrics.jsonl").read_text().endswith("\n")
        ):
            assert proc.poll() is None, (tmp_path / "train.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no summary.json and evaluation after 240 s"
            time.sleep(0.2)
        run = load_run(run_dir)
        assert run.summary["status"] == "running" and run.live and run.status == "running"
    finally:
        proc.kill()
        proc.wait(timeout=60)
        log.close()
    run = load_run(run_dir)
    assert run.summary["status"] == "running"  # nobody rewrote it
    assert not run.live and run.status == STOPPED
    assert STOPPED in run.label
    assert STOPPED in tables.table6([run]).query("layers == 20").iloc[0].not_complete
    fig = curves.figure6([run])
    assert f"ResNet-20 s0: {STOPPED}" in [line.get_label() for line in fig.axes[0].lines]


def test_provenance_line_flags_disagreement(tmp_path):
    make_run(tmp_path, "resnet20", 0, 0.1)
    make_run(tmp_path, "resnet20", 1, 0.1, summary={"git_commit": "fff0000aaa", "git_dirty": True})
    make_run(tmp_path, "resnet56", 0, 0.1, summary={"precision": "fp32"})
    runs = load_runs(tmp_path)
    assert command_template(runs[0]) == "python scripts/train.py experiment=cifar10 model=<net> seed=<seed>"
    line = provenance(runs).line()
    assert "commit abc1234 (2 runs) / fff0000 (uncommitted changes) (1 run)" in line
    assert "hardware NVIDIA H100 80GB HBM3" in line and "torch 2.14.1" in line and "CUDA 12.8" in line
    assert "precision bf16 (2 runs) / fp32 (1 run)" in line
    assert "`python scripts/train.py experiment=cifar10 model=<net> seed=<seed>`" in line
    assert "Flagged: runs disagree on commit, precision." in line and "Flagged: code with uncommitted changes." in line
    same = provenance(runs[:1]).line()
    assert "Flagged" not in same and "commit abc1234," in same
    cpu_run = make_run(tmp_path / "cpu", "resnet20", 0, 0.1, summary={"device": "cpu", "cpu": "AMD EPYC, 2 threads"})
    assert "hardware cpu (AMD EPYC, 2 threads)" in provenance([load_run(cpu_run)]).line()
    older = make_run(tmp_path / "older", "resnet20", 0, 0.1, summary={"device": "cpu"})  # before the CPU was recorded
    assert "hardware cpu (model not recorded)" in provenance([load_run(older)]).line()


def run_script(name, *args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_make_figures_end_to_end(cifar_root, tmp_path):
    make_run(cifar_root, "resnet20", 0, 0.3, experiment="demo", max_iters=2000, cfg=FASHION)
    for m, sc in [("plain18", None), ("plain34", None), ("resnet34", "B"), ("resnet18", "A")]:
        make_run(
            cifar_root,
            m,
            0,
            0.27,
            experiment="imagenet_shortcutB" if sc == "B" else "imagenet",  # B as the older configs named it
            family="imagenet",
            max_iters=600000,
            cfg={"model.shortcut": sc},
            summary={
                "shortcut": sc,
                "eval": {
                    "center": {"top1_err": 0.30, "top5_err": 0.10},
                    "10crop": {"top1_err": 0.26, "top5_err": 0.08},
                    "multiscale": {"top1_err": 0.22, "top5_err": 0.06},
                },
            },
        )
    out = tmp_path / "results"
    p = run_script("make_figures.py", "--runs", cifar_root, "--out", out)
    assert p.returncode == 0, p.stderr
    for f in ["fig1", "fig6", "fig4", "seeds"]:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{f}.{ext}").stat().st_size > 1000
    assert not (out / "figures" / "fig7.png").exists()
    # the demo's Fashion-MNIST run: its own table and strip plot, beside (not inside) the CIFAR-10 ones
    assert (out / "tables" / "table6-demo-fashion_mnist-2000it.csv").exists()
    assert (out / "figures" / "fig6-demo-fashion_mnist-2000it.png").exists()
    assert not (out / "figures" / "fig1-demo-fashion_mnist-2000it.png").exists()  # no plain net: no Figure 1
    for t in ["table6", "table2", "table3", "table4", "seeds"]:
        assert (out / "tables" / f"{t}.md").exists() and (out / "tables" / f"{t}.csv").exists()
    t3 = pd.read_csv(out / "tables" / "table3.csv")
    r34b = t3[(t3.model == "resnet34") & (t3.shortcut == "B")].iloc[0]
    assert (r34b.ours_top1_pct, r34b.ours_top5_pct, r34b.diff_top1_pct) == pytest.approx((26.0, 8.0, 26.0 - 24.52))
    assert np.isnan(t3[(t3.model == "resnet34") & (t3.shortcut == "C")].ours_top1_pct.iloc[0])
    t4 = pd.read_csv(out / "tables" / "table4.csv")
    assert t4[(t4.model == "resnet34") & (t4.shortcut == "B")].ours_top1_pct.iloc[0] == pytest.approx(22.0)
    report = (out / "REPORT.md").read_text()
    assert "## Experiment demo: Fashion-MNIST, 2000 iterations" in report
    assert "## Experiment cifar10: CIFAR-10, 64000 iterations" in report
    assert (
        report.count("## Experiment imagenet") == 1 and "## Experiment imagenet: ImageNet, 600000 iterations" in report
    )
    demo = report.split("## Experiment demo: Fashion-MNIST, 2000 iterations\n")[1].split("\n## ")[0]
    assert "### Table 6\n" in demo and "| not comparable: see protocol |" in demo
    assert "  - Fashion-MNIST (paper: CIFAR-10)\n  - 2k iterations (paper: 64k)\n" in demo
    assert "precision=bf16" in report and "python scripts/train.py experiment=cifar10 model=resnet56 seed=0" in report
    assert "NVIDIA H100" in report and "| 60 min |" in report and "scripts/make_figures.py" in report and "![" in report
    assert "Degradation (Figure 1's claim)" in report and "(reproduced)" in report and "failed" in report
    assert report.count("Provenance (") >= 8 and STOPPED in report
    assert "Published numbers of other repositories (CIFAR-10" in report
    assert "akamaster/pytorch_resnet_cifar10" in report
    assert "bearpaw/pytorch-classification" in report and "| 6.11 |" in report
    assert "Published numbers of other repositories (ImageNet" in report


def tiny_image_folder(root: Path) -> Path:
    """An ImageNet-style folder (train/ and val/, one folder per class) of 3 classes of small random JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 3)):
        for c in range(3):
            (root / split / f"n{c:08d}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"n{c:08d}" / f"img{i}.JPEG")
    return root


TINY_IMAGENET = [  # 32-pixel crops, 2 iterations: the nets and the records are real, the numbers mean nothing
    *("data.scale_min=40", "data.scale_max=48", "data.crop_size=32", "data.batch_size=6", "data.eval_batch_size=9"),
    *("data.num_workers=0", "data.mean_images=12", "trainer.max_iters=2", "trainer.eval_every=2"),
    *("trainer.checkpoint_every=2", "trainer.progress=none", "trainer.device=cpu"),
]


@pytest.mark.slow
def test_resnet34_a_b_c_are_one_table3(tmp_path):
    """The three shortcut options of ResNet-34, trained from their experiment files in one sweep as
    `make reproduce-imagenet` does (tiny here) and evaluated 10-crop and multi-scale: one experiment in three run
    directories, one Table 3 with a row of numbers for each, Tables 2-4 written once."""
    from support.runs import run_command, train_command

    data, runs, out = tiny_image_folder(tmp_path / "imagenet"), tmp_path / "runs", tmp_path / "results"
    sweep = "experiment=imagenet/resnet34,imagenet/resnet34b,imagenet/resnet34c"
    done = run_command(train_command("-m", sweep, f"data.root={data}", f"run_root={runs}", *TINY_IMAGENET))
    assert done.returncode == 0, done.stderr[-3000:]
    dirs = sorted(p.parent.relative_to(runs).as_posix() for p in runs.rglob("summary.json"))
    assert dirs == ["imagenet/resnet34/seed0", "imagenet/resnet34_shortcutB/seed0", "imagenet/resnet34_shortcutC/seed0"]
    evaluate = [sys.executable, "scripts/evaluate.py", "--run", *(str(runs / d) for d in dirs)]
    done = run_command([*evaluate, "--protocols", "10crop,multiscale", "--scales", "32,40", "--workers", "0"])
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_command([sys.executable, "scripts/make_figures.py", "--runs", str(runs), "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]

    assert sorted(p.name for p in (out / "tables").glob("table[234]*.csv")) == [
        "table2.csv",
        "table3.csv",
        "table4.csv",
    ]
    t3 = pd.read_csv(out / "tables" / "table3.csv").query("model == 'resnet34'")
    t4 = pd.read_csv(out / "tables" / "table4.csv").query("model == 'resnet34'")
    for table, shortcuts, protocol in ((t3, "ABC", "10crop"), (t4, "BC", "multiscale")):
        assert list(table.shortcut) == list(shortcuts) and (table.n == 1).all()
        for sc, d in zip(shortcuts, dirs[-len(shortcuts) :]):
            ev = json.loads((runs / d / "eval.json").read_text())["eval"][protocol]
            row = table[table.shortcut == sc].iloc[0]
            assert row.ours_protocol == protocol and row.ours_top1_pct == pytest.approx(100 * ev["top1_err"])
    report = (out / "REPORT.md").read_text()
    assert report.count("\n### Table 3\n") == 1 and report.count("\n## Experiment imagenet") == 1
    seeds = pd.read_csv(out / "tables" / "seeds.csv")
    assert list(seeds.model) == ["resnet34", "resnet34B", "resnet34C"] and (seeds.n == 1).all()  # three nets


DEMO_NETS = ["plain20", "plain56", "resnet20", "resnet56"]


def test_a_report_states_each_protocol_once_under_short_headings(tmp_path):
    """Records like `make demo`'s beside a second experiment: every heading under 80 characters, each experiment's
    protocol stated once, in the block under its heading, and a "not comparable" cell that points there."""
    root = tmp_path / "runs"
    for m in DEMO_NETS:
        make_run(root, m, 0, 0.2, experiment="demo", cfg={**FASHION, **SHORT}, summary={"device": "cpu", "cpu": "X9"})
        make_run(root, m, 0, 0.1, experiment="short", cfg={"trainer.max_iters": 2000})
    runs = load_runs(root)
    text, _, _ = write_report(runs, tmp_path / "out", command="test", source="test")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert max(map(len, headings)) <= 80, max(headings, key=len)
    groups, _ = group_runs(runs)
    assert [f"## {g.protocol.heading}" for g in groups] == [
        "## Experiment demo: Fashion-MNIST, 600 iterations",
        "## Experiment short: CIFAR-10, 2000 iterations",
    ]
    for g in groups:
        assert text.count(g.protocol.title) == 0  # not repeated in headings, alt texts or captions
        assert text.count(f"- training: {g.protocol.training_text}; batch 128\n") == 1
    assert text.count("Protocol of these 4 runs:") == 2
    assert "- training: 600 iterations, lr ÷10 at 400, 500; batch 128" in text
    assert "- training: 2000 iterations, constant lr; batch 128" in text  # the default milestones come later
    assert text.count("  - first 1000 test images (paper: the full test set)\n") == 1  # the demo's, once
    cells = {c.strip() for line in text.splitlines() if line.startswith("| ResNet |") for c in line.split("|")}
    assert "not comparable: see protocol" in cells and max(map(len, cells)) < 60
    assert "hardware cpu (X9)" in text  # the CPU's model from the records


def test_a_run_is_labelled_with_the_schedule_it_ran(tmp_path):
    """A 20-iteration run with the default milestones (32k, 48k) has a constant lr: no label says otherwise, and its
    curves are drawn over iterations, not in units of 1e4."""
    make_run(tmp_path / "iters", "resnet20", 0, 0.5, max_iters=20)
    (run,) = load_runs(tmp_path / "iters")
    assert "÷10" not in run.protocol.title and run.protocol.training_text == "20 iterations, constant lr"
    assert run.protocol.mismatches()[:2] == ["20 iterations (paper: 64k)", "constant lr (paper: at 32k, 48k)"]
    fig = curves.figure6([run])
    assert "÷10" not in text_of(fig) and "20 iterations, constant lr" in text_of(fig)
    assert fig.axes[0].get_xlabel() == "iterations" and fig.axes[0].lines[-1].get_xdata()[-1] == 20
    text, _, _ = write_report([run], tmp_path / "out", command="test", source="test")
    assert "÷10" not in text.split("## Published numbers")[0]
    # Milestones in epochs: 800 iterations of 391 per epoch (make_run's metrics) reach epoch 1, not epoch 30.
    make_run(tmp_path / "epochs", "resnet20", 0, 0.5, max_iters=800, cfg={"schedule.milestones": [1, 30]})
    cfg = OmegaConf.load(tmp_path / "epochs" / "cifar10" / "resnet20" / "seed0" / "config.yaml")
    cfg.schedule.milestones_unit = "epochs"
    OmegaConf.save(cfg, tmp_path / "epochs" / "cifar10" / "resnet20" / "seed0" / "config.yaml")
    (epochs,) = load_runs(tmp_path / "epochs")
    assert epochs.protocol.training_text == "800 iterations, lr ÷10 at 1 epochs"


def test_peers_table_beside_ours_chosen_the_same_way(cifar_root):
    runs = load_runs(cifar_root)
    df = tables.peers_table("cifar10", runs)
    aka = df[(df.source.str.startswith("akamaster")) & (df.model == "resnet20")].iloc[0]
    assert (aka.test_error_pct, aka.selection, aka.ours_n) == (8.27, "best on the test set", 3)
    direct = np.mean(
        [100 * tables.best_test_err_during_training(r) for r in runs if r.model == "resnet20" and r.complete]
    )
    assert aka.ours_mean_pct == pytest.approx(direct)
    reme = df[(df.source.str.startswith("raphaelreme")) & (df.model == "resnet20")].iloc[0]
    assert reme.selection == "final" and reme.ours_mean_pct == pytest.approx(9.0)  # the final error, as theirs
    assert ((df.model == "resnet110") & (df.test_error_pct == 6.11) & (df.shortcut == "B")).any()
    md = tables.peers_markdown(df, have_comparable=False)
    assert "nothing is put beside them" in md and "8.27" in md


def test_deviations_from_config(tmp_path):
    make_run(
        tmp_path,
        "resnet110",
        0,
        0.07,
        max_iters=2000,
        cfg={"data.split": "paper", "data.limit_train": 1000, "data.name": "fashion_mnist", "schedule.warmup": False},
    )
    (run,) = load_runs(tmp_path)
    devs = " | ".join(deviations(run))
    for s in [
        "trainer.max_iters=2000",
        "data.split=paper",
        "data.limit_train=1000",
        "data.name=fashion_mnist",
        "schedule.warmup=False",
        "precision=bf16",
    ]:
        assert s in devs
    assert run.protocol.mismatches() == [
        "Fashion-MNIST (paper: CIFAR-10)",
        "2k iterations (paper: 64k)",
        "constant lr (paper: at 32k, 48k)",  # the default milestones lie beyond the run's 2000 iterations
        "split paper, 5000 held out (paper: the full training set)",
        "first 1000 training images (paper: all)",
    ]


@pytest.mark.parametrize("partial", [False, True])
def test_no_runs_message(tmp_path, partial):
    root = tmp_path / "runs"
    root.mkdir()
    if partial:
        (root / "cifar10" / "resnet20" / "seed0").mkdir(parents=True)
        (root / "cifar10" / "resnet20" / "seed0" / "metrics.jsonl").write_text("")
    p = run_script("make_figures.py", "--runs", root, "--out", tmp_path / "out")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error: ")
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


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.slow
def test_layer_responses_script(tmp_path, monkeypatch):
    """The script on real (randomly initialised) nets from checkpoints; a synthetic test set stands in for CIFAR."""
    from resnet_repro.engine.checkpoint import save_checkpoint
    from resnet_repro.models import build_model

    root = tmp_path / "runs"
    for m in ["plain20", "resnet20"]:
        d = make_run(root, m, 1, 0.1)
        make_run(root, m, 0, 0.2, status="interrupted")  # the lowest complete seed is used: 1
        save_checkpoint(
            {"model": build_model(m, num_classes=10).state_dict(), "iteration": 64000}, d / "checkpoints" / "last.pt"
        )
    script = load_script("layer_responses")
    monkeypatch.setattr(script, "normalized_test_set", lambda run, root, name: torch.randn(40, 3, 32, 32))
    out = tmp_path / "results"
    assert script.main(["--runs", str(root), "--out", str(out), "--batch-size", "16"]) == 0
    df = pd.read_csv(out / "tables" / "fig7_responses.csv")
    assert list(df.columns) == ["model", "seed", "layer_index", "std", "rank_sorted"]
    assert df.groupby("model").size().to_dict() == {"plain20": 19, "resnet20": 19}  # 1 + 6n 3x3 layers
    assert set(df.seed) == {1} and (df["std"] > 0).all()
    meta = json.loads((out / "tables" / "fig7_responses.json").read_text())
    assert meta["group"] == "cifar10-cifar10-64000it" and meta["protocol"].startswith("CIFAR-10, 64000 iterations")
    assert (out / "figures" / "fig7.png").exists() and (out / "figures" / "fig7.pdf").exists()
    fig = responses.figure7(df, "a title")
    assert len(fig.axes) == 2 and [len(ax.lines) for ax in fig.axes] == [2, 2]
    assert np.all(np.diff(fig.axes[1].lines[0].get_ydata()) <= 0)  # sorted panel descends
    # make_figures picks the responses up
    assert run_script("make_figures.py", "--runs", root, "--out", out).returncode == 0
    report = (out / "REPORT.md").read_text()
    assert "Figure 7's layout" in report and "layer_responses.py" in report and "40 CIFAR-10 test images" in report


def test_layer_responses_refuses_a_corrupt_checkpoint(tmp_path, monkeypatch, capsys):
    from resnet_repro.engine.checkpoint import save_checkpoint
    from resnet_repro.models import build_model

    d = make_run(tmp_path / "runs", "resnet20", 0, 0.1)
    path = d / "checkpoints" / "last.pt"
    save_checkpoint({"model": build_model("resnet20").state_dict(), "iteration": 64000}, path)
    state = torch.load(path, weights_only=False)
    state["model"]["fc.bias"][0] += 1  # a flipped value that torch.load does not notice
    torch.save(state, path)
    script = load_script("layer_responses")
    monkeypatch.setattr(script, "normalized_test_set", lambda run, root, name: torch.randn(8, 3, 32, 32))
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert str(path) in capsys.readouterr().err and not (tmp_path / "out" / "tables" / "fig7_responses.csv").exists()


def test_trained_model_is_built_from_the_run_config(tmp_path):
    from resnet_repro.engine.checkpoint import save_checkpoint
    from resnet_repro.models import build_model

    d = make_run(tmp_path, "resnet20", 0, 0.1, cfg={"model.shortcut": "B", "data.name": "cifar100"})
    net = build_model("resnet20", num_classes=100, shortcut="B")
    save_checkpoint({"model": net.state_dict(), "iteration": 1}, d / "checkpoints" / "last.pt")
    loaded = responses.load_trained_model(load_run(d))
    assert loaded.fc.out_features == 100
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_normalized_test_set_fashion_mnist(tmp_path, fashion_mnist_dir):
    make_run(
        tmp_path,
        "resnet20",
        0,
        0.1,
        cfg={"data.name": "fashion_mnist", "data.split": "paper"},
        summary={"dataset": "fashion_mnist"},
    )
    (run,) = load_runs(tmp_path)
    x = responses.normalized_test_set(run, str(fashion_mnist_dir))
    assert x.shape[0] == 10000 and x.shape[2:] == (32, 32) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.02  # mean of the training split removed; test set has nearly the same mean


class FakeWandbRun:
    """The attributes of wandb.apis.public.Run that run_from_wandb reads."""

    name, group, state = "resnet56-seed2", "cifar10", "crashed"
    config = {
        "model": {"name": "resnet56", "shortcut": "A"},
        "seed": 2,
        "data": {"name": "cifar10", "split": "full"},
        "trainer": {"max_iters": 64000},
        "_wandb": {"x": 1},
    }
    summary = {"final_test_err": 0.071, "params": 853018, "_runtime": 5}

    def history(self):
        return pd.DataFrame(
            {
                "_step": [2000, 1000],
                "iter": [2000, 1000],
                "train_err": [0.2, 0.4],
                "test_err": [0.25, 0.45],
                "_runtime": [1, 2],
            }
        )


def test_wandb_conversion():
    run = run_from_wandb(FakeWandbRun())
    assert (run.model, run.seed, run.status, run.experiment, run.dataset) == (
        "resnet56",
        2,
        "failed",
        "cifar10",
        "cifar10",
    )
    assert run.cfg("trainer.max_iters") == 64000 and run.summary["params"] == 853018
    assert list(run.metrics.columns) == ["iter", "train_err", "test_err"] and list(run.metrics["iter"]) == [1000, 2000]
    assert run.summary["iters"] == 2000 and not run.complete and run.live is None
    flat = FakeWandbRun()
    flat.config = {"model.name": {"value": "plain20"}, "seed": {"value": 0}}
    flat.state = "finished"
    r = run_from_wandb(flat)
    assert (r.model, r.seed, r.complete) == ("plain20", 0, True)
    fig = curves.figure6([run])  # a W&B run plots like a local one (dotted: it crashed)
    assert [ax.get_title() for ax in fig.axes] == ["ResNet"]
    assert fig.axes[0].lines[0].get_linestyle() == ":"


def analysis_imports() -> dict[str, set[str]]:
    """Module of analysis/ -> the modules of analysis/ it imports, anywhere in it (inside functions too)."""
    package = REPO / "src" / "resnet_repro" / "analysis"
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        found = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                where = (node.module or "").split(".")
                if node.level == 1 and node.module is None:  # from . import tables
                    found |= {a.name for a in node.names}
                elif node.level == 1 or where[:2] == ["resnet_repro", "analysis"]:
                    found.add(where[-1] if node.level == 1 else (where[2:] or [""])[0])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("resnet_repro.analysis.")}
        graph[name] = found & modules
    return graph


def test_no_module_of_analysis_imports_one_that_imports_it_back():
    graph = analysis_imports()
    assert graph["report"] >= {"curves", "landscape_figure", "search", "tables"}  # the check sees these imports

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in graph[start])

    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not circles, {m: sorted(graph[m]) for m in circles}
    assert graph["common"] == set()  # the shared helpers depend on nothing else of the package


def test_drawing_the_report_imports_no_torch():
    """make_figures reads records and draws: torch's import would add a second to every `make figures`."""
    code = "import sys, resnet_repro.analysis.report; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "a module that the report imports imports torch at its top"
