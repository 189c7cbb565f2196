"""``model.kind=sasrec`` with ``precision=bf16`` through every launcher's smoke run, in process.

One comparison smoke run with a single algorithm (``experiments.compare.compare``) on a tiny
simulator: its stages are the pretraining launcher's job (``genrec_jax.train.pretrain.pretrain``),
the reward launcher's (``experiments.reward.run``) and the post-training launcher's
(``genrec_jax.train.posttrain.posttrain``). Checked: the saved configs say ``sasrec`` / ``bf16``,
the restored policy and reward models are SASRec with float32 parameters, bfloat16 activations
and float32 outputs, the reward report exists and every reported number is finite. The
post-training launcher's own smoke path (which pretrains and trains a reward ensemble itself)
is checked to hand both keys to those jobs; running them a second time would double the
file's time (it is all compilation).
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import compare as compare_experiment
from experiments import posttrain as posttrain_experiment
from experiments.configs import compare as compare_config
from experiments.configs import posttrain as posttrain_config
from genrec_jax import sharding as shd
from genrec_jax.models.functional import bind
from genrec_jax.models.sasrec import SASRec
from genrec_jax.train.pretrained import restore_pretrained
from genrec_jax.train.reward import CONFIG_FILE, ENSEMBLE_DIR, load_ensemble, reward_config
from tests.util import numbers_in

# The shared keys of every stage: the tiniest simulator and encoder the smoke runs accept.
# Dropout 0: the random masks (threefry) would double the compile time of every train step.
SHARED = ("smoke=True,model.kind=sasrec,precision=bf16,simulator.num_users=24,"
          "simulator.num_items=30,simulator.events_per_user=6:10,data.max_len=8,model.dim=8,"
          "model.num_blocks=1,model.dropout=0.0,mesh.data=1,eval.batch_size=32")


def _compare_config():
    """The compare smoke run with one algorithm (bc), no variants, λ sweep, landscape or
    validation grid."""
    cfg = compare_config.get_config(SHARED)
    cfg.algos = ("bc",)
    for name in cfg.get("variants", {}):
        cfg.variants[name] = ""
    cfg.lambda_sweep = ()
    cfg.landscape_noise = ()
    cfg.select.enabled = False  # one run per stage (the selection is tested elsewhere)
    # ``*_args`` are comma-separated, so they are set here rather than in the config string.
    cfg.pretrain_args = "epochs=1,batch_size=8"
    cfg.reward_args = ("reward.num_members=1,reward.num_seeds=1,reward.hidden_dim=8,"
                       "reward.max_len=8,reward.target_heads=1,reward.target_dim=4,"
                       "reward.head_dropout=0.0,reward.holdout_fraction=0.0,epochs=1,"
                       "batch_size=8")
    cfg.posttrain_args = "epochs=1,batch_size=8,judge.horizon=1"
    return cfg


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"{c} in {path}"))


def _all_finite(obj) -> bool:
    return all(math.isfinite(x) for x in numbers_in(obj))


def _rows(num_rows, length, num_items, seed=0):
    rng = np.random.default_rng(seed)
    return {"inputs": jnp.asarray(rng.integers(1, num_items + 1, (num_rows, length)), jnp.int32),
            "ratings": jnp.asarray(rng.integers(1, 6, (num_rows, length)), jnp.float32),
            "timestamps": jnp.zeros((num_rows, length), jnp.int32),
            "query_timestamps": jnp.zeros((num_rows, length), jnp.int32),
            "lengths": jnp.full((num_rows,), length, jnp.int32)}


def _assert_sasrec_bf16(encoder, batch):
    """A SASRec with float32 parameters, bfloat16 activations and float32 unit outputs."""
    assert isinstance(encoder, SASRec) and encoder.config.precision == "bf16"
    assert {x.dtype for x in jax.tree.leaves(jax.tree.map(jnp.asarray, _params(encoder)))} == {
        jnp.dtype(jnp.float32)}
    assert encoder.embed(batch).dtype == jnp.bfloat16
    out = encoder.encode(batch)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, atol=1e-5)


def _params(module):
    from flax import nnx

    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("compare_sasrec_bf16"))
    cfg = _compare_config()
    summary = compare_experiment.compare(cfg, workdir)
    return cfg, workdir, summary


def test_compare_smoke_with_sasrec_bf16(compared):
    cfg, workdir, summary = compared
    assert set(summary["table"]) == {"pretrained", "bc"}
    for row in ("pretrained", "bc"):
        for key in ("ndcg@10", "hr@10", "true_rating@10", "judge_score"):
            assert math.isfinite(summary["table"][row][key]["mean"]), (row, key)
    for stage in ("pretrain", "reward", "bc"):
        saved = _json(os.path.join(workdir, "seed0", stage, "config.json"))
        assert (saved["model"]["kind"], saved["precision"]) == ("sasrec", "bf16"), stage
    assert os.path.getsize(os.path.join(workdir, "results.md")) > 0


def test_pretrain_stage_restores_a_sasrec_in_bf16(compared):
    _, workdir, _ = compared
    pre = os.path.join(workdir, "seed0", "pretrain")
    assert _all_finite(_json(os.path.join(pre, "metrics.json")))
    num_items = _json(os.path.join(workdir, "seed0", "bc", "metrics.json"))["num_items"]
    mesh = shd.make_mesh(devices=jax.devices()[:1])
    graphdef, params, enc_cfg = restore_pretrained(pre, num_items, mesh)
    assert enc_cfg.precision == "bf16" and enc_cfg.dim == 8
    _assert_sasrec_bf16(bind(graphdef, params), _rows(3, 8, num_items))


def test_reward_stage_report_and_saved_ensemble(compared):
    _, workdir, _ = compared
    rm = os.path.join(workdir, "seed0", "reward")
    report = _json(os.path.join(rm, "reward_report.json"))
    assert (report["info"]["encoder"], report["info"]["precision"]) == ("sasrec", "bf16")
    assert _all_finite(report["splits"])
    assert os.path.getsize(os.path.join(rm, "reward_report.md")) > 0
    saved = _json(os.path.join(rm, ENSEMBLE_DIR, CONFIG_FILE))["config"]["encoder"]
    assert (saved["kind"], saved["precision"], saved["rating_inputs"]) == ("sasrec", "bf16", True)
    # Loaded as post-training loads it (on the run's mesh), the judge's call is the one the
    # report's scoring compiled.
    ensemble = load_ensemble(rm, mesh=shd.make_mesh(devices=jax.devices()[:1]))
    assert ensemble.config.kind == "sasrec" and ensemble.num_members == 1
    batch = _rows(32, 8, 29)
    _assert_sasrec_bf16(ensemble.member(0).encoder, batch)
    rewards = np.asarray(ensemble.reward_fn(batch, batch["inputs"][:, 0]))
    assert rewards.dtype == np.float32 and rewards.shape == (1, 32)
    assert np.all((rewards >= 1.0) & (rewards <= 5.0))


def test_posttrain_smoke_builds_its_models_with_the_configs_kind_and_precision(tmp_path,
                                                                               monkeypatch):
    """The post-training launcher's smoke path (no --init / --reward_dir) hands ``model.kind``
    and ``precision`` to the pretraining run and to the reward ensemble it trains first, and
    post-trains with them. The three jobs themselves are the ones the comparison above ran;
    here they are recorded instead of run again."""
    import genrec_jax.train.pretrain as pretrain_module
    import genrec_jax.train.reward as reward_package

    seen = {}
    monkeypatch.setattr(pretrain_module, "pretrain",
                        lambda cfg, folder, **kw: seen.setdefault("pretrain", (cfg, folder)))
    monkeypatch.setattr(reward_package, "train_reward_ensemble",
                        lambda cfg, folder, **kw: seen.setdefault("reward", (cfg, folder, kw)))
    monkeypatch.setattr(posttrain_experiment, "posttrain",
                        lambda cfg, workdir, **kw: seen.setdefault("posttrain", (cfg, kw)) and {})
    cfg = posttrain_config.get_config(SHARED + ",algo=bc,batch_size=8")
    posttrain_experiment.run(cfg, str(tmp_path), verbose=False)

    pcfg, pre_dir = seen["pretrain"]
    assert (pcfg.model.kind, pcfg.precision, pcfg.model.dim) == ("sasrec", "bf16", 8)
    rcfg, rm_dir, kw = seen["reward"]
    assert (rcfg.model.kind, rcfg.precision, rcfg.reward.max_len) == ("sasrec", "bf16", 8)
    built = reward_config(rcfg, num_items=30, rating_scale=(1.0, 5.0), rating_step=1.0)
    assert built.kind == "sasrec" and built.encoder.precision == "bf16"
    assert built.encoder.rating_inputs and kw["num_members"] == 2
    post_cfg, post_kw = seen["posttrain"]
    assert post_kw["init_dir"] == pre_dir == str(tmp_path / "pretrain")
    assert post_kw["reward_dir"] == rm_dir == str(tmp_path / "reward")
    assert (post_cfg.model.kind, post_cfg.precision) == ("sasrec", "bf16")
