"""Loss landscapes (analysis/landscape.py, scripts/loss_landscape.py): filter normalization, BN statistics recomputed
for the weights of every point, the loss at the checkpoints' weights, and a tiny grid on tiny runs through the script,
the figure and the report."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.optim.swa_utils import update_bn

from resnet_repro.analysis import landscape, landscape_figure
from resnet_repro.analysis.report import write_report
from resnet_repro.analysis.runs import load_runs
from resnet_repro.config import DataConfig
from resnet_repro.data import DeviceImageData
from resnet_repro.engine.checkpoint import load_checkpoint
from resnet_repro.engine.run import train
from resnet_repro.models import build_model
from support.configs import compose_train_config
from support.fake_data import make_fake_cifar10, patch_cifar10_md5
from support.runs import load_script

TINY = [
    "data=cifar10",
    "data.split=full",
    "data.batch_size=32",
    "data.eval_batch_size=100",
    "model.family=cifar",
    "trainer.max_iters=6",
    "trainer.eval_every=3",
    "trainer.checkpoint_every=3",
    "trainer.progress=none",
]
SMALL = ["--grid", "3", "--line-points", "3", "--images", "64"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """plain-8 and ResNet-8, 6 iterations each on a fake CIFAR-10 (checksums patched for the whole module)."""
    root = tmp_path_factory.mktemp("landscape")
    with pytest.MonkeyPatch.context() as mp:
        patch_cifar10_md5(mp, make_fake_cifar10(root / "cifar10"))
        runs = {}
        for net in ("plain8", "resnet8"):
            run_dir = root / "runs" / "tiny" / net / "seed0"
            train(
                compose_train_config(
                    [*TINY, f"data.root={root / 'cifar10'}", f"model.name={net}", "experiment_name=tiny"]
                ),
                run_dir,
            )
            runs[net] = run_dir
        yield root, runs


def test_filter_normalization_matches_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    for shape in [(8, 3, 3, 3), (10, 16)]:
        weight, direction = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        expected = torch.stack([d * (w.norm() / d.norm()) for d, w in zip(direction, weight)])
        got = landscape.normalize_filters(direction, weight)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got.flatten(1).norm(dim=1), weight.flatten(1).norm(dim=1))


def bn_modules(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_the_directions_are_zero_on_bn_parameters_and_bn_statistics_are_recomputed_at_every_point():
    model = build_model("resnet8", 10)
    params = {n: p.detach() for n, p in model.named_parameters()}
    direction = landscape.random_direction(params, torch.Generator().manual_seed(0))
    bn_names = {f"{m}.{p}" for m in bn_modules(model) for p in ("weight", "bias")}
    assert bn_names and bn_names <= set(direction)
    for name, d in direction.items():
        if name in bn_names or d.dim() <= 1:
            assert not d.any(), name
        else:
            assert d.any(), name
            torch.testing.assert_close(d.flatten(1).norm(dim=1), params[name].flatten(1).norm(dim=1))
    # Two points of the surface: BN keeps the final scale and shift; its statistics, seen by the loss's eval-mode
    # forward pass, are those of each point's own weights on the images (a direct update_bn), so they differ.
    final = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    for mod in bn_modules(model).values():
        mod.register_forward_pre_hook(
            lambda m, _: None if m.training else seen.append([t.clone() for t in (m.weight, m.bias, m.running_mean)])
        )
    second = landscape.random_direction(params, torch.Generator().manual_seed(1))
    images, labels = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    points = [(1.0, -1.0), (0.0, 0.5)]
    landscape.surface(model, final, (direction, second), [1.0, 0.0], [-1.0, 0.5], images, labels)
    n_bn = len(bn_modules(model))
    assert len(seen) == 4 * n_bn  # the 2 x 2 grid, in order: (1, -1), (1, 0.5), (0, -1), (0, 0.5)
    at = {(1.0, -1.0): seen[:n_bn], (0.0, 0.5): seen[3 * n_bn :]}
    for x, y in points:
        direct = build_model("resnet8", 10)
        direct.load_state_dict(final)
        with torch.no_grad():
            for n, p in direct.named_parameters():
                p.add_(direction[n], alpha=x).add_(second[n], alpha=y)
        update_bn([images], direct)
        for (weight, bias, mean), (name, mod) in zip(at[(x, y)], bn_modules(direct).items()):
            assert torch.equal(weight, final[f"{name}.weight"]) and torch.equal(bias, final[f"{name}.bias"])
            torch.testing.assert_close(mean, mod.running_mean)
    assert not torch.equal(at[points[0]][-1][2], at[points[1]][-1][2])  # other weights, other statistics
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in final.items())  # the model is left as it was


@pytest.mark.slow
def test_the_loss_at_the_initial_weights_of_a_bn_resnet56_is_near_chance(fashion_mnist_dir):
    """BN's stored statistics at initialization (mean 0, variance 1) do not belong to the weights: with them ResNet-56's
    27 residual branches add up unnormalized to a loss in the hundreds. Recomputed for the weights, the loss on a few
    training images is near chance (ln 10), as for plain-56."""
    data_cfg = OmegaConf.structured(DataConfig(name="fashion_mnist", root=str(fashion_mnist_dir)))
    images, labels, _ = landscape.training_subset(data_cfg, 64)
    for net in ("resnet56", "plain56"):
        torch.manual_seed(0)
        model = build_model(net, 10)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        start = landscape.line(model, init, init, [0.0], images, labels).loss.iloc[0]
        assert start < 2 * math.log(10), net


def _loss_of_checkpoint(run_dir, checkpoint, indices):
    """A direct computation: the checkpoint's weights, BN statistics recomputed on the training images `indices` as
    the trainer prepares them (no augmentation), then the mean cross-entropy in eval mode on those images."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    data = DeviceImageData(OmegaConf.merge(OmegaConf.structured(DataConfig), cfg.data), torch.device("cpu"), seed=0)
    index = torch.tensor(indices)
    model = build_model(cfg.model.name, 10, family="cifar")
    model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / checkpoint)["model"])
    images = data.train_images.center(index)
    update_bn([images], model)
    model.eval()
    with torch.no_grad():
        logits = model(images)
    return F.cross_entropy(logits, data.train_labels[index]).item()


@pytest.mark.slow
def test_a_tiny_grid_finishes_its_files_are_complete_and_the_ends_are_the_checkpoints(tiny_runs, capsys):
    root, runs = tiny_runs
    script = load_script("loss_landscape")
    with pytest.MonkeyPatch.context() as mp:
        patch_cifar10_md5(mp, make_fake_cifar10(root / "cifar10"))  # the same files, so the same checksums
        assert script.main(["--run", *map(str, runs.values()), *SMALL]) == 0
        assert capsys.readouterr().out.count("3x3 surface and 3-point line on 64 training images") == 2
        for net, run_dir in runs.items():
            out = run_dir / "landscape"
            surf, line = pd.read_csv(out / "surface.csv"), pd.read_csv(out / "line.csv")
            meta = json.loads((out / "landscape.json").read_text())
            assert len(surf) == 9 and sorted(set(surf.x)) == [-1.0, 0.0, 1.0] and list(line.alpha) == [0, 0.5, 1]
            assert meta["model"] == net and len(meta["indices"]) == 64 == len(set(meta["indices"]))
            assert meta["bn"] == landscape.BN_MODE and meta["options"]["grid"] == 3 and meta["init"]["iteration"] == 0
            origin = float(surf[(surf.x == 0) & (surf.y == 0)].loss.iloc[0])
            final = _loss_of_checkpoint(run_dir, "last.pt", meta["indices"])
            assert origin == pytest.approx(final, rel=1e-4)
            assert line.loss.iloc[-1] == pytest.approx(final, rel=1e-4)
            assert line.loss.iloc[0] == pytest.approx(
                _loss_of_checkpoint(run_dir, "init.pt", meta["indices"]), rel=1e-4
            )
        # Both nets saw the same images; a second call keeps what is up to date.
        metas = [json.loads((d / "landscape" / "landscape.json").read_text()) for d in runs.values()]
        assert metas[0]["indices"] == metas[1]["indices"]
        assert script.main(["--run", str(runs["resnet8"]), *SMALL]) == 0
        assert "up to date" in capsys.readouterr().out
        # A result of older code, with BN's stored statistics, is not up to date: it is recomputed.
        meta_path = runs["resnet8"] / "landscape" / "landscape.json"
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "bn": "eval: the stored statistics"}))
        assert script.main(["--run", str(runs["resnet8"]), *SMALL]) == 0
        assert "up to date" not in capsys.readouterr().out
        assert json.loads(meta_path.read_text())["bn"] == landscape.BN_MODE
        with pytest.raises(SystemExit) as exit_info:
            script.main(["--run", str(runs["resnet8"]), "--grid", "4"])
        assert exit_info.value.code == 2 and "odd" in capsys.readouterr().err


@pytest.mark.slow
def test_the_landscapes_are_drawn_in_the_report(tiny_runs):
    root, runs = tiny_runs
    for run_dir in runs.values():
        if not (run_dir / "landscape" / "surface.csv").exists():
            with pytest.MonkeyPatch.context() as mp:
                patch_cifar10_md5(mp, make_fake_cifar10(root / "cifar10"))
                landscape.compute(run_dir, landscape.Options(grid=3, line_points=3, images=64))
    out = root / "report"
    report, _, _ = write_report(load_runs(root / "runs"), out, command="test", source="test")
    assert (out / "figures" / "fig_landscape.png").stat().st_size > 0
    assert "### Loss landscape: plain-8, ResNet-8\n" in report and "As Li et al. 2018 draw them." in report
    assert "BN's running statistics are recomputed at every point" in report and "update_bn" in report
    assert "loss landscape of ResNet-8 seed 0" in report
    found = landscape_figure.landscapes_of(load_runs(root / "runs"))
    assert list(found) == ["plain8", "resnet8"] and found["resnet8"].grid()[2].shape == (3, 3)
