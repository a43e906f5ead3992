"""Studies A and B: AlexNet as published, torchvision's AlexNet, the small-image layout and the hash network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from imgbench.errors import CheckpointError
from imgbench.models import count_parameters, create_model
from imgbench.models.layers import MaxAvgPool2d, Maxout, paper_lrn

from .conftest import compose_cfg


def conv_maps(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Output shapes of every conv, in order (from forward hooks)."""
    shapes: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


def structure(name: str, **kwargs) -> nn.Module:
    """The model on the meta device: its layers and parameter count without the cost of real weights."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def layer_kinds(features: nn.Sequential) -> list[str]:
    names = {nn.Conv2d: "conv", nn.ReLU: "relu", nn.LocalResponseNorm: "lrn", nn.MaxPool2d: "max", nn.BatchNorm2d: "bn"}
    return [names.get(type(m), type(m).__name__) for m in features]


# ---------------------------------------------------------------------------- study B: alexnet


@pytest.mark.parametrize("size", [224, 227])
def test_alexnet_as_published(size):
    model = create_model("alexnet", num_classes=1000, image_size=size)
    assert count_parameters(model) == 60_965_224
    # 55x55 after conv1 (224 with padding 2, or 227), then 27, 13, 13, 13: FC6 sees 256 x 6 x 6
    c1 = 55 + (size == 227)
    maps = conv_maps(model, torch.zeros(2, 3, size, size))
    assert maps == [(96, c1, c1), (256, 27, 27), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 1000)


def test_alexnet_layers_groups_and_switches():
    model = structure("alexnet")
    # LRN after the ReLU of conv1 and conv2, overlapping max pooling after both LRNs and after conv5
    assert layer_kinds(model.features) == (
        ["conv", "relu", "lrn", "max", "conv", "relu", "lrn", "max"] + ["conv", "relu"] * 3 + ["max"]
    )
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    one_gpu = structure("alexnet", groups=1)
    assert count_parameters(one_gpu) == 62_378_344  # conv2, conv4, conv5 see all channels
    ablated = structure("alexnet", lrn=False, overlap=False)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in ablated.modules())
    assert {m.kernel_size for m in ablated.modules() if isinstance(m, nn.MaxPool2d)} == {2}
    assert count_parameters(ablated) == 60_965_224  # 2x2/2 pooling gives the same 27, 13, 6 maps


def test_lrn_follows_the_papers_formula():
    x = torch.randn(2, 9, 4, 4) * 10
    lrn = paper_lrn()
    want = torch.empty_like(x)
    for i in range(9):
        lo, hi = max(0, i - 2), min(8, i + 2)
        want[:, i] = x[:, i] / (2 + 1e-4 * (x[:, lo : hi + 1] ** 2).sum(1)) ** 0.75
    torch.testing.assert_close(lrn(x), want)


def test_alexnet_paper_init():
    torch.manual_seed(0)
    model = create_model("alexnet")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    layers = convs + fcs
    for m in layers:
        assert m.weight.mean().abs() < 2e-3 and m.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert [m.bias.unique().tolist() for m in layers] == [[0], [1], [0], [1], [1], [1], [1], [0]]
    assert (create_model("alexnet", init="torch").features[0].bias != 0).any()


# ---------------------------------------------------------------------------- torchvision's alexnet


def test_alexnet_tv_is_torchvisions_alexnet():
    ours = create_model("alexnet_tv", num_classes=7)
    theirs = torchvision.models.alexnet(num_classes=7)
    assert count_parameters(structure("alexnet_tv")) == 61_100_840
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=0)
    theirs.load_state_dict(ours.state_dict(), strict=True)  # and back


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory) -> tuple[nn.Module, Path]:
    """A torchvision AlexNet (random weights standing in for ImageNet's) and its state_dict file."""
    torch.manual_seed(0)
    imagenet = torchvision.models.alexnet().eval()
    path = tmp_path_factory.mktemp("weights") / "alexnet.pth"
    torch.save(imagenet.state_dict(), path)
    return imagenet, path


def test_alexnet_tv_pretrained_files(tmp_path, imagenet_weights):
    imagenet, path = imagenet_weights
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        same = create_model("alexnet_tv", pretrained=str(path)).eval()
        torch.testing.assert_close(same(x), imagenet(x), rtol=0, atol=0)
    # fine-tuning to 10 classes from an imgbench checkpoint (a module state_dict: the net's keys start with net.)
    ckpt = tmp_path / "last.ckpt"
    module_state = {f"net.{k}": v for k, v in imagenet.state_dict().items()}
    torch.save({"state_dict": {**module_state, "model.x": torch.zeros(1)}}, ckpt)
    with torch.no_grad():
        tuned = create_model("alexnet_tv", num_classes=10, pretrained=str(ckpt)).eval()
        torch.testing.assert_close(tuned.features(x), imagenet.features(x), rtol=0, atol=0)
        assert tuned(x).shape == (2, 10)  # everything but the last layer comes from the file
    assert torch.equal(tuned.classifier[4].weight, imagenet.classifier[4].weight)


def test_alexnet_tv_pretrained_errors(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="do not exist") as e:
        create_model("alexnet_tv", pretrained=str(tmp_path / "missing.pth"))
    assert "\n" not in str(e.value)
    wrong = tmp_path / "keras.pth"
    torch.save(create_model("keras_cnn").state_dict(), wrong)
    with pytest.raises(CheckpointError, match="do not fit alexnet_tv"):
        create_model("alexnet_tv", pretrained=str(wrong))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        create_model("alexnet_tv", pretrained=str(junk))

    # torchvision's named weights: offline, the download fails with a one-line error naming the URL
    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CheckpointError, match=r"network unreachable.*alexnet-owt-7be5be79\.pth"):
        create_model("alexnet_tv", pretrained="IMAGENET1K_V1")


def test_alexnet_tv_on_small_images_needs_a_resize():
    with pytest.raises(ValueError, match="resize_to=224"):
        create_model("alexnet_tv", num_classes=10, in_channels=3, image_size=32)
    model = create_model("alexnet_tv", num_classes=10, in_channels=1, image_size=28, resize_to=224)
    assert conv_maps(model, torch.zeros(2, 1, 28, 28))[0] == (64, 55, 55)
    assert model.state_dict().keys() == torchvision.models.alexnet().state_dict().keys()


# ---------------------------------------------------------------------------- small images and resizing


@pytest.mark.parametrize(
    ("name", "channels", "size"), [("alexnet", 1, 28), ("alexnet", 3, 32), ("alexnet_hash", 1, 28)]
)
def test_small_layout_is_chosen_by_image_size(name, channels, size):
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size)
    maps = conv_maps(model, torch.zeros(2, channels, size, size))
    # same 5 conv layers and widths; conv1 5x5 stride 1, padded pools: 32 -> 16 -> 8 -> 4, 28 -> 14 -> 7 -> 4
    assert [m[0] for m in maps] == [96, 256, 384, 384, 256]
    assert [m[1] for m in maps] == [size, size // 2, (size // 2 + 1) // 2, (size // 2 + 1) // 2, (size // 2 + 1) // 2]
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == (5, 5) and first.stride == (1, 1) and first.in_channels == channels
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 10)
    with pytest.raises(ValueError, match="too small for the ImageNet layout"):
        create_model(name, num_classes=10, in_channels=channels, image_size=size, layout="imagenet")


def test_resize_to_feeds_the_imagenet_layout():
    model = create_model("alexnet", num_classes=10, in_channels=1, image_size=28, resize_to=224)
    assert conv_maps(model, torch.zeros(2, 1, 28, 28))[0] == (96, 55, 55)  # 3-channel 224 input to conv1
    reference = structure("alexnet", num_classes=10, in_channels=3, image_size=224)
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    # the resize is bilinear and the gray channel is replicated
    x = torch.rand(2, 1, 28, 28)
    out = model.input(x)
    want = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    torch.testing.assert_close(out, want)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_hash"])
def test_small_layout_trains_end_to_end(name):
    """One SGD step: every parameter gets a finite, non-zero gradient and the loss on the batch goes down."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=3, image_size=32, init="torch", dropout=0.0)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for name_, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name_
    opt.step()
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(x), y) < loss


# ---------------------------------------------------------------------------- study A: alexnet_hash


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (3, 224)])
def test_alexnet_hash_shapes_and_codes(channels, size):
    torch.manual_seed(0)
    model = create_model("alexnet_hash", num_classes=10, in_channels=channels, image_size=size).eval()
    assert model.hash_bits == 48
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        logits, h = model.forward_with_codes(x)
        assert logits.shape == (2, 10) and h.shape == (2, 48)
        assert ((h > 0) & (h < 1)).all()
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(model.encode(x), h)
        torch.testing.assert_close(model.fc8(h), logits)  # FC8 sits on H


def test_alexnet_hash_defaults_are_the_final_model():
    model = structure("alexnet_hash", num_classes=10, image_size=224)
    assert count_parameters(model) == 48_578_458
    pools = [m for m in model.features if isinstance(m, MaxAvgPool2d)]
    assert len(pools) == 3 and not any(isinstance(m, nn.MaxPool2d) for m in model.features)
    assert isinstance(model.fc6[0], Maxout) and model.fc6[0].pieces == 2 and model.fc6[0].out_features == 2048
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert (model.hash.in_features, model.hash.out_features, model.fc8.in_features) == (2048, 48, 48)
    # maxout k = 2 keeps FC6's parameter count: 2048 units x 2 pieces = 4096 ReLU units
    relu = structure("alexnet_hash", num_classes=10, image_size=224, fc_activation="relu")
    assert count_parameters(model.fc6) == count_parameters(relu.fc6) == 9216 * 4096 + 4096
    assert relu.hash.in_features == 4096 and not any(isinstance(m, Maxout) for m in relu.modules())


def test_alexnet_hash_switches():
    bn = structure("alexnet_hash", in_channels=1, image_size=28, bn=True, pooling="max")
    assert layer_kinds(bn.features)[:5] == ["conv", "bn", "relu", "lrn", "max"]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5
    assert sum(isinstance(m, nn.MaxPool2d) for m in bn.features) == 3
    k3 = structure("alexnet_hash", in_channels=1, image_size=28, maxout_pieces=3, hash_bits=12)
    assert k3.fc7[0].linear.out_features == 2048 * 3 and k3.hash.out_features == 12
    plain = create_model("alexnet_hash", in_channels=1, image_size=28, hash_bits=0)
    assert plain.hash is None and plain.fc8.in_features == 2048
    assert plain(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(RuntimeError, match="no hash layer"):
        plain.encode(torch.zeros(1, 1, 28, 28))
    tv = structure("alexnet_hash", image_size=224, base="torchvision")
    assert [m.out_channels for m in tv.features if isinstance(m, nn.Conv2d)] == [64, 192, 384, 256, 256]
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())
    for bad in ({"pooling": "avg"}, {"fc_activation": "tanh"}, {"base": "vgg"}, {"init": "xavier"}):
        with pytest.raises(ValueError):
            structure("alexnet_hash", in_channels=1, image_size=28, **bad)


def test_alexnet_hash_paper_init():
    model = create_model("alexnet_hash", in_channels=1, image_size=28, init="paper")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [model.fc6[0].linear, model.fc7[0].linear, model.hash, model.fc8]
    assert [m.bias.unique().tolist() for m in convs + fcs] == [[0], [1], [0], [1], [1], [1], [1], [0], [0]]
    assert model.fc6[0].linear.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_maxout_and_maxave_pooling():
    m = Maxout(5, 3, pieces=2)
    x = torch.randn(4, 5)
    z = m.linear(x)
    torch.testing.assert_close(m(x), torch.maximum(z[:, 0::2], z[:, 1::2]))
    pool = MaxAvgPool2d(3, 2, 1)
    x = torch.randn(2, 4, 9, 9)
    want = nn.functional.max_pool2d(x, 3, 2, 1) + nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    torch.testing.assert_close(pool(x), want)


def test_alexnet_hash_from_torchvision_weights(imagenet_weights):
    imagenet, path = imagenet_weights
    model = create_model(
        "alexnet_hash", in_channels=1, image_size=28, resize_to=224, base="torchvision", pretrained=path
    )
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    for ours, theirs in zip(convs, [m for m in imagenet.features if isinstance(m, nn.Conv2d)]):
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    assert torch.equal(model.fc6[0].linear.weight, imagenet.classifier[1].weight)  # same shape with k = 2
    assert model.fc7[0].linear.weight.shape != imagenet.classifier[4].weight.shape  # 2048 -> 2x2048: stays random
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(CheckpointError, match="base=torchvision"):
        create_model("alexnet_hash", image_size=224, pretrained=path)  # the paper's convs do not fit
    with pytest.raises(ValueError, match="resize_to=224"):
        create_model("alexnet_hash", image_size=32, base="torchvision", pretrained=path)


def test_model_configs_build_their_models():
    """Every alexnet*.yaml option is a factory argument and the defaults build (small images, to stay fast)."""
    for name in ("alexnet", "alexnet_tv", "alexnet_hash"):
        cfg = OmegaConf.to_container(compose_cfg([f"model={name}", "data=cifar10"]).model, resolve=True)
        assert cfg.pop("_target_") == f"imgbench.models.{name}"
        kwargs = {"resize_to": 64} if name == "alexnet_tv" else {}
        model = create_model(name, num_classes=10, in_channels=3, image_size=32, **{**cfg, **kwargs})
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_alexnet_hash_code_length_follows_the_dataset():
    """The paper's code lengths: 128 bits on CIFAR-100, 48 elsewhere; an explicit value wins."""
    bits = {d: compose_cfg(["model=alexnet_hash", f"data={d}"]).model.hash_bits for d in ("cifar100", "mnist")}
    assert bits == {"cifar100": 128, "mnist": 48}
    assert compose_cfg(["model=alexnet_hash", "data=cifar100", "model.hash_bits=64"]).model.hash_bits == 64
