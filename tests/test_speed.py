"""The fast path's guarantees, not its speed (make bench measures that): the training loop does not wait for the
device between logging points; a multi-seed job equals its single-seed runs."""

import json
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from resnet_repro.engine.multiseed import lane_dirs
from resnet_repro.engine.run import train
from support.configs import TINY_RUN, compose_train_config
from support.runs import read_metrics as read_rows
from support.runs import without_timing

# Tensor methods that make the host wait for the device (on a GPU), and host data copied to the device.
SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
# ResNet-8 on 64-image batches of Fashion-MNIST: 32 batches an epoch, so 50 iterations cross an epoch boundary.
SMALL_RUN = [
    *TINY_RUN,
    "model=resnet20",
    "model.name=resnet8",
    "data.batch_size=64",
    "data.limit_test=64",
    "data.eval_batch_size=64",
]


@contextmanager
def count_syncs():
    """Count, on any device, the calls that would make the host wait for a GPU: Tensor.item/.tolist/.cpu/...,
    truth values and numbers taken from tensors, and torch.tensor/as_tensor(..., device=...) (a host-to-device copy
    that waits)."""
    counts: Counter = Counter()
    patched = []

    def counting(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if owner is not torch or kwargs.get("device") is not None:
                counts[name] += 1
            return original(*args, **kwargs)

        patched.append((owner, name, owner.__dict__.get(name), original))
        setattr(owner, name, wrapper)

    for name in SYNC_METHODS:
        counting(torch.Tensor, name)
    for name in ("tensor", "as_tensor"):
        counting(torch, name)
    try:
        yield counts
    finally:
        for owner, name, own, _ in reversed(patched):
            if own is None:
                delattr(owner, name)
            else:
                setattr(owner, name, own)


def run_and_count(tmp_path: Path, iters: int, extra: list[str] = ()) -> Counter:
    cfg = compose_train_config(
        [
            *SMALL_RUN,
            f"trainer.max_iters={iters}",
            f"trainer.eval_every={iters}",
            f"trainer.checkpoint_every={iters}",
            *extra,
        ]
    )
    with count_syncs() as counts:
        train(cfg, tmp_path / f"run{iters}" / "seed0")
    return counts


@pytest.mark.parametrize(
    "extra", [[], ["schedule=cifar_warmup"], ["trainer.seeds_per_job=2"]], ids=["plain", "warmup", "two-seeds"]
)
@pytest.mark.slow
def test_no_host_sync_per_iteration_on_cpu(tmp_path, fashion_mnist_dir, extra):
    """Syncs happen only at logging points (evaluations, checkpoints, summaries, warm-up checks every 100
    iterations): a run of 50 iterations makes exactly as many as a run of 25."""
    short = run_and_count(tmp_path, 25, extra)
    long = run_and_count(tmp_path, 50, extra)
    assert sum(short.values()) > 0, "the guard saw nothing: it is not patching what the trainer calls"
    assert long == short


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "extra", [[], ["trainer.cuda_graphs=true"], ["trainer.seeds_per_job=2"]], ids=["eager", "cuda-graphs", "two-seeds"]
)
def test_no_host_sync_per_iteration_on_gpu(tmp_path, fashion_mnist_dir, extra):
    """The same on a GPU, by CUDA's own count: torch.cuda.set_sync_debug_mode warns at every synchronizing call."""

    def count(iters: int) -> int:
        cfg = compose_train_config(
            [
                *SMALL_RUN,
                "trainer.device=cuda",
                f"trainer.max_iters={iters}",
                f"trainer.eval_every={iters}",
                f"trainer.checkpoint_every={iters}",
                *extra,
            ]
        )
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(cfg, tmp_path / f"run{iters}" / "seed0")
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)

    count(10)  # cuDNN's autotuning and first-use set-up happen once per process
    assert count(30) == count(25)  # within the first epoch (32 batches): nothing per iteration
    # Across an epoch boundary the data path draws the new epoch's order with a device randperm (no host copy);
    # one sync per epoch is still allowed, in case CUDA's randperm makes one (not yet run on a GPU).
    assert count(50) <= count(25) + 1


@pytest.mark.slow
def test_multiseed_job_equals_single_seed_runs(tmp_path, fashion_mnist_dir, monkeypatch):
    """seeds_per_job=2 writes seed0/ and seed1/ exactly as two single-seed runs do: same records, same config, and
    bitwise the same weights, optimizer state and checkpoints (on CPU the lanes run the very same operations). A lane
    *is* its seed's single-seed run: here seed 1 was started alone and killed, and the job resumes it."""
    from resnet_repro.engine.trainer import Trainer

    common = [*SMALL_RUN, "trainer.max_iters=40", "trainer.eval_every=20", "trainer.checkpoint_every=20"]
    for seed in (0, 1):
        train(compose_train_config([*common, f"seed={seed}"]), tmp_path / "single" / f"seed{seed}")
    save = Trainer.save

    def killed_after_first_checkpoint(self):
        save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train_config([*common, "seed=1"]), tmp_path / "multi" / "seed1")
    monkeypatch.undo()
    job = compose_train_config([*common, "seed=0", "trainer.seeds_per_job=2"])
    summary = train(job, tmp_path / "multi" / "seed0")
    assert [(s["seed"], s["iters"], s["status"]) for s in summary["lanes"]] == [
        (0, 40, "complete"),
        (1, 40, "complete"),
    ]
    for seed in (0, 1):
        single, multi = tmp_path / "single" / f"seed{seed}", tmp_path / "multi" / f"seed{seed}"
        assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())
        assert (multi / "config.yaml").read_text() == (single / "config.yaml").read_text()
        assert without_timing(read_rows(multi)) == without_timing(read_rows(single))
        s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (single, multi))
        assert {k: v for k, v in s1.items() if k not in ("wall_s", "startup_s", "command")} == {
            k: v for k, v in s2.items() if k not in ("wall_s", "startup_s", "command")
        }
        for name in ("last.pt", "best.pt"):
            a, b = (torch.load(d / "checkpoints" / name, weights_only=False) for d in (single, multi))
            assert a["iteration"] == b["iteration"]
            for key, value in a["model"].items():
                assert torch.equal(value, b["model"][key]), (seed, name, key)
            for p, state in a["optimizer"]["state"].items():
                assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][p]["momentum_buffer"])
            assert torch.equal(a["loop"]["train_sums"], b["loop"]["train_sums"])
    # The two seeds really differ (each lane has its own initialization and data order).
    a, b = (torch.load(tmp_path / "multi" / f"seed{s}" / "checkpoints" / "last.pt", weights_only=False) for s in (0, 1))
    assert not torch.equal(a["model"]["conv1.weight"], b["model"]["conv1.weight"])
    # Complete lanes are skipped, as complete single-seed runs are.
    again = train(job, tmp_path / "multi" / "seed0")
    assert [s["wall_s"] for s in again["lanes"]] == [s["wall_s"] for s in summary["lanes"]]


@pytest.mark.slow
def test_a_signal_stops_every_seed_of_a_job_with_a_checkpoint(tmp_path, fashion_mnist_dir, monkeypatch):
    """SIGTERM (SLURM's warning) in a 3-seed job: every lane checkpoints and records `interrupted`, the job exits as
    a single run does (128 + 15), the handler from before the job is back, and the job then resumes to the end."""
    import os
    import signal

    from resnet_repro.engine.trainer import Trainer

    step, calls = Trainer.train_step, []

    def signalled_at_the_7th_step(self, images, labels):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, images, labels)

    monkeypatch.setattr(Trainer, "train_step", signalled_at_the_7th_step)
    cfg = compose_train_config(
        [
            *SMALL_RUN,
            "trainer.max_iters=20",
            "trainer.eval_every=10",
            "trainer.checkpoint_every=10",
            "trainer.seeds_per_job=3",
        ]
    )
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        train(cfg, tmp_path / "seed0")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    for seed in (0, 1, 2):
        summary = json.loads((tmp_path / f"seed{seed}" / "summary.json").read_text())
        assert summary["status"] == "interrupted" and 0 < summary["iters"] < 20
        assert (tmp_path / f"seed{seed}" / "checkpoints" / "last.pt").exists()
    monkeypatch.undo()
    resumed = train(cfg, tmp_path / "seed0")
    assert [(s["status"], s["iters"]) for s in resumed["lanes"]] == [("complete", 20)] * 3


def test_cpu_evaluation_in_chunks_gives_the_same_metrics(tmp_path, fashion_mnist_dir, monkeypatch):
    """On a CPU an evaluation runs 128 images per forward pass (Trainer.eval_logits, for the caches): its metrics are
    bitwise those of one forward pass per evaluation batch of 500 (validation and test, 500 images each)."""
    from resnet_repro.engine import trainer as trainer_module

    overrides = [
        *SMALL_RUN,
        "data.limit_test=500",
        "data.eval_batch_size=500",
        "trainer.max_iters=4",
        "trainer.eval_every=2",
        "trainer.checkpoint_every=4",
    ]
    train(compose_train_config(overrides), tmp_path / "chunks" / "seed0")
    monkeypatch.setattr(trainer_module, "CPU_EVAL_CHUNK", 10**9)
    train(compose_train_config(overrides), tmp_path / "whole" / "seed0")
    chunks, whole = (without_timing(read_rows(tmp_path / kind / "seed0")) for kind in ("chunks", "whole"))
    assert len(chunks) == 2 and "val_loss" in chunks[0] and chunks == whole


def test_lane_directories():
    assert lane_dirs(Path("r/resnet20/seed3"), 3, [3, 4, 5]) == [
        Path("r/resnet20/seed3"),
        Path("r/resnet20/seed4"),
        Path("r/resnet20/seed5"),
    ]
    assert lane_dirs(Path("out/job"), 0, [0, 1]) == [Path("out/job/seed0"), Path("out/job/seed1")]
    assert lane_dirs(Path("out/job"), 0, [0]) == [Path("out/job")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_steps_follow_the_eager_trajectory(tmp_path, fashion_mnist_dir, monkeypatch):
    """trainer.cuda_graphs replays captured steps; its warm-up must not move the model: fp32 results stay close."""
    common = [
        *SMALL_RUN,
        "trainer.device=cuda",
        "trainer.precision=fp32",
        "trainer.max_iters=30",
        "trainer.eval_every=15",
        "trainer.checkpoint_every=15",
        "trainer.deterministic=true",
    ]
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (the FC layer)
    try:
        train(compose_train_config(common), tmp_path / "eager")
        train(compose_train_config([*common, "trainer.cuda_graphs=true"]), tmp_path / "graphs")
    finally:
        torch.use_deterministic_algorithms(False)  # the trainer sets it for the whole process
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=False) for d in ("eager", "graphs"))
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key].float(), value.float(), rtol=1e-3, atol=1e-4)
    assert isinstance(b["optimizer"]["param_groups"][0]["lr"], float)


@pytest.mark.slow
def test_cuda_graph_bookkeeping_keeps_the_eager_trajectory_on_cpu(tmp_path, fashion_mnist_dir, monkeypatch):
    """What GraphedStep does around the CUDA graph, on CPU: its warm-up steps are undone (weights, BN statistics,
    momentum), the learning rate reaches the step through a tensor, batches go through static buffers, and the records
    and checkpoints keep plain floats. With the capture and the replay swapped for eager steps, the run must equal the
    eager run bitwise; on a GPU test_cuda_graph_steps_follow_the_eager_trajectory checks the graphs themselves."""
    from contextlib import nullcontext

    from resnet_repro.engine import cuda_graph, trainer

    class FakeStream:
        def __init__(self, *args, **kwargs):
            pass

        def wait_stream(self, other):
            pass

    def eager_replay(self):  # what the captured kernels do: fresh gradients, the lr read from the tensor
        groups = self.trainer.optimizer.param_groups
        floats = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] = self.lr
        self.trainer.optimizer.zero_grad(set_to_none=True)
        self.static_sums.copy_(self._step())
        for group, lr in zip(groups, floats):
            group["lr"] = lr

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *args: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: None)
    monkeypatch.setattr(torch.cuda, "graph", lambda graph: nullcontext())  # the capture runs the step once, eagerly
    monkeypatch.setattr(cuda_graph.GraphedStep, "_replay", eager_replay)
    init = trainer.Trainer.__init__

    def init_as_on_a_gpu(self, cfg, run_dir):  # the graphed step is chosen as on a GPU
        init(self, cfg, run_dir)
        self.use_cuda_graphs = cfg.trainer.cuda_graphs

    monkeypatch.setattr(trainer.Trainer, "__init__", init_as_on_a_gpu)
    common = [
        *SMALL_RUN,
        "schedule.milestones=[15,25]",
        "trainer.max_iters=30",
        "trainer.eval_every=10",
        "trainer.checkpoint_every=10",
    ]
    train(compose_train_config(common), tmp_path / "eager")
    train(compose_train_config([*common, "trainer.cuda_graphs=true"]), tmp_path / "graphs")
    assert without_timing(read_rows(tmp_path / "graphs")) == without_timing(read_rows(tmp_path / "eager"))
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=False) for d in ("eager", "graphs"))
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for p, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][p]["momentum_buffer"])
    assert b["optimizer"]["param_groups"][0]["lr"] == a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.001)
    assert isinstance(b["optimizer"]["param_groups"][0]["lr"], float)


@pytest.mark.slow
def test_compiled_training_follows_the_eager_trajectory(tmp_path, fashion_mnist_dir, monkeypatch):
    """trainer.compile=true really compiles (dynamo saw graphs) and trains the same net: same losses to float noise."""
    import torch._dynamo

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    # fp32: under bf16 autocast the compiled graph rounds in other places, a difference of bf16's noise, not float's
    common = [*SMALL_RUN, "trainer.max_iters=6", "trainer.eval_every=3", "trainer.checkpoint_every=6"]
    common.append("trainer.precision=fp32")
    train(compose_train_config(common), tmp_path / "eager" / "seed0")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        train(compose_train_config([*common, "trainer.compile=true"]), tmp_path / "compiled" / "seed0")
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert graphs > 0, "trainer.compile=true ran eagerly"
    eager, compiled = read_rows(tmp_path / "eager" / "seed0"), read_rows(tmp_path / "compiled" / "seed0")
    assert [r["iter"] for r in eager] == [r["iter"] for r in compiled] == [3, 6]
    for e, c in zip(eager, compiled):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-3)
        assert c["test_loss"] == pytest.approx(e["test_loss"], rel=1e-3)
