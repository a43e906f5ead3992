"""Study D (a CNN study on CIFAR-10): ``lenet5``, the original Net, layer for layer.

The original Net is the PyTorch CIFAR-10 tutorial's LeNet-5 shape (the paper's figure with the widths is lost;
its code names conv1, conv2, ``x.view(-1, 16*5*5)``, fc1, fc2, fc3). Its activation is a switch, because the
paper compares ReLU, Leaky ReLU (slope 0.01) and Swish on it. It keeps PyTorch's default initialisation, as
the paper's PyTorch code does. Study D's improved Net is :mod:`imgbench.models.cifar_cnn`.

Parameter count (32x32 RGB, 10 classes): 62,006.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ArgumentError
from .arguments import check_choice, check_data_shape
from .layers import act_pool, pooled_size
from .layers import activation as make_activation
from .registry import build_model, register_model

__all__ = ["ACTIVATIONS", "LeNet5", "lenet5"]

ACTIVATIONS = ("relu", "leaky_relu", "swish")


class LeNet5(nn.Module):
    """conv(5x5, 6)-act-pool2, conv(5x5, 16)-act-pool2, flatten, fc 120-act, fc 84-act, fc classes.

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side (at least 16).
        activation: relu | leaky_relu | swish, after every conv and hidden fc layer.

    Raises:
        ArgumentError: A bad argument (named by the error), or an image below 16x16.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        size = check_data_shape(num_classes, in_channels, image_size)
        check_choice("activation", activation, ACTIVATIONS, prefix="lenet5 ")
        h, w = (pooled_size(s, 5, 2) for s in size)
        if h < 1 or w < 1:
            raise ArgumentError("image_size", f"image_size {image_size} is too small for lenet5 (needs at least 16x16)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            *act_pool(make_activation(activation)),  # relu and leaky_relu after the pooling: see act_pool
            nn.Conv2d(6, 16, 5),
            *act_pool(make_activation(activation)),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * h * w, 120),  # 16*5*5 = 400 for 32x32, 16*4*4 = 256 for 28x28
            make_activation(activation),
            nn.Linear(120, 84),
            make_activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(LeNet5)
def lenet5(**kwargs: Any) -> LeNet5:
    """Study D's original Net (62,006 params on CIFAR-10); ``activation``: relu | leaky_relu | swish.

    Args:
        **kwargs: The arguments of :class:`LeNet5`.

    Returns:
        The model.
    """
    return build_model(LeNet5, **kwargs)
