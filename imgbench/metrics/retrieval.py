"""Hamming-ranking retrieval metrics and Hamming kNN classification for binary codes.

Codes are packed into 64-bit words (bit ``i`` of a code is bit ``i % 64`` of word ``i // 64``) and Hamming
distances are integer popcounts of ``query XOR database`` (numpy's hardware ``bitwise_count`` where numpy
has it, a SWAR bit trick otherwise), computed for one chunk of queries at a time so that memory stays
bounded (``chunk_elements`` distances per chunk), on all cores (``workers`` threads; numpy releases the GIL).

The whole-ranking metrics need no sort of the database: distances are small integers, so each query's
distances become one bitset per distance level; the number of items at each distance (popcounts) and a prefix
popcount give every relevant item's place in the ranking exactly (ties by database index included), and only
the relevant items (one class) are sorted. AP, AP@K and precision@k follow from those places, precision within
the radius from the per-distance counts, and kNN from the few items at the nearest distances.

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
_M1, _M2, _M4 = (np.uint64(v) for v in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F))
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0


def _numpy(x: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def binarize(activations: torch.Tensor | np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary codes from hash-layer activations: ``activations >= threshold`` (DLBHC: sigmoid >= 0.5)."""
    return _numpy(activations) >= threshold


def pack_codes(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, bits)`` codes of 0/1 (or bool) -> ``(N, ceil(bits / 64))`` uint64 words, zero-padded."""
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
    """The inverse of :func:`pack_codes`: ``(N, words)`` uint64 -> ``(N, bits)`` bool."""
    packed = np.ascontiguousarray(packed, dtype="<u8")
    as_bytes = packed.view(np.uint8).reshape(len(packed), -1)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :bits].astype(bool)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of every uint64 word, as uint8."""
    words = np.asarray(words, dtype=np.uint64)
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(words)
    return _popcount_swar(words)


def _popcount_swar(x: np.ndarray) -> np.ndarray:
    """Popcount by the classic bit trick (for numpy < 2.0, which has no ``bitwise_count``)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.uint8)


def _distances(query: np.ndarray, database: np.ndarray, nbits: int) -> np.ndarray:
    """Hamming distances between packed codes: ``(Q, W)`` x ``(D, W)`` -> ``(Q, D)`` uint8 (uint16 for long codes)."""
    dtype = np.uint8 if nbits < 256 else np.uint16
    out = np.zeros((len(query), len(database)), dtype=dtype)
    for w in range(query.shape[1]):
        out += popcount(query[:, w, None] ^ database[None, :, w]).astype(dtype, copy=False)
    return out


def hamming_distances(query_codes: torch.Tensor | np.ndarray, database_codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """All Hamming distances between two sets of unpacked 0/1 codes, ``(Q, D)`` (for small sets)."""
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
    """Per-query values of every metric of the module docstring (``ap``, ``ap@K``, ``precision@k``,
    ``precision_r<r>``, ``knn_correct``) and ``knn_pred``, the kNN label of every query.

    Codes are unpacked ``(N, bits)`` arrays of 0/1 or bool (e.g. from :func:`binarize`); labels are integers.
    ``chunk_elements`` bounds the query x database pairs handled at once (memory), ``workers`` the threads.
    """
    q_codes, d_codes = _numpy(query_codes), _numpy(database_codes)
    q_labels, d_labels = _numpy(query_labels).reshape(-1), _numpy(database_labels).reshape(-1)
    if q_codes.ndim != 2 or d_codes.ndim != 2 or q_codes.shape[1] != d_codes.shape[1]:
        raise ValueError(f"codes must be (items, bits) with equal bits, got {q_codes.shape} and {d_codes.shape}")
    if len(q_labels) != len(q_codes) or len(d_labels) != len(d_codes):
        raise ValueError("every code needs one label")
    n_db = len(d_codes)
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
    db = _BitSlicedDatabase(d_codes, d_lab, len(classes))
    # queries sorted by label, so that a chunk holds few classes (the relevant items are one class's items)
    by_label = np.argsort(q_lab, kind="stable")
    q_bits = np.asarray(q_codes, dtype=bool)[by_label] if q_codes.dtype == np.bool_ else q_codes[by_label] != 0
    q_lab_sorted = q_lab[by_label]

    settings = (min(map_cutoff, n_db), ks, radius, knn_k)
    chunk = max(1, min(len(q_bits), chunk_elements // n_db))
    starts = range(0, len(q_bits), chunk)

    def run(s: int) -> dict[str, np.ndarray]:
        return _chunk_metrics(q_bits[s : s + chunk], q_lab_sorted[s : s + chunk], db, *settings)

    workers = workers or max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(s) for s in starts]
    unsort = np.empty_like(by_label)
    unsort[by_label] = np.arange(len(by_label))
    out = {key: np.concatenate([p[key] for p in parts])[unsort] for key in parts[0]}
    out["knn_pred"] = classes[out["knn_pred"]]
    return out


_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def _bitset(mask: np.ndarray, words: int) -> np.ndarray:
    """Bool ``(..., n)`` -> uint64 ``(..., words)``: item ``j`` is bit ``j % 64`` of word ``j // 64``."""
    padded = np.zeros((*mask.shape[:-1], words * 64), dtype=bool)
    padded[..., : mask.shape[-1]] = mask
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def _packed(values: np.ndarray) -> np.ndarray:
    """``(Q, words * 64)`` values -> ``(Q, words)`` uint64 bitsets of the nonzero ones."""
    packed = np.packbits(values, axis=-1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)


class _BitSlicedDatabase:
    """The database for sort-free ranking: packed codes, and each class's items (a query's relevant set) with
    their word and bit positions in bitsets over the database."""

    def __init__(self, codes: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
        self.n, self.nbits = codes.shape
        self.words = -(-self.n // 64)
        bits = np.asarray(codes) != 0
        self.valid = _bitset(np.ones((1, self.n), dtype=bool), self.words)[0]  # padding items are never ranked
        self.labels = labels
        self.n_classes = n_classes
        self.members = [np.flatnonzero(labels == c) for c in range(n_classes)]  # ascending database index
        self.member_words = [m >> 6 for m in self.members]
        # bits 0..j % 64 of item j's word: the item and those before it in its word
        self.member_upto = [_ONES >> (np.uint64(63) - (m & 63).astype(np.uint64)) for m in self.members]
        self.codes = pack_codes(bits)  # (n, code words), for the few distances needed item by item


def _chunk_metrics(
    q_bits: np.ndarray,
    q_lab: np.ndarray,
    db: _BitSlicedDatabase,
    cutoff: int,
    ks: list[int],
    radius: int,
    knn_k: int,
) -> dict[str, np.ndarray]:
    """Every metric for a chunk of queries without sorting the database.

    The distances are split into one bitset per distance level (64 items per word). Per level, popcounts give
    how many items lie at each distance; a relevant item's place in the ranking (distance, then database index)
    is the number of items at smaller distances plus the number at its own distance up to its index: a prefix
    popcount. Only the relevant items (one class, a fraction of the database) are sorted, which gives each one's
    count of relevant items up to it.
    """
    n_q = len(q_bits)
    nbits, words = db.nbits, db.words
    n_levels = nbits + 1
    q_words = pack_codes(q_bits)
    dist = np.zeros((n_q, words * 64), dtype=np.uint8 if nbits < 256 else np.uint16)  # padding items: masked
    dist[:, : db.n] = _distances(q_words, db.codes, nbits)
    # one bitset per distance 0..nbits, (Q, levels, words): bit planes of the distances, then a decoder tree
    planes = [_packed(dist & (1 << b)) for b in range(nbits.bit_length())]
    levels = np.empty((n_q, n_levels, words), dtype=np.uint64)
    _decode(planes, len(planes) - 1, np.broadcast_to(db.valid, (n_q, words)), 0, nbits, levels)
    per_word = popcount(levels)  # (Q, levels, words) uint8
    count = per_word.sum(-1, dtype=np.int64)  # items at each distance
    below = np.cumsum(count, axis=1) - count  # items at smaller distances
    before = _exclusive_scan(per_word).reshape(-1)  # same distance, earlier words: (words, Q, levels)
    flat_levels = levels.reshape(-1)

    ap = np.zeros(n_q)
    ap_cut = np.zeros(n_q)
    within_rel = np.zeros(n_q)
    precision = {k: np.zeros(n_q) for k in ks}
    r = min(radius, nbits)
    for c in np.unique(q_lab):
        rows = np.flatnonzero(q_lab == c)
        items = db.members[c]
        if len(items) == 0:
            continue  # AP 0, precision 0: nothing relevant in the database
        rel_dist = np.take(dist[rows], items, axis=1)  # (rows, relevant items)
        within_rel[rows] = np.count_nonzero(rel_dist <= r, axis=1)
        # the relevant items in ranking order: the n-th of them has n relevant items up to it
        order = np.argsort(rel_dist, axis=1, kind="stable")
        d = np.take_along_axis(rel_dist, order, axis=1).astype(np.int64)
        w = db.member_words[c][order]
        level_row = rows[:, None] * n_levels + d  # index into (Q, levels)
        same = np.take(before, w * (n_q * n_levels) + level_row)  # at its distance, in earlier words
        same += popcount(np.take(flat_levels, level_row * words + w) & db.member_upto[c][order])  # its word
        position = np.take(below, level_row) + same  # 1-based place in the ranking, increasing
        prec_at = np.arange(1, len(items) + 1) / position
        ap[rows] = prec_at.sum(1) / len(items)
        top = position <= cutoff
        ap_cut[rows] = np.where(top, prec_at, 0.0).sum(1) / np.maximum(top.sum(1), 1)
        for k in ks:
            precision[k][rows] = np.count_nonzero(position <= k, axis=1) / k
    out = {"ap": ap, f"ap@{cutoff}": ap_cut}
    out.update({f"precision@{k}": precision[k] for k in ks})

    # precision within the Hamming radius: the per-distance counts and the relevant items' distances
    within = below[:, r] + count[:, r]
    out[f"precision_r{radius}"] = np.where(within > 0, within_rel / np.maximum(within, 1), 0.0)

    pred = _knn(levels, below + count, q_words, db, knn_k)
    out["knn_pred"] = pred
    out["knn_correct"] = (pred == q_lab).astype(np.float64)
    return out


def _exclusive_scan(per_word: np.ndarray) -> np.ndarray:
    """``(Q, levels, words)`` counts -> exclusive prefix sums over the words, laid out ``(words, Q, levels)``.

    One whole-row add per word (``np.cumsum`` along the last axis runs an element loop, 5x slower here)."""
    n = per_word.shape[-1]
    dtype = np.uint16 if n * 64 < 1 << 16 else np.uint32
    counts = np.ascontiguousarray(np.moveaxis(per_word, -1, 0))
    out = np.empty(counts.shape, dtype=dtype)
    out[0] = 0
    for w in range(1, n):
        np.add(out[w - 1], counts[w - 1], out=out[w])
    return out


def _decode(planes: list[np.ndarray], b: int, mask: np.ndarray, value: int, nbits: int, out: np.ndarray) -> None:
    """Split ``mask`` by the distance bit planes ``b``, ``b - 1``, ..., 0 into one bitset per distance value."""
    if b < 0:
        out[:, value] = mask
        return
    high = value | (1 << b)
    if high <= nbits:  # no distance exceeds the code length
        _decode(planes, b - 1, mask & planes[b], high, nbits, out)
    _decode(planes, b - 1, mask & ~planes[b], value, nbits, out)


def _knn(levels: np.ndarray, upto: np.ndarray, q_words: np.ndarray, db: _BitSlicedDatabase, knn_k: int) -> np.ndarray:
    """Hamming kNN vote: most votes, then the class whose best-ranked item comes first."""
    n_q = len(levels)
    last = np.argmax(upto >= knn_k, axis=1)  # the distance that completes the k nearest
    near = levels[:, : last.max() + 1]
    take = np.arange(near.shape[1])[None, :, None] <= last[:, None, None]
    candidates = np.bitwise_or.reduce(np.where(take, near, np.uint64(0)), axis=1)  # (Q, words)
    qi, wi = np.nonzero(candidates)
    bits = np.unpackbits(candidates[qi, wi].astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    ri, bi = np.nonzero(bits)
    q_of, item = qi[ri], wi[ri] * 64 + bi
    dist = popcount(q_words[q_of] ^ db.codes[item]).sum(1, dtype=np.int64)
    order = np.lexsort((item, dist, q_of))  # per query: by distance, then database index
    q_of, item = q_of[order], item[order]
    starts = np.searchsorted(q_of, np.arange(n_q))
    picks = starts[:, None] + np.arange(knn_k)[None, :]  # every query has at least k candidates
    neighbours = db.labels[item[picks]]  # (Q, k), nearest first
    n_classes = db.n_classes
    flat = neighbours + (np.arange(n_q) * n_classes)[:, None]
    votes = np.bincount(flat.ravel(), minlength=n_q * n_classes).reshape(n_q, n_classes)
    first_seen = np.full((n_q, n_classes), knn_k, dtype=np.int64)
    for p in range(knn_k - 1, -1, -1):  # later writes (better ranks) win
        first_seen[np.arange(n_q), neighbours[:, p]] = p
    return np.argmax(votes * (knn_k + 1) + (knn_k - first_seen), axis=1)


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
    """Means over the queries: ``map``, ``map@<cutoff>``, ``precision@<k>``, ``precision_r<radius>`` and
    ``knn_acc`` (definitions in the module docstring). The cutoff in the name is the one asked for."""
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
