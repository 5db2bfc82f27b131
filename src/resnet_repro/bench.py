"""`make bench`: our training path against the usual way, side by side in one process, on the same model and batch.

Every benchmark times the baseline and ours in alternating rounds and reports the median of each, so that the ratio
holds on a shared, noisy machine. Results (JSON and a Markdown table) go to results/bench/.

- cifar_data_path: images/s of the device-resident data path (data/small_images.py) against torchvision's
  DataLoader with per-sample PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize)
  using as many worker processes as ours uses threads; on a GPU the baseline's batches are also moved to it.
  Each round times 100 baseline batches and 2,000 of ours (about a second each on 2 CPU cores).
- trainer_end_to_end_resnet20: iterations/s of our training loop (engine/trainer.py, as `train()` runs it) against a
  plain loop written here the way common CIFAR ResNet repositories write it (DataLoader, eager fp32, `.item()` every
  step), 200 iterations each after a warm-up.
- train_step_<model>: one SGD step on a fixed batch: eager fp32 (contiguous, default SGD) against the trainer's step
  with its defaults on this device (bf16 autocast, channels_last, fused SGD on a GPU; fp32, foreach SGD on a CPU),
  plus --compile / --cuda-graphs. On a GPU also the achieved TFLOP/s against the GPU's dense bf16 peak, and the
  projected time of the paper's 64k iterations.
- sgd_step_resnet110: the trainer's SGD (foreach on CPU, fused on GPU) against a per-parameter loop.
- peak_memory_<model>: peak memory of a training step at batch 128, eager fp32 against ours (ratio < 1 is better).
- multiseed3_resnet20 (GPU only): 3 seeds stepped on 3 CUDA streams in one job against 3 seeds one after another.
- imagenet_decode (GPU only): training images/s of the ImageNet input pipeline, JPEGs decoded in the DataLoader
  workers (libjpeg-turbo) against data.gpu_decode=true (nvJPEG on whole batches), the same workers either way; on
  --imagenet-root, or else on a folder of synthetic 500x375 JPEGs made for the run.

Without CIFAR-10 under --cifar-root the data is random uint8 images of CIFAR's shape and size (throughput does not
depend on the pixels); the JSON says which.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
BATCH = 128
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of torch.cuda.get_device_name.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2, "RTX 3090": 71.0}
PAPER_ITERS = 64_000
# The targets for the whole paper protocol (64k iterations, evaluations, checkpoints) on one H100, seconds.
PROTOCOL_TARGET_S = {"resnet20": 90, "resnet56": 180, "resnet110": 360, "resnet1202": 2400}


@dataclass
class Result:
    name: str
    unit: str
    baseline: float | None
    ours: float | None
    ratio: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.ratio is None and self.baseline and self.ours is not None:
            self.ratio = self.ours / self.baseline


@dataclass
class Settings:
    quick: bool
    device: torch.device
    threads: int
    workers: int
    compile: bool = False
    cuda_graphs: bool = False
    rounds: int = 3
    data_batches: int = 100
    e2e_iters: int = 200
    e2e_warmup: int = 50
    step_iters: int = 20
    step_warmup: int = 5
    sgd_iters: int = 50
    memory_models: tuple[str, ...] = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")
    step_models: tuple[str, ...] = ("resnet20", "resnet56", "resnet110")
    peak_tflops: float | None = None
    cifar_root: str = "data/cifar10"
    only: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    protocol_iters: int = PAPER_ITERS
    protocol_seeds: int = 1
    imagenet_root: str | None = None


# ----- helpers ---------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(baseline: Callable[[], float], ours: Callable[[], float], rounds: int) -> tuple[float, float, dict]:
    """Alternate baseline and ours `rounds` times (the order flips each round); medians and all samples."""
    samples: dict[str, list[float]] = {"baseline": [], "ours": []}
    for r in range(rounds):
        order = (("baseline", baseline), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("baseline", baseline))
        for name, fn in order:
            gc.collect()
            samples[name].append(fn())
    return statistics.median(samples["baseline"]), statistics.median(samples["ours"]), {"samples": samples}


def cifar_available(root: str | Path) -> bool:
    return (Path(root) / "cifar-10-batches-py" / "data_batch_1").exists()


def synthetic_arrays(n: int, seed: int = 0):
    from .data.small_images import ImageArrays

    g = torch.Generator().manual_seed(seed)
    return ImageArrays(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.randint(0, 10, (n,), generator=g))


def describe_data(settings: Settings) -> str:
    if cifar_available(settings.cifar_root):
        return f"CIFAR-10 ({settings.cifar_root})"
    return (f"synthetic: random uint8 images of CIFAR-10's shape and size, because CIFAR-10 is not in "
            f"{settings.cifar_root} (`make prepare-cifar`); throughput does not depend on the pixels")


@contextlib.contextmanager
def cifar_data(settings: Settings, n_train: int = 50_000, n_test: int = 10_000) -> Iterator[None]:
    """Real CIFAR-10 if it is under settings.cifar_root, else random images of its shape in its place (the data
    module loads them as if they were CIFAR-10)."""
    if cifar_available(settings.cifar_root):
        yield
        return
    from unittest import mock

    from .data import small_images

    splits = {True: synthetic_arrays(n_train, 0), False: synthetic_arrays(n_test, 1)}

    def load_split(name, root, train, download=False):
        return splits[bool(train)]

    with mock.patch.object(small_images, "load_split", load_split):
        yield


def data_overrides(settings: Settings) -> list[str]:
    return ["data=cifar10", f"data.root={settings.cifar_root}", "data.split=full", f"data.batch_size={BATCH}"]


class PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: a PIL image from the uint8 HWC array, then the transform."""

    def __init__(self, images_hwc: np.ndarray, labels: list[int], transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def usual_dataset(settings: Settings):
    """The usual CIFAR-10 training set: torchvision's class (or the same per-sample work on the synthetic arrays)."""
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    if cifar_available(settings.cifar_root):
        import torchvision

        return torchvision.datasets.CIFAR10(settings.cifar_root, train=True, transform=transform)
    arrays = synthetic_arrays(50_000, 0)
    return PILImages(arrays.images.permute(0, 2, 3, 1).contiguous().numpy(), arrays.labels.tolist(), transform)


def usual_loader(dataset, settings: Settings):
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=settings.workers,
                                       drop_last=True, pin_memory=settings.device.type == "cuda")


def train_config(settings: Settings, model: str, extra: list[str] = ()):
    from .testing.configs import compose_train_config

    overrides = [*data_overrides(settings), f"model={model}" if (ROOT / "configs" / "model" / f"{model}.yaml").exists()
                 else f"model.name={model}", f"trainer.device={settings.device.type}", "trainer.progress=none",
                 f"trainer.compile={str(settings.compile).lower()}",
                 f"trainer.cuda_graphs={str(settings.cuda_graphs).lower()}", *extra]
    return compose_train_config(overrides)


def build_trainer(settings: Settings, model: str, run_dir: Path):
    """A Trainer set up as `train()` sets it up (model, optimizer, precision, memory format, compile), on small data."""
    from .engine.trainer import Trainer

    cfg = train_config(settings, model)
    with cifar_data(settings, n_train=BATCH, n_test=16):  # the step does not read it: as little as the data module takes
        trainer = Trainer(cfg, run_dir)
        trainer._build()
    return trainer


def fixed_batch(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (BATCH,), generator=g).to(device)


# ----- cifar_data_path -------------------------------------------------------------------------------------------
def bench_data_path(settings: Settings) -> Result:
    from .config import DataConfig
    from .data.small_images import DeviceImageData

    device, n = settings.device, settings.data_batches
    # Ours times 20x as many batches: 100 of them take a few hundredths of a second, a window in which one
    # stall of the machine (the baseline's workers exiting, the VM's memory housekeeping) would decide the result.
    n_ours = 20 * n
    with cifar_data(settings):
        ours_data = DeviceImageData(DataConfig(root=settings.cifar_root, split="full", batch_size=BATCH), device, seed=0)
    dataset = usual_dataset(settings)
    state = {"iteration": 0}

    def ours() -> float:
        for _ in range(5):  # warm-up: the epoch's order, the allocator
            ours_data.train_batch(state["iteration"])
            state["iteration"] += 1
        sync(device)
        t = time.perf_counter()
        for _ in range(n_ours):
            images, labels = ours_data.train_batch(state["iteration"])
            state["iteration"] += 1
        sync(device)
        return n_ours * BATCH / (time.perf_counter() - t)

    def baseline() -> float:
        batches = iter(usual_loader(dataset, settings))
        for _ in range(5):  # warm-up: the workers start and fill their prefetch queues
            next(batches)
        sync(device)
        t = time.perf_counter()
        for _ in range(n):
            images, labels = next(batches)
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        sync(device)
        rate = n * BATCH / (time.perf_counter() - t)
        del batches  # stops the workers
        return rate

    b, o, info = interleaved(baseline, ours, settings.rounds)
    return Result("cifar_data_path", "img/s", b, o, details={
        **info, "batches_baseline": n, "batches_ours": n_ours, "batch": BATCH, "workers_baseline": settings.workers, "threads_ours": settings.threads,
        "data": describe_data(settings)})


# ----- trainer_end_to_end_resnet20 ---------------------------------------------------------------------------------
def reference_loop(settings: Settings, dataset, iters: int, warmup: int) -> float:
    """Iterations/s of a CIFAR training loop as common ResNet repositories write it (timed after `warmup`)."""
    from .models import build_model

    device = settings.device
    torch.manual_seed(0)
    model = build_model("resnet20").to(device)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    train_loss, correct, total = 0.0, 0, 0
    t = None
    for i, (inputs, targets) in enumerate(usual_loader(dataset, settings)):
        if i == warmup:
            sync(device)
            t = time.perf_counter()
        if i == warmup + iters:
            break
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
        _, predicted = outputs.max(1)
        total += targets.size(0)
        correct += predicted.eq(targets).sum().item()
    sync(device)
    return iters / (time.perf_counter() - t)


def our_loop(settings: Settings, iters: int, warmup: int) -> tuple[float, dict]:
    """Iterations/s of `train()` over `iters` iterations after `warmup`, from the loop's own timing of its training
    windows (an evaluation at `warmup` closes the first window; evaluations are not counted)."""
    from .engine.trainer import train

    cfg = train_config(settings, "resnet20", [f"trainer.max_iters={warmup + iters}", f"trainer.eval_every={warmup}",
                                              f"trainer.checkpoint_every={warmup + iters}", "data.limit_test=256",
                                              "trainer.resume=never"])
    with tempfile.TemporaryDirectory() as tmp, cifar_data(settings):
        summary = train(cfg, Path(tmp) / "run")
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["iter"] > warmup]
    seconds = sum((r["iter"] - prev["iter"]) * BATCH / r["img_per_s"] for prev, r in zip(rows, rows[1:]) if r in timed)
    return iters / seconds, {"precision": summary["precision"], "device": summary["device"]}


def bench_end_to_end(settings: Settings) -> Result:
    dataset = usual_dataset(settings)
    iters, warmup = settings.e2e_iters, settings.e2e_warmup
    run_info: dict = {}

    def ours() -> float:
        rate, info = our_loop(settings, iters, warmup)
        run_info.update(info)
        return rate

    b, o, info = interleaved(lambda: reference_loop(settings, dataset, iters, warmup), ours, settings.rounds)
    return Result("trainer_end_to_end_resnet20", "it/s", b, o, details={
        **info, "iters": iters, "warmup_iters": warmup, "batch": BATCH, "workers_baseline": settings.workers,
        "ours": run_info, "data": describe_data(settings),
        "projected_64k_s_ours": PAPER_ITERS / o, "projected_64k_s_baseline": PAPER_ITERS / b})


# ----- train_step_<model> ------------------------------------------------------------------------------------------
def eager_fp32_step(model_name: str, device: torch.device):
    from .models import build_model

    torch.manual_seed(0)
    model = build_model(model_name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images, labels = fixed_batch(device)

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return model, step


def fast_step(settings: Settings, model_name: str, run_dir: Path):
    """The trainer's own step (Trainer.train_step, or its CUDA graph with --cuda-graphs)."""
    trainer = build_trainer(settings, model_name, run_dir)
    images, labels = fixed_batch(settings.device)
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.1  # what the loop sets before each step
    if settings.cuda_graphs and settings.device.type == "cuda":
        from .engine.multiseed import GraphedStep

        graphed = GraphedStep(trainer, images, labels)
        return trainer, lambda: graphed(images, labels)
    return trainer, lambda: trainer.train_step(images, labels)


def steps_per_s(step: Callable[[], Any], iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return iters / (time.perf_counter() - t)


def peak_tflops(settings: Settings) -> float | None:
    if settings.peak_tflops:
        return settings.peak_tflops
    if settings.device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(settings.device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def bench_train_step(settings: Settings, model_name: str) -> Result:
    device = settings.device
    with tempfile.TemporaryDirectory() as tmp:
        model, baseline_step = eager_fp32_step(model_name, device)
        trainer, ours_step = fast_step(settings, model_name, Path(tmp) / "run")
        b, o, info = interleaved(lambda: steps_per_s(baseline_step, settings.step_iters, settings.step_warmup, device),
                                 lambda: steps_per_s(ours_step, settings.step_iters, settings.step_warmup, device),
                                 settings.rounds)
        details = {**info, "batch": BATCH, "iters": settings.step_iters, "precision": trainer.precision,
                   "channels_last": trainer.memory_format == torch.channels_last,
                   "optimizer": "fused" if trainer.optimizer.defaults.get("fused") else
                   "foreach" if trainer.optimizer.defaults.get("foreach") else "loop",
                   "compile": settings.compile, "cuda_graphs": settings.cuda_graphs and device.type == "cuda"}
        # A training step is about 3x the forward's multiply-adds (forward, and backward for inputs and weights).
        flops_per_step = 3 * 2 * model.flops() * BATCH
        details["train_flops_per_step"] = flops_per_step
        details["achieved_tflops_ours"] = flops_per_step * o / 1e12
        details["achieved_tflops_baseline"] = flops_per_step * b / 1e12
        peak = peak_tflops(settings)
        if peak:
            details["bf16_peak_tflops"] = peak
            details["fraction_of_bf16_peak_ours"] = details["achieved_tflops_ours"] / peak
        details["projected_64k_steps_s_ours"] = PAPER_ITERS / o
        del model, trainer
    details["samples"] = {k: [v * BATCH for v in vs] for k, vs in details["samples"].items()}  # steps/s -> img/s
    return Result(f"train_step_{model_name}", "img/s", b * BATCH, o * BATCH, details=details)


# ----- sgd_step_resnet110 -------------------------------------------------------------------------------------------
def bench_sgd(settings: Settings) -> Result:
    from .config import OptimConfig
    from .engine.trainer import build_optimizer
    from .models import build_model
    from omegaconf import OmegaConf

    device = settings.device

    def setup(impl: str):
        torch.manual_seed(0)
        model = build_model("resnet110").to(device)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        cfg = OmegaConf.create({"optim": OmegaConf.structured(OptimConfig(impl=impl))})
        return model, build_optimizer(model, cfg, device)

    (_, loop_opt), (model, our_opt) = setup("loop"), setup("auto")
    impl = "fused" if our_opt.defaults.get("fused") else "foreach"
    b, o, info = interleaved(lambda: steps_per_s(loop_opt.step, settings.sgd_iters, 3, device),
                             lambda: steps_per_s(our_opt.step, settings.sgd_iters, 3, device), settings.rounds)
    return Result("sgd_step_resnet110", "steps/s", b, o, details={
        **info, "ours": impl, "baseline": "per-parameter loop (foreach=False)",
        "param_tensors": len(list(model.parameters()))})


# ----- peak memory ------------------------------------------------------------------------------------------------
def _status_bytes(field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident at the peak) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Make VmHWM the current RSS (Linux 4.0+: write 5 to clear_refs), so the peak counts only what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_child(settings_json: str, model_name: str, variant: str) -> None:
    """In a fresh process: peak memory of two training steps, printed as JSON (bytes above the process before the
    model was built: weights, gradients, momentum, activations and workspace)."""
    settings = settings_from_json(settings_json)
    torch.set_num_threads(settings.threads)
    device = settings.device
    with tempfile.TemporaryDirectory() as tmp:
        before = _status_bytes("VmRSS")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        if variant == "baseline":
            _, step = eager_fp32_step(model_name, device)
        else:
            trainer, step = fast_step(settings, model_name, Path(tmp) / "run")
            trainer.data = None  # the (tiny) data set it was built with
            gc.collect()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        if device.type == "cpu":
            _reset_peak_rss()
        for _ in range(2):
            step()
        sync(device)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            peak = _status_bytes("VmHWM") - before
    print(json.dumps({"peak_bytes": peak}))


def settings_to_json(settings: Settings) -> str:
    d = asdict(settings)
    d["device"] = str(settings.device)
    return json.dumps(d)


def settings_from_json(text: str) -> Settings:
    d = json.loads(text)
    d["device"] = torch.device(d["device"])
    for key in ("memory_models", "step_models", "only", "protocol"):
        d[key] = tuple(d[key])
    return Settings(**d)


def peak_memory_skip_reason(settings: Settings, model_name: str) -> str | None:
    """ResNet-1202 on a CPU runs only when asked for by name: it needs about 15 GB of host memory."""
    name = f"peak_memory_{model_name}"
    if settings.device.type == "cpu" and model_name == "resnet1202" and name not in settings.only:
        return f"about 15 GB of host memory on a CPU; measured on GPUs (or pass --only {name})"
    return None


def bench_peak_memory(settings: Settings, model_name: str) -> Result:
    if reason := peak_memory_skip_reason(settings, model_name):
        return Result(f"peak_memory_{model_name}", "MiB", None, None, details={"skipped": reason})
    values = {}
    for variant in ("baseline", "ours"):
        code = ("import sys; from resnet_repro.bench import peak_memory_child; "
                "peak_memory_child(sys.argv[1], sys.argv[2], sys.argv[3])")
        proc = subprocess.run([sys.executable, "-c", code, settings_to_json(settings), model_name, variant],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise RuntimeError(f"peak memory of {model_name} ({variant}) failed:\n{proc.stderr[-2000:]}")
        values[variant] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
    how = ("torch.cuda.max_memory_allocated" if settings.device.type == "cuda"
           else "peak RSS (VmHWM) of a fresh process above its RSS before the model")
    return Result(f"peak_memory_{model_name}", "MiB", values["baseline"], values["ours"], details={
        "batch": BATCH, "measured_by": how, "steps": 2})


# ----- multiseed (GPU) ----------------------------------------------------------------------------------------------
def bench_multiseed(settings: Settings, k: int = 3) -> Result:
    name = f"multiseed{k}_resnet20"
    if settings.device.type != "cuda":
        return Result(name, "seed-it/s", None, None, details={"skipped": "GPU only: on a CPU the seeds run one after another"})
    from .engine.multiseed import GraphedStep

    with tempfile.TemporaryDirectory() as tmp:
        trainers = [build_trainer(settings, "resnet20", Path(tmp) / f"seed{i}") for i in range(k)]
        streams = [torch.cuda.Stream(settings.device) for _ in range(k)]
        batches = [fixed_batch(settings.device, seed=i) for i in range(k)]
        steps = []
        for trainer, (images, labels), stream in zip(trainers, batches, streams):
            stream.wait_stream(torch.cuda.current_stream(settings.device))
            with torch.cuda.stream(stream):
                if settings.cuda_graphs:
                    graphed = GraphedStep(trainer, images, labels)
                    steps.append(lambda g=graphed, x=images, y=labels: g(x, y))
                else:
                    steps.append(lambda t=trainer, x=images, y=labels: t.train_step(x, y))

        def one_after_another():
            for step in steps:
                step()

        def on_streams():
            for step, stream in zip(steps, streams):
                with torch.cuda.stream(stream):
                    step()

        b, o, info = interleaved(lambda: k * steps_per_s(one_after_another, settings.step_iters, settings.step_warmup, settings.device),
                                 lambda: k * steps_per_s(on_streams, settings.step_iters, settings.step_warmup, settings.device),
                                 settings.rounds)
    return Result(name, "seed-it/s", b, o, details={**info, "seeds": k, "cuda_graphs": settings.cuda_graphs})


# ----- imagenet_decode (GPU) -----------------------------------------------------------------------------------
def synthetic_jpeg_folder(root: Path, classes: int = 8, per_class: int = 128, seed: int = 0) -> Path:
    """An ImageFolder of 500x375 JPEGs (ImageNet's typical size; quality 90, smooth colours plus noise, about the
    file size of ImageNet's photos), with a val/ of one image per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500]
    for split, n in (("train", per_class), ("val", 1)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                a, b, d = rng.uniform(0.2, 2.0, 3)
                base = np.stack([xx * a, yy * b, (xx + yy) * d], -1) % 256 + rng.normal(0, 12, (375, 500, 3))
                Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"img{i}.JPEG", quality=90)
    return root


def bench_imagenet_decode(settings: Settings) -> Result:
    name = "imagenet_decode"
    if settings.device.type != "cuda":
        return Result(name, "img/s", None, None, details={"skipped": "GPU only: data.gpu_decode decodes on a CUDA GPU"})
    from .config import DataConfig
    from .data.imagenet import loader_throughput

    batch, batches = 256, max(settings.data_batches // 5, 4)
    with tempfile.TemporaryDirectory() as tmp:
        root = settings.imagenet_root or synthetic_jpeg_folder(Path(tmp))

        def rate(gpu_decode: bool) -> float:
            # mean_std normalization: the per-pixel mean would cost a pass over the files first, and normalization
            # runs on the GPU the same way for both
            cfg = DataConfig(name="imagenet", root=str(root), batch_size=batch, num_workers=settings.workers,
                             normalize="mean_std", gpu_decode=gpu_decode)
            return loader_throughput(cfg, settings.device, batches=batches, warmup=3)["img_per_s"]

        b, o, info = interleaved(lambda: rate(False), lambda: rate(True), settings.rounds)
    return Result(name, "img/s", b, o, details={
        **info, "batch": batch, "batches": batches, "workers": settings.workers,
        "data": str(settings.imagenet_root) if settings.imagenet_root else "synthetic 500x375 JPEGs, 8 classes x 128"})


# ----- paper_protocol_<model> (GPU) --------------------------------------------------------------------------------
def bench_protocol(settings: Settings, model_name: str) -> Result:
    """Wall time of the paper's CIFAR-10 protocol as `make reproduce-cifar` runs it (experiment=cifar10/<model>: 64k
    iterations, an evaluation every 1000, a checkpoint every 2000), on this device, with --cuda-graphs/--compile."""
    from .engine.trainer import train
    from .models import build_model
    from .testing.configs import compose_train_config

    k = settings.protocol_seeds
    name = f"paper_protocol_{model_name}" + (f"_x{k}" if k > 1 else "")
    overrides = [f"experiment=cifar10/{model_name}", f"data.root={settings.cifar_root}",
                 f"trainer.device={settings.device.type}", "trainer.progress=none", "trainer.resume=never",
                 f"trainer.max_iters={settings.protocol_iters}", f"trainer.seeds_per_job={k}",
                 f"trainer.compile={str(settings.compile).lower()}", f"trainer.cuda_graphs={str(settings.cuda_graphs).lower()}"]
    cfg = compose_train_config(overrides)
    with tempfile.TemporaryDirectory() as tmp, cifar_data(settings):
        summary = train(cfg, Path(tmp) / "seed0")
    wall = summary["wall_s"]
    flops = 3 * 2 * build_model(model_name).flops() * BATCH * settings.protocol_iters * k
    details = {"iters": settings.protocol_iters, "seeds": k, "precision": summary["precision"],
               "compile": settings.compile, "cuda_graphs": settings.cuda_graphs, "data": describe_data(settings),
               "target_s_h100": PROTOCOL_TARGET_S.get(model_name), "achieved_tflops_ours": flops / wall / 1e12,
               "command": "python scripts/train.py " + " ".join(overrides)}
    peak = peak_tflops(settings)
    if peak:
        details["bf16_peak_tflops"] = peak
        details["fraction_of_bf16_peak_ours"] = details["achieved_tflops_ours"] / peak
    return Result(name, "s", None, wall, details=details)


# ----- the run ------------------------------------------------------------------------------------------------------
def host_info(settings: Settings) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if settings.device.type == "cuda":
        device = torch.cuda.get_device_name(settings.device)
    else:
        device = f"cpu ({settings.threads} threads)"
    return {"host": f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "device": device, "torch": torch.__version__, "cuda": torch.version.cuda}


def benchmarks(settings: Settings) -> list[tuple[str, Callable[[], Result]]]:
    plan: list[tuple[str, Callable[[], Result]]] = [
        ("cifar_data_path", lambda: bench_data_path(settings)),
        ("trainer_end_to_end_resnet20", lambda: bench_end_to_end(settings)),
    ]
    plan += [(f"train_step_{m}", lambda m=m: bench_train_step(settings, m)) for m in settings.step_models]
    plan.append(("sgd_step_resnet110", lambda: bench_sgd(settings)))
    plan += [(f"peak_memory_{m}", lambda m=m: bench_peak_memory(settings, m)) for m in settings.memory_models]
    plan.append(("multiseed3_resnet20", lambda: bench_multiseed(settings)))
    plan.append(("imagenet_decode", lambda: bench_imagenet_decode(settings)))
    suffix = f"_x{settings.protocol_seeds}" if settings.protocol_seeds > 1 else ""
    plan += [(f"paper_protocol_{m}{suffix}", lambda m=m: bench_protocol(settings, m)) for m in settings.protocol]
    if settings.only:
        unknown = set(settings.only) - {n for n, _ in plan}
        if unknown:
            raise SystemExit(f"--only: no benchmark named {', '.join(sorted(unknown))} (names: {', '.join(n for n, _ in plan)})")
        plan = [(n, f) for n, f in plan if n in settings.only]
    return plan


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Benchmark: {report['device']}", "",
             f"- host: {report['host']}", f"- device: {report['device']}; torch {report['torch']}"
             + (f", CUDA {report['cuda']}" if report.get("cuda") else ""),
             f"- date: {report['date']}; git {report.get('git_commit') or '?'}",
             f"- command: `{report['command']}`", f"- data: {report.get('data', '—')}",
             f"- load average (1, 5, 15 min) at start {report.get('load_average_at_start')}, at end "
             f"{report.get('load_average_at_end')}: other work on the machine slows both sides",
             f"- settings: {json.dumps(report['settings'])}", "",
             "| benchmark | unit | baseline | ours | ours / baseline | notes |", "|---|---|---:|---:|---:|---|"]
    for r in report["results"]:
        d = r.get("details", {})
        notes = []
        if "skipped" in d:
            notes.append(f"skipped: {d['skipped']}")
        for key in ("precision", "optimizer", "ours", "target_s_h100", "fraction_of_bf16_peak_ours", "achieved_tflops_ours",
                    "projected_64k_s_ours", "projected_64k_steps_s_ours"):
            if key in d and not isinstance(d[key], dict):
                value = d[key]
                notes.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
        if isinstance(d.get("ours"), dict):
            notes.append(", ".join(f"{k}={v}" for k, v in d["ours"].items()))
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "—"
        lines.append(f"| {r['name']} | {r['unit']} | {fmt(r['baseline'])} | {fmt(r['ours'])} | {ratio} | {'; '.join(notes)} |")
    lines += ["", "Baseline and ours run in alternating rounds in one process; each cell is the median of the rounds "
              "(all samples are in the JSON). peak_memory: ratio < 1 means ours needs less."]
    return "\n".join(lines) + "\n"


def default_out(settings: Settings) -> Path:
    date = datetime.date.today().isoformat()
    if settings.device.type == "cuda":
        kind = torch.cuda.get_device_name(settings.device).lower().replace(" ", "-")
    else:
        kind = f"cpu-{os.cpu_count()}core"
    return ROOT / "results" / "bench" / f"{kind}-{date}{'-quick' if settings.quick else ''}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and iterations: a CPU run of a few minutes")
    p.add_argument("--out", type=Path, help="the JSON file (a .md beside it); default results/bench/<device>-<date>.json")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch threads, and the baseline's DataLoader workers "
                   "(default: torch's default, the number of cores)")
    p.add_argument("--compile", action="store_true", help="ours with trainer.compile=true")
    p.add_argument("--cuda-graphs", action="store_true", help="ours with trainer.cuda_graphs=true (GPU)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per benchmark (default 3; 1 with --quick)")
    p.add_argument("--e2e-iters", type=int, default=200, help="timed iterations of trainer_end_to_end_resnet20")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table")
    p.add_argument("--cifar-root", default="data/cifar10")
    p.add_argument("--imagenet-root", default=None, help="an ImageNet folder for imagenet_decode (default: synthetic JPEGs)")
    p.add_argument("--only", nargs="*", default=(), help="run only these benchmarks (names as in the JSON)")
    p.add_argument("--protocol", nargs="*", default=(), metavar="MODEL", help="also time the whole paper protocol "
                   "(64k iterations with evaluations and checkpoints) of these nets, e.g. resnet20 resnet56 (GPU)")
    p.add_argument("--protocol-iters", type=int, default=PAPER_ITERS, help="iterations of --protocol runs")
    p.add_argument("--protocol-seeds", type=int, default=1, help="seeds per --protocol job (trainer.seeds_per_job)")
    return p.parse_args(argv)


def make_settings(args: argparse.Namespace) -> Settings:
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    threads = args.threads or torch.get_num_threads()
    settings = Settings(quick=args.quick, device=device, threads=threads, workers=threads, compile=args.compile,
                        cuda_graphs=args.cuda_graphs, peak_tflops=args.peak_tflops, cifar_root=args.cifar_root,
                        only=tuple(args.only), e2e_iters=args.e2e_iters, protocol=tuple(args.protocol),
                        protocol_iters=args.protocol_iters, protocol_seeds=args.protocol_seeds,
                        imagenet_root=args.imagenet_root)
    if args.quick:
        settings.rounds, settings.data_batches, settings.e2e_warmup = 1, 40, 20
        settings.step_iters, settings.step_warmup, settings.sgd_iters = 3, 1, 10
        if device.type == "cpu":
            settings.memory_models = ("resnet20", "resnet56", "resnet110", "resnet1202")
    if args.rounds:
        settings.rounds = args.rounds
    return settings


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = make_settings(args)
    torch.set_num_threads(settings.threads)
    if settings.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from .engine.records import git_state

    data_note = describe_data(settings)
    report = {**host_info(settings), "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "git_commit": git_state()[0], "command": " ".join(["python", "scripts/bench.py", *(argv or sys.argv[1:])]),
              "load_average_at_start": os.getloadavg(), "data": data_note, "settings": {k: v for k, v in json.loads(settings_to_json(settings)).items()},
              "results": []}
    out = args.out or default_out(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, run in benchmarks(settings):
        t = time.perf_counter()
        result = run()
        report["results"].append(asdict(result))
        ratio = f"{result.ratio:.2f}x" if result.ratio is not None else "—"
        print(f"{name:32s} baseline {fmt(result.baseline):>10s}  ours {fmt(result.ours):>10s} {result.unit:10s} "
              f"{ratio:>7s}  ({time.perf_counter() - t:.0f} s)", flush=True)
        report["load_average_at_end"] = os.getloadavg()
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every benchmark: a partial run keeps its results
        out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
