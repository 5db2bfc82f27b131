"""ImageNet: the data pipeline, the paper's test protocols, training + evaluation + records, DDP, the configs.

Everything runs on a tiny ImageFolder of JPEGs made here (3 classes, 6 training and 3 val images each, 64x80 and
80x64 pixels, one grey and one CMYK JPEG among them) with the sizes scaled down: shorter side 40..56, 32x32 crops.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from resnet_repro import config
from resnet_repro.config import DataConfig, OptimConfig, ScheduleConfig
from resnet_repro.data import build_data
from resnet_repro.data.imagenet import PCA_EIGVAL, PCA_EIGVEC, ImageNetData, draw_train_params, sample_seed, train_view
from resnet_repro.engine.evaluate import EvalOptions, evaluate_protocol, predict
from resnet_repro.engine.schedule import build_schedule
from resnet_repro.errors import UserError
from resnet_repro.models import build_model
from support import REPO
from support.configs import compose_train_config
from support.fake_data import make_image_folder
from support.runs import child_env, load_script, read_metrics, read_summary, run_command

SMALL = dict(scale_min=40, scale_max=56, crop_size=32)
SMALL_OVERRIDES = [f"data.{k}={v}" for k, v in SMALL.items()]
CPU = torch.device("cpu")
# torchvision 0.29 deprecates its image decoders for TorchCodec (not a dependency): they still work.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on 2 cores shared with other processes, OpenMP's spinning threads make these tiny
    forward passes up to 100x slower with 2 threads than with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imagenet"))


def small_cfg(root: Path, **overrides) -> DataConfig:
    return DataConfig(
        **{
            "name": "imagenet",
            "root": str(root),
            "batch_size": 6,
            "eval_batch_size": 9,
            "num_workers": 0,
            "mean_images": 100,
            **SMALL,
            **overrides,
        }
    )


def load_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


# ----- data -------------------------------------------------------------------------------------------------------


def test_interface_and_cached_per_pixel_mean(imagenet_root):
    data = build_data(small_cfg(imagenet_root), CPU, seed=0)
    assert isinstance(data, ImageNetData) and data.report_top5
    assert (data.num_classes, data.train_size, data.batches_per_epoch, data.input_size) == (3, 18, 3, (3, 32, 32))
    assert list(data.eval_sets) == ["test"]

    # The mean image: the center views (shorter side 40, 32x32 center crop) of all 18 images (mean_images > 18).
    views = [
        TF.center_crop(TF.resize(load_rgb(p), [40], antialias=True), [32]).double()
        for p in sorted((imagenet_root / "train").rglob("*.JPEG"))
    ]
    torch.testing.assert_close(data.mean, (torch.stack(views).mean(0) / 255).float(), atol=1e-6, rtol=0)
    cache = imagenet_root / "mean_image_100img_40resize_32crop.pt"
    assert cache.exists()
    # A second construction reads the cache (made visible by planting a different mean there), also without train/.
    state = torch.load(cache)
    torch.save({**state, "mean": torch.full_like(state["mean"], 0.25)}, cache)
    try:
        assert torch.all(build_data(small_cfg(imagenet_root), CPU, seed=1).mean == 0.25)
        assert torch.all(ImageNetData(small_cfg(imagenet_root), CPU, seed=0, train=False).mean == 0.25)
    finally:
        torch.save(state, cache)
    assert ImageNetData(small_cfg(imagenet_root, normalize="mean_std"), CPU, 0, train=False).mean is None


def test_training_batches_are_a_function_of_the_iteration(imagenet_root):
    data = build_data(small_cfg(imagenet_root), CPU, seed=0)
    batches = take(data.train_batches(0), 5)  # crosses an epoch boundary (3 batches per epoch)
    images, labels = batches[0]
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    # each epoch visits every image once: labels 2 of each class over 3 batches of 6
    assert torch.bincount(torch.cat([b[1] for b in batches[:3]]), minlength=3).tolist() == [6, 6, 6]
    # resume at iteration 3 in a new object, with a worker process: the same batches
    resumed = take(build_data(small_cfg(imagenet_root, num_workers=1), CPU, seed=0).train_batches(3), 2)
    for (a, la), (b, lb) in zip(batches[3:], resumed):
        assert torch.equal(a, b) and torch.equal(la, lb)
    other_seed = next(build_data(small_cfg(imagenet_root), CPU, seed=1).train_batches(0))
    assert not torch.equal(other_seed[0], images)


def test_processes_get_shards_of_the_same_global_batch(imagenet_root):
    whole = take(build_data(small_cfg(imagenet_root), CPU, seed=0).train_batches(2), 2)
    shards = [take(build_data(small_cfg(imagenet_root), CPU, 0, rank, 2).train_batches(2), 2) for rank in (0, 1)]
    for i in range(2):
        assert torch.equal(torch.cat([s[i][0] for s in shards]), whole[i][0])
        assert torch.equal(torch.cat([s[i][1] for s in shards]), whole[i][1])
    # evaluation shards cover the val set once
    labels = [
        torch.cat([lb for _, lb in build_data(small_cfg(imagenet_root), CPU, 0, r, 2).eval_batches("test")])
        for r in (0, 1)
    ]
    assert sorted(torch.cat(labels).tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(UserError, match="not divisible"):  # the config boundary refuses it before any data
        config.load(config.TrainConfig(data=small_cfg(imagenet_root, batch_size=5)), processes=2)


def test_scale_crop_flip_and_pca_lighting(imagenet_root):
    cfg = small_cfg(imagenet_root)
    params = [draw_train_params(sample_seed(0, it, k), cfg) for it in range(40) for k in range(6)]
    scales = {p[0] for p in params}
    assert min(scales) == 40 and max(scales) == 56 and len(scales) > 12  # integers in [40, 56]
    assert 0.3 < np.mean([p[3] for p in params]) < 0.7  # flips
    assert abs(torch.stack([p[4] for p in params]).std().item() - 0.1) < 0.02  # PCA alpha ~ N(0, 0.1)

    image = torch.arange(3 * 64 * 80, dtype=torch.float32).reshape(3, 64, 80)
    resized = TF.resize(image, [48], antialias=True)  # 48 x 60
    view = train_view(image, 48, 0.5, 0.999, True, 32)
    assert torch.equal(view, resized[:, 8:40, 28:60].flip(-1))  # rows 8 = int(0.5*17), cols: the last position

    data = build_data(cfg, CPU, seed=0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    alpha = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]])
    shift = data.normalize(images, alpha) - data.normalize(images)
    expected = (PCA_EIGVEC @ (alpha[0] * PCA_EIGVAL))[:, None, None].expand(3, 32, 32)
    torch.testing.assert_close(shift[0], expected, atol=1e-6, rtol=0)
    assert shift[1].abs().max() == 0


def test_batch_decode_path_matches_decoding_in_the_workers(imagenet_root):
    """data.gpu_decode's path (the workers only read the files; whole batches are decoded on the training device
    with torchvision.io.decode_jpeg, then cut into views there), run here with the CPU decoder: bit for bit the
    batches of the default path, for training and for the three test views. On a GPU, nvJPEG and the CUDA resize
    kernels change pixels slightly; the views themselves stay the same."""
    default = ImageNetData(small_cfg(imagenet_root), CPU, seed=0)
    batch_decode = ImageNetData(small_cfg(imagenet_root), CPU, seed=0)
    batch_decode.cfg = dataclasses.replace(batch_decode.cfg, gpu_decode=True)  # the constructor refuses it on a CPU
    for (a, la), (b, lb) in zip(take(default.train_batches(2), 3), take(batch_decode.train_batches(2), 3)):
        assert torch.equal(a, b) and torch.equal(la, lb)
    for view in ("center", "10crop", "full"):
        for (a, la), (b, lb) in zip(
            default.view_batches("test", view), batch_decode.view_batches("test", view), strict=True
        ):
            assert torch.equal(la, lb)
            for x, y in zip(a, b, strict=True):  # per image (full: whole images of different sizes)
                assert torch.equal(x, y)


def test_configuration_errors(imagenet_root, tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="gpu_decode"):
            build_data(small_cfg(imagenet_root, gpu_decode=True), CPU, 0)
    with pytest.raises(UserError, match="train/ and val/"):
        build_data(small_cfg(tmp_path), CPU, 0)
    with pytest.raises(UserError, match="crop_size"):  # checked at the config boundary
        config.load(config.TrainConfig(data=small_cfg(imagenet_root, crop_size=48)))
    with pytest.raises(ValidationError, match="mean_pixel, mean_std"):  # a closed choice: refused at composition
        OmegaConf.merge(OmegaConf.structured(config.TrainConfig), {"data": {"normalize": "zca"}})


def test_loader_workers_fit_the_cpus_and_a_batch_larger_than_the_folder_is_refused_first(tmp_path):
    from resnet_repro.data.imagenet import loader_workers

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 0 <= loader_workers(None) < usable and loader_workers(None) <= 8  # the default (data.num_workers=null)
    assert loader_workers(3) == 3
    root = make_image_folder(tmp_path / "imagenet")
    with pytest.raises(UserError, match=r"data\.batch_size=32 is larger than the 18 training images"):
        ImageNetData(small_cfg(root, batch_size=32), CPU, seed=0)
    assert not list(root.glob("mean_image_*.pt"))  # refused before the per-pixel mean is computed and cached


# ----- the test protocols --------------------------------------------------------------------------------------


def test_ten_crop_and_multiscale_average_the_softmax_of_every_view(imagenet_root):
    """Both protocols against a direct computation: views cut by hand, one forward pass each, softmax averaged."""
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3).eval()
    data = ImageNetData(small_cfg(imagenet_root, eval_batch_size=4), CPU, seed=0, train=False)
    options = EvalOptions(scales=(32, 44, 56), flip=True)
    paths = sorted((imagenet_root / "val").rglob("*.JPEG"))
    got = {p: torch.cat([probs for probs, _ in predict(model, data, p, options)]) for p in ("10crop", "multiscale")}
    mean_pixel = data.mean  # 3,32,32

    def probs(x):  # one view, normalized by hand
        mean = (
            mean_pixel
            if x.shape[-2:] == (32, 32)
            else F.interpolate(mean_pixel[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        )
        with torch.no_grad():
            return model((x.float() / 255 - mean)[None]).softmax(1)[0]

    for i, path in enumerate(paths):
        image = load_rgb(path)
        small = TF.resize(image, [40], antialias=True)
        h, w = small.shape[-2:]
        cy, cx = int(round((h - 32) / 2)), int(round((w - 32) / 2))
        crops = [
            small[:, y : y + 32, x : x + 32] for y, x in ((0, 0), (0, w - 32), (h - 32, 0), (h - 32, w - 32), (cy, cx))
        ]
        crops += [c.flip(-1) for c in crops]
        torch.testing.assert_close(
            got["10crop"][i], torch.stack([probs(c) for c in crops]).mean(0), atol=1e-5, rtol=1e-4
        )
        views = [v for s in (32, 44, 56) for r in [TF.resize(image, [s], antialias=True)] for v in (r, r.flip(-1))]
        assert {tuple(v.shape[-2:]) for v in views[:2]} <= {(32, 40), (40, 32)}  # whole images, not crops
        torch.testing.assert_close(
            got["multiscale"][i], torch.stack([probs(v) for v in views]).mean(0), atol=1e-5, rtol=1e-4
        )

    # the errors are those of the averaged probabilities
    labels = torch.tensor([int(p.parent.name[1:]) for p in paths])
    result = evaluate_protocol(model, data, "10crop", options)
    assert result["images"] == 9 and result["views_per_image"] == 10
    assert result["top1_err"] == pytest.approx((got["10crop"].argmax(1) != labels).float().mean().item())
    assert result["top5_err"] == 0.0  # 3 classes


def test_schedule_milestones_in_epochs():
    schedule = build_schedule(
        ScheduleConfig(milestones=[30, 60], milestones_unit="epochs"), OptimConfig().lr, batches_per_epoch=10
    )
    assert [schedule.lr(i) for i in (0, 299, 300, 599, 600)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert build_schedule(ScheduleConfig(milestones=[30]), OptimConfig().lr, batches_per_epoch=10).lr(
        30
    ) == pytest.approx(0.01)
    with pytest.raises(UserError, match="batches per epoch"):
        build_schedule(ScheduleConfig(milestones_unit="epochs"), OptimConfig().lr)


# ----- configs ----------------------------------------------------------------------------------------------------


def test_one_experiment_per_row_of_tables_2_and_3():
    from hydra import compose, initialize_config_dir

    from resnet_repro.config import register_configs
    from resnet_repro.paper import load_table

    register_configs()
    rows = sorted(p.stem for p in (REPO / "configs" / "experiment" / "imagenet").glob("*.yaml"))
    seen, run_dirs = set(), set()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        for row in rows:
            cfg = compose("train", overrides=[f"experiment=imagenet/{row}"], return_hydra_config=True)
            assert (cfg.data.name, cfg.data.batch_size, cfg.trainer.max_iters, cfg.schedule.kind) == (
                "imagenet",
                256,
                600000,
                "plateau",
            )
            assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 1e-4)
            assert (cfg.data.scale_min, cfg.data.scale_max, cfg.data.crop_size, cfg.data.normalize) == (
                256,
                480,
                224,
                "mean_pixel",
            )
            seen.add((cfg.model.name, cfg.model.shortcut if cfg.model.name.startswith("resnet") else ""))
            run_dirs.add(cfg.hydra.run.dir)
            assert cfg.hydra.run.dir.endswith(f"{cfg.hydra.sweep.subdir}") and cfg.hydra.run.dir.startswith(
                cfg.hydra.sweep.dir
            )
        steps = compose("train", overrides=["experiment=imagenet/resnet50", "schedule=epoch_steps"])
        assert (list(steps.schedule.milestones), steps.schedule.milestones_unit) == ([30, 60, 90], "epochs")
    assert len(run_dirs) == len(rows)  # ResNet-34 A, B, C do not share a directory
    paper = load_table("imagenet_tables")
    paper = paper[paper.table.isin([2, 3]) & paper.model.str.match(r"(plain|resnet)\d+$")]
    assert seen == {(m, "" if s != s else s) for m, s in zip(paper.model, paper.shortcut)}


# ----- training, checkpoint, evaluation, records ---------------------------------------------------------------


def train_overrides(root: Path, run_root: Path, experiment: str, **extra) -> list[str]:
    values = {
        "data": "imagenet",
        "data.root": str(root),
        "data.batch_size": 6,
        "data.eval_batch_size": 9,
        "data.num_workers": 1,
        "data.mean_images": 100,
        "model": "resnet18",
        "trainer.device": "cpu",
        "trainer.progress": "none",
        "run_root": str(run_root),
        "experiment_name": experiment,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()] + SMALL_OVERRIDES


def test_train_checkpoint_evaluate_and_records(imagenet_root, tmp_path):
    """Training through the trainer, then scripts/evaluate.py under the three protocols into the run's records."""
    from resnet_repro.engine.run import train

    cfg = compose_train_config(
        train_overrides(
            imagenet_root,
            tmp_path,
            "tiny",
            **{
                "trainer.max_iters": 4,
                "trainer.eval_every": 2,
                "trainer.checkpoint_every": 2,
                "schedule": "epoch_steps",
                "schedule.milestones": "[1]",
                "optim.lr": 0.01,
            },
        )
    )
    run = tmp_path / "tiny" / "resnet18" / "seed0"
    summary = train(cfg, run)
    assert summary["status"] == "complete" and summary["dataset"] == "imagenet"
    rows = read_metrics(run)
    assert [r["iter"] for r in rows] == [2, 4] and all("test_top5_err" in r and "test_err" in r for r in rows)
    assert rows[0]["lr"] == pytest.approx(0.01) and rows[1]["lr"] == pytest.approx(0.001)  # epoch 1 = iteration 3
    assert (run / "checkpoints" / "last.pt").exists()

    evaluate = load_script("evaluate")
    evaluate.main(["--run", str(run), "--scales", "32,40,48", "--workers", "0"])
    evaluated = read_summary(run)
    assert evaluated["status"] == "complete" and set(evaluated["eval"]) == {"center", "10crop", "multiscale"}
    for protocol, result in evaluated["eval"].items():
        assert 0 <= result["top5_err"] <= result["top1_err"] <= 1, protocol
        assert result["images"] == 9 and result["iteration"] == 4, protocol
    assert evaluated["eval"]["multiscale"]["views_per_image"] == 6
    # The center protocol is the trainer's own evaluation view: same weights, same error.
    assert evaluated["eval"]["center"]["top1_err"] == pytest.approx(rows[-1]["test_err"])
    assert evaluated["eval"]["center"]["top5_err"] == pytest.approx(rows[-1]["test_top5_err"])
    assert json.loads((run / "eval.json").read_text())["eval"] == evaluated["eval"]
    # --limit evaluations are kept apart from the full ones
    evaluate.main(["--run", str(run), "--protocols", "center", "--limit", "3", "--workers", "0"])
    evaluated = read_summary(run)
    assert evaluated["eval_limited"]["center"]["images"] == 3 and evaluated["eval"]["center"]["images"] == 9


def test_torchvision_weights_under_the_paper_protocols(imagenet_root, tmp_path):
    """torchvision's ResNet state_dict (saved here: no network) loads into our network; results go to <model>.json."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    weights = tmp_path / "resnet18_weights.pth"
    torch.save(reference.state_dict(), weights)
    out = tmp_path / "tv"
    evaluate = load_script("evaluate")
    evaluate.main(
        [
            "--torchvision",
            "resnet18",
            "--weights",
            str(weights),
            "--data-root",
            str(imagenet_root),
            "--data",
            "scale_min=40",
            "--data",
            "crop_size=32",
            "--scales",
            "32,40",
            "--workers",
            "0",
            "--out",
            str(out),
        ]
    )
    saved = json.loads((out / "resnet18.json").read_text())
    results = saved["weights"]["resnet18_weights"]["eval"]
    assert set(results) == {"center", "10crop", "multiscale"}
    assert all(r["normalize"] == "mean_std" and r["images"] == 9 for r in results.values())

    # the center protocol's probabilities are torchvision's model's, on torchvision-normalized center crops
    data = ImageNetData(
        DataConfig(
            name="imagenet", root=str(imagenet_root), normalize="mean_std", eval_batch_size=9, num_workers=0, **SMALL
        ),
        CPU,
        seed=0,
        train=False,
    )
    paths = sorted((imagenet_root / "val").rglob("*.JPEG"))
    crops = torch.stack([TF.center_crop(TF.resize(load_rgb(p), [40], antialias=True), [32]) for p in paths])
    x = TF.normalize(crops.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = reference(x).softmax(1)
    ours = build_model("resnet18", num_classes=1000, shortcut="B", stride_in_1x1=False)
    ours.load_state_dict(torch.load(weights))
    got = torch.cat([p for p, _ in predict(ours, data, "center", EvalOptions())])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    labels = torch.tensor([int(p.parent.name[1:]) for p in paths])
    assert results["center"]["top1_err"] == pytest.approx((expected.argmax(1) != labels).float().mean().item())

    with pytest.raises(SystemExit) as err:  # a weights name torchvision does not know: a one-line error
        evaluate.main(["--torchvision", "resnet18", "--weights", "IMAGENET1K_V9", "--data-root", str(imagenet_root)])
    assert err.value.code == 2


def test_torchvision_records_keep_the_repository_clean(imagenet_root, tmp_path, monkeypatch):
    """`make evaluate-torchvision` writes results/imagenet_torchvision/<model>.json below where it runs (here a
    stand-in for the checkout): a folder that git ignores, in a record that names no machine path, so that
    test_hygiene's scan holds after it."""
    import torchvision

    from resnet_repro.engine.evaluate import TORCHVISION_OUT
    from test_hygiene import foreign_paths

    torch.manual_seed(0)
    weights = tmp_path / "downloads" / "resnet18_weights.pth"
    weights.parent.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    load_script("evaluate").main(
        ["--torchvision", "resnet18", "--weights", str(weights), "--data-root", str(imagenet_root)]
        + ["--data", "scale_min=40", "--data", "crop_size=32", "--protocols", "center", "--workers", "0"]
    )
    record = TORCHVISION_OUT / "resnet18.json"
    text = (checkout / record).read_text()
    assert foreign_paths(text) == [], text
    saved = json.loads(text)
    assert saved["data_root"] == imagenet_root.name and saved["weights"]["resnet18_weights"]["source"] == weights.name
    assert subprocess.run(["git", "check-ignore", "-q", str(record)], cwd=REPO).returncode == 0, f"{record} not ignored"


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / ".installed").exists(), reason="make uses the .venv that `make test` builds")
def test_the_smoke_profile_fits_a_tiny_folder_and_this_machine(imagenet_root, tmp_path):
    """`make reproduce-imagenet PROFILE=smoke` on the tests' folder (18 training images; one row of Table 2, 32x32
    crops): its batch fits the folder and the loader's workers fit this machine's CPUs, so no warning is printed."""
    result = run_command(
        ["make", "reproduce-imagenet", "PROFILE=smoke", f"DATA={imagenet_root}", f"SMOKE_OUT={tmp_path}"]
        + ["IMAGENET_ROWS=resnet18", "IMAGENET_PROTOCOLS=center,10crop", "ARGS=" + " ".join(SMALL_OVERRIDES)],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]
    summary = read_summary(tmp_path / "runs" / "imagenet" / "resnet18" / "seed0")
    assert summary["status"] == "complete" and set(summary["eval_limited"]) == {"center", "10crop"}  # --limit 64


# ----- DDP ----------------------------------------------------------------------------------------------------------


def _build_data_in_a_process_group(rank: int, root: str, store: str, out: str) -> None:
    """One process of a 2-process gloo group: rank 1 builds its data only once rank 0 has cached the mean (under
    load, the order that once left rank 0 waiting at a barrier rank 1 had skipped)."""
    import datetime
    import time

    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=20)
    )
    cfg = small_cfg(Path(root))
    if rank == 1:
        deadline = time.monotonic() + 60
        while not list(Path(root).glob("mean_image_*.pt")):
            assert time.monotonic() < deadline, "rank 0 did not cache the mean within 60 s"
            time.sleep(0.05)
    mean = build_data(cfg, CPU, 0, rank, 2).mean
    dist.barrier()  # both got here: neither waits on a collective the other skipped
    torch.save(mean, Path(out) / f"mean{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_process_that_finds_the_mean_cached_still_meets_the_others(tmp_path):
    root = make_image_folder(tmp_path / "imagenet")
    torch.multiprocessing.spawn(
        _build_data_in_a_process_group, args=(str(root), str(tmp_path / "store"), str(tmp_path)), nprocs=2
    )
    assert torch.equal(torch.load(tmp_path / "mean0.pt"), torch.load(tmp_path / "mean1.pt"))


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_per_process_batchnorm(imagenet_root, tmp_path):
    """torchrun --nproc_per_node=2 (gloo, CPU) against one process on the same global batch of 6.

    SyncBatchNorm needs GPUs, and per-process BN statistics differ from whole-batch ones (the paper, too, computed BN
    per GPU), so the 1-process reference computes what 2 GPUs compute: the global batch of each iteration split into
    the two processes' halves, each half through the network on its own (its own BN statistics), the mean of the
    two halves' mean losses (DDP averages the gradients), one SGD step; BN running statistics as rank 0's (DDP
    broadcasts rank 0's buffers). Parameters, buffers and the records must agree to float tolerance. The data half is
    exact: the processes' shards are the halves of the 1-process batch
    (test_processes_get_shards_of_the_same_global_batch)."""
    iters = 3
    overrides = train_overrides(
        imagenet_root,
        tmp_path,
        "ddp",
        **{
            "data.num_workers": 0,
            "trainer.max_iters": iters,
            "trainer.eval_every": iters,
            "trainer.checkpoint_every": iters,
            "trainer.precision": "fp32",  # the reference below is fp32: this test is about the two processes
        },
    )
    proc = run_command(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(REPO / "scripts" / "train.py"),
            *overrides,
        ],
        env=child_env(PYTHONPATH=str(REPO / "src")),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp" / "resnet18" / "seed0"
    ddp = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    summary = read_summary(run)
    assert summary["world_size"] == 2 and ddp["iteration"] == iters

    cfg = small_cfg(imagenet_root)
    data = build_data(cfg, CPU, seed=0)
    torch.manual_seed(0)  # the trainer seeds, builds the data (no global RNG draws), then the model
    model = build_model("resnet18", num_classes=3, shortcut="A").to(memory_format=torch.channels_last)  # as the trainer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True)
    bn_buffers = [b for name, b in model.named_buffers()]
    losses = []
    for images, labels in take(data.train_batches(0), iters):
        images = images.contiguous(memory_format=torch.channels_last)
        half = [F.cross_entropy(model(images[:3]), labels[:3])]
        rank0_buffers = [b.clone() for b in bn_buffers]
        half.append(F.cross_entropy(model(images[3:]), labels[3:]))
        loss = (half[0] + half[1]) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # after backward: autograd checks the versions of the saved running statistics
            for b, saved in zip(bn_buffers, rank0_buffers):
                b.copy_(saved)
        losses.append(loss.item())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], value, atol=2e-5, rtol=1e-4, msg=name)

    row = read_metrics(run)[-1]
    assert row["train_loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    result = evaluate_protocol(model, data, "center", EvalOptions())  # one process, the same weights
    assert row["test_err"] == pytest.approx(result["top1_err"]) and row["test_top5_err"] == pytest.approx(
        result["top5_err"]
    )
