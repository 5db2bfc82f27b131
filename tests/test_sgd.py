"""The trainer's SGD (engine/sgd.py) is torch.optim.SGD(fused=True), bit for bit, and a training process that uses it
never imports torch._dynamo (the 1.3-2.6 s that torch.optim's Optimizer costs at start-up)."""

import copy
import subprocess
import sys

import pytest
import torch

from resnet_repro.engine.sgd import FusedSGD
from resnet_repro.models import build_model

SETTINGS = [
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False},  # the paper's
    {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True},
    {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "nesterov": False},
]


def steps(model: torch.nn.Module, optimizer, n: int, lrs=(0.1, 0.1, 0.01, 0.01)) -> None:
    torch.manual_seed(1)
    for i in range(n):
        for group in optimizer.param_groups:
            group["lr"] = lrs[i % len(lrs)]  # as the trainer sets it every step
        loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("settings", SETTINGS, ids=["paper", "nesterov", "no-momentum"])
def test_our_sgd_is_torchs_fused_sgd_bit_for_bit(settings):
    torch.manual_seed(0)
    ours_model = build_model("resnet8", num_classes=10)
    torch_model = copy.deepcopy(ours_model)
    ours = FusedSGD(ours_model.parameters(), **settings)
    theirs = torch.optim.SGD(torch_model.parameters(), **settings, fused=True)
    steps(ours_model, ours, 5)
    steps(torch_model, theirs, 5)
    assert same_tensors(ours_model.state_dict(), torch_model.state_dict())
    ours_state, torch_state = ours.state_dict(), theirs.state_dict()
    assert ours_state["param_groups"] == torch_state["param_groups"]  # same keys, same values: one checkpoint layout
    assert ours_state["state"].keys() == torch_state["state"].keys()
    for i, s in torch_state["state"].items():
        assert torch.equal(ours_state["state"][i]["momentum_buffer"], s["momentum_buffer"])


def test_checkpoints_of_either_optimizer_resume_in_the_other():
    """Checkpoints written before the trainer had its own SGD (torch.optim.SGD's state_dict) resume bit for bit."""
    torch.manual_seed(0)
    start = build_model("resnet8", num_classes=10)
    settings = SETTINGS[0]
    torch_model = copy.deepcopy(start)
    theirs = torch.optim.SGD(torch_model.parameters(), **settings, fused=True)
    steps(torch_model, theirs, 3)
    saved = copy.deepcopy({"model": torch_model.state_dict(), "optimizer": theirs.state_dict()})
    steps(torch_model, theirs, 3)

    ours_model = build_model("resnet8", num_classes=10)
    ours_model.load_state_dict(saved["model"])
    ours = FusedSGD(ours_model.parameters(), **settings)
    ours.load_state_dict(saved["optimizer"])
    steps(ours_model, ours, 3)
    assert same_tensors(ours_model.state_dict(), torch_model.state_dict())

    back = torch.optim.SGD(build_model("resnet8", num_classes=10).parameters(), **settings, fused=True)
    back.load_state_dict(ours.state_dict())
    assert torch.equal(
        back.state[back.param_groups[0]["params"][0]]["momentum_buffer"],
        ours.state_dict()["state"][0]["momentum_buffer"],
    )


def test_a_saved_optimizer_of_another_model_is_refused():
    ours = FusedSGD(build_model("resnet8", num_classes=10).parameters(), **SETTINGS[0])
    other = FusedSGD(build_model("resnet14", num_classes=10).parameters(), **SETTINGS[0])
    with pytest.raises(ValueError, match="parameters"):
        ours.load_state_dict(other.state_dict())


def test_a_training_step_imports_no_dynamo():
    """What keeps start-up short: nothing on the eager training path imports torch._dynamo."""
    code = (
        "import sys, torch\n"
        "from resnet_repro.config import OptimConfig\n"
        "from resnet_repro.engine.setup import build_optimizer, autocast\n"
        "from resnet_repro.models import build_model\n"
        "model = build_model('resnet8', num_classes=10).to(memory_format=torch.channels_last)\n"
        "optimizer = build_optimizer(model.parameters(), OptimConfig())\n"
        "for precision in ('fp32', 'bf16'):\n"
        "    with autocast(precision, torch.device('cpu')):\n"
        "        loss = model(torch.randn(4, 3, 32, 32)).float().sum()\n"
        "    optimizer.zero_grad(); loss.backward(); optimizer.step()\n"
        "optimizer.load_state_dict(optimizer.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
