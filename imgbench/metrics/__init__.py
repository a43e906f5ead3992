"""Evaluation metrics beyond accuracy: Hamming-ranking retrieval and kNN classification for binary codes."""

from .retrieval import (
    DEFAULT_PRECISION_KS,
    binarize,
    hamming_distances,
    pack_codes,
    popcount,
    query_metrics,
    retrieval_metrics,
    unpack_codes,
)

__all__ = [
    "DEFAULT_PRECISION_KS",
    "binarize",
    "hamming_distances",
    "pack_codes",
    "popcount",
    "query_metrics",
    "retrieval_metrics",
    "unpack_codes",
]
