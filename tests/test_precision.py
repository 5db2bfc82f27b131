"""Which precision a run trains in: trainer.precision=auto on GPUs and CPUs, with and without bf16 arithmetic.

The CPU's capability is mocked only where torch is asked for it (torch.cpu's AVX-512 BF16 and AMX queries); the
rest, resolve_precision and a real training run, is the code as it runs."""

import logging

import pytest
import torch

from resnet_repro.engine.run import train
from resnet_repro.engine.setup import cpu_computes_bf16, resolve_precision
from support.configs import TINY_RUN, compose_train_config
from support.runs import read_summary

CPU, GPU = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(params=["none", "avx512_bf16", "amx"])
def cpu_capability(request, monkeypatch):
    """This CPU as one without bf16 arithmetic, one with AVX-512 BF16, one with AMX."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: request.param == "avx512_bf16")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: request.param == "amx")
    return request.param


def test_native_bf16_is_read_from_torchs_capability_query(cpu_capability):
    assert cpu_computes_bf16() == (cpu_capability != "none")


def test_auto_is_fp32_on_every_cpu_until_bf16_is_measured_there(cpu_capability):
    assert resolve_precision("auto", CPU) == "fp32"


def test_bf16_asked_for_on_a_cpu_that_would_emulate_it_warns_once(cpu_capability, caplog):
    with caplog.at_level(logging.WARNING, logger="resnet_repro.train"):
        assert resolve_precision("bf16", CPU) == "bf16"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if cpu_capability == "none":
        assert len(warnings) == 1 and "emulated" in warnings[0] and "trainer.precision=auto or fp32" in warnings[0]
    else:
        assert warnings == []


@pytest.mark.parametrize("gpu_bf16", [True, False])
def test_auto_on_a_gpu_follows_its_bf16_support(gpu_bf16, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: gpu_bf16)
    assert resolve_precision("auto", GPU) == ("bf16" if gpu_bf16 else "fp32")
    assert resolve_precision("fp32", GPU) == "fp32"


@pytest.mark.parametrize("requested", ["auto", "bf16"])
def test_the_precision_trained_in_is_recorded(requested, tmp_path, fashion_mnist_dir):
    """A real (tiny) run on this CPU: summary.json names the precision resolve_precision chose."""
    cfg = compose_train_config(
        [
            *TINY_RUN,
            "model.name=resnet8",
            "data.limit_train=256",
            f"trainer.precision={requested}",
            "trainer.max_iters=4",
            "trainer.eval_every=4",
            "trainer.checkpoint_every=4",
        ]
    )
    train(cfg, tmp_path)
    assert read_summary(tmp_path)["precision"] == resolve_precision(requested, CPU)
