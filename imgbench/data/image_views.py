"""Per-image work of the streaming path, done in loader workers: JPEG decoding and the crop to a fixed size.

Everything after this (flips, PCA lighting, normalisation, evaluation views) runs on whole batches on the
device (:class:`~imgbench.data.augment.BatchTransform`), as on the in-memory path.

A training crop is a pure function of ``(seed, epoch, image index)``: torchvision's
``RandomResizedCrop.get_params`` draws from the global generator, which a worker cannot save or restore, so
the crop is drawn here from a generator of its own, and a resumed run crops every image as the first one did.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

TRAIN_CROPS = ("random_resized", "random")
DECODERS = ("workers", "device")


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

    def plan(self, height: int, width: int, index: int, epoch: int) -> tuple[int, int, int, int, int]:
        """The crop box of one image and the side it is resized to.

        Args:
            height: the image's height.
            width: the image's width.
            index: its index in the split (with ``epoch`` and the seed, it fixes the random crop).
            epoch: the epoch.

        Returns:
            ``(top, left, h, w, side)``: ``side`` is ``image_size`` for random-resized crops, else ``eval_resize``.
        """
        if self.train and self.train_crop == "random_resized":
            rng = random.Random(hash((self.seed, epoch, index)))
            return (*random_resized_box(height, width, rng, self.scale, self.ratio), self.image_size)
        return (*center_square_box(height, width), self.eval_resize)

    def __call__(self, data: bytes | memoryview, index: int, epoch: int) -> torch.Tensor:
        """Decode and crop one image.

        Args:
            data: its JPEG bytes.
            index: its index in the split.
            epoch: the epoch.

        Returns:
            uint8 ``(3, s, s)`` (see :meth:`plan`).
        """
        image = decode(data)
        return crop(image, self.plan(image.shape[1], image.shape[2], index, epoch))


def crop(image: torch.Tensor, plan: tuple[int, ...] | torch.Tensor) -> torch.Tensor:
    """Cut ``plan``'s box out of ``image`` and resize it to a ``side`` x ``side`` square (antialiased).

    Args:
        image: uint8 ``(3, H, W)``, on any device.
        plan: ``(top, left, h, w, side)``.

    Returns:
        uint8 ``(3, side, side)``.
    """
    top, left, h, w, side = (int(v) for v in plan)
    box = image[None, :, top : top + h, left : left + w].contiguous(memory_format=torch.channels_last)
    # torchvision's resized_crop, but on channels_last: torch's uint8 antialiased kernel is 1.5x faster there
    return F.interpolate(box, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0]


@dataclass
class EncodedBatch:
    """A batch still encoded: the JPEGs and the crop each will get, for the training device to decode.

    Attributes:
        jpegs: the JPEG bytes of each image (numpy arrays stay on the CPU when Lightning moves the batch).
        plans: ``(N, 5)`` crop plans (see :meth:`ImageView.plan`).
    """

    jpegs: list[np.ndarray]
    plans: torch.Tensor

    def decode(self, device: torch.device) -> torch.Tensor:
        """Decode every image on ``device`` (nvJPEG on a GPU, in one call) and crop it.

        Args:
            device: where to decode.

        Returns:
            uint8 ``(N, 3, side, side)`` on ``device``.
        """
        images = decode_jpeg([torch.from_numpy(j) for j in self.jpegs], mode=ImageReadMode.RGB, device=device)
        return torch.stack([crop(image, plan) for image, plan in zip(images, self.plans.tolist())])


@dataclass
class EncodedView:
    """What a loader worker does when the training device decodes: read the JPEG's header and plan the crop.

    Attributes:
        view: the view whose crops are planned.
    """

    view: ImageView

    def __call__(self, data: bytes | memoryview, index: int, epoch: int) -> tuple[np.ndarray, torch.Tensor]:
        """The JPEG's bytes and its crop plan.

        Args:
            data: its JPEG bytes.
            index: its index in the split.
            epoch: the epoch.

        Returns:
            The bytes as a uint8 array and the plan ``(top, left, h, w, side)``.
        """
        with Image.open(io.BytesIO(data)) as im:  # the header only: no pixel is decoded here
            width, height = im.size
        return np.frombuffer(data, dtype=np.uint8).copy(), torch.tensor(self.view.plan(height, width, index, epoch))


def collate_encoded(items: list[tuple[tuple[np.ndarray, torch.Tensor], int]]) -> tuple[EncodedBatch, torch.Tensor]:
    """Collate :class:`EncodedView` items into an :class:`EncodedBatch` and its labels.

    Args:
        items: ``((bytes, plan), label)`` per image.

    Returns:
        The encoded batch and the labels.
    """
    jpegs = [jpeg for (jpeg, _), _ in items]
    plans = torch.stack([plan for (_, plan), _ in items])
    return EncodedBatch(jpegs, plans), torch.tensor([label for _, label in items])
