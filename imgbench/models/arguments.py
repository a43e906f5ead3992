"""Checks of model arguments, each raising :class:`~imgbench.errors.ArgumentError` that names the argument.

A model validates its switches before it builds anything, so that it also checks them on the meta device and the
config layer can name the key.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

from ..errors import ArgumentError


def one_of(choices: Sequence[str]) -> str:
    """List choices for an error message: ``("a", "b", "c")`` -> ``"a, b or c"``.

    Args:
        choices: The allowed values (at least one).

    Returns:
        The values joined with commas and a final "or".
    """
    choices = [str(c) for c in choices]
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def check_choice(
    argument: str, value: object, choices: Sequence[str], prefix: str = "", message: str | None = None
) -> str:
    """Check that a string switch is one of ``choices``.

    Args:
        argument: The argument's name (carried by the error).
        value: The value given.
        choices: The allowed values.
        prefix: Put before the default message (the model's name, say).
        message: The whole error message instead of ``"<prefix><argument> must be a, b or c, got '<value>'"``.

    Returns:
        ``value``.

    Raises:
        ArgumentError: ``value`` is not one of ``choices``.
    """
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(argument, message or f"{prefix}{argument} must be {one_of(choices)}, got '{value}'")
    return value


def is_int(value: object) -> bool:
    """Whether ``value`` is a whole number (a bool is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(argument: str, value: object, minimum: int = 1, prefix: str = "") -> int:
    """Check that ``value`` is an integer (not a bool) of at least ``minimum``.

    Args:
        argument: The argument's name.
        value: The value given.
        minimum: The smallest allowed value.
        prefix: Put before the message (the model's name, say).

    Returns:
        ``value`` as an ``int``.

    Raises:
        ArgumentError: ``value`` is not an integer or is below ``minimum``.
    """
    if not is_int(value) or value < minimum:
        raise ArgumentError(argument, f"{prefix}{argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(
    argument: str, value: object, low: float, high: float, high_open: bool = False, prefix: str = ""
) -> float:
    """Check that ``value`` is a real number in ``[low, high]`` (``[low, high)`` with ``high_open``).

    Args:
        argument: The argument's name.
        value: The value given.
        low: The smallest allowed value.
        high: The largest allowed value (or the bound it must stay below, with ``high_open``).
        high_open: Whether ``high`` itself is excluded.
        prefix: Put before the message (the model's name, say).

    Returns:
        ``value`` as a ``float``.

    Raises:
        ArgumentError: ``value`` is not a number or lies outside the range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low <= value and (value < high if high_open else value <= high)):
        bounds = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ArgumentError(argument, f"{prefix}{argument} must be in {bounds}, got {value!r}")
    return float(value)


def check_fraction(argument: str, value: object, prefix: str = "") -> float:
    """Check a dropout probability: a number in ``[0, 1)``.

    Args:
        argument: The argument's name.
        value: The value given.
        prefix: Put before the message (the model's name, say).

    Returns:
        ``value`` as a ``float``.

    Raises:
        ArgumentError: ``value`` is not a number in ``[0, 1)``.
    """
    return check_number(argument, value, 0.0, 1.0, high_open=True, prefix=prefix)


def check_bool(argument: str, value: object, prefix: str = "") -> bool:
    """Check that a switch is ``True`` or ``False`` (not a string or a number).

    Args:
        argument: The argument's name.
        value: The value given.
        prefix: Put before the message (the model's name, say).

    Returns:
        ``value``.

    Raises:
        ArgumentError: ``value`` is not a bool.
    """
    if not isinstance(value, bool):
        raise ArgumentError(argument, f"{prefix}{argument} must be true or false, got {value!r}")
    return value


def check_size(argument: str, value: object, prefix: str = "") -> tuple[int, int]:
    """Check an image size: a positive integer or a (height, width) pair of them.

    Args:
        argument: The argument's name.
        value: The value given.
        prefix: Put before the message (the model's name, say).

    Returns:
        ``(height, width)``.

    Raises:
        ArgumentError: ``value`` is not such a size.
    """
    if is_int(value):
        size = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        size = tuple(value)
    else:
        size = None
    if size is None or not all(is_int(s) and s >= 1 for s in size):
        raise ArgumentError(argument, f"{prefix}{argument} must be a positive size or (height, width), got {value!r}")
    return int(size[0]), int(size[1])


def check_data_shape(num_classes: object, in_channels: object, image_size: object, prefix: str = "") -> tuple[int, int]:
    """Check the arguments that come from the data: ``num_classes`` and ``in_channels`` >= 1, ``image_size``.

    Args:
        num_classes: The number of classes given.
        in_channels: The number of image channels given.
        image_size: The image size given (one side or ``(height, width)``).
        prefix: Put before the message (the model's name, say).

    Returns:
        ``image_size`` as ``(height, width)``.

    Raises:
        ArgumentError: One of them is not a positive integer (pair).
    """
    check_int("num_classes", num_classes, prefix=prefix)
    check_int("in_channels", in_channels, prefix=prefix)
    return check_size("image_size", image_size, prefix=prefix)


def check_pretrained(value: object, prefix: str = "") -> None:
    """Check ``pretrained``: None/False, True (the default weights), a path or a name (read later, by the loader).

    Args:
        value: The value given.
        prefix: Put before the message (the model's name, say).

    Raises:
        ArgumentError: ``value`` is neither None, a bool, a string nor a path.
    """
    if value is not None and not isinstance(value, bool | str | os.PathLike):
        raise ArgumentError(
            "pretrained",
            f"{prefix}pretrained must be true (the model's default weights), a file path or a weight name, "
            f"got {value!r}",
        )
