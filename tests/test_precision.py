"""Which precision a run trains in, and why: trainer.precision=auto on GPUs and CPUs, with and without bf16
arithmetic.

The CPU's capability is mocked only where torch is asked for it (torch.cpu's AVX-512 BF16 and AMX queries); the
rest, resolve_precision and a real training run, is the code as it runs."""

import logging

import pytest
import torch

from resnet_repro.engine.run import train
from resnet_repro.engine.setup import StartupClock, cpu_computes_bf16, resolve_precision
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


def test_auto_is_bf16_on_a_cpu_that_computes_it_and_fp32_on_one_that_would_emulate_it(cpu_capability):
    precision, reason = resolve_precision("auto", CPU, "resnet56")
    if cpu_capability == "none":
        assert precision == "fp32" and reason.startswith("auto: this CPU has no bf16 arithmetic")
    else:
        assert precision == "bf16" and reason == "auto: this CPU computes bf16 with AVX-512 BF16 or AMX"
    assert resolve_precision("fp32", CPU, "resnet56") == ("fp32", "trainer.precision=fp32")  # as asked


@pytest.mark.parametrize("net", ["plain20", "plain56", "plain110", "resnet20", "resnet56", "resnet1202"])
def test_auto_keeps_deep_plain_nets_in_fp32_on_a_cpu_as_the_study_found(net, monkeypatch):
    """The CPU study: bf16 = fp32 for plain-20, ResNet-20 and ResNet-56; not for plain-56. Asked for, bf16 is bf16."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    precision, reason = resolve_precision("auto", CPU, net)
    deep_plain = net in ("plain56", "plain110")
    assert precision == ("fp32" if deep_plain else "bf16")
    assert ("plain net deeper than 20 layers" in reason) == deep_plain
    assert resolve_precision("bf16", CPU, net)[0] == "bf16"


def test_bf16_asked_for_on_a_cpu_that_would_emulate_it_says_so(cpu_capability):
    precision, reason = resolve_precision("bf16", CPU, "resnet8")
    assert precision == "bf16"
    if cpu_capability == "none":
        assert "emulated" in reason and "trainer.precision=auto or fp32" in reason
    else:
        assert reason == "trainer.precision=bf16"


@pytest.mark.parametrize("gpu_bf16", [True, False])
def test_auto_on_a_gpu_follows_its_bf16_support(gpu_bf16, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: gpu_bf16)
    assert resolve_precision("auto", GPU, "plain56")[0] == ("bf16" if gpu_bf16 else "fp32")
    assert resolve_precision("fp32", GPU, "plain56")[0] == "fp32"


@pytest.mark.parametrize("requested", ["auto", "bf16"])
def test_the_precision_trained_in_is_recorded(
    requested, tmp_path, fashion_mnist_dir, cpu_capability, caplog, monkeypatch
):
    """A real (tiny) run on this CPU, taken for each kind: summary.json and the run's first log line name the
    precision resolve_precision chose and why; the start-up is recorded per phase."""
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
    monkeypatch.setattr(StartupClock, "process_start_unclaimed", False)  # the test process started long before
    with caplog.at_level(logging.INFO, logger="resnet_repro.train"):
        train(cfg, tmp_path)
    precision, reason = resolve_precision(requested, CPU, "resnet8")
    summary = read_summary(tmp_path)
    assert (summary["precision"], summary["precision_reason"]) == (precision, reason)
    first = next(r for r in caplog.records if r.name == "resnet_repro.train")
    assert first.getMessage() == f"resnet8 on cpu, precision {precision} ({reason})"
    emulated = requested == "bf16" and cpu_capability == "none"
    assert first.levelno == (logging.WARNING if emulated else logging.INFO)  # a warning where bf16 is emulated
    startup = summary["startup_s"]  # timed from this trainer's creation
    assert startup["imports_and_config"] is None and startup["total"] > 0
    assert startup["total"] == pytest.approx(sum(startup[k] for k in StartupClock.PHASES[1:]), abs=0.005)


def test_only_the_first_trainer_of_a_process_times_its_start_up_from_the_process_start(monkeypatch):
    """A sweep's later jobs and a job's other seeds run in a process started long before them: their start-up is
    timed from their own trainer, and no phase is charged with the earlier runs."""
    monkeypatch.setattr(StartupClock, "process_start_unclaimed", True)
    first, later = StartupClock(), StartupClock()
    for clock in (first, later):
        for _ in StartupClock.PHASES:
            clock.mark()
    first_s, later_s = first.seconds(), later.seconds()
    assert first_s["imports_and_config"] > 0  # this test process started before the clock
    assert first_s["total"] == pytest.approx(sum(first_s[k] for k in StartupClock.PHASES), abs=0.005)
    assert later_s["imports_and_config"] is None
    assert later_s["total"] == pytest.approx(sum(later_s[k] for k in StartupClock.PHASES[1:]), abs=0.005)
    assert StartupClock().seconds() == {}  # before the first step
