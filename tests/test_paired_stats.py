"""Seed-stratified paired bootstrap, Holm correction and the paired comparison table."""
import math

import numpy as np
import pytest

from genrec_jax.eval.paired_stats import (
    format_paired_table,
    holm,
    paired_bootstrap,
    paired_table,
)


def test_estimate_weighs_seeds_equally_and_se_matches_analytic():
    rng = np.random.default_rng(0)
    d = [rng.normal(1.0, 2.0, 40), rng.normal(-0.5, 1.0, 400), rng.normal(0.2, 3.0, 90)]
    res = paired_bootstrap(d, num_resamples=4000, seed=1)
    assert res["mean_diff"] == pytest.approx(np.mean([x.mean() for x in d]), abs=1e-12)
    # Bootstrap variance of (1/S) sum_s mean_s: (1/S^2) sum_s var_pop(d_s) / n_s.
    se = math.sqrt(sum(x.var() / x.size for x in d)) / len(d)
    assert res["se"] == pytest.approx(se, rel=0.06)
    assert res["ci_low"] < res["mean_diff"] < res["ci_high"]
    # Percentile interval is about mean +- 1.96 se for these near-normal means.
    assert res["ci_high"] - res["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.08)
    assert res["num_seeds"] == 3 and res["num_users"] == 530 and res["num_resamples"] == 4000
    # A seed with 10 users at +1 and one with 1000 users at 0 average to 0.5, not ~0.01.
    res = paired_bootstrap([np.ones(10), np.zeros(1000)], num_resamples=50)
    assert res["mean_diff"] == pytest.approx(0.5)
    np.testing.assert_allclose([res["ci_low"], res["ci_high"]], [0.5, 0.5])


def test_interval_covers_true_difference_at_nominal_rate():
    rng = np.random.default_rng(123)
    seed_means = np.array([0.3, -0.1, 0.05])
    truth = seed_means.mean()
    sizes = (30, 45, 60)
    covered = 0
    reps = 200
    for rep in range(reps):
        # Skewed per-user differences (centred exponentials) around each seed's mean.
        d = [m + rng.exponential(1.0, n) - 1.0 for m, n in zip(seed_means, sizes)]
        res = paired_bootstrap(d, num_resamples=300, seed=rep)
        covered += res["ci_low"] <= truth <= res["ci_high"]
    assert 0.88 <= covered / reps <= 0.99, covered / reps


def test_identical_methods_and_large_shift():
    res = paired_bootstrap([np.zeros(25), np.zeros(7)], num_resamples=500)
    assert res["mean_diff"] == 0.0 and res["p_value"] == 1.0
    assert res["ci_low"] == 0.0 and res["ci_high"] == 0.0 and res["se"] == 0.0
    rng = np.random.default_rng(2)
    big = [rng.normal(5.0, 1.0, 50), rng.normal(4.0, 1.0, 30)]
    res = paired_bootstrap(big, num_resamples=999)
    # Far below 1 / (B + 1): the normal p is not limited by the number of replicates.
    assert res["p_value"] < 1e-12
    assert res["ci_low"] > 0
    neg = paired_bootstrap([-x for x in big], num_resamples=999)
    assert neg["p_value"] < 1e-12 and neg["ci_high"] < 0


def test_two_sided_p_is_symmetric_and_matches_replicate_tails():
    rng = np.random.default_rng(3)
    d = [rng.normal(0.15, 1.0, 60), rng.normal(0.1, 1.0, 40)]
    res = paired_bootstrap(d, num_resamples=2000, seed=5)
    neg = paired_bootstrap([-x for x in d], num_resamples=2000, seed=5)
    assert neg["p_value"] == pytest.approx(res["p_value"])
    np.testing.assert_allclose([neg["ci_low"], neg["ci_high"]], [-res["ci_high"], -res["ci_low"]],
                               atol=1e-12)
    # The normal approximation of the two-sided p from the bootstrap se, which agrees with the
    # replicates' own two-sided tail where that resolves it.
    z = res["mean_diff"] / res["se"]
    assert res["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-12)
    rep = paired_bootstrap(d, num_resamples=20000, seed=5)
    boot = np.random.default_rng(5)
    replicates = np.zeros(20000)
    for arr in d:
        idx = boot.integers(0, arr.shape[0], size=(20000, arr.shape[0]))
        replicates += arr[idx].mean(axis=1)
    replicates /= len(d)
    tail = 2 * min(np.mean(replicates <= 0), np.mean(replicates >= 0))
    assert abs(rep["p_value"] - tail) < 0.03
    assert 0.0 < res["p_value"] < 1.0


def test_determinism_and_input_forms():
    rng = np.random.default_rng(4)
    d = [rng.normal(0.1, 1.0, 33), rng.normal(0.0, 1.0, 21)]
    a = paired_bootstrap(d, num_resamples=300, seed=7)
    assert paired_bootstrap(d, num_resamples=300, seed=7) == a
    assert paired_bootstrap({10: d[0], 11: d[1]}, num_resamples=300, seed=7) == a
    assert paired_bootstrap(tuple(list(x) for x in d), num_resamples=300, seed=7) == a
    b = paired_bootstrap(d, num_resamples=300, seed=8)
    assert b["mean_diff"] == a["mean_diff"] and b["ci_low"] != a["ci_low"]
    one = paired_bootstrap(d[0], num_resamples=300, seed=7)  # a bare 1-D array = one seed
    assert one["num_seeds"] == 1 and one["mean_diff"] == pytest.approx(d[0].mean())


def test_bootstrap_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"diff_per_user_seed\[1\] has no users"):
        paired_bootstrap([np.ones(3), np.zeros(0)])
    with pytest.raises(ValueError, match=r"diff_per_user_seed\[0\] must be finite"):
        paired_bootstrap([np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match=r"diff_per_user_seed\['a'\] must be a 1-D"):
        paired_bootstrap({"a": np.ones((2, 2))})
    with pytest.raises(ValueError, match="at least one seed"):
        paired_bootstrap([])
    with pytest.raises(ValueError, match="num_resamples must be a positive integer"):
        paired_bootstrap([np.ones(3)], num_resamples=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        paired_bootstrap([np.ones(3)], alpha=1.0)


def test_holm_hand_examples():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # Capped at 1, monotone along the sorted order, ties keep equal values.
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.02, 0.02, 0.5]), [0.06, 0.06, 0.5])
    np.testing.assert_allclose(holm([0.001]), [0.001])
    assert holm([]).shape == (0,)
    rng = np.random.default_rng(5)
    p = rng.uniform(size=20) ** 3
    adj = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p) and np.all(adj <= 1)
    # Naive definition: max over j <= i of (m - j + 1) p_(j).
    m = len(p)
    naive = np.empty(m)
    sp = p[order]
    for i in range(m):
        naive[order[i]] = min(1.0, max((m - j) * sp[j] for j in range(i + 1)))
    np.testing.assert_allclose(adj, naive)
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        holm([0.1, 1.5])
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        holm([0.1, float("nan")])


def _per_user(rng):
    """3 methods x 2 seeds x 2 metrics; seeds have different users."""
    out = {}
    sizes = {0: 40, 1: 25}
    base = {s: {"ndcg@10": rng.uniform(0, 1, n), "pairwise_acc": rng.uniform(0, 1, n)}
            for s, n in sizes.items()}
    out["bc"] = base
    out["asft"] = {s: {k: v + 0.3 for k, v in m.items()} for s, m in base.items()}
    out["same"] = {s: {k: v.copy() for k, v in m.items()} for s, m in base.items()}
    return out


def test_paired_table_rows_and_holm_family():
    rng = np.random.default_rng(6)
    data = _per_user(rng)
    data["asft"][1]["pairwise_acc"][:3] = np.nan  # users without a held-out pair
    rows = paired_table(data, baseline="bc", num_resamples=400, seed=3)
    assert [(r["method"], r["metric"]) for r in rows] == [
        ("asft", "ndcg@10"), ("asft", "pairwise_acc"), ("same", "ndcg@10"),
        ("same", "pairwise_acc")]
    r = rows[1]
    keep1 = np.isfinite(data["asft"][1]["pairwise_acc"])
    diffs = [data["asft"][0]["pairwise_acc"] - data["bc"][0]["pairwise_acc"],
             (data["asft"][1]["pairwise_acc"] - data["bc"][1]["pairwise_acc"])[keep1]]
    ref = paired_bootstrap(diffs, num_resamples=400, seed=3)
    for key in ("mean_diff", "ci_low", "ci_high", "p_value", "se", "num_users"):
        assert r[key] == pytest.approx(ref[key])
    assert r["num_dropped"] == 3 and r["num_users"] == 62 and r["num_seeds"] == 2
    assert r["mean_diff"] == pytest.approx(0.3)
    assert r["mean_method"] - r["mean_baseline"] == pytest.approx(0.3)
    assert r["significant"] and r["significant_holm"]
    assert rows[2]["mean_diff"] == 0.0 and rows[2]["p_value"] == 1.0
    assert not rows[2]["significant"] and not rows[2]["significant_holm"]
    np.testing.assert_allclose([x["p_holm"] for x in rows],
                               holm([x["p_value"] for x in rows]))
    # Every user's difference is +0.3 (up to rounding): se ≈ 0, so p = 0 (Holm keeps it 0).
    assert rows[0]["se"] < 1e-12 and rows[0]["p_value"] == 0.0 and rows[0]["p_holm"] == 0.0
    # A subset of metrics and methods: a smaller family.
    sub = paired_table(data, baseline="bc", metrics=["ndcg@10"], methods=["asft"],
                       num_resamples=400, seed=3)
    assert len(sub) == 1 and sub[0]["p_holm"] == 0.0 and sub[0]["num_users"] == 65
    md = format_paired_table(rows)
    assert md.count("\n") == 6 and "| asft | ndcg@10 | +0.3000 * |" in md


def test_paired_table_errors():
    rng = np.random.default_rng(7)
    data = _per_user(rng)
    with pytest.raises(ValueError, match="baseline 'pop' not in per_user_metrics"):
        paired_table(data, baseline="pop")
    bad = dict(data, asft={0: data["asft"][0]})
    with pytest.raises(ValueError, match=r"per_user_metrics\['asft'\] lacks seeds \[1\]"):
        paired_table(bad, baseline="bc")
    bad = dict(data, asft={0: data["asft"][0], 1: {"ndcg@10": np.zeros(3),
                                                    "pairwise_acc": np.zeros(25)}})
    with pytest.raises(ValueError, match=r"\['asft'\]\[1\]\['ndcg@10'\] has 3 users but the "
                                         r"baseline 'bc' has 25"):
        paired_table(bad, baseline="bc")
    with pytest.raises(ValueError, match=r"has no metric 'mrr'"):
        paired_table(data, baseline="bc", metrics=["mrr"])
    # All users NaN: a row of NaN statistics with p = 1, not a crash.
    nan = dict(data, asft={s: {k: np.full_like(v, np.nan) for k, v in m.items()}
                           for s, m in data["asft"].items()})
    rows = paired_table(nan, baseline="bc", methods=["asft"], metrics=["ndcg@10"],
                        num_resamples=10)
    assert math.isnan(rows[0]["mean_diff"]) and rows[0]["p_value"] == 1.0
    assert rows[0]["num_users"] == 0 and rows[0]["num_dropped"] == 65
