"""Reference policies: each score function against hand values or the simulator's own truth."""

import numpy as np
import pytest

from genrec_jax.data import Simulator, SimulatorConfig, build_sequences, leave_last_out
from genrec_jax.data.sequences import eval_arrays, item_popularity
from genrec_jax.eval import reference_policies as rp
from genrec_jax.eval.popularity import popularity_scores
from genrec_jax.eval.ranking import evaluate
from genrec_jax.eval.truth import SimIds, true_topk_rating


@pytest.fixture(scope="module")
def world():
    sim = Simulator(SimulatorConfig(num_users=16, num_items=40, events_per_user=(5, 10), seed=2,
                                    initial_catalog=0.4))
    ds = build_sequences(sim.generate())
    split = leave_last_out(ds)
    return sim, ds, split, SimIds.from_dataset(ds), eval_arrays(split, max_len=6)


def test_oracle_scores_are_r_star_at_the_test_state(world):
    sim, ds, _, ids, test = world
    scores = rp.oracle_score_fn(sim, ids)(test)
    assert scores.shape == (ds.num_users, ds.num_items + 1) and np.all(scores[:, 0] == -np.inf)
    raw_items = ds.item_keys[1:].astype(np.int64)
    np.testing.assert_allclose(scores[:, 1:], sim.rating_matrix(ds.user_keys)[:, raw_items - 1],
                               rtol=1e-6)
    # The oracle's top-k is the best achievable: zero regret.
    out = true_topk_rating(sim, test, rp.oracle_score_fn(sim, ids), ids=ids, ks=(1, 5))
    assert out["regret@1"] == pytest.approx(0.0, abs=1e-6)
    assert out["regret@5"] == pytest.approx(0.0, abs=1e-6)


def test_logging_policy_scores_are_its_log_probabilities(world):
    sim, ds, _, ids, test = world
    scores = rp.logging_policy_score_fn(sim, ids)(test)
    raw_items = ds.item_keys[1:].astype(np.int64)
    for row, user in enumerate(ds.user_keys):
        p = sim.logging_probs(int(user))[raw_items - 1]
        np.testing.assert_allclose(np.exp(scores[row, 1:]), p, rtol=1e-4, atol=1e-12)
    # Items released after the request time cannot be shown: -inf.
    late = sim.item_release[raw_items - 1][None, :] > sim._log.test_time[ds.user_keys - 1][:, None]
    assert late.any() and np.all(scores[:, 1:][late] == -np.inf)


def test_shrunk_item_means_by_hand():
    items = np.array([1, 1, 2, 0, 3, 3, 3])
    ratings = np.array([5.0, 3.0, 1.0, 9.0, 4.0, 4.0, 4.0])
    mu = (5 + 3 + 1 + 12) / 6
    got = rp.shrunk_item_means(items, ratings, num_items=4, shrinkage=2.0)
    want = [0.0, (8 + 2 * mu) / 4, (1 + 2 * mu) / 3, (12 + 2 * mu) / 5, mu]
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(rp.shrunk_item_means(items, ratings, 4, shrinkage=0.0)[1:4],
                               [4.0, 1.0, 4.0])
    with pytest.raises(ValueError, match="shrinkage"):
        rp.shrunk_item_means(items, ratings, 4, shrinkage=-1.0)


def test_top_rated_ranks_by_shrunk_mean_ties_to_lower_id():
    means = np.array([0.0, 3.0, 4.5, 3.0, 2.0])
    batch = {"inputs": np.zeros((2, 3), np.int32), "lengths": np.ones(2, np.int32)}
    scores = np.asarray(rp.top_rated_score_fn(means)(batch))
    order = np.argsort(-scores[0, 1:], kind="stable") + 1
    np.testing.assert_array_equal(order, [2, 1, 3, 4])
    assert scores.shape == (2, 5) and scores[0, 0] == -np.inf


def test_transition_counts_and_markov_scores_by_hand():
    inputs = np.array([[1, 2, 3, 0], [2, 3, 0, 0]])
    targets = np.array([[2, 3, 1, 0], [3, 4, 0, 0]])
    c = rp.transition_counts(inputs, targets, num_items=4)
    want = np.zeros((5, 5))
    want[1, 2] = 1
    want[2, 3] = 2
    want[3, 1] = 1
    want[3, 4] = 1
    np.testing.assert_array_equal(c, want)
    popularity = np.array([0, 5, 1, 2, 9])
    fn = rp.markov_score_fn(c, popularity)
    batch = {"inputs": np.array([[1, 3], [4, 0]]), "lengths": np.array([2, 1])}
    scores = fn(batch)
    tie = popularity_scores(popularity)[1:] / 5
    np.testing.assert_allclose(scores[0, 1:], c[3, 1:] + tie, rtol=1e-6)   # last item 3
    np.testing.assert_allclose(scores[1, 1:], tie, rtol=1e-6)              # item 4: no pairs
    assert scores[0, 0] == -np.inf
    # Counts decide; popularity only breaks ties: after item 3, items 1 and 4 (1 pair each)
    # beat item 2 (0 pairs) and item 4 (more popular) beats item 1.
    assert scores[0, 4] > scores[0, 1] > scores[0, 2]


def test_most_popular_through_evaluate(world):
    sim, ds, split, ids, test = world
    counts = item_popularity(split)
    m = evaluate(rp.most_popular_score_fn(counts), test, batch_size=8, return_ranks=True)
    scores = popularity_scores(counts)
    for row in range(ds.num_users):
        t = int(test["target"][row])
        hist = set(int(x) for x in test["exclude"][row] if x) - {t}
        higher = [j for j in range(1, ds.num_items + 1)
                  if j != t and j not in hist and scores[j] > scores[t]]
        assert m["ranks"][row] == 1 + len(higher)
