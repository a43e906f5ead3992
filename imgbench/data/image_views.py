"""Per-image work of the streaming path, done in loader workers: JPEG decoding and the crop to a fixed size.

Everything after this (flips, PCA lighting, normalisation, evaluation views) runs on whole batches on the
device (:class:`~imgbench.data.augment.BatchTransform`), as on the in-memory path.

A training crop is a pure function of ``(seed, epoch, image index)``: torchvision's
``RandomResizedCrop.get_params`` draws from the global generator, which a worker cannot save or restore, so
the crop is drawn here from a generator of its own, and a resumed run crops every image as the first one did.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

TRAIN_CROPS = ("random_resized", "random")


def decode(data: bytes | memoryview) -> torch.Tensor:
    """A stored JPEG -> uint8 ``(3, H, W)``.

    Args:
        data: the JPEG's bytes.

    Returns:
        The RGB image.
    """
    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def random_resized_box(
    height: int, width: int, rng: random.Random, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """Inception's random crop box (torchvision's ``RandomResizedCrop`` rule), drawn from ``rng``.

    Args:
        height: the image's height.
        width: the image's width.
        rng: the generator to draw from.
        scale: the range of the box's area, as fractions of the image's.
        ratio: the range of its aspect ratio (width / height).

    Returns:
        ``(top, left, h, w)``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    # fallback: the centre crop with the aspect ratio clamped into range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def center_square_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The largest centred square: ``(top, left, side, side)``."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


@dataclass
class ImageView:
    """What a loader worker makes of one stored image.

    Training with ``random_resized`` gives a random-resized crop of ``image_size``; otherwise (evaluation, and
    AlexNet's ``random`` training crops, cut later from the batch) the shorter side is brought to ``eval_resize``
    and the centre square is kept.

    Attributes:
        train: training (random crops) or evaluation.
        image_size: the side of the crop the model sees.
        eval_resize: the side of the centre square evaluation (and ``random`` training) starts from.
        train_crop: ``random_resized`` or ``random``.
        scale: the random-resized crop's area range.
        ratio: its aspect-ratio range.
        seed: the run seed.
    """

    train: bool
    image_size: int
    eval_resize: int
    train_crop: str = "random_resized"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    seed: int = 0

    def __call__(self, data: bytes | memoryview, index: int, epoch: int) -> torch.Tensor:
        """Decode and crop one image.

        Args:
            data: its JPEG bytes.
            index: its index in the split (with ``epoch`` and the seed, it fixes the random crop).
            epoch: the epoch.

        Returns:
            uint8 ``(3, s, s)``: ``s`` is ``image_size`` for random-resized crops, else ``eval_resize``.
        """
        image = decode(data)
        height, width = image.shape[1:]
        if self.train and self.train_crop == "random_resized":
            rng = random.Random(hash((self.seed, epoch, index)))
            box, size = random_resized_box(height, width, rng, self.scale, self.ratio), self.image_size
        else:
            box, size = center_square_box(height, width), self.eval_resize
        return TF.resized_crop(image, *box, [size, size], antialias=True)
