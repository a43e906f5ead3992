"""Hamming retrieval metrics against a direct, slow implementation of the same definitions (plain loops over
unpacked 0/1 codes), including many ties, code lengths that are not multiples of 8 and edge cases."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from imgbench.metrics import bits as numpy_popcount
from imgbench.metrics.retrieval import (
    binarize,
    hamming_distances,
    pack_codes,
    popcount,
    query_metrics,
    retrieval_metrics,
    unpack_codes,
)


def reference(qc, ql, dc, dl, cutoff, ks, radius, knn_k) -> dict[str, list]:
    """The definitions of imgbench.metrics.retrieval, one query and one database item at a time."""
    n_db = len(dc)
    out: dict[str, list] = {"ap": [], "ap_cut": [], "precision_r": [], "knn_pred": []}
    out.update({f"precision@{k}": [] for k in ks})
    for q in range(len(qc)):
        dist = [sum(int(a) != int(b) for a, b in zip(qc[q], dc[j])) for j in range(n_db)]
        ranking = sorted(range(n_db), key=lambda j: (dist[j], j))  # ties: database index
        rel = [dl[j] == ql[q] for j in ranking]

        hits, total = 0, 0.0
        for k, r in enumerate(rel, 1):
            if r:
                hits += 1
                total += hits / k
        out["ap"].append(total / sum(rel) if sum(rel) else 0.0)

        hits, total = 0, 0.0
        for k in range(1, min(cutoff, n_db) + 1):
            if rel[k - 1]:
                hits += 1
                total += hits / k
        out["ap_cut"].append(total / hits if hits else 0.0)

        for k in ks:
            out[f"precision@{k}"].append(sum(rel[:k]) / k)

        within = [j for j in range(n_db) if dist[j] <= radius]
        relevant = sum(1 for j in within if dl[j] == ql[q])
        out["precision_r"].append(relevant / len(within) if within else 0.0)

        nearest = [dl[j] for j in ranking[:knn_k]]
        votes = Counter(nearest)
        best = max(votes.values())
        out["knn_pred"].append(next(label for label in nearest if votes[label] == best))
    return out


def random_codes(rng, n, bits, classes, flip=0.25, labels=None):
    """Codes clustered around one prototype per class, so that rankings are informative (and tied)."""
    protos = rng.integers(0, 2, (len(classes), bits))
    idx = rng.integers(0, len(classes), n)
    codes = protos[idx] ^ (rng.random((n, bits)) < flip)
    return codes.astype(np.uint8), np.asarray(classes)[idx]


def assert_matches_reference(qc, ql, dc, dl, cutoff=50, ks=(1, 10, 40), radius=2, knn_k=5, **kwargs):
    got = query_metrics(qc, ql, dc, dl, map_cutoff=cutoff, precision_ks=ks, radius=radius, knn_k=knn_k, **kwargs)
    want = reference(np.asarray(qc), np.asarray(ql), np.asarray(dc), np.asarray(dl), cutoff, ks, radius, knn_k)
    np.testing.assert_allclose(got["ap"], want["ap"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[f"ap@{min(cutoff, len(dc))}"], want["ap_cut"], rtol=1e-12, atol=1e-12)
    for k in ks:
        np.testing.assert_allclose(got[f"precision@{k}"], want[f"precision@{k}"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[f"precision_r{radius}"], want["precision_r"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got["knn_pred"], want["knn_pred"])
    np.testing.assert_array_equal(got["knn_correct"], np.asarray(want["knn_pred"]) == np.asarray(ql))

    means = retrieval_metrics(qc, ql, dc, dl, map_cutoff=cutoff, precision_ks=ks, radius=radius, knn_k=knn_k, **kwargs)
    assert means["map"] == pytest.approx(np.mean(want["ap"]))
    assert means[f"map@{cutoff}"] == pytest.approx(np.mean(want["ap_cut"]))
    assert means[f"precision_r{radius}"] == pytest.approx(np.mean(want["precision_r"]))
    assert means["knn_acc"] == pytest.approx(np.mean(np.asarray(want["knn_pred"]) == np.asarray(ql)))
    return got


@pytest.mark.parametrize("bits", [1, 3, 7, 12, 48, 64, 65, 130])
def test_every_metric_matches_the_direct_implementation(bits):
    rng = np.random.default_rng(bits)
    classes = [0, 1, 2, 3]
    qc, ql = random_codes(rng, 25, bits, classes)
    dc, dl = random_codes(rng, 120, bits, classes)
    assert_matches_reference(qc, ql, dc, dl, cutoff=50, ks=(1, 10, 40, 120), radius=2, knn_k=5)


@pytest.mark.parametrize(("radius", "knn_k", "cutoff"), [(0, 1, 1), (1, 4, 30), (5, 7, 1000), (200, 120, 120)])
def test_options_match_the_direct_implementation(radius, knn_k, cutoff):
    """Radius 0 (exact matches only), even k (two-way vote ties), a cutoff beyond the database, k = database."""
    rng = np.random.default_rng(radius + knn_k)
    qc, ql = random_codes(rng, 30, 6, [0, 1, 2], flip=0.3)  # 6 bits for 120 items: ties everywhere
    dc, dl = random_codes(rng, 120, 6, [0, 1, 2], flip=0.3)
    assert_matches_reference(qc, ql, dc, dl, cutoff=cutoff, ks=(5, 120), radius=radius, knn_k=knn_k)


def test_chunks_threads_and_input_types_do_not_change_results():
    rng = np.random.default_rng(7)
    qc, ql = random_codes(rng, 40, 20, [3, 8, 11])
    dc, dl = random_codes(rng, 90, 20, [3, 8, 11])
    base = query_metrics(qc, ql, dc, dl, map_cutoff=20, precision_ks=(10, 30), knn_k=3)
    variants = [
        {"chunk_elements": 90 * 3, "workers": 2},  # 14 chunks of 3 queries on two threads
        {"chunk_elements": 1, "workers": 1},
    ]
    for kwargs in variants:
        got = query_metrics(qc, ql, dc, dl, map_cutoff=20, precision_ks=(10, 30), knn_k=3, **kwargs)
        for key in base:
            np.testing.assert_array_equal(got[key], base[key])
    tensors = query_metrics(
        torch.tensor(qc, dtype=torch.float32),
        torch.tensor(ql),
        torch.tensor(dc).bool(),
        torch.tensor(dl),
        map_cutoff=20,
        precision_ks=(10, 30),
        knn_k=3,
    )
    for key in base:
        np.testing.assert_array_equal(tensors[key], base[key])
    assert set(np.unique(base["knn_pred"])) <= {3, 8, 11}  # labels come back as given, not remapped


def test_edge_cases():
    # a query whose class is not in the database: every metric 0, and kNN is wrong
    dc = np.array([[0, 0, 0], [1, 1, 1], [0, 1, 0]])
    dl = np.array([0, 1, 0])
    qc = np.array([[0, 0, 0], [0, 0, 1]])
    ql = np.array([2, 0])
    got = assert_matches_reference(qc, ql, dc, dl, cutoff=2, ks=(1, 3), radius=0, knn_k=1)
    assert got["ap"][0] == got["ap@2"][0] == got["precision@3"][0] == got["precision_r0"][0] == 0
    # nothing within radius 0 of the second query (001 is not in the database): precision 0, not NaN
    assert got["precision_r0"][1] == 0.0
    # all codes equal: the ranking is the database order, so AP follows the positions of the relevant items
    same = np.zeros((1, 5), dtype=np.uint8)
    got = assert_matches_reference(same, [1], np.zeros((4, 5)), [0, 1, 0, 1], cutoff=4, ks=(2,), knn_k=2)
    assert got["ap"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert got["knn_pred"][0] == 0  # a 1-1 vote tie goes to the class ranked first (index 0)
    # a database of one item
    assert_matches_reference(np.ones((3, 9)), [0, 1, 1], np.zeros((1, 9)), [1], cutoff=1000, ks=(1,), knn_k=1)


def test_knn_tie_rule_prefers_the_class_ranked_first():
    # distances 0, 1, 2, 3 -> ranking is the database order; labels 2, 1, 1, 2: a 2-2 tie won by class 2
    dc = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])
    q = np.zeros((1, 3))
    assert query_metrics(q, [1], dc, [2, 1, 1, 2], precision_ks=(), knn_k=4)["knn_pred"][0] == 2
    assert query_metrics(q, [1], dc, [1, 2, 2, 1], precision_ks=(), knn_k=4)["knn_pred"][0] == 1
    # three votes beat two even when the two are nearer
    assert query_metrics(q, [1], np.vstack([dc, dc[3:]]), [2, 2, 1, 1, 1], precision_ks=(), knn_k=5)["knn_pred"][0] == 1


def test_packing_round_trips_and_popcounts(monkeypatch):
    rng = np.random.default_rng(0)
    for bits in (1, 8, 13, 63, 64, 65, 128, 200):
        codes = rng.integers(0, 2, (17, bits)).astype(bool)
        packed = pack_codes(codes)
        assert packed.dtype == np.uint64 and packed.shape == (17, -(-bits // 64))
        np.testing.assert_array_equal(unpack_codes(packed, bits), codes)
        np.testing.assert_array_equal(popcount(packed).sum(1), codes.sum(1))
    # bit i of a code is bit i % 64 of word i // 64, including the top bit of a word
    top = np.zeros((1, 70), dtype=bool)
    top[0, 63] = top[0, 64] = True
    assert pack_codes(top).tolist() == [[1 << 63, 1]]
    words = np.array([0, 1, (1 << 64) - 1, 1 << 63, 0x0123456789ABCDEF], dtype=np.uint64)
    want = [0, 1, 64, 1, bin(0x0123456789ABCDEF).count("1")]
    assert popcount(words).tolist() == want
    assert numpy_popcount._popcount_swar(words).tolist() == want  # the path numpy < 2.0 takes
    codes_a, codes_b = rng.integers(0, 2, (6, 130)), rng.integers(0, 2, (9, 130))
    direct = (codes_a[:, None, :] != codes_b[None, :, :]).sum(-1)
    np.testing.assert_array_equal(hamming_distances(codes_a, codes_b), direct)
    monkeypatch.setattr(numpy_popcount, "_HAS_BITWISE_COUNT", False)
    np.testing.assert_array_equal(hamming_distances(codes_a, codes_b), direct)
    # the whole metric pipeline on the fallback popcount
    qc, ql = random_codes(rng, 10, 70, [0, 1])
    dc, dl = random_codes(rng, 40, 70, [0, 1])
    assert_matches_reference(qc, ql, dc, dl, cutoff=10, ks=(5,), knn_k=3)


def test_binarize_uses_the_half_threshold():
    h = torch.tensor([[0.5, 0.49999, 0.9, 0.0]])
    assert binarize(h).tolist() == [[True, False, True, False]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision_ks": (11,)}, "database size"),
        ({"knn_k": 0}, "database size"),
        ({"radius": -1}, "radius"),
    ],
)
def test_impossible_settings_fail_clearly(kwargs, message):
    codes = np.zeros((10, 4))
    with pytest.raises(ValueError, match=message):
        query_metrics(codes, np.zeros(10), codes, np.zeros(10), **kwargs)


def test_bad_codes_fail_clearly():
    with pytest.raises(ValueError, match="only 0 and 1"):
        pack_codes(np.array([[0.2, 1.0]]))
    with pytest.raises(ValueError, match="equal bits"):
        query_metrics(np.zeros((2, 3)), [0, 0], np.zeros((2, 4)), [0, 0], precision_ks=(), knn_k=1)
