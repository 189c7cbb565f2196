"""Rating metrics on hand-made vectors, plus a brute-force cross-check of pairwise accuracy."""

import math

import numpy as np
import pytest

from genrec_jax.eval import rating_metrics as rm


def test_rmse_mae_exact():
    m = rm.rating_metrics([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 5.0, 1.0], [0, 0, 1, 1])
    # errors -1, 0, -2, 3: squared mean (1 + 0 + 4 + 9) / 4 = 3.5, absolute mean 6 / 4.
    assert m["rmse"] == pytest.approx(math.sqrt(3.5), abs=1e-15)
    assert m["mae"] == pytest.approx(1.5, abs=1e-15)
    assert m["num_events"] == 4
    assert isinstance(m["num_pairs"], int) and isinstance(m["num_events"], int)


def test_average_ranks_ties():
    ranks = rm.average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0]))
    np.testing.assert_array_equal(ranks, [4, 1, 4, 2, 4])


def test_spearman_with_ties_by_hand():
    # pred ranks [1, 2.5, 2.5, 4], true ranks [1, 4, 2.5, 2.5]; centred: [-1.5, 0, 0, 1.5] and
    # [-1.5, 1.5, 0, 0]; covariance 2.25, variances 4.5 and 4.5 -> rho = 2.25 / 4.5 = 0.5.
    pred, true = [1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 2.0]
    assert rm.spearman(pred, true) == pytest.approx(0.5, abs=1e-15)
    assert rm.rating_metrics(pred, true, [0, 1, 2, 3])["spearman"] == pytest.approx(0.5, abs=1e-15)


def test_spearman_monotone_and_undefined():
    x = np.array([0.1, 5.0, 2.0, 3.0])
    assert rm.spearman(np.exp(x), x) == pytest.approx(1.0)
    assert rm.spearman(-x, x) == pytest.approx(-1.0)
    assert math.isnan(rm.spearman(np.ones(4), x))
    assert math.isnan(rm.spearman([1.0], [2.0]))


def test_pairwise_accuracy_two_users_by_hand():
    # User 7: true (5, 3, 1), pred (4, 4, 2).
    #   Pairs: 5v3 pred tie -> 0.5; 5v1 right -> 1; 3v1 right -> 1.
    # User 2: true (2, 4, 4, 1), pred (3, 1, 2, 0). Pairs with different truth: 2v4 (3 vs 1) wrong,
    #   2v4' (3 vs 2) wrong, 2v1 right, 4v1 right, 4'v1 right; 4v4' excluded. -> 3 of 5.
    # User 9: true (3, 3) -> no pairs. User 4: one event -> no pairs.
    # Total (2.5 + 3) / 8 = 0.6875. Events interleaved so the function must group by user itself.
    users = [7, 2, 9, 2, 7, 4, 2, 9, 7, 2]
    true = [5, 2, 3, 4, 3, 5, 4, 3, 1, 1]
    pred = [4, 3, 1, 1, 4, 2, 2, 5, 2, 0]
    m = rm.rating_metrics(pred, true, users)
    assert m["num_pairs"] == 8
    assert m["pairwise_accuracy"] == pytest.approx(5.5 / 8, abs=1e-15)
    assert m["num_events"] == 10


def test_pairwise_prediction_ties_count_half():
    users = [0, 0, 0, 1, 1]
    true = [1.0, 2.0, 3.0, 5.0, 4.0]
    m = rm.rating_metrics(np.full(5, 3.0), true, users)
    assert m["num_pairs"] == 4
    assert m["pairwise_accuracy"] == 0.5
    assert rm.rating_metrics(true, true, users)["pairwise_accuracy"] == 1.0
    assert rm.rating_metrics(-np.asarray(true), true, users)["pairwise_accuracy"] == 0.0


def test_no_pairs_gives_nan():
    m = rm.rating_metrics([1.0, 2.0, 3.0], [4.0, 4.0, 2.0], [0, 0, 1])
    assert m["num_pairs"] == 0
    assert math.isnan(m["pairwise_accuracy"])


def _brute_force_pairwise(pred, true, users):
    score, pairs = 0.0, 0
    n = len(true)
    for a in range(n):
        for b in range(a + 1, n):
            if users[a] != users[b] or true[a] == true[b]:
                continue
            pairs += 1
            hi, lo = (a, b) if true[a] > true[b] else (b, a)
            score += 1.0 if pred[hi] > pred[lo] else 0.5 if pred[hi] == pred[lo] else 0.0
    return score / pairs, pairs


@pytest.mark.parametrize("block", [None, 7, 50])
def test_pairwise_matches_brute_force(monkeypatch, block):
    if block is not None:  # Tiny blocks exercise the user- and row-chunking paths.
        monkeypatch.setattr(rm, "_BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 12, size=25)
    sizes[0] = 40
    users = rng.permutation(np.repeat(rng.permutation(1000)[:25], sizes))
    true = rng.integers(1, 6, size=users.shape[0]).astype(float)
    pred = np.round(true + rng.normal(0, 1.2, size=true.shape), 1)  # rounding makes prediction ties
    expected_acc, expected_pairs = _brute_force_pairwise(pred, true, users)
    m = rm.rating_metrics(pred, true, users)
    assert m["num_pairs"] == expected_pairs
    assert m["pairwise_accuracy"] == pytest.approx(expected_acc, abs=1e-12)


def test_ten_thousand_events_runs():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 800, size=10_000)
    true = rng.integers(1, 6, size=10_000).astype(float)
    m = rm.rating_metrics(true + rng.normal(0, 0.5, size=10_000), true, users)
    assert m["num_events"] == 10_000
    assert 0.5 < m["pairwise_accuracy"] <= 1.0
    assert 0.5 < m["spearman"] <= 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"pred \(3\), true \(3\), users \(2\)"):
        rm.rating_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0, 1])
    with pytest.raises(ValueError, match=r"pred \(2\), true \(3\)"):
        rm.rating_metrics([1.0, 2.0], [1.0, 2.0, 3.0], [0, 1, 2])
    with pytest.raises(ValueError, match="finite"):
        rm.rating_metrics([1.0, np.nan], [1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="1-D"):
        rm.rating_metrics(np.ones((2, 2)), np.ones(4), np.zeros(4, int))
    with pytest.raises(ValueError, match="at least one event"):
        rm.rating_metrics([], [], [])


def test_summarize_runs():
    runs = [{"rmse": 1.0, "mae": 0.5}, {"rmse": 2.0, "mae": 0.5}, {"rmse": 3.0, "mae": 0.5}]
    s = rm.summarize_runs(runs)
    assert list(s) == ["rmse", "mae"]
    # Sample std: sqrt((1 + 0 + 1) / 2) = 1.
    assert s["rmse"] == {"mean": 2.0, "std": pytest.approx(1.0)}
    assert s["mae"] == {"mean": 0.5, "std": 0.0}
    assert rm.summarize_runs(runs, ddof=0)["rmse"]["std"] == pytest.approx(math.sqrt(2.0 / 3.0))
    single = rm.summarize_runs(runs[:1])
    assert single["rmse"]["mean"] == 1.0 and math.isnan(single["rmse"]["std"])
    with pytest.raises(ValueError, match="at least one run"):
        rm.summarize_runs([])
    with pytest.raises(ValueError, match="run 1"):
        rm.summarize_runs([{"rmse": 1.0}, {"mae": 1.0}])


def test_summarize_real_metric_dicts():
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(5), 4)
    true = rng.integers(1, 6, size=20).astype(float)
    runs = [rm.rating_metrics(true + rng.normal(0, 1, 20), true, users) for _ in range(3)]
    s = rm.summarize_runs(runs)
    assert set(s) == {"rmse", "mae", "spearman", "pairwise_accuracy", "num_pairs", "num_events"}
    assert s["num_events"] == {"mean": 20.0, "std": 0.0}
    assert s["rmse"]["mean"] == pytest.approx(np.mean([r["rmse"] for r in runs]))
