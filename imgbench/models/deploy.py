"""A trained network made self-contained for deployment: the input normalisation moves inside the model.

What ``export.py`` writes to ONNX and TorchScript. The exported file then takes float images in [0, 1] and needs
no knowledge of the statistics the run normalised with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NormalizedClassifier(nn.Module):
    """``images`` float32 ``(N, C, H, W)`` in [0, 1] -> ``(N, classes)`` logits of ``net``.

    Normalises as training did, per channel ``(x - mean) / std``, computed as ``x * (1 / std) - mean / std`` in
    float32 (the training pipeline's single multiply-add, there from uint8: within 1e-6 of it).

    Args:
        net: the trained network (images normalised as below -> logits).
        mean: per-channel means, in [0, 1] units.
        std: per-channel standard deviations, in [0, 1] units.

    Raises:
        ValueError: ``mean`` and ``std`` of different lengths, or a std that is not positive.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean or min(std) <= 0:
            raise ValueError(f"mean and std need one value per channel and std > 0, got {list(mean)}, {list(std)}")
        self.net = net
        # the factors in float64, then rounded once to float32, as the training pipeline computes its own
        scale = [1.0 / float(s) for s in std]
        shift = [-float(m) / float(s) for m, s in zip(mean, std)]
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(torch.addcmul(self.shift, images, self.scale))
