"""Multi-target ranking metrics against a naive per-user loop and hand-computed cases."""
import math

import numpy as np
import pytest

from genrec_jax.eval import multi_target as mt
from genrec_jax.eval.ranking import exclusion_mask, target_ranks


def naive(scores, exclude, items, ratings, valid, k, gains=None):
    """Pure-Python reference: one user at a time, lists sorted by (-score, id)."""
    num_users, num_items = scores.shape
    out = {f"graded_ndcg@{k}": [], f"hr@{k}": [], f"ndcg@{k}": [], "pairwise_acc": [],
           f"gain_ndcg@{k}": []}
    for u in range(num_users):
        held = {int(items[u, j]): float(ratings[u, j])
                for j in range(items.shape[1]) if valid[u, j]}
        eligible = [i for i in range(num_items) if not exclude[u, i] or i in held]
        ranked = sorted(eligible, key=lambda i: (-scores[u, i], i))[:k]
        disc = [1 / math.log2(p + 2) for p in range(k)]
        if not held:
            for name in (f"graded_ndcg@{k}", f"hr@{k}", f"ndcg@{k}"):
                out[name].append(math.nan)
        else:
            dcg = sum(held.get(i, 0.0) * disc[p] for p, i in enumerate(ranked))
            ideal = sorted(held.values(), reverse=True)[:k]
            idcg = sum(r * disc[p] for p, r in enumerate(ideal))
            out[f"graded_ndcg@{k}"].append(dcg / idcg if idcg > 0 else math.nan)
            out[f"hr@{k}"].append(float(any(i in held for i in ranked)))
            bdcg = sum(disc[p] for p, i in enumerate(ranked) if i in held)
            bidcg = sum(disc[p] for p in range(min(k, len(held))))
            out[f"ndcg@{k}"].append(bdcg / bidcg)
        pairs, credit = 0, 0.0
        keys = sorted(held)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                i, j = keys[a], keys[b]
                if held[i] == held[j]:
                    continue
                pairs += 1
                si, sj = scores[u, i], scores[u, j]
                if si == sj:
                    credit += 0.5
                elif (si > sj) == (held[i] > held[j]):
                    credit += 1.0
        out["pairwise_acc"].append(credit / pairs if pairs else math.nan)
        if gains is not None:
            ranked2 = sorted([i for i in range(num_items) if not exclude[u, i]],
                             key=lambda i: (-scores[u, i], i))[:k]
            dcg = sum(gains[u, i] * disc[p] for p, i in enumerate(ranked2))
            ideal = sorted((gains[u, i] for i in range(num_items) if not exclude[u, i]),
                           reverse=True)[:k]
            idcg = sum(g * disc[p] for p, g in enumerate(ideal))
            out[f"gain_ndcg@{k}"].append(dcg / idcg if idcg > 0 else math.nan)
    if gains is None:
        del out[f"gain_ndcg@{k}"]
    return {name: np.array(v) for name, v in out.items()}


def _random_inputs(seed, num_users=9, num_items=14, slots=5):
    rng = np.random.default_rng(seed)
    # Few distinct score values: many ties, inside and outside the held-out sets.
    scores = rng.integers(0, 6, (num_users, num_items)).astype(np.float64)
    scores[rng.uniform(size=scores.shape) < 0.05] = -np.inf
    exclude = rng.uniform(size=scores.shape) < 0.35
    exclude[:, 0] = True
    items = np.stack([rng.permutation(np.arange(1, num_items))[:slots] for _ in range(num_users)])
    ratings = rng.integers(0, 6, items.shape).astype(np.float64)
    valid = rng.uniform(size=items.shape) < 0.75
    valid[0] = False                        # a user without held-out events
    valid[1] = [True, True, False, False, False]
    ratings[1, :2] = 3.0                    # one equal-rating pair only: no pairwise pair
    ratings[2] = 0.0                        # graded IDCG = 0
    scores[3, items[3, :2]] = -np.inf           # a tie of two -inf held-out scores
    valid[3, :2] = True
    ratings[3, :2] = [1.0, 4.0]
    gains = rng.uniform(0, 5, scores.shape)
    gains[exclude] = np.nan                 # never looked at
    return scores, exclude, items, ratings, valid, gains


@pytest.mark.parametrize("seed,k", [(0, 10), (1, 3), (2, 1), (3, 20)])
def test_matches_naive_loop(seed, k):
    scores, exclude, items, ratings, valid, gains = _random_inputs(seed)
    got = mt.multi_target_metrics(scores, exclude, items, ratings, valid, k=k, gains=gains)
    ref = naive(scores, exclude, items, ratings, valid, k, gains)
    assert set(got["per_user"]) == set(ref)
    for name, values in ref.items():
        np.testing.assert_allclose(got["per_user"][name], values, rtol=1e-12, equal_nan=True,
                                   err_msg=name)
        finite = ~np.isnan(values)
        assert got["num_users"][name] == int(finite.sum())
        assert got["mean"][name] == pytest.approx(values[finite].mean())
    assert got["num_users_without_pairs"] == int(np.isnan(ref["pairwise_acc"]).sum())
    for u in (0, 1):
        assert math.isnan(got["per_user"]["pairwise_acc"][u])
    assert math.isnan(got["per_user"][f"graded_ndcg@{k}"][2])


def test_blocks_give_the_same_answer(monkeypatch):
    scores, exclude, items, ratings, valid, gains = _random_inputs(4, num_users=11)
    full = mt.multi_target_metrics(scores, exclude, items, ratings, valid, k=4, gains=gains)
    monkeypatch.setattr(mt, "_BLOCK_ELEMENTS", 30)  # two users per block
    blocked = mt.multi_target_metrics(scores, exclude, items, ratings, valid, k=4, gains=gains)
    for name in full["per_user"]:
        np.testing.assert_array_equal(blocked["per_user"][name], full["per_user"][name])


def test_hand_computed_case():
    # V = 6; item 0 excluded (padding), item 5 in the history. Ranked: 4, 2, 1, 3 (scores
    # 0.9, 0.8, 0.5, 0.1). Held out: item 2 rated 5, item 3 rated 1, item 4 rated 3.
    scores = np.array([[9.0, 0.5, 0.8, 0.1, 0.9, 1.0]])
    exclude = np.array([[True, False, False, False, False, True]])
    items, ratings = np.array([[2, 3, 4]]), np.array([[5.0, 1.0, 3.0]])
    out = mt.held_out_metrics(scores, exclude, items, ratings, k=2)
    d1, d2, d3 = 1.0, 1 / math.log2(3), 0.5
    assert out["graded_ndcg@2"][0] == pytest.approx((3 * d1 + 5 * d2) / (5 * d1 + 3 * d2))
    assert out["hr@2"][0] == 1.0 and out["ndcg@2"][0] == pytest.approx(1.0)
    out = mt.held_out_metrics(scores, exclude, items, ratings, k=3)
    assert out["ndcg@3"][0] == pytest.approx((d1 + d2) / (d1 + d2 + d3))
    # Pairs (2,3) right, (2,4) wrong, (3,4) right.
    acc = mt.pairwise_accuracy_per_user(scores, items, ratings)
    assert acc[0] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(mt.top_k_items(scores, exclude, k=5), [[4, 2, 1, 3, -1]])


def test_perfect_reversed_and_tied_rankings():
    ratings = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    items = np.array([[1, 2, 3, 4, 5]])
    perfect = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, -1.0]])
    reversed_ = np.array([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1, -1.0]])
    tied = np.zeros((1, 7))
    assert mt.pairwise_accuracy_per_user(perfect, items, ratings)[0] == 1.0
    assert mt.pairwise_accuracy_per_user(reversed_, items, ratings)[0] == 0.0
    assert mt.pairwise_accuracy_per_user(tied, items, ratings)[0] == 0.5
    exclude = np.zeros((1, 7), bool)
    exclude[0, 0] = True
    out = mt.held_out_metrics(perfect, exclude, items, ratings, k=10)
    assert out["graded_ndcg@10"][0] == pytest.approx(1.0)
    assert out["ndcg@10"][0] == pytest.approx(1.0) and out["hr@10"][0] == 1.0
    assert mt.held_out_metrics(reversed_, exclude, items, ratings, k=10)["graded_ndcg@10"][0] < 1
    # Ratings as gains on a full gain matrix: the perfect order is ideal, NDCG = 1.
    gains = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0]])
    assert mt.gain_ndcg(perfect, gains, exclude, k=3)[0] == pytest.approx(1.0)
    assert mt.gain_ndcg(reversed_, gains, exclude, k=3)[0] == pytest.approx(
        (1 + 2 / math.log2(3) + 3 / 2) / (5 + 4 / math.log2(3) + 3 / 2))


def test_held_out_items_are_ranked_even_when_excluded_and_one_target_matches_ranking():
    rng = np.random.default_rng(5)
    num_users, num_items = 12, 30
    scores = rng.normal(size=(num_users, num_items))       # no ties
    history = rng.integers(1, num_items, (num_users, 6))
    target = rng.integers(1, num_items, num_users)
    history[:3, 0] = target[:3]                             # target also in the history
    exclude = np.asarray(exclusion_mask(history, num_items))
    ranks = np.asarray(target_ranks(scores, target, history))
    out = mt.held_out_metrics(scores, exclude, target[:, None], np.full((num_users, 1), 4.0),
                              k=10)
    np.testing.assert_allclose(out["hr@10"], (ranks <= 10).astype(float))
    ndcg = np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0)
    np.testing.assert_allclose(out["ndcg@10"], ndcg, rtol=1e-12)
    np.testing.assert_allclose(out["graded_ndcg@10"], ndcg, rtol=1e-12)  # one target
    # gain = one-hot of a (non-excluded) target: gain_ndcg is the single-target NDCG.
    rows = ~exclude[np.arange(num_users), target]
    assert rows.sum() >= 5
    gains = np.zeros((num_users, num_items))
    gains[np.arange(num_users), target] = 1.0
    np.testing.assert_allclose(mt.gain_ndcg(scores, gains, exclude, k=10)[rows], ndcg[rows],
                               rtol=1e-12)


def test_errors_name_the_argument():
    scores, exclude, items, ratings, valid, _ = _random_inputs(6)
    with pytest.raises(ValueError, match="scores must not be NaN"):
        bad = scores.copy()
        bad[0, 3] = np.nan
        mt.held_out_metrics(bad, exclude, items, ratings, valid)
    with pytest.raises(ValueError, match=r"exclude must have the shape of scores"):
        mt.held_out_metrics(scores, exclude[:, :-1], items, ratings, valid)
    with pytest.raises(ValueError, match=r"items must be a 2-D \[U, k\] array with U = 9"):
        mt.held_out_metrics(scores, exclude, items[:-1], ratings, valid)
    with pytest.raises(ValueError, match=r"ratings must have the shape of items"):
        mt.held_out_metrics(scores, exclude, items, ratings[:, :-1], valid)
    with pytest.raises(ValueError, match=r"valid must have the shape of items"):
        mt.held_out_metrics(scores, exclude, items, ratings, valid[:, :-1])
    with pytest.raises(ValueError, match=r"items must lie in \[0, 14\) where valid"):
        mt.held_out_metrics(scores, exclude, np.where(valid, 14, items), ratings, valid)
    with pytest.raises(ValueError, match="items must be distinct within a user's valid slots"):
        mt.held_out_metrics(scores, exclude, np.full_like(items, 3), ratings, np.ones_like(valid))
    with pytest.raises(ValueError, match=r"ratings must be >= 0"):
        mt.held_out_metrics(scores, exclude, items, -np.ones_like(ratings), valid)
    with pytest.raises(ValueError, match=r"k must be a positive integer"):
        mt.held_out_metrics(scores, exclude, items, ratings, valid, k=0)
    with pytest.raises(ValueError, match=r"gains must have the shape of scores"):
        mt.gain_ndcg(scores, np.ones((2, 2)), exclude)
    with pytest.raises(ValueError, match=r"gains must be finite on the non-excluded items"):
        mt.gain_ndcg(scores, np.full(scores.shape, np.nan), exclude)
    # Garbage in invalid slots is fine.
    junk_items = np.where(valid, items, -7)
    junk_ratings = np.where(valid, ratings, np.nan)
    a = mt.multi_target_metrics(scores, exclude, junk_items, junk_ratings, valid, k=5)
    b = mt.multi_target_metrics(scores, exclude, items, ratings, valid, k=5)
    for name in a["per_user"]:
        np.testing.assert_array_equal(a["per_user"][name], b["per_user"][name])
