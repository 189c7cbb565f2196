"""Validation-based selection in the comparison: grids of equal size, equal budgets in optimizer
updates, the best validation point scored once on the test set (stand-in stages record what
each run was asked to do)."""

import math
import os

import numpy as np
import pytest

from experiments import compare as compare_experiment
from experiments.configs import common
from experiments.configs import compare as compare_config
from genrec_jax.eval import comparison
from genrec_jax.eval.per_user import PER_USER_FILE, load_per_user, save_per_user
from genrec_jax.train.posttrain import INITIAL_PER_USER_FILE

TINY = ("smoke=True,landscape_noise=0.5,landscape_algos=asft,lambda_sweep=1.0,"
        "select.max_updates=120,select.every_updates=15,select.patience=3")


def two_point_grids(cfg):
    """Every row's grid = the main command's two learning rates (smoke mode has one point)."""
    for row in cfg.select.grids:
        cfg.select.grids[row] = compare_config.LR2
    cfg.select.default_grid = compare_config.LR2
    return cfg


def lr_of(cfg) -> float:
    return float(cfg.optimizer.learning_rate)


class SelectionStages:
    """Stand-in stages: validation scores are a known function of the configuration."""

    def __init__(self, monkeypatch):
        self.pretrain, self.posttrain, self.scored, self.initial = [], [], [], []
        monkeypatch.setattr(compare_experiment, "pretrain", self._pretrain)
        monkeypatch.setattr(compare_experiment, "posttrain", self._posttrain)
        monkeypatch.setattr(compare_experiment, "score_on_test", self._score)
        monkeypatch.setattr(compare_experiment.reward_experiment, "run", lambda c, p, verbose: {})
        monkeypatch.setattr(compare_experiment, "_reference_stage", lambda *a, **k: {})

    def _pretrain(self, cfg, path, verbose=False):
        self.pretrain.append((path, cfg))
        return ({"ndcg@10": 0.1, "validation": {"best_value": lr_of(cfg), "best_step": 7}},)

    def _posttrain(self, cfg, path, init_dir, reward_dir, verbose=False):
        self.posttrain.append((path, cfg, init_dir))
        # bc prefers the larger learning rate, every other algorithm the smaller one.
        score = lr_of(cfg) if cfg.algo == "bc" else -lr_of(cfg)
        if cfg.algo == "asft":
            score += float(cfg.asft.lam)
        return {"validation": {"best_value": score, "best_step": 3},
                "train": {"steps": int(cfg.num_steps), "updates": 99, "samples": 7}}

    def _score(self, path, *, init_dir, reward_dir=None, initial=True):
        self.scored.append(path)
        self.initial.append(initial)
        tag = float(path.endswith("grid1"))  # which grid point's files these are
        # As the real one: the pretrained policy's files only when it is scored too.
        for name in (PER_USER_FILE, INITIAL_PER_USER_FILE)[:1 + bool(initial)]:
            save_per_user(os.path.join(path, name),
                          {"user": np.arange(2), "ndcg@10": np.array([tag, 0.5])})
        out = {"final": {"ndcg@10": 0.2}, "validation": {"best_value": 0.0},
               "curve": [{"step": 1}]}
        return {"initial": {"ndcg@10": 0.1}, **out} if initial else out


def test_every_row_runs_its_grid_at_equal_budgets_and_scores_only_the_best(tmp_path,
                                                                             monkeypatch):
    fake = SelectionStages(monkeypatch)
    cfg = two_point_grids(compare_config.get_config(
        TINY + ",variants.asft_rm=,variants.rwbc_exp=,select.pretrain_grid="
        "optimizer.learning_rate=1e-3|3e-3"))
    rows, _, chosen = compare_experiment.run_seed(cfg, str(tmp_path), 0,
                                                  ("bc", "asft", "ppo", "grpo"))
    # Pretraining: both grid points, up to the configured epochs with early stopping; the
    # better one (3e-3) is what post-training starts from.
    assert [os.path.basename(p) for p, _ in fake.pretrain] == ["grid0", "grid1"]
    for _, c in fake.pretrain:
        assert (c.eval.keep_best, c.eval.curve_split, c.data.validation) == (True, "validation",
                                                                            True)
        assert c.epochs == cfg.select.pretrain_max_epochs
    assert {init for *_, init in fake.posttrain} == {str(tmp_path / "seed0/pretrain/grid1")}
    runs = {os.path.relpath(p, tmp_path): c for p, c, _ in fake.posttrain}
    assert sorted(runs) == [f"seed0/{a}/grid{i}" for a in ("asft", "bc", "grpo", "ppo")
                            for i in (0, 1)]
    # Equal budgets in optimizer updates: PPO and GRPO make `epochs` updates per rollout step
    # (2 each in smoke mode).
    assert (runs["seed0/ppo/grid0"].ppo.epochs, runs["seed0/grpo/grid0"].grpo.epochs) == (2, 2)
    updates_per_step = {"bc": 1, "asft": 1, "ppo": 2, "grpo": 2}
    for path, c in runs.items():
        k = updates_per_step[c.algo]
        assert (c.num_steps, c.eval.every_steps) == (120 // k, 15 // k), path
        assert (c.eval.patience, c.eval.keep_best, c.eval.final_test) == (3, True, False)
        assert (c.dropout, c.optimizer.grad_clip_norm) == (0.0, 20.0)
        assert c.eval.metric == "ndcg@10" and c.eval.curve_split == "validation"
    assert [lr_of(runs[f"seed0/bc/grid{i}"]) for i in (0, 1)] == [3e-4, 1e-3]
    # Only the selected point of each row is scored on the test set.
    assert sorted(os.path.relpath(p, tmp_path) for p in fake.scored) == [
        "seed0/asft/grid0", "seed0/bc/grid1", "seed0/grpo/grid0", "seed0/ppo/grid0"]
    # The pretrained policy is scored once per seed, with the first row.
    assert fake.initial == [True, False, False, False]
    assert chosen["bc"]["selected_overrides"] == "optimizer.learning_rate=1e-3"
    assert chosen["bc"]["validation"] == pytest.approx([3e-4, 1e-3])
    assert chosen["asft"]["selected"] == 0 and rows["asft"] == {"ndcg@10": 0.2}
    # The row folder holds the selected point's per-user files (paired statistics read them).
    assert load_per_user(str(tmp_path / "seed0/bc" / PER_USER_FILE))["ndcg@10"][0] == 1.0
    assert load_per_user(str(tmp_path / "seed0/asft" / PER_USER_FILE))["ndcg@10"][0] == 0.0
    assert (tmp_path / "seed0/pretrain/selection.json").exists()
    # A finished selection is reused, not run again.
    before = len(fake.posttrain)
    compare_experiment.run_seed(cfg, str(tmp_path), 0, ("bc", "asft", "ppo", "grpo"))
    assert len(fake.posttrain) == before


def test_lambda_sweep_and_landscape_use_the_selected_configuration(tmp_path, monkeypatch):
    fake = SelectionStages(monkeypatch)
    cfg = compare_config.get_config(
        TINY + ",algos=bc:asft,variants.asft_rm=,variants.rwbc_exp=,lambda_sweep=0.3:3.0,"
        "select.grids.asft=optimizer.learning_rate=3e-4|1e-3;asft.lam=1.0|3.0,"
        "select.default_grid=optimizer.learning_rate=1e-4|3e-4|1e-3|3e-3,"
        "select.grids.bc=optimizer.learning_rate=1e-4|3e-4|1e-3|3e-3,landscape_noise=0.5:1.5,"
        "landscape_algos=asft")
    rows, _, chosen = compare_experiment.run_seed(cfg, str(tmp_path), 0, ("bc", "asft"),
                                                  lams=(0.3, 3.0))
    # A-SFT selects lr 3e-4 and λ = 3 (score −3e-4 + 3); the λ = 3 sweep point is that run,
    # the λ = 0.3 point keeps the selected learning rate.
    assert chosen["asft"]["selected_overrides"] == "optimizer.learning_rate=3e-4,asft.lam=3.0"
    assert rows["asft_lam3"] is rows["asft"]
    sweep = [c for p, c, _ in fake.posttrain if "asft_lam0.3" in p]
    assert len(sweep) == 1 and (sweep[0].asft.lam, lr_of(sweep[0])) == (0.3, 3e-4)
    # The landscape reuses each method's selected configuration at the other noise levels.
    selection = {"asft": {"0": chosen["asft"]}}
    assert compare_experiment.landscape_points(cfg, selection) == {
        "asft": "optimizer.learning_rate=3e-4,asft.lam=3.0"}
    before = len(fake.posttrain)
    compare_experiment.run_landscape(cfg, str(tmp_path), selection)
    other = [c for p, c, _ in fake.posttrain[before:] if "noise1.5" in p]
    assert len(other) == 1 and (other[0].asft.lam, lr_of(other[0])) == (3.0, 3e-4)


def test_grids_must_have_equal_sizes_and_parse():
    assert compare_config.parse_grid("x", "a=1|2;b=u|v") == ["a=1,b=u", "a=1,b=v", "a=2,b=u",
                                                            "a=2,b=v"]
    assert compare_config.parse_grid("x", "") == [""]
    with pytest.raises(common.ConfigError, match="select.grids.x: expected 'key=v1|v2;...'"):
        compare_config.parse_grid("x", "a=1;b")
    with pytest.raises(common.ConfigError, match="grid of the same size.*bc: 4, rwbc: 2"):
        compare_config.get_config("select.grids.bc=optimizer.learning_rate=1|2|3|4")
    with pytest.raises(common.ConfigError, match="needs data.validation=True"):
        compare_config.get_config("data.validation=False")
    full = compare_config.get_config("full=True")
    sizes = {len(v) for v in compare_config.grids_of(full, [*full.algos, "asft_rm",
                                                             "rwbc_exp"]).values()}
    assert sizes == {4}


def test_judge_truth_agreement_is_a_per_seed_spearman():
    rows = ("a", "b", "c", "d")
    seed0 = {r: {"judge_score": j, "true_value": t}
             for r, j, t in zip(rows, (1.0, 2.0, 3.0, 4.0), (8.0, 6.0, 4.0, 2.0))}
    seed1 = {r: {"judge_score": j, "true_value": t}
             for r, j, t in zip(rows, (1.0, 2.0, 3.0, 4.0), (1.0, 2.0, 4.0, 3.0))}
    seed1["d"].pop("judge_score")  # a row without a judge score is left out of that seed
    out = compare_experiment.judge_truth_agreement([seed0, seed1], rows)
    assert out["per_seed"] == pytest.approx([-1.0, 1.0])
    assert out["mean"] == pytest.approx(0.0)


def test_landscape_winner_regions_need_a_clear_margin():
    def stat(mean, std, n=3):
        return {"mean": mean, "std": std, "n": n}

    series = {"a": [stat(4.0, 0.1), stat(3.0, 0.5), stat(2.0, 0.0, 1)],
              "b": [stat(3.5, 0.1), stat(3.2, 0.5), stat(1.0, 0.0, 1)]}
    wins = comparison.landscape_winners(series)
    assert [w["best"] for w in wins] == ["a", "b", "a"]
    assert wins[0]["margin"] == pytest.approx(0.5)
    assert wins[0]["se"] == pytest.approx(math.sqrt(2 * 0.01 / 3)) and wins[0]["clear"]
    assert wins[1]["se"] == pytest.approx(math.sqrt(2 * 0.25 / 3)) and not wins[1]["clear"]
    assert math.isnan(wins[2]["se"]) and not wins[2]["clear"]  # one seed: never a clear win


def test_landscape_winners_pair_users_when_per_user_values_are_given():
    # Two worlds whose levels differ by 1.0 (a large std over seeds) while "a" is above "b" by
    # 0.05 for every user of both: unpaired, the margin is inside 2 se; paired, it is clear.
    rng = np.random.default_rng(0)
    level = {"a": {}, "b": {}}
    for s, shift in ((0, 0.0), (1, 1.0)):
        base = 3.0 + shift + rng.normal(0.0, 0.3, 50)
        level["b"][s] = {"true_rating@10": base}
        level["a"][s] = {"true_rating@10": base + 0.05}
    series = {a: [comparison.mean_std([float(np.mean(v["true_rating@10"]))
                                       for v in level[a].values()])] for a in level}
    unpaired = comparison.landscape_winners(series)[0]
    paired = comparison.landscape_winners(series, [level], num_resamples=300)[0]
    assert unpaired["best"] == paired["best"] == "a" and not unpaired["clear"]
    assert paired["clear"] and paired["runner_up"] == "b"
    assert paired["margin"] == pytest.approx(0.05)
    assert paired["ci_low"] == pytest.approx(0.05) and paired["ci_high"] == pytest.approx(0.05)
    # A per-level mapping without the two leaders falls back to the unpaired rule.
    assert comparison.landscape_winners(series, [{"a": level["a"]}])[0] == unpaired
