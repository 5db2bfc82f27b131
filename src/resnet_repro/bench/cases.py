"""The benchmark cases, each ours against the usual way on the same model and batch, and the plan that runs them.

- cifar_data_path: images/s of the device-resident data path (data/small_images.py) against torchvision's
  DataLoader with per-sample PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize)
  using as many worker processes as ours uses threads; on a GPU the baseline's batches are also moved to it.
  Each round times 100 baseline batches and 2,000 of ours (about a second each on 2 CPU cores; --quick: 40 and
  800), after a training step, as in a training process (details.page_faults_per_batch_ours).
- trainer_end_to_end_resnet20: iterations/s of our training loop (engine/trainer.py, as `train()` runs it) against a
  plain loop written the way common CIFAR ResNet repositories write it (DataLoader, eager fp32, `.item()` every
  step), 200 iterations each after a warm-up (--quick: 40).
- whole_command_resnet20: wall time of the whole command, from the shell to its exit, of
  `python scripts/train.py model=resnet20 trainer.max_iters=300 data.split=full` (start-up, data loading, 300
  iterations, one evaluation on the whole test set, the run's records) against a typical CIFAR repository's script
  doing the same 300 iterations and test evaluation (typical_cifar_train.py: torchvision's CIFAR10, a DataLoader
  with per-sample PIL transforms and as many workers as ours has threads, eager fp32, `.item()` every step). Both
  are real processes, alternated; the ratio is baseline time / ours, above 1 when ours is faster (--quick: 30
  iterations, so start-up and the evaluation weigh more). Data: CIFAR-10 under --cifar-root, or else a generated
  CIFAR-10 of the real size in the official pickle format, read through torchvision by both (cifar_files.py).
- startup_resnet20: seconds from the start of `python scripts/train.py model=resnet20` to its first training step,
  per phase (Python, imports, Hydra and the config; data; model and optimizer; resuming and the first records), as
  the run records them in summary.json (startup_s), on the decoded copy of the data set (--quick: one round).
- train_step_<model>: one SGD step on a fixed batch: eager fp32 (contiguous, default SGD) against the trainer's step
  with its defaults on this device (bf16 autocast on a GPU, channels_last, optim.impl=auto: fused SGD), plus
  --compile / --cuda-graphs. On a GPU also the achieved TFLOP/s against the GPU's dense bf16 peak, and the
  projected time of the paper's 64k iterations.
- bf16_step_resnet20: the trainer's step in fp32 against the same step under bf16 autocast, on this device (a CPU
  without bf16 arithmetic emulates it: details.native_bf16).
- sgd_step_resnet110: the trainer's SGD (optim.impl=auto) against a per-parameter loop (optim.impl=loop).
- peak_memory_<model>: peak memory of a training step at batch 128, eager fp32 against ours (ratio < 1 is better).
- multiseed3_resnet20 (GPU only): 3 seeds stepped on 3 CUDA streams in one job against 3 seeds one after another.
- imagenet_decode (GPU only): training images/s of the ImageNet input pipeline, JPEGs decoded in the DataLoader
  workers (libjpeg-turbo) against data.gpu_decode=true (nvJPEG on whole batches), the same workers either way; on
  --imagenet-root, or else on a folder of synthetic 500x375 JPEGs made for the run.
- paper_protocol_<model> (with --protocol): wall time of the whole paper protocol, against the issue's targets.
  With --protocol-iters below 64k (a segment) or --protocol-budget-s (a run stopped at the first evaluation after
  the budget) the 64k-iteration time is extrapolated from the records of the measured part and labelled so.
- precision_accuracy (only when named with --only, and in make gpu-check): bf16 against fp32 on Fashion-MNIST with
  the demo's schedule (accuracy.py): mean and std over seeds of the final training and test errors per net.

Without CIFAR-10 under --cifar-root the data is random uint8 images of CIFAR's shape and size, made in memory and
handed to the data module's constructor (throughput does not depend on the pixels); the JSON says which.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import DataConfig, Dataset, Normalize, OptimConfig, Precision
from ..engine.setup import build_optimizer, cpu_computes_bf16
from ..models import build_model
from .accuracy import precision_accuracy
from .baselines import eager_fp32_step, reference_loop, usual_dataset, usual_loader
from .cifar_files import cifar10_python, make_fake_cifar10, write_md5_table
from .harness import BATCH, PAPER_ITERS, ROOT, Result, Settings, interleaved, steps_per_s, sync
from .inputs import (
    cifar_arrays,
    cifar_available,
    describe_data,
    image_data,
    loader_throughput,
    synthetic_jpeg_folder,
)
from .ours import experiment_config, fit, train_config, trainer_step

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of torch.cuda.get_device_name.
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}
# The targets for the whole paper protocol (64k iterations, evaluations, checkpoints) on one H100, seconds.
PROTOCOL_TARGET_S = {"resnet20": 90, "resnet56": 180, "resnet110": 360, "resnet1202": 2400}


def peak_tflops(settings: Settings) -> float | None:
    if settings.peak_tflops:
        return settings.peak_tflops
    if settings.device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(settings.device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def with_fraction_of_peak(details: dict, settings: Settings) -> dict:
    """details["achieved_tflops_ours"] as a fraction of the GPU's dense bf16 peak, where the peak is known."""
    peak = peak_tflops(settings)
    if peak:
        details["bf16_peak_tflops"] = peak
        details["fraction_of_bf16_peak_ours"] = details["achieved_tflops_ours"] / peak
    return details


# ----- cifar_data_path ---------------------------------------------------------------------------------------------
def bench_data_path(settings: Settings, synthetic_size: tuple[int, int] | None = None) -> Result:
    device, n = settings.device, settings.data_batches
    # Ours times 20x as many batches: 100 of them take a few hundredths of a second, a window in which one
    # stall of the machine (the baseline's workers exiting, the VM's memory housekeeping) would decide the result.
    n_ours = 20 * n
    arrays = cifar_arrays(settings, synthetic_size)
    ours_data = image_data(train_config(settings, "resnet20"), device, arrays)
    dataset = usual_dataset(settings, arrays[0])
    state = {"iteration": 0, "page_faults": 0}
    # Both sides are timed in the state of a training process, which has run a training step before its next batch:
    # on a CPU the activations that step frees (a few MB each) raise glibc's mmap and trim thresholds, so that the
    # temporaries of a batch of ours reuse heap pages. In a process that has run none, each batch of ours takes about
    # 1,200 fresh zeroed pages (page faults) and runs 7x slower, a cost no training run pays (results/bench/README.md).
    _, training_step = eager_fp32_step("resnet20", device)
    training_step()

    def ours() -> float:
        for _ in range(5):  # warm-up: the epoch's order, the allocator
            ours_data.train_batch(state["iteration"])
            state["iteration"] += 1
        sync(device)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        for _ in range(n_ours):
            ours_data.train_batch(state["iteration"])
            state["iteration"] += 1
        sync(device)
        rate = n_ours * BATCH / (time.perf_counter() - t)
        state["page_faults"] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        return rate

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
    return Result(
        "cifar_data_path",
        "img/s",
        b,
        o,
        details={
            **info,
            "batches_baseline": n,
            "batches_ours": n_ours,
            "batch": BATCH,
            "workers_baseline": settings.workers,
            "threads_ours": settings.threads,
            "page_faults_per_batch_ours": state["page_faults"] / (n_ours * settings.rounds),
            "data": describe_data(settings),
        },
    )


# ----- trainer_end_to_end_resnet20 ---------------------------------------------------------------------------------
def our_loop(settings: Settings, arrays, iters: int, warmup: int) -> tuple[float, dict]:
    """Iterations/s of `train()`'s loop over `iters` iterations after `warmup`, from the loop's own timing of its
    training windows (an evaluation at `warmup` closes the first window; evaluations are not counted)."""
    cfg = train_config(
        settings,
        "resnet20",
        limit_test=256,
        max_iters=warmup + iters,
        eval_every=warmup,
        checkpoint_every=warmup + iters,
        resume="never",
    )
    with tempfile.TemporaryDirectory() as tmp:
        summary = fit(cfg, Path(tmp) / "run", settings.device, arrays)
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["iter"] > warmup]
    seconds = sum((r["iter"] - prev["iter"]) * BATCH / r["img_per_s"] for prev, r in zip(rows, rows[1:]) if r in timed)
    return iters / seconds, {"precision": summary["precision"], "device": summary["device"]}


def bench_end_to_end(settings: Settings) -> Result:
    arrays = cifar_arrays(settings)
    dataset = usual_dataset(settings, arrays[0])
    iters, warmup = settings.e2e_iters, settings.e2e_warmup
    run_info: dict = {}

    def ours() -> float:
        rate, info = our_loop(settings, arrays, iters, warmup)
        run_info.update(info)
        return rate

    b, o, info = interleaved(lambda: reference_loop(settings, dataset, iters, warmup), ours, settings.rounds)
    return Result(
        "trainer_end_to_end_resnet20",
        "it/s",
        b,
        o,
        details={
            **info,
            "iters": iters,
            "warmup_iters": warmup,
            "batch": BATCH,
            "workers_baseline": settings.workers,
            "ours": run_info,
            "data": describe_data(settings),
            "projected_64k_s_ours": PAPER_ITERS / o,
            "projected_64k_s_baseline": PAPER_ITERS / b,
        },
    )


# ----- whole_command_resnet20 --------------------------------------------------------------------------------------
TYPICAL_SCRIPT = Path(__file__).with_name("typical_cifar_train.py")


def cifar_for_commands(settings: Settings, tmp: Path) -> tuple[str, list[str], str]:
    """(data root, the argv that starts a Python script on it, what the data is): CIFAR-10 from --cifar-root when it
    is there, else a generated CIFAR-10 of settings.synthetic_sizes written to `tmp`, whose MD5 table each process
    hands to torchvision before its script runs (the same few lines for both commands)."""
    if cifar_available(settings.cifar_root):
        return settings.cifar_root, [sys.executable], describe_data(settings)
    n_train, n_test = settings.synthetic_sizes
    md5 = make_fake_cifar10(tmp / "cifar10", n_train, n_test)
    what = (
        f"generated: {n_train:,} training and {n_test:,} test images of random pixels in CIFAR-10's pickle format "
        f"(CIFAR-10 is not in {settings.cifar_root}), read through torchvision by both commands"
    )
    return str(tmp / "cifar10"), cifar10_python(write_md5_table(tmp / "md5.json", md5)), what


def timed_process(argv: list[str], env: dict[str, str], what: str) -> tuple[float, str]:
    """Seconds from starting `argv` to its exit, and its stdout; a failure raises with the end of its stderr."""
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def bench_whole_command(settings: Settings) -> Result:
    iters, device = settings.whole_command_iters, settings.device
    # Both processes get the same thread count; the baseline's DataLoader as many workers as ours has threads.
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads)}
    env.pop("HYDRA_FULL_ERROR", None)
    rounds: dict[str, list[dict]] = {"baseline": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, python, data = cifar_for_commands(settings, tmp)
        shown_root = root if root == settings.cifar_root else "<generated CIFAR-10>"
        ours_args = [
            "scripts/train.py",
            "model=resnet20",
            f"trainer.max_iters={iters}",
            "data.split=full",  # one evaluation, on the test set, as the baseline's (split=paper adds a validation)
            f"data.root={root}",
            f"trainer.device={device.type}",
        ]
        baseline_args = [str(TYPICAL_SCRIPT), "--root", root, "--iters", str(iters), "--workers", str(settings.workers)]
        baseline_args += ["--device", device.type]

        def ours() -> float:
            run_dir = tmp / f"ours{len(rounds['ours'])}"
            seconds, _ = timed_process([*python, *ours_args, f"hydra.run.dir={run_dir}"], env, "our command")
            summary = json.loads((run_dir / "summary.json").read_text())
            if summary["status"] != "complete" or summary["iters"] != iters:
                raise RuntimeError(f"our command stopped at iteration {summary['iters']} ({summary['status']})")
            # The summary's wall_s is the training loop's (from the first iteration to the end): the rest is start-up.
            rounds["ours"].append(
                {"wall_s": seconds, "loop_s": summary["wall_s"], "test_err": summary["final_test_err"]}
            )
            return seconds

        def baseline() -> float:
            seconds, out = timed_process([*python, *baseline_args], env, "the typical script")
            done = json.loads(out.strip().splitlines()[-1])
            if done["iters"] != iters:
                raise RuntimeError(f"the typical script stopped at iteration {done['iters']}")
            rounds["baseline"].append({"wall_s": seconds, **done})
            return seconds

        b, o, info = interleaved(baseline, ours, settings.rounds)
    return Result(
        "whole_command_resnet20",
        "s",
        b,
        o,
        details={
            **info,
            "iters": iters,
            "batch": BATCH,
            "workers_baseline": settings.workers,
            "threads": settings.threads,
            "rounds": rounds,
            # With the data folder named, not its temporary path (the records stay free of machine paths).
            "ours_command": "python scripts/train.py " + " ".join(ours_args[1:]).replace(root, shown_root),
            "baseline_command": f"python {TYPICAL_SCRIPT.relative_to(ROOT)} "
            + " ".join(baseline_args[1:]).replace(root, shown_root),
            "data": data,
            "ratio_means": "baseline seconds / ours seconds: above 1 when our command finishes sooner",
        },
    )


# ----- startup_resnet20 --------------------------------------------------------------------------------------------
def bench_startup(settings: Settings) -> Result:
    """Seconds from the process's start to its first training step (summary.json's startup_s, per phase), median
    over rounds, after one run that writes the decoded copy of the data set (not counted)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, python, _ = cifar_for_commands(settings, tmp)
        real = root == settings.cifar_root
        args = ["scripts/train.py", "model=resnet20", "trainer.max_iters=1", "data.split=full", "data.limit_test=128"]
        args += [f"data.root={root}", f"trainer.device={settings.device.type}"]
        runs = []
        for i in range(settings.rounds + 1):
            timed_process([*python, *args, f"hydra.run.dir={tmp / f'run{i}'}"], env, "our command")
            runs.append(json.loads((tmp / f"run{i}" / "summary.json").read_text())["startup_s"])
    measured = runs[1:]
    median = {phase: sorted(r[phase] for r in measured)[len(measured) // 2] for phase in measured[0]}
    return Result(
        "startup_resnet20",
        "s",
        None,
        median["total"],
        details={
            "phases_s": median,
            "rounds": measured,
            "first_run_s": runs[0],
            "command": "python scripts/train.py " + " ".join(args[1:]).replace(root, root if real else "<generated>"),
            "data": f"the decoded copy of {'CIFAR-10' if real else 'a generated CIFAR-10 of random pixels'}, written "
            "by a first run that is not counted",
            "target_s": 3.0,
        },
    )


# ----- train_step_<model> ------------------------------------------------------------------------------------------
def optimizer_kind(optimizer) -> str:
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "loop"


def bench_train_step(settings: Settings, model_name: str) -> Result:
    device = settings.device
    with tempfile.TemporaryDirectory() as tmp:
        model, baseline_step = eager_fp32_step(model_name, device)
        trainer, ours_step = trainer_step(settings, model_name, Path(tmp) / "run")
        b, o, info = interleaved(
            lambda: steps_per_s(baseline_step, settings.step_iters, settings.step_warmup, device),
            lambda: steps_per_s(ours_step, settings.step_iters, settings.step_warmup, device),
            settings.rounds,
        )
        details = {
            **info,
            "batch": BATCH,
            "iters": settings.step_iters,
            "precision": trainer.precision,
            "channels_last": trainer.memory_format == torch.channels_last,
            "optimizer": optimizer_kind(trainer.optimizer),
            "compile": settings.compile,
            "cuda_graphs": trainer.use_cuda_graphs,
        }
        # A training step is about 3x the forward's multiply-adds (forward, and backward for inputs and weights).
        flops_per_step = 3 * 2 * model.flops() * BATCH
        details["train_flops_per_step"] = flops_per_step
        details["achieved_tflops_ours"] = flops_per_step * o / 1e12
        details["achieved_tflops_baseline"] = flops_per_step * b / 1e12
        with_fraction_of_peak(details, settings)
        details["projected_64k_steps_s_ours"] = PAPER_ITERS / o
        del model, trainer
    details["samples"] = {k: [v * BATCH for v in vs] for k, vs in details["samples"].items()}  # steps/s -> img/s
    return Result(f"train_step_{model_name}", "img/s", b * BATCH, o * BATCH, details=details)


# ----- bf16_step_resnet20 ------------------------------------------------------------------------------------------
def bench_bf16_step(settings: Settings, model_name: str = "resnet20") -> Result:
    """The trainer's step in fp32 (baseline) against the same step under bf16 autocast (ours), on this device: what
    trainer.precision=auto's choice rests on. A CPU without bf16 arithmetic emulates it (details.native_bf16)."""
    device = settings.device
    native = cpu_computes_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()
    with tempfile.TemporaryDirectory() as tmp:
        _, fp32_step = trainer_step(settings, model_name, Path(tmp) / "fp32", precision=Precision.fp32)
        _, bf16_step = trainer_step(settings, model_name, Path(tmp) / "bf16", precision=Precision.bf16)
        b, o, info = interleaved(
            lambda: steps_per_s(fp32_step, settings.step_iters, settings.step_warmup, device),
            lambda: steps_per_s(bf16_step, settings.step_iters, settings.step_warmup, device),
            settings.rounds,
        )
    details = {**info, "batch": BATCH, "iters": settings.step_iters, "native_bf16": native}
    details["samples"] = {k: [v * BATCH for v in vs] for k, vs in details["samples"].items()}  # steps/s -> img/s
    return Result(f"bf16_step_{model_name}", "img/s", b * BATCH, o * BATCH, details=details)


# ----- sgd_step_resnet110 ------------------------------------------------------------------------------------------
def bench_sgd(settings: Settings) -> Result:
    device = settings.device

    def model_and_optimizer(impl: str):
        torch.manual_seed(0)
        model = build_model("resnet110").to(device)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        return model, build_optimizer(model.parameters(), OptimConfig(impl=impl))

    (_, loop_opt), (model, our_opt) = model_and_optimizer("loop"), model_and_optimizer("auto")
    b, o, info = interleaved(
        lambda: steps_per_s(loop_opt.step, settings.sgd_iters, 3, device),
        lambda: steps_per_s(our_opt.step, settings.sgd_iters, 3, device),
        settings.rounds,
    )
    return Result(
        "sgd_step_resnet110",
        "steps/s",
        b,
        o,
        details={
            **info,
            "ours": optimizer_kind(our_opt),
            "baseline": "per-parameter loop (foreach=False)",
            "param_tensors": len(list(model.parameters())),
        },
    )


# ----- peak_memory_<model> -----------------------------------------------------------------------------------------
def status_bytes(field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident at the peak) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Make VmHWM the current RSS (Linux 4.0+: write 5 to clear_refs), so the peak counts only what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_child(settings_json: str, model_name: str, variant: str) -> None:
    """In a fresh process: peak memory of two training steps, printed as JSON (bytes above the process before the
    model was built: weights, gradients, momentum, activations and workspace)."""
    settings = Settings.from_json(settings_json)
    torch.set_num_threads(settings.threads)
    device = settings.device
    with tempfile.TemporaryDirectory() as tmp:
        before = status_bytes("VmRSS")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        if variant == "baseline":
            _, step = eager_fp32_step(model_name, device)
        else:
            trainer, step = trainer_step(settings, model_name, Path(tmp) / "run")
            trainer.data = None  # the (tiny) data set it was built with
            gc.collect()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        if device.type == "cpu":
            reset_peak_rss()
        for _ in range(2):
            step()
        sync(device)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            peak = status_bytes("VmHWM") - before
    print(json.dumps({"peak_bytes": peak}))


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
    code = (
        f"import sys; from {__name__} import peak_memory_child; "
        "peak_memory_child(sys.argv[1], sys.argv[2], sys.argv[3])"
    )
    for variant in ("baseline", "ours"):
        proc = subprocess.run(
            [sys.executable, "-c", code, settings.to_json(), model_name, variant],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if proc.returncode:
            raise RuntimeError(f"peak memory of {model_name} ({variant}) failed:\n{proc.stderr[-2000:]}")
        values[variant] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20
    how = (
        "torch.cuda.max_memory_allocated"
        if settings.device.type == "cuda"
        else "peak RSS (VmHWM) of a fresh process above its RSS before the model"
    )
    return Result(
        f"peak_memory_{model_name}",
        "MiB",
        values["baseline"],
        values["ours"],
        details={"batch": BATCH, "measured_by": how, "steps": 2},
    )


# ----- multiseed3_resnet20 (GPU) -----------------------------------------------------------------------------------
def bench_multiseed(settings: Settings, k: int = 3) -> Result:
    name = f"multiseed{k}_resnet20"
    if settings.device.type != "cuda":
        return Result(
            name, "seed-it/s", None, None, details={"skipped": "GPU only: on a CPU the seeds run one after another"}
        )
    with tempfile.TemporaryDirectory() as tmp:
        streams = [torch.cuda.Stream(settings.device) for _ in range(k)]
        steps = []
        for i, stream in enumerate(streams):
            _, step = trainer_step(settings, "resnet20", Path(tmp) / f"seed{i}")
            stream.wait_stream(torch.cuda.current_stream(settings.device))
            with torch.cuda.stream(stream):
                step()  # with --cuda-graphs: the capture, on the stream the step will replay on
            steps.append(step)

        def one_after_another():
            for step in steps:
                step()

        def on_streams():
            for step, stream in zip(steps, streams):
                with torch.cuda.stream(stream):
                    step()

        def seed_steps_per_s(step_all: Callable[[], None]) -> float:
            return k * steps_per_s(step_all, settings.step_iters, settings.step_warmup, settings.device)

        b, o, info = interleaved(
            lambda: seed_steps_per_s(one_after_another), lambda: seed_steps_per_s(on_streams), settings.rounds
        )
    return Result(name, "seed-it/s", b, o, details={**info, "seeds": k, "cuda_graphs": settings.cuda_graphs})


# ----- imagenet_decode (GPU) ---------------------------------------------------------------------------------------
def bench_imagenet_decode(settings: Settings) -> Result:
    name = "imagenet_decode"
    if settings.device.type != "cuda":
        return Result(name, "img/s", None, None, details={"skipped": "GPU only: data.gpu_decode decodes on a CUDA GPU"})
    batch, batches = 256, max(settings.data_batches // 5, 4)
    with tempfile.TemporaryDirectory() as tmp:
        classes, per_class = settings.imagenet_images
        root = settings.imagenet_root or synthetic_jpeg_folder(Path(tmp), classes, per_class)

        def rate(gpu_decode: bool) -> float:
            # mean_std normalization: the per-pixel mean would cost a pass over the files first, and normalization
            # runs on the GPU the same way for both
            cfg = DataConfig(
                name=Dataset.imagenet,
                root=str(root),
                batch_size=batch,
                num_workers=settings.workers,
                normalize=Normalize.mean_std,
                gpu_decode=gpu_decode,
            )
            return loader_throughput(cfg, settings.device, batches=batches, warmup=3)["img_per_s"]

        b, o, info = interleaved(lambda: rate(False), lambda: rate(True), settings.rounds)
    return Result(
        name,
        "img/s",
        b,
        o,
        details={
            **info,
            "batch": batch,
            "batches": batches,
            "workers": settings.workers,
            "data": str(settings.imagenet_root)
            if settings.imagenet_root
            else f"synthetic 500x375 JPEGs, {classes} classes x {per_class}",
        },
    )


# ----- paper_protocol_<model> (GPU) --------------------------------------------------------------------------------
def extrapolate_protocol(rows: list[dict], summary: dict, protocol, iters: int = PAPER_ITERS) -> dict:
    """The wall time of `iters` iterations of the `protocol` config from the records of a shorter run of it.

    Each metrics row gives its window's training rate (img_per_s, evaluations excluded) and the run's wall time
    after its evaluation. The first window holds the one-off costs (cuDNN's autotuning, the CUDA-graph capture,
    compilation); the windows after it give the steady time per iteration. Evaluations and checkpoints are counted
    as often as the full protocol makes them, each at the measured cost of one (a checkpoint: the time between the
    run's last evaluation and its end, when it ended with the final checkpoint)."""
    ends = [r["iter"] for r in rows]
    windows = [
        (r["iter"] - start, (r["iter"] - start) * protocol.data.batch_size / r["img_per_s"])
        for start, r in zip([0, *ends], rows)
    ]
    train_s = sum(seconds for _, seconds in windows)
    eval_s = (rows[-1]["wall_s"] - train_s) / len(rows)
    first_iters, first_s = windows[0]
    steady = windows[1:] or windows
    per_iter_s = sum(seconds for _, seconds in steady) / sum(n for n, _ in steady)
    done = ends[-1]
    ended_with_checkpoint = summary["status"] == "complete"
    checkpoint_s = max(summary["wall_s"] - rows[-1]["wall_s"], 0.0) if ended_with_checkpoint else 0.0
    evals, checkpoints = iters // protocol.trainer.eval_every, iters // protocol.trainer.checkpoint_every
    return {
        "extrapolated_64k_s": first_s
        + (iters - first_iters) * per_iter_s
        + evals * eval_s
        + checkpoints * checkpoint_s,
        "measured_iters": done,
        "measured_s": summary["wall_s"],
        "steady_s_per_iter": per_iter_s,
        "first_window_s": first_s,
        "eval_s": eval_s,
        "checkpoint_s": checkpoint_s,
        "extrapolation": f"EXTRAPOLATED from {done:,} measured iterations: the first window as measured, then the "
        f"steady time per iteration, {evals} evaluations and {checkpoints} checkpoints at the measured cost of one",
    }


def bench_protocol(settings: Settings, model_name: str) -> Result:
    """Wall time of the paper's CIFAR-10 protocol as `make reproduce-cifar` runs it (experiment=cifar10/<model>: 64k
    iterations, an evaluation every 1000, a checkpoint every 2000), on this device, with --cuda-graphs/--compile.
    A segment (--protocol-iters < 64k) or a run stopped by --protocol-budget-s is extrapolated to 64k, labelled so."""
    k = settings.protocol_seeds
    name = f"paper_protocol_{model_name}" + (f"_x{k}" if k > 1 else "")
    overrides = [
        f"data.root={settings.cifar_root}",
        f"trainer.device={settings.device.type}",
        "trainer.progress=none",
        "trainer.resume=never",
        f"trainer.max_iters={settings.protocol_iters}",
        f"trainer.seeds_per_job={k}",
        f"trainer.compile={str(settings.compile).lower()}",
        f"trainer.cuda_graphs={str(settings.cuda_graphs).lower()}",
    ]
    protocol = experiment_config(f"cifar10/{model_name}", overrides)
    cfg = protocol
    if settings.protocol_iters < PAPER_ITERS:
        # A segment evaluates twice at least, so that a window after the first (warm-up) one gives the steady rate;
        # the protocol's evaluations are then counted at the measured cost of one, however many the segment made.
        eval_every = settings.protocol_eval_every or max(settings.protocol_iters // 2, 1)
        overrides.append(f"trainer.eval_every={min(eval_every, protocol.trainer.eval_every)}")
        cfg = experiment_config(f"cifar10/{model_name}", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "seed0"
        summary = fit(cfg, run_dir, settings.device, cifar_arrays(settings), budget_s=settings.protocol_budget_s)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    details = {
        "iters": summary["iters"],
        "seeds": k,
        "precision": summary["precision"],
        "compile": settings.compile,
        "cuda_graphs": settings.cuda_graphs,
        "data": describe_data(settings),
        "target_s_h100": PROTOCOL_TARGET_S.get(model_name),
        "command": f"python scripts/train.py experiment=cifar10/{model_name} " + " ".join(overrides),
    }
    if summary["iters"] == PAPER_ITERS:
        wall = summary["wall_s"]
        details["measured"] = "the whole 64k-iteration protocol"
    else:
        details.update(extrapolate_protocol(rows, summary, protocol))
        if summary["status"] == "interrupted":
            details["stopped_by_budget_s"] = settings.protocol_budget_s
        wall = details["extrapolated_64k_s"]
    if details["target_s_h100"]:
        details["target_met"] = wall <= details["target_s_h100"]
    flops = 3 * 2 * build_model(model_name).flops() * BATCH * PAPER_ITERS * k
    details["achieved_tflops_ours"] = flops / wall / 1e12
    return Result(name, "s", None, wall, details=with_fraction_of_peak(details, settings))


# ----- the plan ----------------------------------------------------------------------------------------------------
# Not speed, and hours on a CPU without bf16 arithmetic: run by `--only precision_accuracy` and by make gpu-check.
ONLY_WHEN_NAMED = ("precision_accuracy",)


def benchmarks(settings: Settings) -> list[tuple[str, Callable[[], Result | list[Result]]]]:
    """(name, case) in the order they run, narrowed to settings.only. A case returns its row, or several
    (precision_accuracy: one per net)."""
    plan: list[tuple[str, Callable[[], Result | list[Result]]]] = [
        ("cifar_data_path", lambda: bench_data_path(settings)),
        ("trainer_end_to_end_resnet20", lambda: bench_end_to_end(settings)),
        ("whole_command_resnet20", lambda: bench_whole_command(settings)),
        ("startup_resnet20", lambda: bench_startup(settings)),
    ]
    plan += [(f"train_step_{m}", lambda m=m: bench_train_step(settings, m)) for m in settings.step_models]
    plan.append(("bf16_step_resnet20", lambda: bench_bf16_step(settings)))
    plan.append(("sgd_step_resnet110", lambda: bench_sgd(settings)))
    plan += [(f"peak_memory_{m}", lambda m=m: bench_peak_memory(settings, m)) for m in settings.memory_models]
    plan.append(("multiseed3_resnet20", lambda: bench_multiseed(settings)))
    plan.append(("imagenet_decode", lambda: bench_imagenet_decode(settings)))
    suffix = f"_x{settings.protocol_seeds}" if settings.protocol_seeds > 1 else ""
    plan += [(f"paper_protocol_{m}{suffix}", lambda m=m: bench_protocol(settings, m)) for m in settings.protocol]
    plan.append(("precision_accuracy", lambda: precision_accuracy(settings)))
    if settings.only:
        unknown = set(settings.only) - {n for n, _ in plan}
        if unknown:
            raise SystemExit(
                f"--only: no benchmark named {', '.join(sorted(unknown))} (names: {', '.join(n for n, _ in plan)})"
            )
        return [(n, f) for n, f in plan if n in settings.only]
    return [(n, f) for n, f in plan if n not in ONLY_WHEN_NAMED]
