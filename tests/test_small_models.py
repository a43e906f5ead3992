"""Studies D and E's small models: exact parameter counts, every switch builds and trains, both input shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgbench.models import count_parameters, create_model
from imgbench.run import train

from .conftest import needs_shared


def _train_step(model: nn.Module, in_channels: int, size: int, num_classes: int = 10) -> None:
    """One SGD step on random data: the loss is finite and every parameter gets a gradient."""
    torch.manual_seed(0)
    model.train()
    x = torch.randn(4, in_channels, size, size)
    y = torch.randint(0, num_classes, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize(
    ("name", "kwargs", "in_channels", "size", "params"),
    [
        ("lenet5", {}, 3, 32, 62_006),  # the PyTorch CIFAR tutorial's Net
        ("lenet5", {}, 1, 28, 44_426),  # flatten 16*4*4 = 256
        ("cifar_cnn", {}, 3, 32, 1_276_234),  # study D's improved Net, fc1 2048 -> 512
        ("cifar_cnn", {}, 1, 28, 1_276_234 - 2 * 9 * 32 - (2048 - 1152) * 512),  # 1 input channel, flatten 1152
        # single_conv: conv 32@3x3 valid (320) + dense 13*13*32 -> 128 (692,352) + dense 128 -> 10 (1,290)
        ("single_conv", {}, 1, 28, 693_962),
        ("single_conv", {"padding": "same"}, 1, 28, 320 + 14 * 14 * 32 * 128 + 128 + 1290),
        ("single_conv", {"kernel_size": 6}, 1, 28, 32 * 37 + 11 * 11 * 32 * 128 + 128 + 1290),
        ("single_conv", {"filters": 8}, 1, 28, 80 + 13 * 13 * 8 * 128 + 128 + 1290),
        ("single_conv", {"stacking": "stacked"}, 1, 28, 693_962),  # one conv layer: the same model either way
        # stacked: conv 32 (320) + conv 64 (18,496) on 26 -> 24, one pool to 12: dense 12*12*64 -> 128 (+128), 128 -> 10
        ("single_conv", {"conv_layers": 2, "stacking": "stacked"}, 1, 28, 18_816 + 12 * 12 * 64 * 128 + 1418),
        # 28 -> 26 -> 13 -> 11 -> 5: conv 32 then conv 64
        ("single_conv", {"conv_layers": 2}, 1, 28, 320 + (32 * 9 * 64 + 64) + 5 * 5 * 64 * 128 + 128 + 1290),
        ("single_conv", {"conv_layers": 2, "width_growth": 1}, 1, 28, 320 + 9248 + 5 * 5 * 32 * 128 + 128 + 1290),
    ],
)
def test_parameter_counts(name, kwargs, in_channels, size, params):
    model = create_model(name, num_classes=10, in_channels=in_channels, image_size=size, **kwargs)
    assert count_parameters(model) == params
    assert model(torch.zeros(2, in_channels, size, size)).shape == (2, 10)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "swish"])
@pytest.mark.parametrize(("in_channels", "size"), [(3, 32), (1, 28)])
def test_lenet5_activations_train(activation, in_channels, size):
    model = create_model("lenet5", num_classes=10, in_channels=in_channels, image_size=size, activation=activation)
    kinds = {type(m) for m in model.modules()}
    expected = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "swish": nn.SiLU}[activation]
    assert expected in kinds and (activation == "relu" or nn.ReLU not in kinds)
    assert sum(isinstance(m, expected) for m in model.modules()) == 4  # after conv1, conv2, fc1, fc2
    if activation == "leaky_relu":
        assert all(m.negative_slope == 0.01 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    _train_step(model, in_channels, size)


@pytest.mark.parametrize("dropout", [0.5, 0.0])
@pytest.mark.parametrize(("in_channels", "size"), [(3, 32), (1, 28)])
def test_cifar_cnn_trains(dropout, in_channels, size):
    model = create_model("cifar_cnn", num_classes=10, in_channels=in_channels, image_size=size, dropout=dropout)
    (drop,) = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drop.p == dropout
    _train_step(model, in_channels, size)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": 8},
        {"filters": 16},
        {"kernel_size": 2},
        {"kernel_size": 6},
        {"padding": "same"},
        {"padding": "same", "kernel_size": 2},
        {"activation": "tanh"},
        {"activation": "sigmoid"},
        {"conv_layers": 2},
        {"conv_layers": 3},
        {"conv_layers": 3, "kernel_size": 6, "padding": "same"},
        {"init": "torch"},
    ],
)
@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32)])
def test_single_conv_options_train(kwargs, in_channels, size):
    model = create_model("single_conv", num_classes=10, in_channels=in_channels, image_size=size, **kwargs)
    assert model(torch.zeros(2, in_channels, size, size)).shape == (2, 10)
    _train_step(model, in_channels, size)


def test_single_conv_same_padding_keeps_the_size_like_keras():
    """'same' with an even kernel pads one more pixel at the bottom/right (TensorFlow's rule), so 28 stays 28."""
    model = create_model("single_conv", kernel_size=2, padding="same")
    assert model.features(torch.zeros(1, 1, 28, 28)).shape == (1, 32, 14, 14)
    pad = model.features[0]
    assert isinstance(pad, nn.ZeroPad2d) and tuple(pad.padding) == (0, 1, 0, 1)


def test_single_conv_keras_init_and_activation_everywhere():
    model = create_model("single_conv", activation="tanh")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2  # conv and dense 128
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def _written_order(model: nn.Module) -> nn.Module:
    """A copy with every (max pool, activation) pair put back in the written order, activation first."""
    import copy

    written = copy.deepcopy(model)
    swapped = 0
    for seq in written.modules():
        if isinstance(seq, nn.Sequential):
            layers = list(seq)
            for i in range(len(layers) - 1):
                if isinstance(layers[i], nn.MaxPool2d) and isinstance(layers[i + 1], nn.ReLU | nn.LeakyReLU):
                    seq[i], seq[i + 1] = layers[i + 1], layers[i]
                    swapped += 1
    assert swapped > 0, "the model pools before none of its activations"
    return written


@pytest.mark.parametrize(
    ("name", "kwargs", "in_channels", "size"),
    [
        ("keras_cnn", {}, 1, 28),
        ("keras_cnn", {}, 3, 32),
        ("single_conv", {"conv_layers": 2}, 1, 28),
        ("lenet5", {"activation": "leaky_relu"}, 3, 32),
        ("cifar_cnn", {}, 1, 28),
    ],
)
def test_pooling_before_relu_gives_the_same_outputs_and_gradients(name, kwargs, in_channels, size):
    """act_pool runs ReLU / Leaky ReLU after the max pooling: exactly the function and gradients of the
    written order (activation, then pooling); the parameter names are unchanged."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=in_channels, image_size=size, **kwargs).eval()
    written = _written_order(model).eval()
    assert list(written.state_dict()) == list(model.state_dict())
    x = torch.randn(6, in_channels, size, size)
    x[:, :, :4] = 0  # flat regions: ties inside pooling windows
    outs, grads = [], []
    for net in (model, written):
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        out.square().sum().backward()
        outs.append(out)
        grads.append([xi.grad, *(p.grad for p in net.parameters())])
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_other_activations_keep_the_written_order():
    model = create_model("lenet5", activation="swish")
    kinds = [type(m) for m in model.features]
    assert kinds.index(nn.SiLU) < kinds.index(nn.MaxPool2d)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("single_conv", {"conv_layers": 3, "kernel_size": 6}, "too small for 3 conv layers"),
        ("single_conv", {"padding": "full"}, "padding must be 'valid' or 'same'"),
        ("single_conv", {"activation": "swish"}, "relu, tanh or sigmoid"),
        ("single_conv", {"init": "xavier"}, "init must be"),
        ("lenet5", {"activation": "gelu"}, "relu, leaky_relu or swish"),
        ("cifar_cnn", {"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_bad_options_are_one_line_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, num_classes=10, in_channels=1, image_size=28, **kwargs)


def test_lenet5_too_small_image():
    with pytest.raises(ValueError, match="too small for lenet5"):
        create_model("lenet5", in_channels=1, image_size=12)


@needs_shared
@pytest.mark.parametrize(
    "overrides",
    [
        ["model=lenet5", "model.activation=swish"],
        ["model=cifar_cnn"],
        ["model=single_conv", "model.conv_layers=2", "model.padding=same"],
    ],
)
def test_configs_train_end_to_end(train_cfg, overrides):
    """Each model config composes, validates and runs a training and a test batch (MNIST, 28x28x1)."""
    result = train(train_cfg(*overrides, "debug=fast_dev_run"))
    assert result["status"] == "finished" and 0 <= result["metrics"]["test/acc"] <= 1
