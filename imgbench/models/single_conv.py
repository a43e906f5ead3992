"""Study E's ``single_conv``: the small network of the thesis's hyperparameter studies on MNIST.

The studies vary the filters, kernel size, padding, activation and number of conv layers. The thesis gives
only "conv layer(s) + 2x2 max pooling"; the rest follows its own CNN and Keras's MNIST example (see
:class:`SingleConvNet`). Keras's initialisation by default, like :mod:`imgbench.models.keras`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ArgumentError
from .arguments import check_choice, check_data_shape, check_int
from .keras import apply_init_, check_init
from .layers import Dropout, act_pool, conv_out
from .layers import activation as make_activation
from .registry import build_model, register_model

__all__ = ["SingleConvNet", "single_conv"]

ACTIVATIONS = ("relu", "tanh", "sigmoid")
PADDINGS = ("valid", "same")
STACKINGS = ("stages", "stacked")


def _conv(c_in: int, c_out: int, kernel: int, padding: str) -> list[nn.Module]:
    """A stride-1 conv with Keras's 'valid' or 'same' padding (an even kernel pads one more at the bottom/right)."""
    if padding == "valid":
        return [nn.Conv2d(c_in, c_out, kernel)]
    before, after = (kernel - 1) // 2, kernel // 2
    if before == after:
        return [nn.Conv2d(c_in, c_out, kernel, padding=before)]
    return [nn.ZeroPad2d((before, after, before, after)), nn.Conv2d(c_in, c_out, kernel)]


class SingleConvNet(nn.Module):
    """Conv stages, then a dense head: study E's small network for the hyperparameter studies.

    ``conv_layers`` stages of conv(``kernel_size``, ``padding``)-act-maxpool(2)-dropout(0.25) (``stages``), or
    ``conv_layers`` conv-act layers then one maxpool(2)-dropout(0.25) (``stacked``, Keras's ``mnist_cnn.py`` order);
    then flatten, dense(128)-act-dropout(0.5), dense(classes). The two agree for one conv layer.

    The thesis specifies only the conv layers and the 2x2 pooling. The rest is the standard Keras reading: the
    dropouts, the dense 128 layer and the width doubling per stage (``filters``, ``2 * filters``, ...) are those
    of the thesis's own MNIST CNN and of Keras's ``mnist_cnn.py`` example; the studied activation replaces ReLU
    everywhere (conv and dense layers). Pooling rounds down like Keras's 'valid' pooling.

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side.
        filters: Filters of the first conv layer.
        kernel_size: Square kernel of every conv layer.
        padding: valid | same (Keras's rule: an even kernel pads one more pixel at the bottom/right).
        activation: relu | tanh | sigmoid, in the conv and dense layers.
        conv_layers: Conv + pool stages.
        width_growth: Conv layer ``i`` has ``filters * width_growth**i`` filters.
        stacking: stages (each conv layer pooled) | stacked (one pool after the last conv layer).
        init: keras (Glorot-uniform weights, zero biases) | torch (PyTorch's defaults).

    Raises:
        ArgumentError: A bad argument (named by the error), or an image too small for the stages.
    """

    hidden = 128
    conv_dropout = 0.25
    dropout = 0.5

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
        stacking: str = "stages",
        init: str = "keras",
    ) -> None:
        super().__init__()
        h, w = check_data_shape(num_classes, in_channels, image_size)
        check_choice("activation", activation, ACTIVATIONS, prefix="single_conv ")
        message = f"single_conv padding must be 'valid' or 'same', got '{padding}'"
        check_choice("padding", padding, PADDINGS, message=message)
        check_choice("stacking", stacking, STACKINGS, prefix="single_conv ")
        for name, value in (
            ("conv_layers", conv_layers),
            ("filters", filters),
            ("kernel_size", kernel_size),
            ("width_growth", width_growth),
        ):
            check_int(name, value, prefix="single_conv ")
        check_init(init)
        stacked = stacking == "stacked"
        for i in range(conv_layers):
            if padding == "valid":
                h, w = conv_out(h, kernel_size), conv_out(w, kernel_size)
            if not stacked or i == conv_layers - 1:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ArgumentError(
                    "image_size",
                    f"single_conv: image_size {image_size} is too small for {conv_layers} conv layers with "
                    f"kernel {kernel_size} and padding '{padding}'; use fewer layers, a smaller kernel or 'same'",
                )
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(conv_layers):
            width = filters * width_growth**i
            layers += _conv(c, width, kernel_size, padding)
            if stacked and i < conv_layers - 1:
                layers.append(make_activation(activation))
            else:
                layers += [*act_pool(make_activation(activation)), Dropout(self.conv_dropout)]
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, self.hidden),
            make_activation(activation),
            Dropout(self.dropout),
            nn.Linear(self.hidden, num_classes),
        )
        apply_init_(self, init)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(SingleConvNet)
def single_conv(**kwargs: Any) -> SingleConvNet:
    """Study E's hyperparameter-study network; defaults are the thesis's nominal setting (693,962 params on MNIST).

    Args:
        **kwargs: The arguments of :class:`SingleConvNet`.

    Returns:
        The model.
    """
    return build_model(SingleConvNet, **kwargs)
