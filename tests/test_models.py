"""The networks match the paper's architecture facts (Section 4.2, Table 1) and torchvision's ResNets."""

import pytest
import torch
import torchvision
from torch import nn

from resnet_repro.models import (
    CIFAR_MODELS,
    IMAGENET_MODELS,
    ZeroPadShortcut,
    build_model,
    count_flops,
    count_params,
)
from resnet_repro.models.counting import CIFAR_REFERENCE_MFLOPS
from resnet_repro.paper import load_table


def meta_model(name, **kwargs):
    """Shapes only: counting params and FLOPs of even ResNet-1202/152 costs no weight initialization."""
    with torch.device("meta"):
        return build_model(name, **kwargs)


def round_sig(x, digits=2):
    return float(f"{x:.{digits}g}")


# ---------------------------------------------------------------- CIFAR parameter counts and FLOPs


def test_cifar_exact_param_counts():
    assert build_model("resnet20").num_params() == 269_722
    assert build_model("resnet56").num_params() == 853_018
    assert count_params(build_model("resnet20")) == 269_722


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 1202])
def test_cifar_param_counts_match_table6(depth):
    t6 = load_table("cifar10_table6")
    paper = float(t6[(t6.method == "ResNet") & (t6.depth == depth)].params_M.iloc[0])
    resnet = meta_model(f"resnet{depth}")
    ours = resnet.num_params() / 1e6
    # The paper rounds to 2 significant digits (19.4 for ResNet-1202 has 3).
    assert round_sig(ours, 3 if depth == 1202 else 2) == paper
    # Plain = the same stack without shortcuts; option A adds no parameters.
    assert meta_model(f"plain{depth}", family="cifar").num_params() == resnet.num_params()


def test_cifar_projection_shortcuts_add_parameters():
    a = build_model("resnet20", shortcut="A").num_params()
    b = build_model("resnet20", shortcut="B").num_params()
    c = build_model("resnet20", shortcut="C").num_params()

    def proj(i, o):
        return i * o + 2 * o  # 1x1 conv without bias + BN affine

    assert b == a + proj(16, 32) + proj(32, 64)  # projections only where the shape changes
    assert c == a + 3 * proj(16, 16) + proj(16, 32) + 2 * proj(32, 32) + proj(32, 64) + 2 * proj(64, 64)
    # Plain nets ignore the shortcut option.
    assert build_model("plain20", shortcut="C").num_params() == a


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_cifar_flops_near_reference(depth):
    ours = build_model(f"resnet{depth}").flops() / 1e6
    assert ours == pytest.approx(CIFAR_REFERENCE_MFLOPS[depth], rel=0.03)


# ---------------------------------------------------------------- ImageNet FLOPs (Table 1)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_imagenet_flops_match_table1(name):
    t1 = load_table("imagenet_table1_flops").set_index("model")
    model = meta_model(name)  # paper placement, paper shortcuts
    assert model.stride_in_1x1
    assert model.flops() / 1e9 == pytest.approx(t1.flops_G_paper[name], rel=0.03)
    assert count_flops(model, (3, 224, 224)) == model.flops()


@pytest.mark.parametrize(
    "name,gflops", [("resnet18", 1.814), ("resnet50", 4.089), ("resnet101", 7.801), ("resnet152", 11.514)]
)
def test_torchvision_placement_flops(name, gflops):
    model = meta_model(name, shortcut="B", stride_in_1x1=False)
    assert model.flops() / 1e9 == pytest.approx(gflops, abs=0.0005)


def test_flop_count_leaves_model_untouched():
    model = build_model("resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.flops()
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"


# ---------------------------------------------------------------- option A shortcut


def test_zero_pad_shortcut_subsamples_and_pads():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(y[:, 16:], torch.zeros(2, 16, 4, 4))
    assert list(ZeroPadShortcut(16, 32, 2).parameters()) == []


def test_zero_pad_shortcut_stride1_bottleneck_stage1():
    # ResNet-50 with option A: stage-1 input has 64 channels, output 256, same resolution.
    x = torch.randn(1, 64, 5, 5)
    y = ZeroPadShortcut(64, 256, stride=1)(x)
    assert torch.equal(y[:, :64], x) and not y[:, 64:].any()
    model = meta_model("resnet50", shortcut="A")
    assert isinstance(model.layer1[0].downsample, ZeroPadShortcut)
    assert model.layer1[1].downsample is None


def test_zero_pad_shortcut_odd_size_matches_conv():
    model = build_model("resnet20")
    x = torch.randn(1, 3, 31, 31)  # odd maps: subsampling must give the stride-2 conv's ceil(H/2)
    assert model(x).shape == (1, 10)


def test_shortcut_placement_per_option():
    a, b, c = (build_model("resnet20", shortcut=s) for s in "ABC")
    assert a.layer1[0].downsample is None and isinstance(a.layer2[0].downsample, ZeroPadShortcut)
    assert b.layer1[0].downsample is None and isinstance(b.layer2[0].downsample, nn.Sequential)
    assert all(isinstance(blk.downsample, nn.Sequential) for blk in [*c.layer1, *c.layer2, *c.layer3])
    assert all(blk.downsample is None for blk in build_model("plain20").modules() if hasattr(blk, "downsample"))


# ---------------------------------------------------------------- shapes, gradients, torchvision equivalence


@pytest.mark.parametrize("name,classes", [("resnet20", 10), ("plain20", 10), ("resnet32", 100)])
def test_cifar_output_shape_and_backward(name, classes):
    model = build_model(name, num_classes=classes)
    assert model.input_size == (3, 32, 32)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, classes)
    out.sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet18", "plain18", "resnet50"])
def test_imagenet_output_shape_and_backward(name):
    model = build_model(name, num_classes=7)
    assert model.input_size == (3, 224, 224)
    out = model(torch.randn(2, 3, 64, 64))  # small input: fully convolutional up to the GAP
    assert out.shape == (2, 7)
    out.sum().backward()
    assert model.conv1.weight.grad.abs().sum() > 0


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_equivalence(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)()
    with torch.no_grad():
        _randomize_bn(tv)
    ours = build_model(name, shortcut="B", stride_in_1x1=False)
    assert list(ours.state_dict()) == list(tv.state_dict())
    ours.load_state_dict(tv.state_dict())
    assert ours.num_params() == count_params(tv)
    tv.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    if name == "resnet50":
        # Paper placement: same weights fit, but the stride sits elsewhere, so the outputs differ.
        paper = build_model(name, shortcut="B", stride_in_1x1=True)
        paper.load_state_dict(tv.state_dict())
        with torch.no_grad():
            assert not torch.allclose(paper.eval()(x), expected, atol=1e-4)


def test_imagenet_defaults():
    assert meta_model("resnet34").shortcut == "A"
    assert meta_model("resnet50").shortcut == "B"
    assert meta_model("resnet18").fc.out_features == 1000
    assert build_model("resnet20").fc.out_features == 10
    # The paper's A for ResNet-34 is torchvision's B minus its three projections.
    tv = torchvision.models.resnet34()
    proj = sum(p.numel() for n, p in tv.named_parameters() if "downsample" in n)
    assert meta_model("resnet34").num_params() == count_params(tv) - proj


# ---------------------------------------------------------------- name parsing, families, errors


def test_families():
    assert type(meta_model("resnet50")).__name__ == "ImageNetNet"
    assert type(meta_model("resnet50", family="cifar")).__name__ == "CifarNet"
    assert meta_model("resnet152", family="cifar").depth == 152
    assert type(meta_model("resnet20")).__name__ == "CifarNet"
    assert type(meta_model("resnet26")).__name__ == "CifarNet"  # any 6n+2
    for name in CIFAR_MODELS:
        assert meta_model(name, family="cifar").arch == name
    for name in IMAGENET_MODELS:
        assert meta_model(name).arch == name


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(name="vgg16"), "resnet20"),
        (dict(name="resnet21"), "6n+2"),
        (dict(name="resnet20", shortcut="D"), "A, B, C"),
        (dict(name="plain20", shortcut="D"), "A, B, C"),
        (dict(name="resnet20", family="svhn"), "auto, cifar, imagenet"),
        (dict(name="resnet20", family="imagenet"), "18, 34, 50, 101, 152"),
    ],
)
def test_errors_list_choices(kwargs, fragment):
    with pytest.raises(ValueError) as err:
        build_model(**kwargs)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


# ---------------------------------------------------------------- Figure 7 response layers


@pytest.mark.parametrize("name,expected", [("resnet20", 19), ("plain56", 55), ("resnet110", 109)])
def test_response_layers_count(name, expected):
    layers = meta_model(name).response_layers()
    assert len(layers) == expected
    assert all(isinstance(m, nn.BatchNorm2d) for m in layers)


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18"])
def test_response_layers_in_forward_order_and_unmodified(name):
    model = build_model(name, shortcut="C" if name == "resnet20" else None).eval()
    layers = model.response_layers()
    seen, outputs = [], {}

    def hook(module, inp, out):
        seen.append(module)
        outputs[module] = (out, out.clone())  # keep a reference: must not be changed in place later

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(torch.randn(1, *model.input_size[:1], 32, 32))
    for h in handles:
        h.remove()
    # Shortcut BNs (option C projections) run but are not response layers.
    assert [m for m in seen if any(m is layer for layer in layers)] == layers
    num_shortcut_bns = 9 if name == "resnet20" else 0  # one projection BN per block with option C
    assert len(seen) == len(layers) + num_shortcut_bns
    assert all(torch.equal(ref, copy) for ref, copy in outputs.values())


@pytest.mark.parametrize(
    "name,options",
    [
        ("plain20", {}),
        ("resnet20", {}),
        ("resnet56", {"shortcut": "B"}),
        ("resnet32", {"shortcut": "C"}),
        ("resnet1202", {}),
        ("resnet18", {}),
        ("resnet34", {"shortcut": "C"}),
        ("resnet152", {"stride_in_1x1": False}),
    ],
)
def test_flops_are_torchs_flop_counter_halved(name, options):
    """count_flops (forward hooks on convolutions and the FC) gives torch.utils.flop_counter's count in
    multiply-adds, on the CIFAR nets with every shortcut and on ImageNet's bottlenecks in both placements."""
    from torch.utils.flop_counter import FlopCounterMode

    model = meta_model(name, **options).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1, *model.input_size), device="meta"))
    assert model.flops() == counter.get_total_flops() // 2
