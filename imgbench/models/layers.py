"""Building blocks shared by several model families.

Layers: :class:`Dropout`, :func:`act_pool`, :func:`activation`, :func:`paper_lrn`, :class:`MaxAvgPool2d`
(study A's max-ave pooling), :class:`Maxout` and :class:`InputAdapter`. Helpers: :func:`pair`,
:func:`conv_out`, :func:`pooled_size`, :func:`keras_init_`, :func:`count_parameters`.

The checks of their arguments are in :mod:`imgbench.models.arguments`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError
from .arguments import is_int

__all__ = [
    "ACTIVATIONS",
    "Dropout",
    "InputAdapter",
    "MaxAvgPool2d",
    "Maxout",
    "act_pool",
    "activation",
    "conv_out",
    "count_parameters",
    "keras_init_",
    "pair",
    "paper_lrn",
    "pooled_size",
]

# ---------------------------------------------------------------------------- sizes and counts


def pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """A size as ``(height, width)``: ``28`` or ``(28, 28)`` -> ``(28, 28)``.

    Args:
        size: One side or ``(height, width)``.

    Returns:
        ``(height, width)``.
    """
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution or pooling with floor rounding.

    Args:
        size: The input's side.
        kernel: The kernel's side.
        stride: The step.
        padding: Implicit padding on each side.

    Returns:
        The output's side.
    """
    return (size + 2 * padding - kernel) // stride + 1


def pooled_size(size: int, kernel: int, stages: int, padding: int = 0) -> int:
    """Spatial size after ``stages`` times (conv ``kernel``/``padding``, stride 1) then 2x2 max pooling.

    Args:
        size: The input's side.
        kernel: The convs' kernel side.
        stages: How many conv-then-pool stages.
        padding: The convs' padding on each side.

    Returns:
        The output's side.
    """
    for _ in range(stages):
        size = (size + 2 * padding - kernel + 1) // 2
    return size


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module``.

    Args:
        module: Any module.
        trainable_only: Count only the parameters with ``requires_grad``.

    Returns:
        The number of scalars.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def keras_init_(module: nn.Module) -> None:
    """Keras defaults, in place: Glorot-uniform weights and zero biases for every conv and dense layer.

    Args:
        module: The model whose ``Conv2d`` and ``Linear`` layers are initialised.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------- activations and pooling

ACTIVATIONS = ("relu", "leaky_relu", "swish", "selu", "tanh", "sigmoid", "gelu")


def activation(name: str, argument: str = "activation") -> nn.Module:
    """An activation module by name.

    Args:
        name: relu, leaky_relu (slope 0.01), swish (``x * sigmoid(x)``), selu, tanh, sigmoid or gelu.
        argument: The name of the model argument that chose it (for the error).

    Returns:
        A new module (in-place where PyTorch offers it).

    Raises:
        ArgumentError: An unknown name.
    """
    table = {
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
        "swish": nn.SiLU,  # x * sigmoid(x)
        "selu": lambda: nn.SELU(inplace=True),
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": nn.GELU,
    }
    if not isinstance(name, str) or name not in table:
        raise ArgumentError(argument, f"unknown activation '{name}'; choose one of: {', '.join(table)}")
    return table[name]()


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask comes from ``torch.rand`` instead of ``bernoulli_``, a cheaper kernel on CPUs.

    Same argument, same state and same distribution: each element is kept with probability ``1 - p`` and scaled
    by ``1 / (1 - p)``. It draws from the global generator like ``nn.Dropout``, so seeded and resumed runs stay
    reproducible. GPUs (and in-place dropout) use the fused kernel.

    Args:
        p: The probability of zeroing an element.
        inplace: Zero in place (then ``nn.Dropout``'s own kernel runs, on CPUs too).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        mask = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * mask


def act_pool(act: nn.Module, pool: nn.Module | None = None) -> list[nn.Module]:
    """``act`` then ``pool``, in the cheaper order where that changes nothing.

    Max pooling commutes with a non-decreasing piecewise-linear activation (ReLU, Leaky ReLU): the pooled
    activation equals the activated pool, value for value and gradient for gradient. Pooling first runs the
    activation and its backward on a quarter of the values. Other activations (swish, tanh, ...) keep the
    written order.

    Args:
        act: The activation module.
        pool: The pooling module; default 2x2 max pooling.

    Returns:
        The two modules in the order to run them.
    """
    pool = pool if pool is not None else nn.MaxPool2d(2)
    if isinstance(pool, nn.MaxPool2d) and isinstance(act, nn.ReLU | nn.LeakyReLU):
        return [pool, act]
    return [act, pool]


def paper_lrn() -> nn.LocalResponseNorm:
    """AlexNet's local response normalisation: ``b = a / (k + alpha * sum a^2)^beta`` over 5 adjacent channels.

    k=2, alpha=1e-4, beta=0.75. PyTorch (like Caffe) divides alpha by the size, so ``alpha * size`` is passed to
    get the paper's formula.

    Returns:
        A new ``nn.LocalResponseNorm``.
    """
    size, alpha = 5, 1e-4
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=0.75, k=2.0)


class MaxAvgPool2d(nn.Module):
    """Study A's max-ave pooling: ``max_pool(x) + avg_pool(x)`` over the same windows (weights 1 and 1).

    Padded border cells are left out of the average (``count_include_pad=False``).

    Args:
        kernel_size: Window size.
        stride: Window step.
        padding: Implicit padding on each side.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2, padding: int = 0) -> None:
        super().__init__()
        self.max = nn.MaxPool2d(kernel_size, stride, padding)
        self.avg = nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max(x) + self.avg(x)


class Maxout(nn.Module):
    """A fully connected maxout layer: ``out_features`` units, each the max of ``pieces`` linear pieces.

    One ``Linear(in, out * pieces)``; unit ``i`` takes pieces ``i * pieces ... i * pieces + pieces - 1``.

    Args:
        in_features: Inputs.
        out_features: Maxout units.
        pieces: Linear pieces per unit (k).

    Raises:
        ArgumentError: ``pieces`` is below 1.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        if not is_int(pieces) or pieces < 1:
            raise ArgumentError("pieces", f"maxout needs at least one piece, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (self.out_features, self.pieces)).amax(-1)


class InputAdapter(nn.Module):
    """What happens to a batch before the first layer (no parameters).

    An optional bilinear resize to ``size`` and an optional replication of a gray channel to RGB; an identity
    when neither is asked for.

    Args:
        size: ``(height, width)`` to resize to, or None.
        gray_to_rgb: Replicate a 1-channel batch to 3 channels.
    """

    def __init__(self, size: tuple[int, int] | None = None, gray_to_rgb: bool = False) -> None:
        super().__init__()
        self.size, self.gray_to_rgb = size, gray_to_rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.gray_to_rgb and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, gray_to_rgb={self.gray_to_rgb}"
