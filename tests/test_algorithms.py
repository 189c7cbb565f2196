"""The algorithm registry: names, config blocks generated from it, dispatch through it, and a
new algorithm plugged in without touching the trainer."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import compare as compare_config
from experiments.configs import posttrain as posttrain_config
from genrec_jax.train import algorithms, posttrain
from genrec_jax.train.algorithms import heads, registry

BUILTIN = ("bc", "rwbc", "asft", "dpo", "ipo", "ppo", "cql", "grpo")


def test_names_and_comparison_order():
    assert algorithms.names() == BUILTIN
    assert algorithms.comparison_names() == BUILTIN
    assert compare_config.get_config().algos == BUILTIN
    assert [algorithms.get(n).name for n in BUILTIN] == list(BUILTIN)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        algorithms.get("asfft")
    assert str(err.value) == f"algo must be one of {BUILTIN}, got 'asfft'"
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register(algorithms.get("bc"))


def test_config_blocks_are_the_module_defaults():
    cfg = posttrain_config.get_config()
    for name in BUILTIN:
        assert cfg[name].to_dict() == dict(algorithms.get(name).defaults), name
    assert cfg.asft.lam == 1.0 and cfg.asft.w_max == 20.0 and cfg.asft.baseline == "user_mean"
    assert cfg.rwbc.to_dict() == {"transform": "linear", "beta": 1.0}
    assert (cfg.dpo.beta, cfg.dpo.label_smoothing, cfg.ipo.beta) == (0.1, 0.0, 0.1)
    assert (cfg.ppo.clip_eps, cfg.ppo.kl_coef, cfg.ppo.epochs) == (0.2, 0.05, 4)
    assert (cfg.ppo.baseline, cfg.ppo.value_samples) == ("user_mean", 8)
    assert (cfg.cql.alpha, cfg.cql.gamma, cfg.cql.q_head) == (1.0, 0.0, "affine")
    assert (cfg.grpo.group_size, cfg.grpo.clip_eps, cfg.grpo.kl_coef) == (8, 0.2, 0.04)
    smoke = posttrain_config.get_config("smoke=True,asft.lam=0.3")
    assert (smoke.dpo.num_candidates, smoke.ipo.num_candidates, smoke.ppo.epochs,
            smoke.asft.value_samples, smoke.grpo.group_size,
            smoke.ppo.value_samples) == (4, 4, 2, 4, 4, 4)
    assert smoke.asft.lam == 0.3 and smoke.dpo.beta == 0.1
    # The old flat keys are gone.
    for old in ("lam", "rwbc_beta", "ppo_epochs", "kl_coef", "alpha", "gamma", "beta"):
        with pytest.raises(KeyError, match=f"unknown config key '{old}'"):
            posttrain_config.get_config(f"{old}=1")
    # compare's smoke overrides are valid post-training keys.
    posttrain_config.get_config(compare_config.get_config("smoke=True").posttrain_args)


def _cfg(arg):
    return posttrain_config.get_config(arg)


def test_reward_model_and_dropout_come_from_the_registry():
    assert posttrain.needs_reward_model(_cfg("algo=bc")) is None
    assert posttrain.needs_reward_model(_cfg("algo=asft")) is None
    assert (posttrain.needs_reward_model(_cfg("algo=asft,asft.baseline=value"))
            == "algo=asft with asft.baseline=value (E_{a~pi_ref}[RM(s,a)])")
    assert (posttrain.needs_reward_model(_cfg("algo=asft,asft.reward_source=reward_model"))
            == "algo=asft with asft.reward_source=reward_model")
    for name in ("dpo", "ipo", "ppo", "grpo"):
        assert (posttrain.needs_reward_model(_cfg(f"algo={name}"))
                == f"algo={name} trains on reward-model scores")
        assert posttrain.needs_reward_model(_cfg(f"algo={name},reward.model=oracle")) is None
        assert posttrain.post_dropout(_cfg(f"algo={name}"), 0.2) == 0.0
    for name in ("bc", "rwbc", "asft", "cql"):
        assert posttrain.post_dropout(_cfg(f"algo={name}"), 0.2) == 0.2
    assert posttrain.post_dropout(_cfg("algo=dpo,dropout=0.3"), 0.2) == 0.3
    with pytest.raises(ValueError, match="algo=ppo needs a reward model: pass --reward_dir"):
        posttrain.build_step(_cfg("algo=ppo"), None, optax.sgd(0.1), None)


def test_a_new_algorithm_is_one_registration():
    """A toy algorithm registered at run time gets a config block and is what build_step and
    train_arrays_for dispatch to; nothing else changes."""
    seen = {}

    def build(block, ctx):
        seen["block"], seen["ctx"] = block.to_dict(), ctx

        def step(graphdef, state, batch, ref_params):
            return state, {"loss": block.scale * jax.numpy.sum(batch["x"])}

        return step, ()

    def columns(block, data, **kw):
        return {"x": np.full((2, 3), block.scale, np.float32)}, {"seed": kw["seed"]}

    toy = algorithms.Algorithm(name="toy", summary="a test algorithm", defaults={"scale": 2.0},
                               build=build, columns=columns, column_keys=("x",), dropout=0.05,
                               smoke={"scale": 3.0})
    algorithms.register(toy)
    try:
        assert algorithms.names()[-1] == "toy"
        cfg = posttrain_config.get_config("algo=toy,toy.scale=4.0,loss.chunk_size=7,seed=5")
        step, extra = posttrain.build_step(cfg, "graphdef", "opt", "state", scorer=None,
                                           rating_scale=(0.0, 1.0))
        assert extra == () and seen["block"] == {"scale": 4.0}
        ctx = seen["ctx"]
        assert (ctx.graphdef, ctx.optimizer, ctx.state, ctx.chunk_size, ctx.rating_scale) == (
            "graphdef", "opt", "state", 7, (0.0, 1.0))
        assert float(step(None, None, {"x": np.ones(3)}, None)[1]["loss"]) == 12.0
        data = type("Data", (), {"train": {"inputs": np.zeros((2, 3), np.int32)}})()
        arrays, info = posttrain.train_arrays_for(cfg, data)
        assert set(arrays) == {"inputs", "x"} and float(arrays["x"][0, 0]) == 4.0
        assert info == {"seed": 5}
        assert posttrain.post_dropout(cfg, 0.2) == 0.05
        assert posttrain.needs_reward_model(cfg) is None
        assert posttrain_config.get_config("algo=toy,smoke=True").toy.scale == 3.0
    finally:
        registry._REGISTRY.pop("toy")
    assert algorithms.names() == BUILTIN


def test_block_of_names_the_missing_block():
    with pytest.raises(KeyError, match="has no 'grpo' block"):
        algorithms.block_of(ml_collections.ConfigDict({"algo": "grpo"}), "grpo")


def test_declared_columns_must_match_the_built_ones():
    bad = algorithms.Algorithm(name="toy_cols", summary="declares y, builds x", defaults={},
                               build=lambda block, ctx: (None, ()), column_keys=("y",),
                               columns=lambda block, data, **kw: ({"x": np.zeros(1)}, {}))
    algorithms.register(bad)
    try:
        cfg = posttrain_config.get_config("algo=toy_cols")
        data = type("Data", (), {"train": {}})()
        with pytest.raises(ValueError) as err:
            posttrain.train_arrays_for(cfg, data)
        assert str(err.value) == ("algorithm 'toy_cols' declares the columns ['y'] but built "
                                  "['x']")
    finally:
        registry._REGISTRY.pop("toy_cols")


def test_only_cql_adds_a_head_to_the_trained_params():
    """``train_params`` is the identity for every algorithm without a head (and for CQL's
    ``q_head="logits"``); a head entry is stripped again by ``policy_params``. CQL's affine
    head itself: tests/test_cql_affine.py."""
    params = {"item_emb": {"embedding": np.ones((3, 2), np.float32)}}
    data = type("Data", (), {"train": {}})()
    for name in BUILTIN:
        algo = algorithms.get(name)
        blk = algo.config()
        if name == "cql":
            assert algo.init_head is not None and blk.q_head == "affine"
            blk.q_head = "logits"
        else:
            assert algo.init_head is None, name
        assert algo.train_params(blk, params, graphdef=None, data=data) is params, name
    full = heads.with_head(params, {"scale": 0.5, "bias": 3.0})
    assert sorted(full) == ["algo_head", "item_emb"]
    assert {k: float(v) for k, v in full["algo_head"].items()} == {"scale": 0.5, "bias": 3.0}
    assert algorithms.policy_params(full) == params and algorithms.policy_params(params) is params
    with pytest.raises(ValueError, match="already hold a head entry 'algo_head'"):
        heads.with_head(full, {"scale": 1.0})
