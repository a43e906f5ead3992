"""Study E (CNN versus FCN thesis): the Keras 2 models ``keras_cnn`` and ``keras_fcn``, rebuilt layer for layer.

Every layer has a bias, there is no batch normalisation, and the default initialisation is Keras's
(Glorot-uniform weights, zero biases; ``init="torch"`` keeps PyTorch's). The models return logits;
Keras's final softmax lives in the cross-entropy loss. The MNIST or CIFAR layout of the thesis follows
the input: one channel selects the MNIST variant, three channels the CIFAR one (``variant`` overrides).

Parameter counts (10 classes): MNIST CNN 98,442, MNIST FCN 74,362, CIFAR CNN 553,514, CIFAR FCN 79,184.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ArgumentError
from .arguments import check_choice, check_data_shape
from .layers import Dropout, act_pool, conv_out, keras_init_
from .registry import build_model, register_model

__all__ = ["INITS", "VARIANTS", "KerasCNN", "KerasFCN", "apply_init_", "check_init", "keras_cnn", "keras_fcn"]

VARIANTS = ("auto", "mnist", "cifar")
INITS = ("keras", "torch")


def _variant(variant: str, in_channels: int) -> str:
    """Resolve ``variant``: ``auto`` -> ``mnist`` for one channel, ``cifar`` otherwise.

    Raises:
        ArgumentError: An unknown variant.
    """
    check_choice("variant", variant, VARIANTS, prefix="keras ")
    if variant == "auto":
        return "mnist" if in_channels == 1 else "cifar"
    return variant


def check_init(init: str) -> str:
    """Check the ``init`` switch of the Keras models (keras | torch).

    Args:
        init: The value to check.

    Returns:
        ``init``.

    Raises:
        ArgumentError: Another value.
    """
    return check_choice("init", init, INITS)


def apply_init_(model: nn.Module, init: str) -> None:
    """Keras's initialisation (:func:`keras_init_`) for ``init="keras"``; ``"torch"`` keeps PyTorch's.

    Args:
        model: The model to initialise, in place.
        init: keras | torch.
    """
    if init == "keras":
        keras_init_(model)


class KerasCNN(nn.Module):
    """Three conv(3x3, same)-ReLU-maxpool(2)-dropout(0.25) stages, then dense-ReLU-dropout(0.5)-dense.

    Widths 16, 32, 64; the dense layer has 128 units (MNIST variant) or 512 (CIFAR variant). The ReLUs run after
    the pooling (same function and gradients, less work: see :func:`~imgbench.models.layers.act_pool`).

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side.
        variant: auto (MNIST for one channel, CIFAR otherwise) | mnist | cifar.
        init: keras (Glorot-uniform weights, zero biases) | torch (PyTorch's defaults).

    Raises:
        ArgumentError: A bad argument (named by the error).
    """

    widths = (16, 32, 64)
    hidden = {"mnist": 128, "cifar": 512}

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        variant: str = "auto",
        init: str = "keras",
    ) -> None:
        super().__init__()
        h, w = check_data_shape(num_classes, in_channels, image_size)
        hidden = self.hidden[_variant(variant, in_channels)]
        check_init(init)
        layers: list[nn.Module] = []
        c = in_channels
        for width in self.widths:
            layers += [
                nn.Conv2d(c, width, 3, padding=1),
                *act_pool(nn.ReLU(inplace=True), nn.MaxPool2d(2)),  # floor rounding like Keras's: 7x7 -> 3x3
                Dropout(0.25),
            ]
            c, h, w = width, h // 2, w // 2
        if h < 1 or w < 1:
            raise ArgumentError("image_size", f"image_size {image_size} is too small for keras_cnn (needs 8x8)")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(inplace=True),
            Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )
        apply_init_(self, init)

    def forward(self, x):
        return self.classifier(self.features(x))


class KerasFCN(nn.Module):
    """Pairs of conv(3x3, same) and conv(3x3, stride 2, valid) with dropout(0.25), then a conv head.

    The head is a conv that covers the whole remaining map and outputs one logit per class (no dense layer).
    Widths 16, 32, 64; the last strided conv is 64 wide (MNIST variant) or 66 (CIFAR variant).

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side.
        variant: auto (MNIST for one channel, CIFAR otherwise) | mnist | cifar.
        init: keras (Glorot-uniform weights, zero biases) | torch (PyTorch's defaults).

    Raises:
        ArgumentError: A bad argument (named by the error).
    """

    widths = (16, 32, 64)
    last_width = {"mnist": 64, "cifar": 66}

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        variant: str = "auto",
        init: str = "keras",
    ) -> None:
        super().__init__()
        h, w = check_data_shape(num_classes, in_channels, image_size)
        last_width = self.last_width[_variant(variant, in_channels)]
        check_init(init)
        for _ in self.widths:
            h, w = conv_out(h, 3, 2), conv_out(w, 3, 2)
        if h < 1 or w < 1:
            raise ArgumentError("image_size", f"image_size {image_size} is too small for keras_fcn")
        layers: list[nn.Module] = []
        c = in_channels
        for i, width in enumerate(self.widths):
            down = last_width if i == len(self.widths) - 1 else width
            layers += [
                nn.Conv2d(c, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, down, 3, stride=2),
                nn.ReLU(inplace=True),
                Dropout(0.25),
            ]
            c = down
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Conv2d(c, num_classes, (h, w)), nn.Flatten())
        apply_init_(self, init)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(KerasCNN)
def keras_cnn(**kwargs: Any) -> KerasCNN:
    """Study E's CNN: dense 128 (MNIST variant, 98,442 params) or dense 512 (CIFAR variant, 553,514).

    Args:
        **kwargs: The arguments of :class:`KerasCNN`.

    Returns:
        The model.
    """
    return build_model(KerasCNN, **kwargs)


@register_model(KerasFCN)
def keras_fcn(**kwargs: Any) -> KerasFCN:
    """Study E's FCN: last strided conv 64 wide (MNIST, 74,362 params) or 66 wide (CIFAR, 79,184).

    Args:
        **kwargs: The arguments of :class:`KerasFCN`.

    Returns:
        The model.
    """
    return build_model(KerasFCN, **kwargs)
