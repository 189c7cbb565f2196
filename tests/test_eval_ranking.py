"""Ranking metrics: target_ranks / metrics_from_ranks against brute force, hand values, batched evaluate."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.eval import evaluate, metrics_from_ranks, padded_batches, ranks, target_ranks


def brute_rank(row, target, excluded):
    """Pure-Python rank: 1 + count of non-excluded, non-padding, non-target items scoring strictly higher."""
    banned = {int(x) for x in excluded}
    t = float(row[target])
    return 1 + sum(
        1 for j in range(1, len(row)) if j != target and j not in banned and float(row[j]) > t
    )


def brute_metrics(rank_list, ratings, valid, ks=(1, 10, 50, 200), ndcg_ks=(10, 50, 200), thr=4.0):
    out = {}

    def group(rs, suffix):
        n = len(rs)
        for k in ks:
            out[f"hr@{k}{suffix}"] = sum(1.0 for r in rs if r <= k) / n
        for k in ndcg_ks:
            out[f"ndcg@{k}{suffix}"] = sum(1.0 / math.log2(r + 1) for r in rs if r <= k) / n
        out[f"mrr{suffix}"] = sum(1.0 / r for r in rs) / n

    rows = [i for i in range(len(rank_list)) if valid[i]]
    liked = [i for i in rows if ratings[i] >= thr]
    group([rank_list[i] for i in rows], "")
    group([rank_list[i] for i in liked], "_liked")
    out["num_users"] = float(len(rows))
    out["num_users_liked"] = float(len(liked))
    return out


def random_case(rng, batch=16, num_columns=40, hist=7):
    # Small integer scores -> many ties; some -inf columns; target sometimes inside exclude.
    scores = rng.integers(-5, 6, size=(batch, num_columns)).astype(np.float32)
    scores[rng.random((batch, num_columns)) < 0.15] = -np.inf
    target = rng.integers(1, num_columns, size=batch)
    exclude = rng.integers(0, num_columns, size=(batch, hist))
    exclude[rng.random((batch, hist)) < 0.3] = 0
    inside = rng.random(batch) < 0.4
    exclude[inside, 0] = target[inside]
    return scores, target, exclude


def test_target_ranks_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores, target, exclude = random_case(rng)
        got = np.asarray(target_ranks(scores, target, exclude))
        want = [brute_rank(scores[b], target[b], exclude[b]) for b in range(len(target))]
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
    assert ranks is target_ranks


def test_target_ranks_edge_cases():
    # Column 0 scores highest but never counts; the target (3) sits in exclude but is still ranked;
    # item 2 ties with the target (does not count); item 4 is excluded; item 5 is -inf.
    scores = jnp.array([[100.0, 1.0, 5.0, 5.0, 9.0, -jnp.inf, 6.0]])
    got = target_ranks(scores, jnp.array([3]), jnp.array([[3, 4, 0]]))
    assert int(got[0]) == 2  # only item 6 is strictly higher and counted
    # Target scoring -inf: every finite non-excluded item is above it.
    got = target_ranks(scores, jnp.array([5]), jnp.array([[0, 0, 0]]))
    assert int(got[0]) == 6
    # Negative / out-of-range exclude ids are ignored rather than wrapping around.
    got = target_ranks(scores, jnp.array([1]), jnp.array([[-1, 99, 0]]))
    assert int(got[0]) == 5


def test_metrics_match_brute_force():
    rng = np.random.default_rng(1)
    rank_list = rng.integers(1, 400, size=50)
    rank_list[:5] = [1, 10, 11, 200, 201]
    ratings = rng.integers(1, 6, size=50).astype(np.float32)
    valid = (rng.random(50) < 0.8).astype(np.int32)
    got = metrics_from_ranks(rank_list, target_ratings=ratings, valid=valid)
    want = brute_metrics(rank_list.tolist(), ratings.tolist(), valid.tolist())
    assert list(got) == [
        "hr@1", "hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@50", "ndcg@200", "mrr",
        "hr@1_liked", "hr@10_liked", "hr@50_liked", "hr@200_liked",
        "ndcg@10_liked", "ndcg@50_liked", "ndcg@200_liked", "mrr_liked",
        "num_users", "num_users_liked",
    ]
    for key, value in want.items():
        assert type(got[key]) is float
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_metrics_hand_computed_three_users():
    # Three valid users with ranks 1, 3, 15 and target ratings 5, 3, 4 (+ an invalid fourth row).
    m = metrics_from_ranks(
        np.array([1, 3, 15, 1]),
        target_ratings=np.array([5.0, 3.0, 4.0, 5.0]),
        valid=np.array([1, 1, 1, 0]),
    )
    expected = {
        "hr@1": 1 / 3, "hr@10": 2 / 3, "hr@50": 1.0, "hr@200": 1.0,
        # 1/log2(2) = 1, 1/log2(4) = 0.5, 1/log2(16) = 0.25
        "ndcg@10": (1 + 0.5) / 3, "ndcg@50": (1 + 0.5 + 0.25) / 3, "ndcg@200": 1.75 / 3,
        "mrr": (1 + 1 / 3 + 1 / 15) / 3,
        # liked = users 1 and 3 (ranks 1 and 15)
        "hr@1_liked": 0.5, "hr@10_liked": 0.5, "hr@50_liked": 1.0, "hr@200_liked": 1.0,
        "ndcg@10_liked": 0.5, "ndcg@50_liked": 0.625, "ndcg@200_liked": 0.625,
        "mrr_liked": (1 + 1 / 15) / 2,
        "num_users": 3.0, "num_users_liked": 2.0,
    }
    assert set(m) == set(expected)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-12), key


def test_metrics_without_ratings_and_empty_groups():
    m = metrics_from_ranks([2, 5], ks=(1, 5), ndcg_ks=(5,))
    assert set(m) == {"hr@1", "hr@5", "ndcg@5", "mrr", "num_users"}
    assert m["hr@5"] == 1.0 and m["hr@1"] == 0.0
    m = metrics_from_ranks([2, 5], target_ratings=[1.0, 2.0])
    assert m["num_users_liked"] == 0.0 and math.isnan(m["ndcg@10_liked"])
    with pytest.raises(ValueError, match=">= 1"):
        metrics_from_ranks([0, 3])
    with pytest.raises(ValueError, match="positive integers"):
        metrics_from_ranks([1], ks=(0,))


def make_eval_arrays(rng, n=10, num_items=29, max_len=6):
    lengths = rng.integers(1, max_len + 1, size=n)
    inputs = np.zeros((n, max_len), np.int64)
    for i, k in enumerate(lengths):
        inputs[i, :k] = rng.integers(1, num_items + 1, size=k)
    return {
        "inputs": inputs,
        "timestamps": np.cumsum(np.ones((n, max_len), np.int64), axis=1),
        "query_timestamps": np.cumsum(np.ones((n, max_len), np.int64), axis=1) + 1,
        "ratings": rng.integers(1, 6, size=(n, max_len)).astype(np.float32),
        "lengths": lengths.astype(np.int32),
        "target": rng.integers(1, num_items + 1, size=n),
        "target_rating": rng.integers(1, 6, size=n).astype(np.float32),
        "exclude": inputs.copy(),
        "user": np.arange(n),
        "valid": (np.arange(n) != 3).astype(np.int32),  # one real row marked invalid
    }


def test_evaluate_padded_batches_equal_one_batch_and_compile_once():
    rng = np.random.default_rng(2)
    num_items = 29
    arrays = make_eval_arrays(rng, num_items=num_items)
    table = jnp.asarray(rng.normal(size=(num_items + 3, 4)), jnp.float32)  # 2 sharding-padding rows
    traces = []

    @jax.jit
    def score_fn(batch):
        traces.append(1)
        user = table[batch["inputs"]].sum(axis=1)
        logits = jnp.round(user @ table.T * 2.0)  # rounded -> ties
        cols = jnp.arange(table.shape[0])
        return jnp.where((cols == 0) | (cols > num_items), -jnp.inf, logits)

    small = evaluate(score_fn, arrays, batch_size=4, return_ranks=True)  # 3 batches, last padded
    assert len(traces) == 1
    big = evaluate(score_fn, arrays, batch_size=10, return_ranks=True)
    np.testing.assert_array_equal(small.pop("ranks"), big.pop("ranks"))
    assert small == big

    scores = np.asarray(score_fn(arrays))
    want_ranks = [brute_rank(scores[i], arrays["target"][i], arrays["exclude"][i]) for i in range(10)]
    want = brute_metrics(want_ranks, arrays["target_rating"].tolist(), arrays["valid"].tolist())
    assert small["num_users"] == 9.0
    for key, value in want.items():
        assert small[key] == pytest.approx(value, rel=1e-12), key


def test_padded_batches_shapes_and_validity():
    arrays = {"target": np.arange(5) + 1, "exclude": np.ones((5, 2), np.int64)}
    out = list(padded_batches(arrays, 3))
    assert [k for _, k in out] == [3, 2]
    last = out[-1][0]
    assert last["target"].shape == (3,) and last["exclude"].shape == (3, 2)
    np.testing.assert_array_equal(last["valid"], [1, 1, 0])
    np.testing.assert_array_equal(last["target"], [4, 5, 4])  # padding copies a real row


def test_evaluate_rejects_bad_inputs():
    arrays = {"target": np.array([1, 7]), "exclude": np.zeros((2, 1), np.int64)}
    score_fn = jax.jit(lambda b: jnp.zeros((b["target"].shape[0], 5)))
    with pytest.raises(ValueError, match=r"targets in \[1, 5\)"):
        evaluate(score_fn, arrays, batch_size=2)
    with pytest.raises(ValueError, match="got shape"):
        evaluate(lambda b: jnp.zeros((5,)), arrays, batch_size=2)
    with pytest.raises(ValueError, match="disagree"):
        evaluate(score_fn, {"target": np.array([1]), "exclude": np.zeros((2, 1))})
