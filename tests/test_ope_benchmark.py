"""benchmarks/ope.py --smoke: the JSON's keys and numbers, its metrics against a recomputation,
and IPS / SNIPS of the logging policy itself with the true propensities (a check that wrong
propensities fail)."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ESTIMATORS = {"dm", "dm_r_star", "ips", "clipped_ips", "snips", "dr", "dr_r_star"}
SOURCES = {"true", "popularity", "bc"}
POLICIES = {"most_popular", "top_rated", "markov", "oracle_r_star", "hstu", "logging_policy"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("ope") / "ope.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ope.py"), "--smoke", "--qualities=0.5",
         "--seeds=0", f"--out={out}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ope: dm/none/q0.5 rmse" in proc.stdout
    assert (out.parent / "ope.png").stat().st_size > 0
    return json.loads(out.read_text())


def test_smoke_json_keys_and_finite_numbers(smoke):
    assert set(smoke["by_quality"]) == {"0.5"}
    world = smoke["by_quality"]["0.5"]["0"]
    assert set(world["policies"]) == POLICIES
    assert world["world"]["num_contexts"] == world["world"]["num_users"]
    assert world["true_propensity_mc"]["relative_se_median"] < 0.05
    for p in world["policies"].values():
        assert set(p["by_source"]) == SOURCES
        assert 1.0 < p["truth"] < 5.0 and 1.0 < p["truth_observed"] < 5.0
        assert p["mass_without_support"] == 0.0          # the true logger covers every target
        for est in p["by_source"].values():
            for name in ("ips", "clipped_ips", "snips", "dr", "dr_r_star"):
                assert math.isfinite(est[name]["value"]) and math.isfinite(est[name]["se"])
    rows = smoke["table"]
    keys = {(r["estimator"], r["propensity"]) for r in rows}
    assert keys == ({("dm", "none"), ("dm_r_star", "none")}
                    | {(e, s) for e in ESTIMATORS - {"dm", "dm_r_star"} for s in SOURCES})
    for r in rows:
        assert r["num_policies"] == len(POLICIES)
        assert all(math.isfinite(r[m]) for m in ("bias", "rmse", "spearman")), r


def test_smoke_metrics_match_a_recomputation(smoke):
    world = smoke["by_quality"]["0.5"]["0"]
    pol = world["policies"]
    truth = np.array([p["truth"] for p in pol.values()])
    for r in smoke["table"]:
        if r["propensity"] == "none":
            est = np.array([p[r["estimator"]]["value"] for p in pol.values()])
        else:
            est = np.array([p["by_source"][r["propensity"]][r["estimator"]]["value"]
                            for p in pol.values()])
        assert r["bias"] == pytest.approx(np.mean(est - truth), abs=1e-12)
        assert r["rmse"] == pytest.approx(np.sqrt(np.mean((est - truth) ** 2)), abs=1e-12)
        # Spearman from ranks (no ties here): 1 - 6 Σ d² / (n (n² - 1)).
        d = np.argsort(np.argsort(est)) - np.argsort(np.argsort(truth))
        n = len(truth)
        assert r["spearman"] == pytest.approx(1 - 6 * np.sum(d ** 2) / (n * (n * n - 1)),
                                              abs=1e-9)
    # DM with r* itself is the truth by construction.
    for p in pol.values():
        assert p["dm_r_star"]["value"] == pytest.approx(p["truth"], abs=1e-9)


def test_true_propensities_recover_the_logging_policy_value(smoke):
    p = smoke["by_quality"]["0.5"]["0"]["policies"]["logging_policy"]
    target = p["truth_observed"]            # what the observed ratings are unbiased for
    true = p["by_source"]["true"]
    assert abs(true["ips"]["value"] - target) <= max(3 * true["ips"]["se"], 0.05)
    assert abs(true["ips"]["value"] - target) < 0.3
    assert abs(true["snips"]["value"] - target) < 0.3
    assert abs(true["diagnostics"]["mean_weight"] - 1.0) < 0.1
    # The check has teeth: the context-free popularity propensities miss by far more.
    pop = p["by_source"]["popularity"]
    assert abs(pop["snips"]["value"] - target) > 0.5
    assert abs(pop["ips"]["value"] - target) > 1.0
