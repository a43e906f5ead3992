"""One split held in memory (:class:`ImageArrays`) and the helpers every reader uses to build one.

Every reader (``readers``, ``folders``) returns an :class:`ImageArrays`: all images of one split as a single
uint8 tensor ``(N, C, H, W)`` with int64 labels and the class names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError


@dataclass
class ImageArrays:
    """One split held in memory.

    Attributes:
        images: uint8 images ``(N, C, H, W)``.
        labels: int64 labels ``(N,)``, indices into ``classes``.
        classes: the class names.

    Raises:
        DataError: the images are not uint8 ``(N, C, H, W)`` or there is not one label per image.
    """

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{len(self.labels)} labels for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return self.images.shape[0]


def to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Bring gray or channel-last images to the layout of :class:`ImageArrays`.

    Args:
        images: ``(N, H, W)`` gray or ``(N, H, W, C)`` channel-last uint8 images (numpy or torch).

    Returns:
        The images as a contiguous uint8 tensor ``(N, C, H, W)``.

    Raises:
        DataError: the array has neither shape.
    """
    x = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4:
        x = x.permute(0, 3, 1, 2)
    else:
        raise DataError(f"expected (N, H, W) or (N, H, W, C) images, got shape {tuple(x.shape)}")
    return x.contiguous()


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Check that every label indexes into the class list.

    Args:
        labels: the integer labels.
        num_classes: how many classes there are.
        where: the file or folder the labels come from (named in the error).

    Raises:
        DataError: a label is negative or not below ``num_classes``.
    """
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{where}: labels range {int(labels.min())}..{int(labels.max())} but there are {num_classes} "
            f"classes; fix the labels or the class list"
        )


def class_diff(train: list[str], test: list[str]) -> str:
    """Describe how the class names of two splits differ (for an error message).

    Args:
        train: the training split's class names.
        test: the test split's class names.

    Returns:
        Up to five names only in each split, or ``same names, different order``.
    """
    only_a, only_b = sorted(set(train) - set(test)), sorted(set(test) - set(train))
    parts = []
    if only_a:
        parts.append(f"only in train: {', '.join(only_a[:5])}")
    if only_b:
        parts.append(f"only in test: {', '.join(only_b[:5])}")
    return "; ".join(parts) or "same names, different order"
