"""Section ``retrieval``: imgbench.metrics.retrieval against a direct NumPy implementation.

The metrics (mAP, mAP@1000, precision@k, precision within a Hamming radius, kNN accuracy over binary hash codes)
are timed against the direct implementation of the same definitions in benchmarks/direct_retrieval.py, and
checked to give the same numbers.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..common import Figure, side_by_side
from .shared import Sizes


def hash_codes(
    n: int, bits: int, classes: int, rng: np.random.Generator, flip: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Codes clustered around one random prototype per class (as a trained hash layer gives), with ties.

    Args:
        n: how many codes.
        bits: bits per code.
        classes: how many classes (one prototype each).
        rng: the random generator.
        flip: the chance that a bit differs from its class's prototype.

    Returns:
        tuple[np.ndarray, np.ndarray]: the codes (n, bits) as bool, and their n class labels.
    """
    protos = rng.integers(0, 2, (classes, bits), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    codes = protos[labels] ^ (rng.random((n, bits)) < flip)
    return codes.astype(bool), labels


def run(sizes: Sizes) -> list[Figure]:
    """Time the metrics of ``retrieval_queries`` queries over a ``retrieval_database`` database of 48-bit codes.

    Args:
        sizes: the numbers of queries and database codes, the queries of the direct side, and the repetitions.

    Returns:
        list[Figure]: one figure (seconds), with the largest difference between the two sides' numbers.
    """
    from imgbench.metrics.retrieval import retrieval_metrics

    from ..direct_retrieval import direct_retrieval_metrics

    rng = np.random.default_rng(0)
    nq, nd, nq_direct = sizes.retrieval_queries, sizes.retrieval_database, sizes.retrieval_direct_queries
    codes, labels = hash_codes(nq + nd, 48, 10, rng)
    qc, ql, dc, dl = codes[:nq], labels[:nq], codes[nq:], labels[nq:]
    fig = Figure(
        "retrieval",
        f"{nq:,} x {nd:,} codes of 48 bits (mAP, mAP@1000, P@100..1000, P(r<=2), kNN)",
        "imgbench.metrics.retrieval",
        "direct NumPy",
        "s",
        target=">= 20x, same numbers",
        note=f"the direct implementation runs {nq_direct} queries per measurement, scaled to {nq:,} (it is per query);"
        f" imgbench on {os.cpu_count()} threads over query chunks, the direct one on one",
    )
    same: list[float] = []

    workers = os.cpu_count() or 1

    def ours() -> float:
        start = time.perf_counter()
        retrieval_metrics(qc, ql, dc, dl, workers=workers)
        return time.perf_counter() - start

    def direct() -> float:
        start = time.perf_counter()
        want = direct_retrieval_metrics(qc[:nq_direct], ql[:nq_direct], dc, dl)
        seconds = (time.perf_counter() - start) * nq / nq_direct
        got = retrieval_metrics(qc[:nq_direct], ql[:nq_direct], dc, dl)
        same.append(max(abs(got[k] - want[k]) for k in want))
        return seconds

    side_by_side(fig, ours, direct, sizes.repeats)
    fig.extra.update({"max_abs_difference": float(max(same)), "met": bool(fig.ratio >= 20 and max(same) < 1e-9)})
    fig.note += f"; largest difference between the two: {max(same):.1e}"
    return [fig]
