"""Per-user metrics: the arrays behind every reported mean, their files, and paired differences
between comparison rows."""
import math

import numpy as np
import pytest

from genrec_jax.eval import comparison
from genrec_jax.eval.per_user import load_per_user, save_per_user
from genrec_jax.eval.ranking import metrics_from_ranks, nan_means, per_user_from_ranks

NAN = math.nan


def test_per_user_values_by_hand_and_means_are_their_nan_means():
    # Ranks 1, 3, 15 (valid) and a garbage 0 on the invalid fourth row; ratings 5, 3, 4, 5.
    ranks, ratings, valid = [1, 3, 15, 0], [5.0, 3.0, 4.0, 5.0], [1, 1, 1, 0]
    per = per_user_from_ranks(ranks, target_ratings=ratings, valid=valid, ks=(10,),
                              ndcg_ks=(10,))
    assert list(per) == ["hr@10", "ndcg@10", "mrr", "hr@10_liked", "ndcg@10_liked", "mrr_liked"]
    np.testing.assert_array_equal(per["hr@10"], [1.0, 1.0, 0.0, NAN])
    np.testing.assert_array_equal(per["ndcg@10"], [1.0, 0.5, 0.0, NAN])   # 1/log2(4) = 0.5
    np.testing.assert_array_equal(per["mrr"], [1.0, 1 / 3, 1 / 15, NAN])
    np.testing.assert_array_equal(per["mrr_liked"], [1.0, NAN, 1 / 15, NAN])  # rating 3 < 4
    m = metrics_from_ranks(ranks, target_ratings=ratings, valid=valid, ks=(10,), ndcg_ks=(10,))
    means = nan_means(per)
    for key, value in means.items():
        assert m[key] == value == float(np.nanmean(per[key])), key
    assert (m["num_users"], m["num_users_liked"]) == (3.0, 2.0)
    assert m["mrr_liked"] == pytest.approx((1 + 1 / 15) / 2, rel=1e-15)
    # No liked user: NaN mean, no warning-triggered value.
    assert math.isnan(nan_means({"x": [NAN, NAN]})["x"])


def test_per_user_file_round_trip_and_errors(tmp_path):
    path = str(tmp_path / "run" / "per_user.npz")
    arrays = {"user": np.arange(3), "ndcg@10": np.array([0.5, NAN, 1.0])}
    save_per_user(path, arrays)
    back = load_per_user(path)
    assert sorted(back) == ["ndcg@10", "user"]
    np.testing.assert_array_equal(back["ndcg@10"], arrays["ndcg@10"])
    with pytest.raises(ValueError, match="need a 'user' array"):
        save_per_user(path, {"ndcg@10": np.zeros(3)})
    with pytest.raises(ValueError, match=r"shape of 'user' \(3,\); got \{'mrr': \(2,\)\}"):
        save_per_user(path, {"user": np.arange(3), "mrr": np.zeros(2)})
    with pytest.raises(FileNotFoundError, match="delete its stage.json"):
        load_per_user(str(tmp_path / "missing.npz"))


def _rows(rng):
    """Three rows over two seeds (40 and 25 users): asft = bc + 0.1, ppo = bc − 0.2 regret."""
    out = {"bc": {}, "asft": {}, "ppo": {}}
    for seed, n in ((0, 40), (1, 25)):
        ndcg = rng.random(n)
        regret = rng.random(n)
        liked = np.where(rng.random(n) < 0.5, rng.random(n), NAN)
        out["bc"][seed] = {"ndcg@10": ndcg, "regret@10": regret, "mrr_liked": liked}
        out["asft"][seed] = {"ndcg@10": ndcg + 0.1, "regret@10": regret + rng.normal(0, 1, n),
                             "mrr_liked": liked}
        out["ppo"][seed] = {"ndcg@10": ndcg - 0.05, "regret@10": regret - 0.2,
                            "mrr_liked": liked * 0.5}
    return out


def test_paired_differences_shift_self_rows_and_holm_family():
    per_user = _rows(np.random.default_rng(0))
    paired = comparison.paired_differences(per_user, num_resamples=300)
    assert list(paired) == ["bc", "asft", "ppo"]
    assert list(paired["asft"]) == ["ndcg@10", "mrr_liked", "regret@10"]  # PAIRED_METRICS order
    st = paired["asft"]["ndcg@10"]["bc"]
    assert st["mean_diff"] == pytest.approx(0.1, abs=1e-12)
    assert st["ci_low"] == pytest.approx(0.1, abs=1e-12) == st["ci_high"]
    assert st["num_users"] == 65 and st["num_seeds"] == 2
    # The reverse comparison has the opposite sign.
    assert paired["bc"]["ndcg@10"]["asft"]["mean_diff"] == pytest.approx(-0.1, abs=1e-12)
    # NaN users (not liked) are dropped from the pair.
    liked = paired["ppo"]["mrr_liked"]["bc"]
    n_nan = sum(int(np.isnan(per_user["bc"][s]["mrr_liked"]).sum()) for s in (0, 1))
    assert liked["num_dropped"] == n_nan and liked["num_users"] == 65 - n_nan
    want = np.mean([np.nanmean(per_user["bc"][s]["mrr_liked"] * -0.5) for s in (0, 1)])
    assert liked["mean_diff"] == pytest.approx(want, abs=1e-12)
    # Self rows: exactly 0, p = 1, outside the Holm family (2 other rows x 3 metrics = 6).
    own = paired["bc"]["regret@10"]["bc"]
    assert (own["mean_diff"], own["ci_low"], own["ci_high"], own["p_holm"]) == (0, 0, 0, 1)
    p = [paired[r][m]["bc"]["p_value"] for r in ("asft", "ppo") for m in paired["asft"]]
    holm = [paired[r][m]["bc"]["p_holm"] for r in ("asft", "ppo") for m in paired["asft"]]
    assert min(holm) == pytest.approx(min(1.0, 6 * min(p)))


def test_favourable_rule_and_markdown_cells():
    stats = {"mean_diff": -0.2, "ci_low": -0.25, "ci_high": -0.15, "p_holm": 0.01}
    assert comparison.favourable(stats, "regret@10")          # lower regret is better
    assert not comparison.favourable(stats, "ndcg@10")
    assert comparison.favourable({"ci_low": 0.01, "ci_high": 0.2}, "ndcg@10")
    assert not comparison.favourable({"ci_low": 0.0, "ci_high": 0.2}, "ndcg@10")
    assert not comparison.favourable({"ci_low": NAN, "ci_high": NAN}, "ndcg@10")
    assert not comparison.favourable(None, "ndcg@10")
    paired = {"bc": {"regret@10": {"bc": dict(stats, mean_diff=0.0)}},
              "ppo": {"regret@10": {"bc": stats}}}
    lines = comparison.paired_markdown(paired, "bc")
    assert lines[0] == "## Paired difference to BC, 95% CI"
    assert lines[2] == "| algorithm | regret@10 |"
    assert lines[4] == "| ppo | −0.2000* [−0.2500, −0.1500] |"
