"""Held-out blocks of k events per user: the split, the evaluation arrays and the per-user
block metrics (graded NDCG, pairwise accuracy, NDCG with the simulator's true gains)."""

import numpy as np
import pytest

from genrec_jax.data import Events, build_sequences, eval_arrays, leave_last_out, train_arrays
from genrec_jax.eval import multi_target as mt
from genrec_jax.eval.holdout import block_per_user

eq = np.testing.assert_array_equal


def _dataset(lengths, repeat=None):
    """User u has items 1..n_u (rating = 1 + item % 5, time = item); ``repeat = (u, i, j)``
    makes user u's i-th event the same item as its j-th."""
    rows = []
    for u, n in enumerate(lengths):
        items = list(range(1, n + 1))
        if repeat is not None and repeat[0] == u:
            items[repeat[1]] = items[repeat[2]]
        rows += [(u, it, 1 + it % 5, t) for t, it in enumerate(items)]
    user, item, rating, ts = (np.array(c) for c in zip(*rows))
    return build_sequences(Events(user=user.astype(np.int64), item=item.astype(np.int64),
                                  rating=rating.astype(np.float32), timestamp=ts.astype(np.int64),
                                  source="hand-made", rating_scale=(1.0, 5.0)))


def test_split_holds_out_blocks_of_k_and_shrinks_them_for_short_histories():
    ds = _dataset([10, 5, 2])
    split = leave_last_out(ds, validation=True, holdout=3)
    # b = min(3, max((n - 1) // 2, 1)): 3, 2, 1.
    eq(split.block_len, [3, 2, 1])
    eq(split.test_pos - ds.offsets[:-1], [7, 3, 1])
    eq(split.valid_pos - ds.offsets[:-1], [4, 1, 0])
    eq(split.train_len, [4, 1, 0])
    no_valid = leave_last_out(ds, holdout=3)
    eq(no_valid.block_len, [3, 3, 1]) and eq(no_valid.train_len, [7, 2, 1])
    # k = 1 is leave-last-out.
    one = leave_last_out(ds, validation=True)
    eq(one.test_pos - ds.offsets[:-1], [9, 4, 1]) and eq(one.train_len, [8, 3, 0])
    assert "block_items" not in eval_arrays(one, 4)
    with pytest.raises(ValueError, match="holdout must be >= 1"):
        leave_last_out(ds, holdout=0)


def test_eval_arrays_carry_the_block_and_training_stops_before_it():
    ds = _dataset([10, 5], repeat=(0, 9, 8))  # user 0's last two events are the same item
    split = leave_last_out(ds, validation=True, holdout=3)
    test = eval_arrays(split, 20, which="test")
    # User 0: history = events 0..6 (items 1..7), block = items 8, 9, 9 (the repeat dropped).
    eq(test["target"], [8, 4]) and eq(test["lengths"], [7, 3])
    eq(test["block_items"], [[8, 9, 0], [4, 5, 0]])
    eq(test["block_valid"], [[1, 1, 0], [1, 1, 0]])
    eq(test["block_ratings"], [[4, 5, 0], [5, 1, 0]])
    valid = eval_arrays(split, 20, which="validation")
    eq(valid["block_items"], [[5, 6, 7], [2, 3, 0]]) and eq(valid["lengths"], [4, 1])
    rows = train_arrays(split, 20)
    eq(rows["lengths"], [3, 0])  # 4 training events -> 3 input/target pairs; user 1: 1 event


def _arrays():
    """Two users, 6 columns (0 = padding), user 1 invalid."""
    return {"user": np.array([0, 1]), "valid": np.array([1.0, 0.0]),
            "exclude": np.array([[1, 0], [2, 0]]),
            "block_items": np.array([[2, 3, 4], [1, 3, 0]]),
            "block_ratings": np.array([[5.0, 1.0, 3.0], [4.0, 2.0, 0.0]]),
            "block_valid": np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])}


def test_block_metrics_match_the_multi_target_module_and_ignore_padding_columns():
    scores = np.array([[0.0, 9.0, 1.0, 3.0, 2.0, 0.5, 99.0],
                       [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 99.0]])  # column 6: table padding

    def score_fn(batch):
        return scores[np.asarray(batch["user"])]

    def gains_fn(batch):
        return np.tile([0.0, 1.0, 5.0, 2.0, 4.0, 3.0], (len(batch["user"]), 1))

    a = _arrays()
    got = block_per_user(score_fn, a, num_columns=6, batch_size=4, gains_fn=gains_fn)
    exclude = np.zeros((2, 6), bool)
    exclude[:, 0], exclude[0, 1], exclude[1, 2] = True, True, True
    ref = mt.multi_target_metrics(scores[:, :6], exclude, a["block_items"], a["block_ratings"],
                                  a["block_valid"] != 0, k=10, gains=gains_fn(a))["per_user"]
    for name, key in (("graded_ndcg@10", "graded_ndcg@10"), ("pairwise_acc", "pairwise_acc"),
                      ("block_hr@10", "hr@10"), ("block_ndcg@10", "ndcg@10"),
                      ("true_ndcg@10", "gain_ndcg@10")):
        assert got[name][0] == pytest.approx(ref[key][0]), name
        assert np.isnan(got[name][1]), name  # invalid row
    # User 0 ranks 3 (score 3, rating 1) above 4 (2, rating 3) above 2 (1, rating 5): every
    # pair reversed. True gains in the policy's order 3, 4, 2, 5: 2, 4, 5, 3; ideal 5, 4, 3, 2.
    assert got["pairwise_acc"][0] == 0.0
    d = 1 / np.log2(np.arange(2, 7))
    assert got["true_ndcg@10"][0] == pytest.approx((2 * d[0] + 4 * d[1] + 5 * d[2] + 3 * d[3])
                                                   / (5 * d[0] + 4 * d[1] + 3 * d[2] + 2 * d[3]))


def test_block_metrics_need_blocks_or_gains():
    a = _arrays()
    del a["block_items"]
    assert block_per_user(lambda b: np.zeros((len(b["user"]), 6)), a, num_columns=6) == {}
