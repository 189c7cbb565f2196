"""The reward ablation end to end on the smoke simulator: reports, saved ensemble, judge use."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import reward as reward_config
from experiments.reward import run
from genrec_jax.data.prepare import prepare_data
from genrec_jax.eval.judge import judge_rollout
from genrec_jax.train.reward import load_ensemble
from tests.util import numbers_in

# The model and optimizer of test_reward.py's training test: in one session the jitted ensemble
# step compiled there is reused here (training.optimizer_and_step is cached per config).
SMOKE = "smoke=True,epochs=1,reward.num_seeds=2,model.num_blocks=1,mesh.data=1"




def test_bad_ensemble_size_is_rejected(tmp_path):
    cfg = reward_config.get_config("smoke=True,reward.num_members=0")
    with pytest.raises(ValueError, match=r"ensemble size M \(num_members\) must be an integer "
                                         r">= 1, got 0"):
        run(cfg, str(tmp_path), verbose=False)


def test_smoke_ablation_end_to_end(tmp_path):
    cfg = reward_config.get_config(SMOKE)
    report = run(cfg, str(tmp_path), verbose=False)

    text = (tmp_path / "reward_report.json").read_text()
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite {c} in JSON"))
    assert all(math.isfinite(x) for x in numbers_in(loaded))
    md = (tmp_path / "reward_report.md").read_text()
    assert "| rm_ensemble |" in md and "user_item_bias" in md and "nan" not in md.lower()
    assert set(loaded["splits"]) == {"test_last", "heldout_random"}
    for split in loaded["splits"].values():
        table = split["predictors"]
        for name in ("rm_ensemble", "rm_single", "rm_member_0", "rm_member_1", "global_mean",
                     "user_mean", "item_mean", "user_item_bias", "true_rating"):
            assert math.isfinite(table[name]["rmse"]["mean"]), name
            assert math.isfinite(table[name]["rmse_true"]["mean"]), name
            assert math.isfinite(table[name]["rmse"]["std"]), name        # 2 seeds
        assert table["true_rating"]["rmse_true"]["mean"] == 0.0
    assert loaded["splits"]["heldout_random"]["predictors"]["rm_ensemble"][
        "pairwise_accuracy"]["mean"] is not None
    assert report["num_seeds"] == 2 and len(report["per_seed"]) == 2

    # The saved ensemble loads and judges a policy's rollouts on the evaluation rows.
    ensemble = load_ensemble(tmp_path)
    assert ensemble.num_members == 2
    data = prepare_data(cfg)
    popularity = jnp.asarray(data.popularity, jnp.float32)
    out = judge_rollout(lambda b: jnp.tile(popularity[None], (b["inputs"].shape[0], 1)),
                        ensemble.reward_fn, data.test, horizon=2, batch_size=32)
    assert out["num_judges"] == 2 and np.isfinite(out["judge_score"])
    assert 1.0 <= out["judge_score"] / (1 + 0.9) <= 5.0
