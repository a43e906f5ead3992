"""Checks of the values a DataModule's constructor receives, made before any file is read.

Each check raises :class:`~imgbench.errors.ConfigError` with a one-line message that names the config key
as ``data.<key>``. Checks that need the data (``val_size`` below the number of training images, a crop no
larger than the images) are made where the data is loaded.
"""

from __future__ import annotations

import math
import os
from numbers import Integral
from typing import Any

from ..errors import ConfigError
from .augment import AugmentConfig


def is_whole(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool.

    Args:
        value: any value.

    Returns:
        True for integers other than True and False.
    """
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_whole(key: str, value: Any, minimum: int | None = None, optional: bool = False) -> None:
    """Check an integer setting.

    Args:
        key: the key under ``data.``.
        value: its value.
        minimum: the smallest value allowed (None: any integer).
        optional: None is allowed too.

    Raises:
        ConfigError: ``value`` is not an integer (or None where optional), or is below ``minimum``.
    """
    if value is None and optional:
        return
    bound = f" >= {minimum}" if minimum is not None else ""
    null = " or null" if optional else ""
    if not is_whole(value):
        raise ConfigError(f"data.{key} must be a whole number{bound}{null}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"data.{key} must be >= {minimum}{null}, got {value}")


def check_bool(key: str, value: Any) -> None:
    """Check a switch.

    Args:
        key: the key under ``data.``.
        value: its value.

    Raises:
        ConfigError: ``value`` is not True or False.
    """
    if not isinstance(value, bool):
        raise ConfigError(f"data.{key} must be true or false, got {value!r}")


def check_path(key: str, value: Any, optional: bool = False) -> None:
    """Check a path setting (no file is looked at).

    Args:
        key: the key under ``data.``.
        value: its value.
        optional: None is allowed too.

    Raises:
        ConfigError: ``value`` is neither a string nor a path (nor None where optional).
    """
    if value is None and optional:
        return
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"data.{key} must be a path{' or null' if optional else ''}, got {value!r}")


def check_val_size(value: Any) -> None:
    """Check ``val_size``: an image count >= 0 (a whole float counts too) or a fraction in (0, 1).

    Whether the count is below the number of training images is checked when the data is loaded.

    Args:
        value: its value.

    Raises:
        ConfigError: anything else (a bool, a string, a negative, non-finite or non-whole number >= 1).
    """
    if isinstance(value, float) and 0 < value < 1:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or int(value) != value
    ):
        raise ConfigError(f"data.val_size must be an image count >= 0 or a fraction in (0, 1), got {value!r}")


def check_on_device(value: Any) -> None:
    """Check ``on_device``: ``auto``, true or false.

    Args:
        value: its value.

    Raises:
        ConfigError: anything else.
    """
    if value != "auto" and not isinstance(value, bool):
        raise ConfigError(f"data.on_device must be auto, true or false, got {value!r}")


def size_pair(key: str, value: Any) -> tuple[int, int] | None:
    """Check a size setting (``crop_size``, ``image_size``) and bring it to ``(h, w)``.

    Args:
        key: the key under ``data.``.
        value: None, one positive integer (a square), or two of them (``[h, w]``).

    Returns:
        ``(h, w)`` with the given values, or None for None.

    Raises:
        ConfigError: anything else.
    """
    if value is None:
        return None
    if is_whole(value):
        size: tuple = (value, value)
    else:
        try:
            size = tuple(value) if not isinstance(value, str | bytes) else ()
        except TypeError:
            size = ()
    if len(size) != 2 or not all(is_whole(v) and v >= 1 for v in size):
        raise ConfigError(f"data.{key} must be a positive size: one whole number or [H, W], got {value!r}")
    return size


def augment_config(value: Any) -> AugmentConfig:
    """Check ``augment`` and make it an :class:`AugmentConfig`.

    Args:
        value: an :class:`AugmentConfig`, a mapping of its fields, or None (no augmentation).

    Returns:
        The augmentation config.

    Raises:
        ConfigError: an unknown key, or a value of the wrong type or out of range.
    """
    if isinstance(value, AugmentConfig):
        return value
    try:
        return AugmentConfig(**(value or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"data.augment: {e}") from None
