"""``fastnet``: a small CIFAR network in the spirit of the fastest known CIFAR-10 trainers.

Like airbench and hlb-cifar10, it has a frozen patch-whitening first layer, three conv groups and a max-pooled
linear head.

- ``whiten``: a ``kernel x kernel`` convolution (no padding) whose filters are the eigenvectors of the
  training images' patch covariance, scaled by ``1 / sqrt(eigenvalue + eps)``, and their negatives (so the
  GELU that follows keeps both signs): ``2 * C * kernel**2`` channels. Its weights are set from the data at fit
  start (:meth:`FastNet.init_whitening`, called by ``imgbench.callbacks.PatchWhitening``) and stay frozen;
  its bias trains. Until then it is a random orthogonal-ish projection, so the model also runs without it.
- three groups: conv3x3 - maxpool 2 - BN - GELU - conv3x3 - BN - GELU, widths ``widths``;
- head: global max pool, a linear layer without bias, logits multiplied by ``scale`` (1/9: small initial
  logits, which suits the large learning rates of the recipe).

Parameters (10 classes, widths 64-256-256, 3 channels): 1,972,792 (the 96 whitening weights frozen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError
from .arguments import check_data_shape, check_int, check_number
from .registry import build_model, register_model

__all__ = ["FastNet", "fastnet"]


class ConvGroup(nn.Sequential):
    """conv3x3 - maxpool 2 - BN - GELU - conv3x3 - BN - GELU (convs without bias).

    Args:
        c_in: Input channels.
        c_out: Output channels.
        bn_momentum: Momentum of the BatchNorm statistics.
    """

    def __init__(self, c_in: int, c_out: int, bn_momentum: float | None) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            nn.GELU(),
        )


class FastNet(nn.Module):
    """whiten (frozen) - GELU - conv groups - global max pool - linear head (no bias) - times ``scale``.

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side.
        widths: Widths of the conv groups (each halves the map).
        whiten_kernel: Patch size of the whitening layer: ``2 * C * k**2`` channels.
        bn_momentum: Momentum of the BatchNorm statistics, in [0, 1] (None: cumulative average).
        scale: Factor on the logits (positive).

    Raises:
        ArgumentError: A bad argument (named by the error), or an image too small for the pooling stages.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
        widths: Sequence[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        bn_momentum: float | None = 0.4,
        scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        h, w = check_data_shape(num_classes, in_channels, image_size, prefix="fastnet: ")
        if isinstance(widths, str) or not isinstance(widths, Sequence) or not widths:
            raise ArgumentError("widths", f"fastnet: widths must be a non-empty list of integers, got {widths!r}")
        widths = tuple(check_int("widths", width, prefix="fastnet: ") for width in widths)
        k = check_int("whiten_kernel", whiten_kernel, prefix="fastnet: ")
        if bn_momentum is not None:  # None: BatchNorm's cumulative average
            check_number("bn_momentum", bn_momentum, 0.0, 1.0, prefix="fastnet: ")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < float("inf"):
            raise ArgumentError("scale", f"fastnet: scale must be a positive number, got {scale!r}")
        size = h - k + 1
        for _ in widths:
            size //= 2
        if size < 1 or w - k + 1 < 2 ** len(widths):
            raise ArgumentError(
                "image_size", f"fastnet: image_size {image_size} is too small for {len(widths)} pooling stages"
            )
        self.whiten_kernel = k
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * k * k, k, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.register_buffer("whitening_ready", torch.zeros((), dtype=torch.bool))
        groups: list[nn.Module] = [nn.GELU()]
        c = self.whiten.out_channels
        for width in widths:
            groups.append(ConvGroup(c, width, bn_momentum))
            c = width
        self.features = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(c, num_classes, bias=False)
        self.scale = scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from the patch covariance of ``images``, in place, and freeze them as ready.

        Args:
            images: ``(N, C, H, W)``, normalised as the model sees them.
            eps: Added to the eigenvalues before the inverse square root.
        """
        k = self.whiten_kernel
        c = images.shape[1]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        patches = patches - patches.mean(0, keepdim=True)
        cov = patches.T @ patches / len(patches)
        eigval, eigvec = torch.linalg.eigh(cov)  # ascending
        eigval, eigvec = eigval.flip(0), eigvec.flip(1)
        filters = (eigvec.T / torch.sqrt(eigval.clamp_min(0) + eps)[:, None]).view(c * k * k, c, k, k)
        weight = torch.cat([filters, -filters]).to(self.whiten.weight)
        self.whiten.weight.copy_(weight)
        self.whiten.bias.zero_()
        self.whitening_ready.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.whiten(x))
        return self.head(self.pool(x).flatten(1)) * self.scale


@register_model(FastNet)
def fastnet(**kwargs: Any) -> FastNet:
    """The cifar10_fast recipe's network (1,972,792 params on CIFAR-10).

    Args:
        **kwargs: The arguments of :class:`FastNet`.

    Returns:
        The model.
    """
    return build_model(FastNet, **kwargs)
