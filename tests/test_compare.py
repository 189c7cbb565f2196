"""The comparison pipeline end to end on a tiny simulator, and resume of finished stages;
per-user metrics, paired differences, variant rows and world seeds."""

import csv
import json
import math
import os
import re

import jax
import numpy as np
import pytest

from experiments import compare as compare_experiment
from experiments.configs import compare as compare_config
from experiments.configs import pretrain as pretrain_config
from genrec_jax.data.prepare import load_configured_events
from genrec_jax.eval import comparison
from genrec_jax.eval.per_user import PER_USER_FILE, load_per_user, save_per_user

# One seed, one landscape level and one λ point: the simulator's own, i.e. the main runs (the
# other levels and points are checked with stand-in stages below).
TINY = ("smoke=True,simulator.num_users=32,simulator.num_items=40,simulator.events_per_user=8:14,"
        "data.max_len=12,landscape_noise=0.5,landscape_algos=asft,lambda_sweep=1.0,"
        "algos=" + ":".join(compare_config.ALGOS) + ",variants.asft_rm=asft:asft.reward_source="
        "reward_model,variants.rwbc_exp=rwbc:rwbc.transform=exp;rwbc.beta=1.0")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("compare"))
    cfg = compare_config.get_config(TINY)  # smoke: one-point grids (two: test_compare_selection)
    # Compilation dominates this run (one train step per algorithm, all tiny): XLA's cheap
    # optimisation level halves it; the numbers checked here do not depend on it.
    before = jax.config.values.get("jax_disable_most_optimizations", False)
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        summary = compare_experiment.compare(cfg, workdir)
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
    return cfg, workdir, summary


def test_outputs_have_one_finite_row_per_algorithm(finished):
    cfg, workdir, _ = finished
    for name in ("results.md", "results.csv", "results.json", "lambda_sweep.png",
                 "judge_vs_truth.png", "landscape.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    with open(os.path.join(workdir, "results.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    refs = ["most_popular", "top_rated", "logging_policy", "oracle"]
    assert [r["algorithm"] for r in rows] == ["pretrained", *cfg.algos, "asft_rm", "rwbc_exp",
                                              *(f"ref:{r}" for r in refs)]
    for row in rows:
        keys = ["ndcg@10_mean", "hr@10_mean", "mrr_mean", "true_rating@10_mean",
                "regret@1_mean", "true_value_mean"]
        if not row["algorithm"].startswith("ref:"):  # reference policies have no judge score
            keys.append("judge_score_mean")
        for key in keys:
            assert math.isfinite(float(row[key])), (row["algorithm"], key)
    results = json.load(open(os.path.join(workdir, "results.json"), encoding="utf-8"))
    assert set(results["table"]) == {"pretrained", *cfg.algos, "asft_rm", "rwbc_exp"}
    assert list(results["reference"]) == refs
    # Each row's validation selection (one-point grids here) with its budget.
    assert set(results["selection"]) == {*cfg.algos, "asft_rm", "rwbc_exp"}
    for row, seeds in results["selection"].items():
        record = seeds["0"]
        assert record["grid"] == ["optimizer.learning_rate=1e-3"] and record["selected"] == 0
        assert 0 < record["updates"] <= cfg.select.max_updates, row
        assert math.isfinite(record["selected_validation"]), row
    # The r*-greedy oracle is an upper bound on every policy's one-step true rating ...
    oracle = results["reference"]["oracle"]
    for name, row in results["table"].items():
        assert row["true_rating@1"]["mean"] <= oracle["true_rating@1"]["mean"] + 1e-6, name
    assert oracle["regret@1"]["mean"] == pytest.approx(0.0, abs=1e-6)
    # ... and reference rows are shown, in italics, never bold.
    md = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
    assert all(f"| {a} |" in md for a in cfg.algos)
    assert "## Selected on validation" in md
    for r in refs:
        line = next(x for x in md.splitlines() if x.startswith(f"| *{r}* (reference) |"))
        assert "**" not in line


def test_main_landscape_level_and_sweep_point_reuse_the_main_runs(finished):
    cfg, workdir, summary = finished
    land = summary["landscape"]
    # The simulator's own noise level (0.5) is the main seed-0 run, not a second one ...
    assert land["noise"] == [0.5] and not os.path.exists(os.path.join(workdir, "landscape"))
    assert land["series"]["asft"][0]["mean"] == summary["table"]["asft"]["true_rating@10"]["mean"]
    assert math.isfinite(land["rm_rmse"][0]) and land["winner"] == ["asft"]
    # ... and the λ sweep's λ = 1 point is the main A-SFT run.
    assert not os.path.exists(os.path.join(workdir, "seed0", "asft_lam1"))
    assert tuple(cfg.seeds) == (0,)


class FakeStages:
    """Stand-ins for pretrain / reward / posttrain that record their configs: the wiring of the
    landscape's other levels and of the λ sweep, without training."""

    def __init__(self, monkeypatch):
        self.posttrain, self.reward = [], []
        monkeypatch.setattr(compare_experiment, "pretrain", self._pretrain)
        monkeypatch.setattr(compare_experiment, "posttrain", self._posttrain)
        monkeypatch.setattr(compare_experiment.reward_experiment, "run", self._reward)
        monkeypatch.setattr(compare_experiment, "_reference_stage", lambda *a, **k: {})

    @staticmethod
    def _pretrain(cfg, path, verbose=False):
        return ({"ndcg@10": 0.1},)

    def _reward(self, cfg, path, verbose=False):
        self.reward.append((path, cfg))
        rmse = 0.5 + float(cfg.simulator.rating_noise)  # the RM's error grows with the noise
        return {"splits": {"heldout_random": {"predictors": {
            "rm_member_0": {"rmse_true": {"mean": rmse}}}}}}

    def _posttrain(self, cfg, path, init_dir, reward_dir, verbose=False):
        self.posttrain.append((path, cfg))
        noise = float(cfg.simulator.rating_noise)
        # bc wins at low noise, asft at high noise (only a function of the config).
        true = 4.0 - noise if cfg.algo == "bc" else 3.5 - 0.2 * noise
        final = {"true_rating@10": true, "ndcg@10": 0.2}
        # The per-user file a run leaves (3 test users, each at the run's value).
        save_per_user(os.path.join(path, PER_USER_FILE),
                      {"user": np.arange(3), "true_rating@10": np.full(3, true)})
        return {"initial": {"ndcg@10": 0.1}, "final": final}


def test_other_landscape_levels_train_one_rm_without_judge(tmp_path, monkeypatch):
    fake = FakeStages(monkeypatch)
    cfg = compare_config.get_config(TINY + ",landscape_noise=0.25:0.5:2.0,landscape_algos=bc:asft,"
                                     "landscape_seeds=0:1,select.enabled=False")
    workdir = str(tmp_path)
    os.makedirs(os.path.join(workdir, "seed0"))
    land = compare_experiment.run_landscape(cfg, workdir)
    assert land["noise"] == [0.25, 0.5, 2.0]
    # Seed 0 at the simulator's own level (0.5) is the main run; every other point is a
    # landscape run with one reward model (member 0) and no judge, in its own world.
    runs = [(os.path.relpath(p, workdir), c) for p, c in fake.posttrain]
    assert sorted(p for p, _ in runs if not p.startswith("landscape")) == ["seed0/asft",
                                                                          "seed0/bc"]
    assert len(runs) == 2 * 3 * 2
    for path, c in runs:
        if path.startswith("landscape"):
            assert (c.judge.enabled, c.reward.train_member) == (False, 0), path
            assert c.simulator.seed == c.seed and f"seed{c.seed}" in path
    assert all(c.reward.num_members == 1 for p, c in fake.reward
               if os.path.relpath(p, workdir).startswith("landscape"))
    assert {float(c.simulator.rating_noise) for _, c in fake.reward} == {0.25, 0.5, 2.0}
    # The x-axis is the RM error, the winner the best true rating per level.
    assert land["rm_rmse"] == pytest.approx([0.75, 1.0, 2.5])
    assert land["winner"] == ["bc", "bc", "asft"]
    assert land["series"]["asft"][2] == {"mean": pytest.approx(3.1), "std": 0.0, "n": 2}
    # Winners are paired user by user over both worlds: every user is 0.30 apart at noise 0.25.
    first = land["regions"][0]
    assert (first["runner_up"], first["clear"]) == ("asft", True)
    assert (first["ci_low"], first["ci_high"]) == (pytest.approx(0.3), pytest.approx(0.3))
    assert os.path.getsize(os.path.join(workdir, "landscape.png")) > 0


def test_lambda_sweep_runs_the_other_points_only(tmp_path, monkeypatch):
    fake = FakeStages(monkeypatch)
    cfg = compare_config.get_config(TINY + ",lambda_sweep=0.3:1.0:3.0,variants.asft_rm=,"
                                     "variants.rwbc_exp=,select.enabled=False")
    rows, _, _ = compare_experiment.run_seed(cfg, str(tmp_path), 0, ("bc", "asft"),
                                          lams=(0.3, 1.0, 3.0))
    runs = {os.path.basename(p): c for p, c in fake.posttrain}
    assert sorted(runs) == ["asft", "asft_lam0.3", "asft_lam3", "bc"]
    assert (runs["asft_lam0.3"].asft.lam, runs["asft_lam3"].asft.lam, runs["asft"].asft.lam) \
        == (0.3, 3.0, 1.0)
    assert rows["asft_lam1"] is rows["asft"]
    # pretrain, reference, reward, the algorithms, 2 sweep points; + the reused landscape level
    # (pretrain, reference, reward, asft).
    assert compare_experiment.count_stages(cfg) == 3 + len(cfg.algos) + 2 + 4


def test_resume_skips_finished_stages(finished, monkeypatch):
    cfg, workdir, summary = finished

    def boom(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    monkeypatch.setattr(compare_experiment, "pretrain", boom)
    monkeypatch.setattr(compare_experiment, "posttrain", boom)
    monkeypatch.setattr(compare_experiment.reward_experiment, "run", boom)
    again = compare_experiment.compare(cfg, workdir)
    assert again["table"] == summary["table"]
    assert list(again["reference"]) == list(summary["reference"])  # row order kept


def test_mean_std_and_winners():
    stat = comparison.mean_std([1.0, 3.0, float("nan")])
    assert stat == {"mean": 2.0, "std": pytest.approx(math.sqrt(2.0)), "n": 2}
    table = {"a": {"ndcg@10": comparison.mean_std([0.1]), "regret@1": comparison.mean_std([2.0])},
             "b": {"ndcg@10": comparison.mean_std([0.3]), "regret@1": comparison.mean_std([1.0])}}
    assert comparison.winners(table, ["ndcg@10", "regret@1"]) == {"ndcg@10": "b",
                                                                   "regret@1": "b"}


def _load_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return json.load(f)


MAIN_ROWS = ("pretrained", "bc", "asft", "asft_rm", "rwbc_exp")


def _stage_metrics(workdir, row):
    """The metrics a row's table entry comes from (seed 0)."""
    seed = os.path.join(workdir, "seed0")
    if row == "pretrained":
        return _load_json(seed, "bc", "stage.json")["result"]["initial"]
    if row.startswith("ref:"):
        return _load_json(seed, "reference", "stage.json")["result"][row[4:]]
    return _load_json(seed, row, "stage.json")["result"]["final"]


def test_per_user_files_hold_the_reported_means(finished):
    cfg, workdir, summary = finished
    rows = (*MAIN_ROWS, *cfg.algos, "ref:oracle", "ref:most_popular")
    users = None
    for row in rows:
        arrays = load_per_user(os.path.join(compare_experiment.stage_dir(workdir, 0, row),
                                            "per_user.npz"))
        metrics = _stage_metrics(workdir, row)
        for key in ("ndcg@10", "hr@10", "mrr", "ndcg@10_liked", "hr@10_liked", "mrr_liked",
                    "true_rating@10", "regret@10", "true_value"):
            assert arrays[key].shape == arrays["user"].shape, (row, key)
            # One evaluation path: the reported mean is the nan-mean of the saved array.
            assert metrics[key] == float(np.nanmean(arrays[key])), (row, key)
        # hr@10 is 1 exactly where ndcg@10 > 0; liked values are NaN where the target is not.
        ok = ~np.isnan(arrays["ndcg@10"])
        np.testing.assert_array_equal(arrays["hr@10"][ok], (arrays["ndcg@10"][ok] > 0) * 1.0)
        liked = ~np.isnan(arrays["mrr_liked"])
        assert liked.sum() == metrics["num_users_liked"] and 0 < liked.sum() < ok.sum()
        np.testing.assert_array_equal(arrays["mrr_liked"][liked], arrays["mrr"][liked])
        # Every row of one seed lists the same users, so the files pair user by user.
        if users is None:
            users, liked0 = arrays["user"], liked
        np.testing.assert_array_equal(arrays["user"], users)
        np.testing.assert_array_equal(liked, liked0)
    assert summary["table"]["pretrained"]["ndcg@10"]["mean"] == \
        _stage_metrics(workdir, "pretrained")["ndcg@10"]


def test_paired_section_and_bold_rule(finished):
    cfg, workdir, summary = finished
    results = _load_json(workdir, "results.json")
    paired = results["paired"]
    assert list(paired) == ["pretrained", *cfg.algos, "asft_rm", "rwbc_exp"]
    assert results["paired_info"]["baselines"] == ["bc", "asft"]
    for row, per_metric in paired.items():
        for metric in ("ndcg@10", "mrr_liked", "true_rating@10", "true_value"):
            for base in ("bc", "asft"):
                st = per_metric[metric][base]
                assert all(math.isfinite(st[k]) for k in ("mean_diff", "ci_low", "ci_high")), \
                    (row, metric, base)
                assert st["ci_low"] <= st["mean_diff"] + 1e-12 <= st["ci_high"] + 2e-12
                assert 0 <= st["p_value"] <= st["p_holm"] <= 1
    # A baseline against itself: exactly 0.
    for base in ("bc", "asft"):
        st = paired[base]["ndcg@10"][base]
        assert (st["mean_diff"], st["ci_low"], st["ci_high"], st["p_value"]) == (0, 0, 0, 1)
    # The difference is the mean over users of the per-user differences (one seed).
    a = load_per_user(os.path.join(workdir, "seed0", "asft_rm", "per_user.npz"))
    b = load_per_user(os.path.join(workdir, "seed0", "bc", "per_user.npz"))
    for metric in ("true_rating@10", "mrr_liked"):
        d = a[metric] - b[metric]
        assert paired["asft_rm"][metric]["bc"]["mean_diff"] == \
            pytest.approx(np.nanmean(d), abs=1e-12)
    # Bold exactly where the interval against BC excludes 0 on the good side.
    md = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
    assert "## Paired difference to BC, 95% CI" in md
    header = next(x for x in md.splitlines() if x.startswith("| algorithm |"))
    cols = [c.strip() for c in header.strip("|").split("|")][1:]
    for row in paired:
        line = next(x for x in md.splitlines() if x.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for col, cell in zip(cols, cells):
            st = paired[row].get(col, {}).get("bc")
            want = st is not None and row != "bc" and (
                st["ci_high"] < 0 if col.startswith("regret") else st["ci_low"] > 0)
            assert cell.startswith("**") == want, (row, col, cell)
    assert re.search(r"\| asft_rm \| [+−]\d\.\d{4}\*? \[", md)


def test_variant_rows_run_their_overrides(finished):
    _, workdir, summary = finished
    seed = os.path.join(workdir, "seed0")
    # The runs of each row's (one-point) grid.
    assert _load_json(seed, "asft_rm", "grid0", "config.json")["asft"]["reward_source"] == \
        "reward_model"
    assert _load_json(seed, "asft", "grid0", "config.json")["asft"]["reward_source"] == "rating"
    rwbc = _load_json(seed, "rwbc_exp", "grid0", "config.json")["rwbc"]
    assert (rwbc["transform"], rwbc["beta"]) == ("exp", 1.0)
    assert _load_json(seed, "rwbc_exp", "grid0", "metrics.json")["algo"] == "rwbc"
    assert math.isfinite(summary["table"]["rwbc_exp"]["ndcg@10"]["mean"])


def test_variant_specs_are_checked():
    cfg = compare_config.get_config("variants.rwbc_exp=rwbc:rwbc.beta=2;rwbc.transform=exp")
    assert compare_config.variants_of(cfg)["rwbc_exp"] == ("rwbc", "rwbc.beta=2,rwbc.transform=exp")
    assert list(compare_config.variants_of(compare_config.get_config("variants.asft_rm="))) == \
        ["rwbc_exp"]
    with pytest.raises(ValueError, match="variants.asft_rm: unknown algorithm 'sft'"):
        compare_config.get_config("variants.asft_rm=sft:lam=1")
    with pytest.raises(ValueError, match="variants.asft_rm: expected 'algo:key=value,...'"):
        compare_config.get_config("variants.asft_rm=asft")
    with pytest.raises(ValueError, match="world_seed must be -1"):
        compare_config.get_config("world_seed=-2")
    assert compare_config.get_config("full=True").seeds == (0, 1, 2, 3, 4)
    assert compare_config.get_config().seeds == (0, 1)


def _world(cfg, seed):
    stage = pretrain_config.get_config(compare_experiment.join(
        compare_experiment.shared_args(cfg, seed=seed), cfg.pretrain_args))
    events, _ = load_configured_events(stage)
    return stage.simulator.seed, events


def test_world_seed_follows_the_training_seed():
    cfg = compare_config.get_config(TINY)
    (w0, e0), (w1, e1) = _world(cfg, 0), _world(cfg, 1)
    assert (w0, w1) == (0, 1)
    assert len(e0) != len(e1) or not np.array_equal(np.asarray(e0.item), np.asarray(e1.item))
    fixed = compare_config.get_config(TINY + ",world_seed=0")
    (f0, g0), (f1, g1) = _world(fixed, 0), _world(fixed, 1)
    assert (f0, f1) == (0, 0)
    np.testing.assert_array_equal(np.asarray(g0.item), np.asarray(g1.item))
    np.testing.assert_array_equal(np.asarray(g0.rating), np.asarray(e0.rating))
