"""The post-training launcher end to end on a tiny simulator: asft (pretraining a model and a
reward ensemble itself, smoke mode) and dpo (from those folders), plus its error messages."""

import json
import math

import pytest

from experiments.configs import posttrain as posttrain_config
from experiments.posttrain import run
from tests.util import numbers_in

TINY = ("smoke=True,mesh.data=1,simulator.num_users=32,simulator.num_items=40,"
        "simulator.events_per_user=6:12,data.max_len=8,model.dim=8,model.qk_dim=4,"
        "model.v_dim=4,batch_size=16,epochs=1,judge.horizon=1,smoke_pretrain_epochs=1,"
        "smoke_reward_epochs=0,eval.batch_size=32")




def _check(path, algo):
    metrics = json.loads(path.read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-finite {c} in metrics.json"))
    assert metrics["algo"] == algo and metrics["config"]["algo"] == algo
    for block in ("initial", "final"):
        m = metrics[block]
        for key in ("hr@10", "ndcg@10", "mrr", "ndcg@10_liked", "judge_score",
                    "true_rating@1", "true_rating@10", "regret@1", "regret@10"):
            assert math.isfinite(m[key]), (block, key)
        assert 1.0 < m["true_rating@10"] < 5.0 and m["regret@10"] >= 0.0
        assert all(math.isfinite(x) for x in numbers_in(m))
    assert metrics["judges"] == {"num_members": 1, "includes_training_rm": False}
    assert metrics["training_reward"] == "reward_model[0]"
    assert metrics["train"]["steps"] == 2
    assert all(math.isfinite(v) for v in metrics["train"]["last"].values())
    return metrics


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    """An asft smoke run that pretrains its own model and reward ensemble."""
    workdir = tmp_path_factory.mktemp("posttrain")
    cfg = posttrain_config.get_config(TINY + ",algo=asft,asft.baseline=value,asft.value_samples=2")
    run(cfg, str(workdir), verbose=False)
    return workdir


def test_asft_smoke_pretrains_and_writes_metrics(smoke_dir):
    m = _check(smoke_dir / "metrics.json", "asft")
    assert (smoke_dir / "pretrain" / "checkpoints").is_dir()
    assert (smoke_dir / "reward" / "reward_ensemble").is_dir()
    assert (smoke_dir / "checkpoints").is_dir()
    assert m["train"]["last"]["mean_weight"] > 0 and "kl_ref" in m["train"]["last"]


def test_dpo_from_given_folders(smoke_dir, tmp_path):
    cfg = posttrain_config.get_config(TINY + ",algo=dpo")
    run(cfg, str(tmp_path), init_dir=str(smoke_dir / "pretrain"),
        reward_dir=str(smoke_dir / "reward"), verbose=False)
    m = _check(tmp_path / "metrics.json", "dpo")
    assert m["dropout"] == 0.0 and "margin" in m["train"]["last"]
    assert m["init_dir"] == str(smoke_dir / "pretrain")


def test_clear_errors(smoke_dir, tmp_path):
    cfg = posttrain_config.get_config(TINY.replace("smoke=True", "smoke=False") + ",algo=ppo")
    with pytest.raises(ValueError, match="--init=PRETRAIN_DIR"):
        run(cfg, str(tmp_path), verbose=False)
    with pytest.raises(ValueError, match="--reward_dir=RM_DIR"):
        run(cfg, str(tmp_path), init_dir=str(smoke_dir / "pretrain"), verbose=False)
    bad = posttrain_config.get_config(TINY.replace("smoke=True", "smoke=False")
                                      + ",algo=bc,data.max_len=9")
    with pytest.raises(ValueError, match="data.max_len: 9 vs 8"):
        run(bad, str(tmp_path), init_dir=str(smoke_dir / "pretrain"), verbose=False)


def test_sasrec_bf16_policy_post_trains_from_its_own_pretraining(tmp_path):
    """``model.kind=sasrec`` and ``precision=bf16`` reach post-training: the smoke run pretrains a
    SASRec, restores it as a SASRec (its checkpoint would not fit an HSTU) and trains in bf16."""
    cfg = posttrain_config.get_config(TINY + ",algo=bc,model.kind=sasrec,precision=bf16")
    run(cfg, str(tmp_path), verbose=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    saved = json.loads((tmp_path / "pretrain" / "config.json").read_text())
    assert saved["model"]["kind"] == "sasrec" and saved["precision"] == "bf16"
    assert metrics["config"]["precision"] == "bf16"
    for block in ("initial", "final"):
        assert math.isfinite(metrics[block]["ndcg@10"]) and math.isfinite(
            metrics[block]["true_rating@10"])
    assert metrics["train"]["steps"] == 2 and math.isfinite(metrics["train"]["last"]["loss"])
