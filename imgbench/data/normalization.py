"""What inputs are normalised with: the training images' own statistics, ImageNet's, or none."""

from __future__ import annotations

import torch

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.

    Computed from each channel's histogram of the 256 pixel values: the sums are whole numbers, exact in float64,
    so this equals summing every pixel in float64, at a fraction of the cost.

    Args:
        images: uint8 images ``(N, C, H, W)``, on any device.
        chunk: images counted at a time (bounds the memory of the flattened copy).

    Returns:
        The means and the standard deviations, one per channel.
    """
    c = images.shape[1]
    values = torch.arange(256, dtype=torch.float64)
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for ch in range(c):
        hist = torch.zeros(256, dtype=torch.float64)
        for i in range(0, len(images), chunk):
            hist += torch.bincount(images[i : i + chunk, ch].reshape(-1), minlength=256).to("cpu", torch.float64)
        total[ch] = (hist * values).sum()
        total_sq[ch] = (hist * values * values).sum()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return (mean / 255).tolist(), (std / 255).tolist()


def normalization(kind: str, train_images: torch.Tensor) -> tuple[list[float], list[float]]:
    """The per-channel mean and std (in [0, 1] units) that ``data.normalize=<kind>`` divides by.

    Args:
        kind: ``dataset`` or ``auto`` (the training images' statistics), ``imagenet``, ``unit`` (x / 255),
            ``symmetric`` (to [-1, 1]) or ``none`` (pixels stay 0..255).
        train_images: uint8 training images ``(N, C, H, W)``.

    Returns:
        The means and the standard deviations, one per channel.

    Raises:
        ConfigError: ``imagenet`` for images that are not RGB.
    """
    if kind in ("dataset", "auto"):  # auto: the dataset's, unless pretrained weights bring their own (later)
        return channel_stats(train_images)
    return fixed_normalization(kind, train_images.shape[1])


def fixed_normalization(kind: str, channels: int) -> tuple[list[float], list[float]]:
    """The mean and std of the normalisations that need no data: ``imagenet``, ``unit``, ``symmetric`` and ``none``.

    Args:
        kind: ``imagenet``, ``unit`` (x / 255), ``symmetric`` (x / 255 to [-1, 1]) or ``none`` (pixels stay 0..255).
        channels: the images' channels.

    Returns:
        The means and the standard deviations, one per channel.

    Raises:
        ConfigError: ``imagenet`` for images that are not RGB.
    """
    if kind == "imagenet":
        if channels != 3:
            raise ConfigError("data.normalize=imagenet needs RGB images; use dataset or unit")
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if kind == "unit":
        return [0.0] * channels, [1.0] * channels
    if kind == "symmetric":  # (x / 255 - 0.5) / 0.5: the PyTorch CIFAR-10 tutorial's Normalize((0.5,) * 3, (0.5,) * 3)
        return [0.5] * channels, [0.5] * channels
    return [0.0] * channels, [1.0 / 255] * channels  # none: keep 0..255
