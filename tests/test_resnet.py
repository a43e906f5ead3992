"""ResNet-18/34: torchvision parity (names, counts, outputs), every study C switch trains, the shortcuts and stems."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from imgbench.models import count_parameters, create_model
from imgbench.models.resnet import InceptionStem, ZeroPadShortcut, resolve_stem_layout

from .conftest import train_step

TORCHVISION = {
    "resnet18": (torchvision.models.resnet18, 11_689_512),
    "resnet34": (torchvision.models.resnet34, 21_797_672),
}
TORCHVISION_SWITCHES = {"activation": "relu", "stem": "conv", "stem_layout": "imagenet", "shortcut": "projection"}


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_torchvision_weights_load_strictly_and_give_the_same_outputs(name):
    tv_factory, params = TORCHVISION[name]
    tv = tv_factory()
    with torch.no_grad():  # non-trivial BN statistics, so that the comparison tests them too
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours = create_model(name, num_classes=1000, in_channels=3, image_size=224, **TORCHVISION_SWITCHES)
    assert count_parameters(ours) == count_parameters(tv) == params
    assert list(ours.state_dict()) == list(tv.state_dict())
    ours.load_state_dict(tv.state_dict(), strict=True)
    ours.eval()
    tv.eval()
    x = torch.randn(2, 3, 32, 32)  # any size works with the imagenet stem; small keeps the test fast
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-5)


def test_default_stem_layout_on_224_is_torchvision_and_zero_pad_has_no_shortcut_params():
    projection = create_model("resnet18", num_classes=1000, in_channels=3, image_size=224, shortcut="projection")
    zero_pad = create_model("resnet18", num_classes=1000, in_channels=3, image_size=224, shortcut="zero_pad")
    assert count_parameters(projection) == 11_689_512  # stem_layout=auto picked imagenet at 224 px
    shortcut_params = sum(p.numel() for n, p in projection.named_parameters() if ".downsample." in n)
    assert shortcut_params == 173_824
    assert not any(".downsample." in n for n, _ in zero_pad.named_parameters())
    assert count_parameters(zero_pad) == 11_689_512 - shortcut_params


@pytest.mark.parametrize(
    ("size", "expected"), [(28, "small"), (32, "small"), ((32, 100), "small"), (64, "imagenet"), (224, "imagenet")]
)
def test_auto_stem_layout_follows_the_image_size(size, expected):
    assert resolve_stem_layout("auto", size) == expected
    model = create_model("resnet18", in_channels=3, image_size=size)
    assert isinstance(model.maxpool, nn.MaxPool2d) == (expected == "imagenet")
    assert model.conv1.kernel_size == ((7, 7) if expected == "imagenet" else (3, 3))
    assert model.conv1.stride == ((2, 2) if expected == "imagenet" else (1, 1))


@pytest.mark.parametrize(
    ("activation", "stem", "shortcut"),
    list(itertools.product(["relu", "selu"], ["conv", "inception"], ["zero_pad", "projection"])),
)
@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32)])
def test_every_switch_combination_trains(activation, stem, shortcut, in_channels, size):
    model = create_model(
        "resnet18",
        num_classes=10,
        in_channels=in_channels,
        image_size=size,
        activation=activation,
        stem=stem,
        shortcut=shortcut,
    )
    block_act = model.layer3[1].act
    assert isinstance(block_act, nn.SELU if activation == "selu" else nn.ReLU)
    before = model.fc.weight.detach().clone()
    loss = train_step(model, torch.randn(2, in_channels, size, size))
    assert torch.isfinite(torch.tensor(loss))
    assert not torch.equal(before, model.fc.weight)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(("stem", "layout", "size"), [("inception", "imagenet", 28), ("conv", "small", 64)])
def test_explicit_stem_layout_overrides_auto(stem, layout, size):
    model = create_model("resnet18", in_channels=1, image_size=size, stem=stem, stem_layout=layout)
    assert isinstance(model.maxpool, nn.MaxPool2d) == (layout == "imagenet")
    assert torch.isfinite(torch.tensor(train_step(model, torch.randn(2, 1, size, size))))


def test_resnet34_has_study_c_layout():
    model = create_model("resnet34", in_channels=1, image_size=28, activation="selu", stem="inception")
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert isinstance(model.conv1, InceptionStem) and model.conv1.out_channels == 64
    feats = {}
    for i in range(1, 5):
        getattr(model, f"layer{i}").register_forward_hook(lambda m, a, out, i=i: feats.__setitem__(i, out.shape))
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    assert feats == {1: (1, 64, 28, 28), 2: (1, 128, 14, 14), 3: (1, 256, 7, 7), 4: (1, 512, 4, 4)}


def test_inception_stem_branches():
    stem = InceptionStem(1)
    widths = [[m.out_channels for m in b if isinstance(m, nn.Conv2d)] for b in stem.branches]
    assert widths == [[4, 8, 16], [4, 8, 16], [8, 16, 32]]
    assert all(m.kernel_size == (3, 3) for m in stem.modules() if isinstance(m, nn.Conv2d))
    assert stem(torch.randn(2, 1, 28, 28)).shape == (2, 64, 28, 28)  # small: stride 1, 'same'
    assert InceptionStem(3, stride=2)(torch.randn(2, 3, 32, 32)).shape == (2, 64, 16, 16)
    large = create_model("resnet18", in_channels=3, image_size=224, stem="inception")  # imagenet: /2 conv, /2 pool
    large.eval()
    with torch.no_grad():
        assert large.maxpool(large.relu(large.bn1(large.conv1(torch.randn(1, 3, 64, 64))))).shape == (1, 64, 16, 16)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_zero_pad_shortcut_subsamples_and_appends_zero_channels(memory_format):
    shortcut = ZeroPadShortcut(64, 128, stride=2)
    assert count_parameters(shortcut) == 0
    x = torch.randn(2, 64, 7, 7).to(memory_format=memory_format)
    out = shortcut(x)
    assert out.shape == (2, 128, 4, 4)  # like a 3x3 stride-2 conv with padding 1 on an odd size
    assert torch.equal(out[:, :64], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 64:]) == 0
    assert out.is_contiguous(memory_format=memory_format)
    assert torch.equal(ZeroPadShortcut(64, 64)(x), x)


def test_channels_last_and_bf16_autocast():
    """The inception stem (torch.cat) and zero_pad shortcuts (F.pad) are the only non-standard ops: use both."""
    model = create_model("resnet18", in_channels=1, image_size=28, stem="inception", shortcut="zero_pad")
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        layouts = []
        for i in (2, 3, 4):  # 28 -> 14 -> 7 -> 4: the 7 -> 4 shortcut subsamples an odd map
            getattr(model, f"layer{i}")[0].downsample.register_forward_hook(
                lambda m, a, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last))
            )
        assert torch.allclose(model(x.to(memory_format=torch.channels_last)), reference, atol=1e-4)
        assert layouts == [True, True, True]
        small = torch.randn(2, 1, 14, 14).to(memory_format=torch.channels_last)  # bf16 is slow on AVX2 CPUs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(small).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = train_step(model, small)
    assert torch.isfinite(torch.tensor(loss))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    ("switch", "value"), [("activation", "gelu"), ("stem", "inceptoin"), ("stem_layout", "cifar"), ("shortcut", "B")]
)
def test_unknown_switch_value_is_one_line(switch, value):
    with pytest.raises(ValueError, match=f"resnet {switch} must be one of") as e:
        create_model("resnet18", **{switch: value})
    assert "\n" not in str(e.value) and value in str(e.value)
