"""The compiled core of :mod:`imgbench.metrics.retrieval` (numba, compiled once and cached).

Every metric of a query comes from a few linear passes over the database, without sorting it.

Distances are small integers, so the ranking (distance, then database index) is a counting sort: with the
number of items at each distance known (first pass), an item's place is the number of items at smaller
distances plus the number at its own distance up to it, which the second pass counts as it walks the database
in index order. The relevant items (the query's class, in index order) get their count of relevant items up to
them the same way, and AP, AP@K, precision@k and the k nearest neighbours follow from the two counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bits import _H01, _M1, _M2, _M4  # the constants of the numpy popcount


@njit(inline="always")
def _popcount(x: np.uint64) -> int:
    # the classic bit trick; LLVM compiles it to the CPU's popcount instruction
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@njit(nogil=True, cache=True)
def rank_queries(
    q_words: np.ndarray,  # (Q, W) uint64 packed query codes
    q_lab: np.ndarray,  # (Q,) int64 class index
    db_words: np.ndarray,  # (W, N) uint64 packed database codes, word by word (the distance loop vectorises)
    db_lab: np.ndarray,  # (N,) int64 class index
    members: np.ndarray,  # (N,) int64: the database indices class by class, ascending within a class
    class_start: np.ndarray,  # (classes + 1,) int64: class c's items are members[class_start[c]:class_start[c + 1]]
    nbits: int,
    n_classes: int,
    cutoff: int,
    ks: np.ndarray,  # (K,) int64, ascending
    radius: int,
    knn_k: int,
    ap: np.ndarray,  # outputs, (Q,) float64 ...
    ap_cut: np.ndarray,
    precision: np.ndarray,  # (Q, K) float64
    precision_r: np.ndarray,
    knn_pred: np.ndarray,  # (Q,) int64
) -> None:
    """Rank the database for every query and write its metrics into the output arrays.

    The arguments' shapes and types are given beside them; the caller,
    :func:`imgbench.metrics.retrieval.query_metrics`, packs and checks them.

    Args:
        q_words: the packed query codes.
        q_lab: the queries' class indices.
        db_words: the packed database codes, transposed to word by item.
        db_lab: the database items' class indices.
        members: the database indices class by class, ascending within a class.
        class_start: where each class starts in ``members`` (one more entry than classes).
        nbits: the code length in bits.
        n_classes: how many classes there are.
        cutoff: K of AP@K, at most the database size.
        ks: the k of precision@k, ascending.
        radius: the Hamming radius of the radius precision.
        knn_k: the neighbours in the kNN vote.
        ap: output: AP over the whole ranking, per query.
        ap_cut: output: AP@K per query.
        precision: output: precision@k per query and k.
        precision_r: output: the precision within ``radius`` per query.
        knn_pred: output: the kNN vote's class index per query.
    """
    n_words, n_db = db_words.shape
    levels = nbits + 1
    dist = np.empty(n_db, np.uint16)  # codes of up to 65,535 bits
    place = np.empty(n_db, np.int64)  # 1-based place in the ranking
    count = np.empty(levels, np.int64)  # items at each distance
    rel = np.empty(levels, np.int64)  # relevant items at each distance
    below = np.empty(levels, np.int64)  # items at smaller distances, then + those up to the current one
    rel_below = np.empty(levels, np.int64)
    hits = np.empty(len(ks), np.int64)
    neighbours = np.empty(knn_k, np.int64)
    votes = np.empty(n_classes, np.int64)
    first = np.empty(n_classes, np.int64)
    max_k = ks[-1] if len(ks) else 0
    r = min(radius, nbits)
    for qi in range(len(q_words)):
        c = q_lab[qi]
        relevant = members[class_start[c] : class_start[c + 1]]  # ascending database index
        # Simple loops, each its own pass: the distance loop vectorises, and the histograms would stop that.
        dist[:] = 0
        for w in range(n_words):
            qw = q_words[qi, w]
            for j in range(n_db):
                dist[j] += _popcount(qw ^ db_words[w, j])
        count[:] = 0
        for j in range(n_db):
            count[dist[j]] += 1
        rel[:] = 0
        for j in relevant:
            rel[dist[j]] += 1
        total, total_rel = 0, 0
        for d in range(levels):
            below[d], rel_below[d] = total, total_rel
            total += count[d]
            total_rel += rel[d]
        within, within_rel = below[r] + count[r], rel_below[r] + rel[r]
        precision_r[qi] = within_rel / within if within > 0 else 0.0

        for j in range(n_db):  # every item's place: those at smaller distances, then those at its own up to it
            d = dist[j]
            below[d] += 1
            place[j] = below[d]
            if below[d] <= knn_k:
                neighbours[below[d] - 1] = db_lab[j]
        ap_sum, cut_sum, cut_n = 0.0, 0.0, 0
        hits[:] = 0
        for j in relevant:  # the same for the relevant items among themselves: precision at each
            d = dist[j]
            rel_below[d] += 1
            p = rel_below[d] / place[j]
            ap_sum += p
            if place[j] <= cutoff:
                cut_sum += p
                cut_n += 1
            if place[j] <= max_k:
                for i in range(len(ks)):
                    hits[i] += place[j] <= ks[i]
        ap[qi] = ap_sum / total_rel if total_rel > 0 else 0.0
        ap_cut[qi] = cut_sum / cut_n if cut_n > 0 else 0.0
        for i in range(len(ks)):
            precision[qi, i] = hits[i] / ks[i]

        votes[:] = 0
        first[:] = knn_k
        for p in range(knn_k):  # most votes; a tie goes to the class ranked first
            label = neighbours[p]
            votes[label] += 1
            first[label] = min(first[label], p)
        best = neighbours[0]
        for label in range(n_classes):
            if votes[label] > votes[best] or (votes[label] == votes[best] and first[label] < first[best]):
                best = label
        knn_pred[qi] = best
