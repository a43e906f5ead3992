"""Study D (a CNN study on CIFAR-10): ``cifar_cnn``, the improved Net, printed in full in the paper.

Three conv layers (32, 64, 128; 3x3, padding 1), each with ReLU and 2x2 max pooling, then fc 2048 -> 512 -> 256
-> classes with dropout after fc1's ReLU. PyTorch's default initialisation, as in the paper's PyTorch code.
Study D's original Net is :mod:`imgbench.models.lenet5`.

Parameter count (32x32 RGB, 10 classes): 1,276,234.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ArgumentError
from .arguments import check_data_shape, check_fraction
from .layers import act_pool, pooled_size
from .layers import activation as make_activation
from .registry import build_model, register_model

__all__ = ["CifarCNN", "cifar_cnn"]


class CifarCNN(nn.Module):
    """Three conv(3x3, padding 1)-ReLU-pool2 stages (32, 64, 128), then fc 512-ReLU-dropout, fc 256-ReLU, fc classes.

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side (at least 8).
        dropout: Dropout after fc1's ReLU, in [0, 1) (the paper's change against overfitting; 0 for the ablation).

    Raises:
        ArgumentError: A bad argument (named by the error), or an image below 8x8.
    """

    widths = (32, 64, 128)
    hidden = (512, 256)

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        size = check_data_shape(num_classes, in_channels, image_size)
        check_fraction("dropout", dropout, prefix="cifar_cnn ")
        h, w = (pooled_size(s, 3, len(self.widths), padding=1) for s in size)
        if h < 1 or w < 1:
            raise ArgumentError(
                "image_size", f"image_size {image_size} is too small for cifar_cnn (needs at least 8x8)"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for width in self.widths:
            layers += [nn.Conv2d(c, width, 3, padding=1), *act_pool(make_activation("relu"))]
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, self.hidden[0]),  # 128*4*4 = 2048 for 32x32
            make_activation("relu"),
            nn.Dropout(dropout),  # the paper's only change against overfitting: after fc1's ReLU
            nn.Linear(self.hidden[0], self.hidden[1]),
            make_activation("relu"),
            nn.Linear(self.hidden[1], num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(CifarCNN)
def cifar_cnn(**kwargs: Any) -> CifarCNN:
    """Study D's improved Net: 3 conv + dropout 0.5 after fc1 (1,276,234 params on CIFAR-10).

    Args:
        **kwargs: The arguments of :class:`CifarCNN`.

    Returns:
        The model.
    """
    return build_model(CifarCNN, **kwargs)
