"""Hamming-ranking retrieval metrics and Hamming kNN classification for binary codes.

Codes are packed into 64-bit words (bit ``i`` of a code is bit ``i % 64`` of word ``i // 64``); a Hamming
distance is the popcount of ``query XOR database``. The metrics need no sort of the database: distances are
small integers, so the ranking is a counting sort, and a few compiled passes over the database per query give
every relevant item's place in it exactly, ties by database index included (:mod:`._ranking`, numba). Chunks of
queries run on all cores (``workers`` threads; the compiled code releases the GIL).

Protocol (DLBHC, Lin et al. 2015; every definition here is what the tests check against plain loops):

- relevant: a database item with the query's label.
- ranking: the whole database by Hamming distance, ascending; ties are broken by database index (a stable
  sort, as MATLAB's ``sort`` in DLBHC's evaluation code), so the result is deterministic.
- ``map``: mean over queries of AP over the whole ranking, ``AP = (1/R) * sum_k rel_k * P@k`` with ``R`` the
  number of relevant items in the database; a query with no relevant item has AP 0.
- ``map@K`` (K = ``map_cutoff``, DLBHC: 1000): the same over the top K only, normalised by the number of
  relevant items among those K (DLBHC's ``precision.m``); 0 when none of the K is relevant. K larger than
  the database means the whole database.
- ``precision@k``: relevant items among the top k, divided by k (k must not exceed the database size).
- ``precision_r<r>`` (r = ``radius``, usually 2): relevant items among those at Hamming distance <= r,
  divided by their number; a query with no item within the radius scores precision 0 (the usual
  convention, which penalises empty hash buckets).
- ``knn_acc``: a query's label is predicted by a majority vote of its ``knn_k`` nearest database items in
  the ranking above (distance ties at the k-th place are therefore broken by database index). A tie between
  classes goes to the class whose best-ranked item comes first, i.e. the nearest of the tied classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .bits import popcount

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

DEFAULT_PRECISION_KS = tuple(range(100, 1001, 100))


def _numpy(x: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def binarize(activations: torch.Tensor | np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary codes from hash-layer activations: ``activations >= threshold`` (DLBHC: sigmoid >= 0.5).

    Args:
        activations: the hash layer's activations, ``(N, bits)``.
        threshold: the value from which a bit is 1.

    Returns:
        A bool array of the same shape.
    """
    return _numpy(activations) >= threshold


def pack_codes(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pack binary codes into 64-bit words; bit ``i`` of a code is bit ``i % 64`` of word ``i // 64``.

    Args:
        codes: ``(N, bits)`` codes of 0/1 (or bool).

    Returns:
        ``(N, ceil(bits / 64))`` uint64 words, zero-padded.

    Raises:
        ValueError: ``codes`` is not 2-d or holds values other than 0 and 1.
    """
    bits = _numpy(codes)
    if bits.ndim != 2:
        raise ValueError(f"codes must be a 2-d (items, bits) array, got shape {bits.shape}")
    if bits.dtype != np.bool_:
        if not np.isin(bits, (0, 1)).all():
            raise ValueError("codes must hold only 0 and 1 (binarize activations first)")
        bits = bits.astype(bool)
    n, nbits = bits.shape
    words = max(1, -(-nbits // 64))
    padded = np.zeros((n, words * 64), dtype=bool)
    padded[:, :nbits] = bits
    # np.packbits with little bit order puts bit i of a byte at position i; 8 bytes read little-endian -> a word
    packed = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64).reshape(n, words)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`.

    Args:
        packed: ``(N, words)`` uint64 words.
        bits: the code length to keep.

    Returns:
        ``(N, bits)`` bool codes.
    """
    packed = np.ascontiguousarray(packed, dtype="<u8")
    as_bytes = packed.view(np.uint8).reshape(len(packed), -1)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :bits].astype(bool)


def _distances(query: np.ndarray, database: np.ndarray, nbits: int) -> np.ndarray:
    """Hamming distances between packed codes: ``(Q, W)`` x ``(D, W)`` -> ``(Q, D)`` uint8 (uint16 for long codes)."""
    dtype = np.uint8 if nbits < 256 else np.uint16
    out = np.zeros((len(query), len(database)), dtype=dtype)
    for w in range(query.shape[1]):
        out += popcount(query[:, w, None] ^ database[None, :, w]).astype(dtype, copy=False)
    return out


def hamming_distances(query_codes: torch.Tensor | np.ndarray, database_codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """All Hamming distances between two sets of unpacked 0/1 codes (for small sets).

    Args:
        query_codes: ``(Q, bits)`` codes of 0/1 (or bool).
        database_codes: ``(D, bits)`` codes of 0/1 (or bool).

    Returns:
        ``(Q, D)`` distances, uint8 (uint16 for codes of 256 bits or more).

    Raises:
        ValueError: the two sets' codes differ in length.
    """
    q, d = _numpy(query_codes), _numpy(database_codes)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bits but database codes {d.shape[1]}")
    return _distances(pack_codes(q), pack_codes(d), q.shape[1])


def query_metrics(
    query_codes: torch.Tensor | np.ndarray,
    query_labels: torch.Tensor | np.ndarray,
    database_codes: torch.Tensor | np.ndarray,
    database_labels: torch.Tensor | np.ndarray,
    map_cutoff: int = 1000,
    precision_ks: Sequence[int] = DEFAULT_PRECISION_KS,
    radius: int = 2,
    knn_k: int = 10,
    chunk_elements: int = 1 << 21,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-query values of every metric of the module docstring, and the kNN label of every query.

    Args:
        query_codes: unpacked ``(Q, bits)`` codes of 0/1 or bool (e.g. from :func:`binarize`).
        query_labels: the queries' integer labels.
        database_codes: unpacked ``(N, bits)`` codes, as the queries'.
        database_labels: the database items' integer labels.
        map_cutoff: K of AP@K; larger than the database means the whole database.
        precision_ks: the k of precision@k, each at most the database size.
        radius: the Hamming radius of ``precision_r<radius>``.
        knn_k: the neighbours in the kNN vote, at most the database size.
        chunk_elements: the query x database pairs of one task for the ``workers`` threads (memory stays
            ``O(database)`` per thread whatever it is).
        workers: threads; None: as many as torch's thread count, at most the CPU count.

    Returns:
        One value per query under ``ap``, ``ap@<K>`` (K capped at the database size), ``precision@<k>``,
        ``precision_r<radius>`` and ``knn_correct`` (0 or 1), and ``knn_pred``, the kNN label.

    Raises:
        ValueError: the codes or labels do not fit together, codes are longer than 65,535 bits, a set is
            empty, or a setting is out of range.
    """
    q_codes, d_codes = _numpy(query_codes), _numpy(database_codes)
    q_labels, d_labels = _numpy(query_labels).reshape(-1), _numpy(database_labels).reshape(-1)
    if q_codes.ndim != 2 or d_codes.ndim != 2 or q_codes.shape[1] != d_codes.shape[1]:
        raise ValueError(f"codes must be (items, bits) with equal bits, got {q_codes.shape} and {d_codes.shape}")
    if len(q_labels) != len(q_codes) or len(d_labels) != len(d_codes):
        raise ValueError("every code needs one label")
    n_db, nbits = d_codes.shape
    if nbits > 65535:
        raise ValueError(f"codes of at most 65,535 bits are supported, got {nbits}")
    ks = sorted({int(k) for k in precision_ks})
    if n_db == 0 or len(q_codes) == 0:
        raise ValueError("retrieval needs at least one query and one database item")
    if any(k < 1 or k > n_db for k in ks) or not 1 <= knn_k <= n_db or map_cutoff < 1 or radius < 0:
        raise ValueError(
            f"precision k and knn_k must be in 1..{n_db} (the database size), map_cutoff >= 1 and radius >= 0; "
            f"got precision_ks={ks}, knn_k={knn_k}, map_cutoff={map_cutoff}, radius={radius}"
        )
    # labels -> 0..L-1 (the kNN vote counts per label)
    classes, inverse = np.unique(np.concatenate([q_labels, d_labels]), return_inverse=True)
    inverse = inverse.astype(np.int64)
    q_lab, d_lab = inverse[: len(q_labels)], inverse[len(q_labels) :]
    q_words = pack_codes(q_codes != 0)
    members = np.argsort(d_lab, kind="stable")  # the database class by class, ascending index within a class
    database = (
        np.ascontiguousarray(pack_codes(d_codes != 0).T),  # (words, items)
        d_lab,
        members,
        np.searchsorted(d_lab[members], np.arange(len(classes) + 1)).astype(np.int64),  # each class's start
    )
    n_q = len(q_words)
    out = {
        "ap": np.zeros(n_q),
        "ap@K": np.zeros(n_q),
        "precision": np.zeros((n_q, len(ks))),
        "precision_r": np.zeros(n_q),
        "knn_pred": np.zeros(n_q, dtype=np.int64),
    }
    settings = (nbits, len(classes), min(map_cutoff, n_db), np.asarray(ks, dtype=np.int64), radius, knn_k)
    chunk = max(1, min(n_q, chunk_elements // n_db))

    def run(s: int) -> None:
        part = slice(s, s + chunk)
        rank_queries(q_words[part], q_lab[part], *database, *settings, *(v[part] for v in out.values()))

    from ._ranking import rank_queries  # numba: imported (and compiled, once) on first use

    starts = range(0, n_q, chunk)
    workers = workers or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for s in starts:
            run(s)
    result = {"ap": out["ap"], f"ap@{settings[2]}": out["ap@K"]}
    result.update({f"precision@{k}": out["precision"][:, i] for i, k in enumerate(ks)})
    result[f"precision_r{radius}"] = out["precision_r"]
    result["knn_pred"] = classes[out["knn_pred"]]
    result["knn_correct"] = (out["knn_pred"] == q_lab).astype(np.float64)
    return result


def retrieval_metrics(
    query_codes: torch.Tensor | np.ndarray,
    query_labels: torch.Tensor | np.ndarray,
    database_codes: torch.Tensor | np.ndarray,
    database_labels: torch.Tensor | np.ndarray,
    map_cutoff: int = 1000,
    precision_ks: Sequence[int] = DEFAULT_PRECISION_KS,
    radius: int = 2,
    knn_k: int = 10,
    chunk_elements: int = 1 << 21,
    workers: int | None = None,
) -> dict[str, float]:
    """The retrieval metrics of the module docstring, each the mean over the queries.

    Args:
        query_codes: unpacked ``(Q, bits)`` codes of 0/1 or bool (e.g. from :func:`binarize`).
        query_labels: the queries' integer labels.
        database_codes: unpacked ``(N, bits)`` codes, as the queries'.
        database_labels: the database items' integer labels.
        map_cutoff: K of mAP@K; larger than the database means the whole database.
        precision_ks: the k of precision@k, each at most the database size.
        radius: the Hamming radius of ``precision_r<radius>``.
        knn_k: the neighbours in the kNN vote, at most the database size.
        chunk_elements: see :func:`query_metrics`.
        workers: see :func:`query_metrics`.

    Returns:
        ``map``, ``map@<cutoff>``, ``precision@<k>``, ``precision_r<radius>`` and ``knn_acc``. The cutoff in
        the name is the one asked for.

    Raises:
        ValueError: as :func:`query_metrics`.
    """
    per_query = query_metrics(
        query_codes,
        query_labels,
        database_codes,
        database_labels,
        map_cutoff=map_cutoff,
        precision_ks=precision_ks,
        radius=radius,
        knn_k=knn_k,
        chunk_elements=chunk_elements,
        workers=workers,
    )
    cutoff = min(map_cutoff, len(_numpy(database_labels).reshape(-1)))
    result = {"map": float(per_query["ap"].mean()), f"map@{map_cutoff}": float(per_query[f"ap@{cutoff}"].mean())}
    for k in sorted({int(k) for k in precision_ks}):
        result[f"precision@{k}"] = float(per_query[f"precision@{k}"].mean())
    result[f"precision_r{radius}"] = float(per_query[f"precision_r{radius}"].mean())
    result["knn_acc"] = float(per_query["knn_correct"].mean())
    return result
