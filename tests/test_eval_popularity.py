"""Most-popular baseline on a hand-made count table."""

import numpy as np
import pytest

from genrec_jax.eval import evaluate, item_counts, popularity_score_fn, popularity_scores

# Items 1..6 with counts 5, 9, 5, 0, 9, 1. Order (count desc, lower id first on ties):
# 2, 5, 1, 3, 6, 4  -> unexcluded ranks: item 2 -> 1, 5 -> 2, 1 -> 3, 3 -> 4, 6 -> 5, 4 -> 6.
COUNTS = np.array([0, 5, 9, 5, 0, 9, 1], np.float64)


def test_item_counts():
    items = np.array([[1, 2, 2, 0], [5, 2, 3, 0]])
    np.testing.assert_array_equal(item_counts(items, 6), [0, 1, 3, 1, 0, 1, 0])
    np.testing.assert_array_equal(
        item_counts([1, 1, 2], 2, weights=[0.5, 0.5, 2.0]), [0.0, 1.0, 2.0]
    )
    with pytest.raises(ValueError, match="item ids"):
        item_counts([7], 6)


def test_popularity_scores_order_and_padding():
    scores = popularity_scores(COUNTS, num_columns=9)
    assert scores.dtype == np.float32 and scores.shape == (9,)
    assert np.isneginf(scores[0]) and np.isneginf(scores[7:]).all()
    order = np.argsort(-scores[1:7], kind="stable") + 1
    np.testing.assert_array_equal(order, [2, 5, 1, 3, 6, 4])
    assert len(set(scores[1:7].tolist())) == 6  # ties broken -> all distinct
    with pytest.raises(ValueError, match="num_columns"):
        popularity_scores(COUNTS, num_columns=3)


def test_popularity_baseline_known_ranks():
    arrays = {
        "target": np.array([2, 4, 3, 5, 1, 6]),
        "exclude": np.array([[0, 0], [0, 0], [2, 0], [5, 2], [2, 5], [4, 0]]),
        "target_rating": np.array([5.0, 1.0, 4.0, 4.0, 2.0, 5.0], np.float32),
    }
    # 2: rank 1. 4: last of 6. 3: above it 5, 1 (2 excluded) -> 3. 5: target in exclude is still
    # ranked, 2 excluded -> 1. 1: 2 and 5 excluded -> 1. 6: above it 2, 5, 1, 3 -> 5.
    want = np.array([1, 6, 3, 1, 1, 5])
    out = evaluate(popularity_score_fn(COUNTS, num_columns=8), arrays, batch_size=4, return_ranks=True)
    np.testing.assert_array_equal(out["ranks"], want)
    assert out["hr@1"] == pytest.approx(3 / 6)
    assert out["mrr"] == pytest.approx(np.mean(1.0 / want))
    assert out["num_users_liked"] == 4.0
    assert out["mrr_liked"] == pytest.approx(np.mean(1.0 / want[[0, 2, 3, 5]]))
