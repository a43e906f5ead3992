"""Counting the set bits of packed uint64 codes, with numpy (the compiled ranking kernels share the constants)."""

from __future__ import annotations

import numpy as np

# the classic bit-trick constants: pairs, nibbles, bytes, and the byte-sum multiplier
_M1, _M2, _M4, _H01 = (
    np.uint64(v) for v in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101)
)
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0


def popcount(words: np.ndarray) -> np.ndarray:
    """Count the set bits of every uint64 word.

    Args:
        words: uint64 words (anything ``np.asarray`` turns into them).

    Returns:
        The number of set bits of each word, uint8, in the same shape.
    """
    words = np.asarray(words, dtype=np.uint64)
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(words)
    return _popcount_swar(words)


def _popcount_swar(x: np.ndarray) -> np.ndarray:
    """Popcount by the classic bit trick (for numpy < 2.0, which has no ``bitwise_count``)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return ((x * _H01) >> np.uint64(56)).astype(np.uint8)
