"""The GRPO trainer (genrec_jax.train.algorithms.grpo) on a tiny random HSTU, and its launcher."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from batches import random_train_batch
from genrec_jax import sharding as shd
from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.train.algorithms import grpo
from genrec_jax.train.scorers import table_scorer
from genrec_jax.train.state import init_params, init_train_state

NUM_ITEMS, B, L, G = 30, 8, 8, 4
CFG = HSTUConfig(num_items=NUM_ITEMS, max_len=L, dim=8, num_blocks=1, num_heads=1, qk_dim=4,
                 v_dim=4, dropout=0.0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup():
    mesh = shd.make_mesh(1, 1)
    graphdef, params = init_params(lambda rngs: HSTU(CFG, rngs=rngs), 0, mesh)
    _, ref = init_params(lambda rngs: HSTU(CFG, rngs=rngs), 1, mesh)
    batch = shd.shard_batch(random_train_batch(NUM_ITEMS, B, L, seed=3), mesh)
    return mesh, graphdef, params, ref, batch


def one_step(setup, table, **kw):
    mesh, graphdef, params, ref, batch = setup
    scorer = table_scorer(table)
    opt = optax.adam(1e-2)
    state = init_train_state(jax.tree.map(lambda x: x.copy(), params), opt, 0, mesh)
    step = grpo.make_grpo_step(graphdef, opt, scorer.last, state, group_size=G, chunk_size=7,
                               **kw)
    state, metrics = step(graphdef, state, batch, ref, scorer.params)
    return state, {k: float(v) for k, v in metrics.items()}


def leaves_equal(a, b):
    return [np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]


def test_first_update_is_the_kl_term_and_moves_the_policy(setup):
    """At the first update ρ = 1 and the group advantages sum to 0 in every full group, so the
    loss is exactly ``kl_coef · mean k3`` of the samples; the parameters move."""
    table = np.random.default_rng(0).uniform(1, 5, (B, CFG.table_size)).astype(np.float32)
    state, m = one_step(setup, jnp.asarray(table), epochs=1, kl_coef=0.1)
    assert m["frac_states"] == 1.0 and m["frac_samples"] == 1.0   # every group is full
    assert abs(m["ratio_first"] - 1.0) < 1e-6 and m["ratio_dev_first"] < 1e-5
    assert m["clip_frac"] == 0.0
    assert m["kl_sample"] > 0 and m["kl_ref"] > 0
    np.testing.assert_allclose(m["loss"], 0.1 * m["kl_sample"], rtol=1e-4, atol=1e-6)
    assert 1.0 <= m["reward"] <= 5.0 and m["group_reward_std"] > 0
    assert np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
    assert not all(leaves_equal(setup[2], state["params"]))


def test_equal_rewards_in_every_group_give_no_gradient(setup):
    """A constant reward: every group's advantages are 0, so with kl_coef = 0 the loss and
    the gradient are exactly 0 and Adam leaves the parameters unchanged."""
    table = jnp.full((B, CFG.table_size), 3.0, jnp.float32)
    state, m = one_step(setup, table, epochs=2, kl_coef=0.0)
    assert m["loss"] == 0.0 and m["grad_norm"] == 0.0
    assert m["group_reward_std"] == 0.0 and m["reward"] == 3.0
    assert all(leaves_equal(setup[2], state["params"]))
    # The same rewards with the KL term on do move the policy (towards the reference).
    _, m_kl = one_step(setup, table, epochs=1, kl_coef=0.5)
    assert m_kl["grad_norm"] > 0


def test_bad_knobs_name_the_key(setup):
    _, graphdef, *_ = setup
    with pytest.raises(ValueError, match=r"grpo.group_size must be >= 2, got 1"):
        grpo.make_grpo_step(graphdef, optax.adam(1e-2), None, group_size=1)
    with pytest.raises(ValueError, match=r"grpo.epochs must be >= 1, got 0"):
        grpo.make_grpo_step(graphdef, optax.adam(1e-2), None, epochs=0)


def test_launcher_smoke_run(tmp_path):
    """``python -m experiments.posttrain ...:algo=grpo,smoke=True`` end to end."""
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "experiments.posttrain",
           "--config=experiments/configs/posttrain.py:algo=grpo,smoke=True",
           f"--workdir={workdir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["algo"] == "grpo" and metrics["config"]["grpo"]["group_size"] == 4
    assert metrics["dropout"] == 0.0 and metrics["training_reward"] == "reward_model[0]"
    last = metrics["train"]["last"]
    assert all(np.isfinite(v) for v in last.values())
    assert last["frac_samples"] > 0 and "kl_ref" in last
