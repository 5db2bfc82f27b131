"""CIFAR-100: the experiment files (the paper's CIFAR protocol unchanged), `make reproduce-cifar DATASET=cifar100`,
a fake CIFAR-100 in the official layout through training and records, and its report: Table 6's rows without the
paper's columns, beside the peers' published CIFAR-100 numbers, never beside the paper's."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from resnet_repro.analysis import tables
from resnet_repro.analysis.report import write_report
from resnet_repro.analysis.runs import Run, load_runs
from resnet_repro.data.small_images import load_cifar
from resnet_repro.engine.run import train
from support import REPO
from support.configs import compose_train_config
from support.fake_data import CIFAR100_FOLDER
from support.runs import read_metrics, read_summary, run_command

EXPERIMENTS = REPO / "configs" / "experiment"
NETS = sorted(p.stem for p in (EXPERIMENTS / "cifar10").glob("*.yaml"))


def _flat(node: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_the_cifar100_experiments_are_the_cifar10_ones_on_cifar100():
    assert sorted(p.stem for p in (EXPERIMENTS / "cifar100").glob("*.yaml")) == NETS and len(NETS) == 11
    for net in NETS:
        ten, hundred = (
            _flat(OmegaConf.to_container(compose_train_config([f"experiment={d}/{net}"]), resolve=True))
            for d in ("cifar10", "cifar100")
        )
        differ = {k for k in ten.keys() | hundred.keys() if ten.get(k) != hundred.get(k)}
        assert differ == {"data.name", "data.root", "experiment_name"}, net
        assert (hundred["data.name"], hundred["experiment_name"], hundred["data.split"]) == (
            "cifar100",
            "cifar100",
            "full",
        )


def test_make_reproduce_cifar_sweeps_every_net_of_the_dataset():
    """The command make would run (the real runs, with NETS=, and a bad DATASET: tests/test_commands.py)."""
    dry = run_command(["make", "-n", "reproduce-cifar", "DATASET=cifar100"], timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "scripts/prepare_data.py cifar100 --root data/cifar100" in dry.stdout
    assert "experiment=" + ",".join(f"cifar100/{n}" for n in NETS) + " " in dry.stdout


@pytest.mark.slow
def test_a_fake_cifar100_trains_and_gets_its_own_table(fake_cifar100, tmp_path):
    root, _ = fake_cifar100
    with open(root / CIFAR100_FOLDER / "train", "rb") as f:
        fine = pickle.load(f, encoding="latin1")["fine_labels"]
    assert load_cifar("cifar100", root, train=True).labels.tolist() == fine  # the fine labels, checksums verified
    run_dir = tmp_path / "runs" / "cifar100" / "resnet8" / "seed0"
    cfg = compose_train_config(
        [
            "experiment=cifar100/resnet20",
            f"data.root={root}",
            "model.name=resnet8",
            "model.family=cifar",
            "data.batch_size=32",
            "data.eval_batch_size=100",
            "trainer.max_iters=4",
            "trainer.eval_every=2",
            "trainer.checkpoint_every=2",
            "trainer.progress=none",
        ]
    )
    summary = train(cfg, run_dir)
    assert (summary["status"], summary["dataset"], summary["experiment"]) == ("complete", "cifar100", "cifar100")
    assert [r["iter"] for r in read_metrics(run_dir)] == [2, 4] and read_summary(run_dir) == summary
    head = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]["fc.weight"]
    assert head.shape == (100, 64)  # a 100-way classifier

    out = tmp_path / "report"
    report, _, _ = write_report(load_runs(tmp_path / "runs"), out, command="test", source="test")
    table = pd.read_csv(out / "tables" / "table_cifar100.csv")
    row = table[table.layers == 8].iloc[0]
    assert row.n == 1 and row.ours_mean_pct == pytest.approx(100 * summary["final_test_err"])
    assert set(table.layers) >= {20, 32, 44, 56, 110, 1202} and not (out / "tables" / "table6.csv").exists()
    assert "### Table 6's nets on CIFAR-100\n" in report and "The paper reports no CIFAR-100 results" in report
    assert "### Other repositories' CIFAR-100 numbers (not rerun here)\n" in report
    assert "28.86" in report and "ours − paper" not in report and "paper: CIFAR-100" not in report
    assert "not the paper's CIFAR protocol either" in report  # 4 iterations


def _paper_protocol_run(model: str, seed: int, final: float, best: float) -> Run:
    """A complete CIFAR-100 run with the paper's CIFAR protocol (64k iterations, batch 128, all images)."""
    metrics = pd.DataFrame(
        {
            "iter": [32000, 64000],
            "train_err": [0.3, 0.1],
            "test_err": [best, final],
            "train_loss": [1.0, 0.5],
            "test_loss": [1.2, 1.1],
        }
    )
    summary = {
        "model": model,
        "seed": seed,
        "status": "complete",
        "dataset": "cifar100",
        "split": "full",
        "experiment": "cifar100",
        "family": "cifar",
        "final_test_err": final,
        "best_test_err": best,
        "iters": 64000,
        "max_iters": 64000,
        "params": 1_734_000,
        "device": "GPU",
        "precision": "fp32",
    }
    config = {
        "data": {"name": "cifar100", "split": "full", "batch_size": 128},
        "model": {"name": model},
        "trainer": {"max_iters": 64000},
        "seed": seed,
        "experiment_name": "cifar100",
    }
    return Run(summary=summary, config=config, metrics=metrics)


def test_cifar100_with_the_paper_protocol_stands_beside_the_peers_only(tmp_path):
    runs = [
        _paper_protocol_run("resnet110", s, final, best) for s, (final, best) in enumerate([(0.30, 0.29), (0.32, 0.31)])
    ]
    assert runs[0].protocol.follows_paper_protocol and not runs[0].protocol.matches_paper
    report, _, _ = write_report(runs, tmp_path, command="test", source="test")
    assert "ours − paper" not in report and "the runs follow its CIFAR-10 protocol" in report
    peers = pd.read_csv(tmp_path / "tables" / "peers_cifar100.csv")
    bearpaw = peers[peers.source.str.startswith("bearpaw") & (peers.model == "resnet110")].iloc[0]
    assert bearpaw.test_error_pct == 28.86 and bearpaw.selection == "best on the test set"
    assert bearpaw.ours_mean_pct == pytest.approx(30.0) and bearpaw.ours_n == 2  # the test-selected errors, as theirs
    final_peer = peers[(peers.selection == "final") & (peers.model == "resnet110")].iloc[0]
    assert final_peer.ours_mean_pct == pytest.approx(31.0)  # the final errors beside their final numbers
    md = tables.cifar100_markdown(tables.cifar100_table(runs))
    assert "paper:" not in md.splitlines()[0] and "30.00 (best of 2)" in md
    assert set(peers.dataset) == {"cifar100"} and peers.source.str.endswith("README").all()
