"""A direct NumPy implementation of imgbench.metrics.retrieval's definitions, one query at a time.

It is the baseline of the evaluation benchmark: what one writes from the definitions without thinking about
speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def direct_retrieval_metrics(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    map_cutoff: int = 1000,
    precision_ks: Sequence[int] = tuple(range(100, 1001, 100)),
    radius: int = 2,
    knn_k: int = 10,
) -> dict[str, float]:
    """The means over the queries of map, map@K, precision@k, precision_r<r> and knn_acc (see retrieval.py).

    Args:
        query_codes: the queries' binary codes (Q, bits).
        query_labels: their Q class labels.
        database_codes: the database's binary codes (N, bits).
        database_labels: their N class labels.
        map_cutoff: K of map@K.
        precision_ks: the k of each precision@k.
        radius: the Hamming radius of precision_r<radius>.
        knn_k: the neighbours that vote in knn_acc.

    Returns:
        dict[str, float]: each metric's mean over the queries.
    """
    qc, dc = np.asarray(query_codes, dtype=bool), np.asarray(database_codes, dtype=bool)
    ql, dl = np.asarray(query_labels), np.asarray(database_labels)
    n_db = len(dc)
    cutoff = min(map_cutoff, n_db)
    positions = np.arange(1, n_db + 1)
    sums: dict[str, float] = {"map": 0.0, f"map@{map_cutoff}": 0.0, f"precision_r{radius}": 0.0, "knn_acc": 0.0}
    sums.update({f"precision@{k}": 0.0 for k in precision_ks})
    for q in range(len(qc)):
        dist = (dc != qc[q]).sum(axis=1)  # Hamming distance: the number of differing bits
        order = np.argsort(dist, kind="stable")  # ties by database index
        rel = dl[order] == ql[q]
        hits = np.cumsum(rel)
        n_rel = hits[-1]
        sums["map"] += (hits / positions)[rel].sum() / n_rel if n_rel else 0.0
        found = hits[cutoff - 1]
        sums[f"map@{map_cutoff}"] += (hits[:cutoff] / positions[:cutoff])[rel[:cutoff]].sum() / found if found else 0.0
        for k in precision_ks:
            sums[f"precision@{k}"] += hits[k - 1] / k
        within = dist <= radius
        n_within = within.sum()
        sums[f"precision_r{radius}"] += (within & (dl == ql[q])).sum() / n_within if n_within else 0.0
        nearest = dl[order[:knn_k]]
        labels, first, votes = np.unique(nearest, return_index=True, return_counts=True)
        best = labels[np.lexsort((first, -votes))[0]]  # most votes, then the class ranked first
        sums["knn_acc"] += float(best == ql[q])
    return {k: v / len(qc) for k, v in sums.items()}
