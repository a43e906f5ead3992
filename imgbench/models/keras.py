"""Study E (CNN versus FCN thesis): the Keras 2 models, rebuilt layer for layer.

Every layer has a bias, there is no batch normalisation, and the default initialisation is Keras's
(Glorot-uniform weights, zero biases; ``init="torch"`` keeps PyTorch's). The models return logits;
Keras's final softmax lives in the cross-entropy loss. The MNIST or CIFAR layout of the thesis follows
the input: one channel selects the MNIST variant, three channels the CIFAR one (``variant`` overrides).

Parameter counts (10 classes): MNIST CNN 98,442, MNIST FCN 74,362, CIFAR CNN 553,514, CIFAR FCN 79,184.

``single_conv`` is the small network of the thesis's hyperparameter studies on MNIST (filters, kernel size,
padding, activation, number of conv layers). The thesis gives only "conv layer(s) + 2x2 max pooling"; the rest
follows its own CNN and Keras's MNIST example (see :class:`SingleConvNet`).
"""

from __future__ import annotations

from torch import nn

from .layers import Dropout, act_pool, conv_out, keras_init_, pair
from .layers import activation as make_activation
from .registry import register_model

__all__ = ["KerasCNN", "KerasFCN", "SingleConvNet", "keras_cnn", "keras_fcn", "single_conv"]


def _variant(variant: str, in_channels: int) -> str:
    if variant == "auto":
        return "mnist" if in_channels == 1 else "cifar"
    if variant not in ("mnist", "cifar"):
        raise ValueError(f"keras variant must be auto, mnist or cifar, got '{variant}'")
    return variant


class KerasCNN(nn.Module):
    """Three conv(3x3, same)-ReLU-maxpool(2)-dropout(0.25) stages, then dense-ReLU-dropout(0.5)-dense.

    The ReLUs run after the pooling (same function and gradients, less work: see :func:`act_pool`)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        widths: tuple[int, ...] = (16, 32, 64),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        h, w = pair(image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(c, width, 3, padding=1),
                *act_pool(nn.ReLU(inplace=True), nn.MaxPool2d(2)),  # floor rounding like Keras's: 7x7 -> 3x3
                Dropout(0.25),
            ]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(inplace=True),
            Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class KerasFCN(nn.Module):
    """Pairs of conv(3x3, same) and conv(3x3, stride 2, valid) with dropout(0.25), then a conv that
    covers the whole remaining map and outputs one logit per class (no dense layer)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        widths: tuple[int, ...] = (16, 32, 64),
        last_width: int = 64,
    ) -> None:
        super().__init__()
        h, w = pair(image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for i, width in enumerate(widths):
            down = last_width if i == len(widths) - 1 else width
            layers += [
                nn.Conv2d(c, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, down, 3, stride=2),
                nn.ReLU(inplace=True),
                Dropout(0.25),
            ]
            c, h, w = down, conv_out(h, 3, 2), conv_out(w, 3, 2)
        if h < 1 or w < 1:
            raise ValueError(f"image_size {image_size} is too small for keras_fcn")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Conv2d(c, num_classes, (h, w)), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


class SingleConvNet(nn.Module):
    """``conv_layers`` stages of conv(``kernel_size``, ``padding``)-act-maxpool(2)-dropout(0.25), then
    flatten, dense(128)-act-dropout(0.5), dense(classes).

    The thesis specifies only the conv layers and the 2x2 pooling. The rest is the standard Keras reading: the
    dropouts, the dense 128 layer and the width doubling per stage (``filters``, ``2 * filters``, ...) are those
    of the thesis's own MNIST CNN and of Keras's ``mnist_cnn.py`` example; the studied activation replaces ReLU
    everywhere (conv and dense layers). Pooling rounds down like Keras's 'valid' pooling.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        filters: int = 32,
        kernel_size: int = 3,
        padding: str = "valid",
        activation: str = "relu",
        conv_layers: int = 1,
        width_growth: int = 2,
        hidden: int = 128,
        conv_dropout: float = 0.25,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"single_conv padding must be 'valid' or 'same', got '{padding}'")
        if conv_layers < 1 or filters < 1 or kernel_size < 1 or width_growth < 1:
            raise ValueError("single_conv conv_layers, filters, kernel_size and width_growth must be >= 1")
        h, w = pair(image_size)
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(conv_layers):
            width = filters * width_growth**i
            if padding == "valid":
                h, w = conv_out(h, kernel_size), conv_out(w, kernel_size)
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(
                    f"single_conv: image_size {image_size} is too small for {conv_layers} conv layers with "
                    f"kernel {kernel_size} and padding '{padding}'; use fewer layers, a smaller kernel or 'same'"
                )
            layers += [
                *_conv(c, width, kernel_size, padding),
                *act_pool(make_activation(activation)),
                Dropout(conv_dropout),
            ]
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            make_activation(activation),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv(c_in: int, c_out: int, kernel: int, padding: str) -> list[nn.Module]:
    """A stride-1 conv with Keras's 'valid' or 'same' padding (an even kernel pads one more at the bottom/right)."""
    if padding == "valid":
        return [nn.Conv2d(c_in, c_out, kernel)]
    before, after = (kernel - 1) // 2, kernel // 2
    if before == after:
        return [nn.Conv2d(c_in, c_out, kernel, padding=before)]
    return [nn.ZeroPad2d((before, after, before, after)), nn.Conv2d(c_in, c_out, kernel)]


@register_model
def keras_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 28,
    variant: str = "auto",
    init: str = "keras",
) -> KerasCNN:
    """Study E's CNN: dense 128 (MNIST variant, 98,442 params) or dense 512 (CIFAR variant, 553,514)."""
    hidden = 128 if _variant(variant, in_channels) == "mnist" else 512
    model = KerasCNN(num_classes, in_channels, image_size, hidden=hidden)
    return _init(model, init)


@register_model
def keras_fcn(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 28,
    variant: str = "auto",
    init: str = "keras",
) -> KerasFCN:
    """Study E's FCN: last strided conv 64 wide (MNIST, 74,362 params) or 66 wide (CIFAR, 79,184)."""
    last_width = 64 if _variant(variant, in_channels) == "mnist" else 66
    model = KerasFCN(num_classes, in_channels, image_size, last_width=last_width)
    return _init(model, init)


@register_model
def single_conv(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 28,
    filters: int = 32,
    kernel_size: int = 3,
    padding: str = "valid",
    activation: str = "relu",
    conv_layers: int = 1,
    width_growth: int = 2,
    init: str = "keras",
) -> SingleConvNet:
    """Study E's hyperparameter-study network; defaults are the thesis's nominal setting (693,962 params on MNIST)."""
    if activation not in ("relu", "tanh", "sigmoid"):
        raise ValueError(f"single_conv activation must be relu, tanh or sigmoid, got '{activation}'")
    model = SingleConvNet(
        num_classes,
        in_channels,
        image_size,
        filters=filters,
        kernel_size=kernel_size,
        padding=padding,
        activation=activation,
        conv_layers=conv_layers,
        width_growth=width_growth,
    )
    return _init(model, init)


def _init(model: nn.Module, init: str) -> nn.Module:
    if init == "keras":
        keras_init_(model)
    elif init != "torch":
        raise ValueError(f"init must be 'keras' or 'torch', got '{init}'")
    return model
