"""Run-level two-sample comparison: hand-computed values, a brute-force permutation reference,
the sampled path, the bootstrap interval, and errors on bad input."""

import itertools

import numpy as np
import pytest

from genrec_jax.eval.run_stats import two_sample_runs


def test_hand_computed_two_against_two():
    # Pooled {1, 2, 3, 4}, 6 splits into pairs; |mean diff| per split: {1,2}|{3,4} → 2,
    # {1,3}|{2,4} → 1, {1,4}|{2,3} → 0 and their mirrors. Observed |diff| = 2 → p = 2/6.
    res = two_sample_runs([1.0, 2.0], [3.0, 4.0])
    assert res["diff"] == pytest.approx(-2.0)
    assert res["mean_a"] == pytest.approx(1.5) and res["mean_b"] == pytest.approx(3.5)
    assert res["sd_a"] == pytest.approx(np.sqrt(0.5)) and res["sd_b"] == pytest.approx(np.sqrt(0.5))
    assert res["p_value"] == pytest.approx(1 / 3)
    assert res["exact"] and (res["n_a"], res["n_b"]) == (2, 2)
    # Bootstrap replicates: mean of 2 draws from {1, 2} minus mean of 2 draws from {3, 4}, so
    # every replicate lies in [-3, -1].
    assert -3.0 <= res["ci_low"] <= res["diff"] <= res["ci_high"] <= -1.0


def _brute_force_p(a, b):
    pooled = list(a) + list(b)
    obs = abs(np.mean(a) - np.mean(b))
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(a)):
        first = [pooled[i] for i in idx]
        rest = [pooled[i] for i in range(len(pooled)) if i not in idx]
        total += 1
        hits += abs(np.mean(first) - np.mean(rest)) >= obs * (1 - 1e-9)
    return hits / total


@pytest.mark.parametrize("n_a,n_b,shift", [(3, 7, 0.01), (4, 3, 0.0), (5, 5, 0.02)])
def test_exact_p_value_matches_brute_force(n_a, n_b, shift):
    rng = np.random.default_rng(n_a * 10 + n_b)
    a = rng.normal(0.07 - shift, 0.005, n_a)
    b = rng.normal(0.07, 0.005, n_b)
    res = two_sample_runs(a, b)
    assert res["exact"]
    assert res["p_value"] == pytest.approx(_brute_force_p(a, b), abs=1e-12)
    assert res["diff"] == pytest.approx(a.mean() - b.mean())


def test_smallest_p_values():
    # Fully separated, 3 against 7: the three largest as "a" give |diff| 0.0123 < 0.022, so
    # only the observed split reaches it: p = 1 / C(10, 3).
    res = two_sample_runs([0.060, 0.061, 0.062], [0.08, 0.081, 0.082, 0.083, 0.084, 0.085, 0.086])
    assert res["p_value"] == pytest.approx(1 / 120)
    # 3 against 3: the observed split and its mirror: p = 2 / C(6, 3).
    assert two_sample_runs([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])["p_value"] == pytest.approx(2 / 20)


def test_sampled_p_value_close_to_exact():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 6), rng.normal(0.8, 1.0, 6)
    exact = two_sample_runs(a, b)
    sampled = two_sample_runs(a, b, max_exact=10, num_resamples=20000, seed=1)
    assert exact["exact"] and not sampled["exact"]
    assert sampled["p_value"] == pytest.approx(exact["p_value"], abs=0.015)


def test_identical_constant_runs():
    res = two_sample_runs([0.5, 0.5, 0.5], [0.5, 0.5])
    assert res["diff"] == 0.0 and res["p_value"] == 1.0
    assert res["ci_low"] == res["ci_high"] == 0.0


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="at least 2 runs"):
        two_sample_runs([0.1], [0.2, 0.3])
    with pytest.raises(ValueError, match="b must be finite"):
        two_sample_runs([0.1, 0.2], [0.2, float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        two_sample_runs([0.1, 0.2], [0.2, 0.3], alpha=1.5)
    with pytest.raises(ValueError, match="num_resamples"):
        two_sample_runs([0.1, 0.2], [0.2, 0.3], num_resamples=0)
