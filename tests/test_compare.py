"""The comparison pipeline end to end on a tiny simulator, and resume of finished stages."""

import csv
import json
import math
import os

import pytest

from experiments import compare as compare_experiment
from experiments.configs import compare as compare_config
from genrec_jax.eval import comparison

TINY = ("smoke=True,simulator.num_users=32,simulator.num_items=40,simulator.events_per_user=8:14,"
        "data.max_len=12,landscape_noise=0.5:1.5,landscape_algos=asft,lambda_sweep=0.3:1.0")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("compare"))
    cfg = compare_config.get_config(TINY)
    summary = compare_experiment.compare(cfg, workdir)
    return cfg, workdir, summary


def test_outputs_have_one_finite_row_per_algorithm(finished):
    cfg, workdir, _ = finished
    for name in ("results.md", "results.csv", "results.json", "lambda_sweep.png",
                 "judge_vs_truth.png", "landscape.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    with open(os.path.join(workdir, "results.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    refs = ["most_popular", "top_rated", "logging_policy", "oracle"]
    assert [r["algorithm"] for r in rows] == ["pretrained", *cfg.algos,
                                              *(f"ref:{r}" for r in refs)]
    for row in rows:
        keys = ["ndcg@10_mean", "hr@10_mean", "mrr_mean", "true_rating@10_mean",
                "regret@1_mean", "true_value_mean"]
        if not row["algorithm"].startswith("ref:"):  # reference policies have no judge score
            keys.append("judge_score_mean")
        for key in keys:
            assert math.isfinite(float(row[key])), (row["algorithm"], key)
    results = json.load(open(os.path.join(workdir, "results.json"), encoding="utf-8"))
    assert set(results["table"]) == {"pretrained", *cfg.algos}
    assert list(results["reference"]) == refs
    # The r*-greedy oracle is an upper bound on every policy's one-step true rating ...
    oracle = results["reference"]["oracle"]
    for name, row in results["table"].items():
        assert row["true_rating@1"]["mean"] <= oracle["true_rating@1"]["mean"] + 1e-6, name
    assert oracle["regret@1"]["mean"] == pytest.approx(0.0, abs=1e-6)
    # ... and reference rows are shown, in italics, never bold.
    md = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
    assert all(f"| {a} |" in md for a in cfg.algos)
    for r in refs:
        line = next(x for x in md.splitlines() if x.startswith(f"| *{r}* (reference) |"))
        assert "**" not in line


def test_landscape_reports_rm_error_and_winner_per_noise(finished):
    cfg, workdir, summary = finished
    land = summary["landscape"]
    assert land["noise"] == [0.5, 1.5]
    # The simulator's own noise level (0.5) is the main seed-0 run, not a second one ...
    assert sorted(os.listdir(os.path.join(workdir, "landscape"))) == ["noise1.5"]
    # Other levels report only the true reward: one reward model (member 0), no judge.
    other = os.path.join(workdir, "landscape", "noise1.5", "seed0")
    with open(os.path.join(other, "asft", "metrics.json"), encoding="utf-8") as f:
        assert "judge_score" not in json.load(f)["final"]
    with open(os.path.join(other, "reward", "reward_report.json"), encoding="utf-8") as f:
        text = f.read()
    assert "rm_member_0" in text and "rm_member_1" not in text
    assert tuple(cfg.seeds) == (0,)
    assert land["series"]["asft"][0]["mean"] == summary["table"]["asft"]["true_rating@10"]["mean"]
    # ... and the λ sweep's λ = 1 point is the main A-SFT run.
    assert not os.path.exists(os.path.join(workdir, "seed0", "asft_lam1"))
    assert os.path.exists(os.path.join(workdir, "seed0", "asft_lam0.3"))
    assert all(math.isfinite(x) for x in land["rm_rmse"])
    assert all(w in cfg.landscape_algos for w in land["winner"])


def test_resume_skips_finished_stages(finished, monkeypatch):
    cfg, workdir, summary = finished

    def boom(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    monkeypatch.setattr(compare_experiment, "pretrain", boom)
    monkeypatch.setattr(compare_experiment, "posttrain", boom)
    monkeypatch.setattr(compare_experiment.reward_experiment, "run", boom)
    again = compare_experiment.compare(cfg, workdir)
    assert again["table"] == summary["table"]


def test_mean_std_and_winners():
    stat = comparison.mean_std([1.0, 3.0, float("nan")])
    assert stat == {"mean": 2.0, "std": pytest.approx(math.sqrt(2.0)), "n": 2}
    table = {"a": {"ndcg@10": comparison.mean_std([0.1]), "regret@1": comparison.mean_std([2.0])},
             "b": {"ndcg@10": comparison.mean_std([0.3]), "regret@1": comparison.mean_std([1.0])}}
    assert comparison.winners(table, ["ndcg@10", "regret@1"]) == {"ndcg@10": "b",
                                                                   "regret@1": "b"}
