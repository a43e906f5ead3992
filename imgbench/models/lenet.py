"""Study D (a CNN study on CIFAR-10): the original Net and the improved Net, layer for layer.

The original Net is the PyTorch CIFAR-10 tutorial's LeNet-5 shape (the paper's figure with the widths is lost;
its code names conv1, conv2, ``x.view(-1, 16*5*5)``, fc1, fc2, fc3). Its activation is a switch, because the
paper compares ReLU, Leaky ReLU (slope 0.01) and Swish on it. The improved Net is printed in full in the paper.
Both keep PyTorch's default initialisation, as the paper's PyTorch code does.

Parameter counts (32x32 RGB, 10 classes): ``lenet5`` 62,006, ``cifar_cnn`` 1,276,234.
"""

from __future__ import annotations

from torch import nn

from .layers import act_pool, pair
from .layers import activation as make_activation
from .registry import register_model

__all__ = ["CifarCNN", "LeNet5", "cifar_cnn", "lenet5"]


def _pooled(size: int, kernel: int, stages: int, padding: int = 0) -> int:
    """Spatial size after ``stages`` times (conv ``kernel``/``padding``, stride 1) then 2x2 max pooling."""
    for _ in range(stages):
        size = (size + 2 * padding - kernel + 1) // 2
    return size


class LeNet5(nn.Module):
    """conv(5x5, 6)-act-pool2, conv(5x5, 16)-act-pool2, flatten, fc 120-act, fc 84-act, fc classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
        act: str = "relu",
    ) -> None:
        super().__init__()
        h, w = (_pooled(s, 5, 2) for s in pair(image_size))
        if h < 1 or w < 1:
            raise ValueError(f"image_size {image_size} is too small for lenet5 (needs at least 16x16)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            *act_pool(make_activation(act)),  # relu and leaky_relu after the pooling: see act_pool
            nn.Conv2d(6, 16, 5),
            *act_pool(make_activation(act)),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * h * w, 120),  # 16*5*5 = 400 for 32x32, 16*4*4 = 256 for 28x28
            make_activation(act),
            nn.Linear(120, 84),
            make_activation(act),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class CifarCNN(nn.Module):
    """Three conv(3x3, padding 1)-act-pool2 stages (32, 64, 128), then fc 512-act-dropout, fc 256-act, fc classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
        widths: tuple[int, ...] = (32, 64, 128),
        hidden: tuple[int, int] = (512, 256),
        dropout: float = 0.5,
        act: str = "relu",
    ) -> None:
        super().__init__()
        h, w = (_pooled(s, 3, len(widths), padding=1) for s in pair(image_size))
        if h < 1 or w < 1:
            raise ValueError(f"image_size {image_size} is too small for cifar_cnn (needs at least 8x8)")
        layers: list[nn.Module] = []
        c = in_channels
        for width in widths:
            layers += [nn.Conv2d(c, width, 3, padding=1), *act_pool(make_activation(act))]
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden[0]),  # 128*4*4 = 2048 for 32x32
            make_activation(act),
            nn.Dropout(dropout),  # the paper's only change against overfitting: after fc1's ReLU
            nn.Linear(hidden[0], hidden[1]),
            make_activation(act),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
def lenet5(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
    activation: str = "relu",
) -> LeNet5:
    """Study D's original Net (62,006 params on CIFAR-10); ``activation``: relu | leaky_relu | swish."""
    if activation not in ("relu", "leaky_relu", "swish"):
        raise ValueError(f"lenet5 activation must be relu, leaky_relu or swish, got '{activation}'")
    return LeNet5(num_classes, in_channels, image_size, act=activation)


@register_model
def cifar_cnn(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
    dropout: float = 0.5,
) -> CifarCNN:
    """Study D's improved Net: 3 conv + dropout 0.5 after fc1 (1,276,234 params on CIFAR-10)."""
    if not 0 <= dropout < 1:
        raise ValueError(f"cifar_cnn dropout must be in [0, 1), got {dropout}")
    return CifarCNN(num_classes, in_channels, image_size, dropout=dropout)
