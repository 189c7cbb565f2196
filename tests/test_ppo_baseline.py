"""PPO's per-state baselines: the user's mean rating, the reference policy's expected
reward-model score, and the batch mean (the earlier form)."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from batches import policy_and_reference
from genrec_jax import losses
from genrec_jax import sharding as shd
from genrec_jax.models.hstu import HSTUConfig
from genrec_jax.train import algorithms, state_selection
from genrec_jax.train.algorithms import ppo
from genrec_jax.train.scorers import table_scorer
from genrec_jax.train.state import bind, init_train_state

NUM_ITEMS, B, L = 30, 8, 8
CFG = HSTUConfig(num_items=NUM_ITEMS, max_len=L, dim=8, num_blocks=1, num_heads=1, qk_dim=4,
                 v_dim=4, dropout=0.0)


def test_advantage_is_reward_minus_user_mean_by_hand():
    shaped = jnp.array([4.0, 2.0, 5.0, 0.0])
    valid = jnp.array([True, True, True, False])
    user_mean = jnp.array([3.5, 3.0, 4.0, 9.0])
    base = ppo.baselines("user_mean", shaped, valid, user_mean=user_mean)
    adv = losses.compute_advantages(shaped, base, where=valid)
    np.testing.assert_array_equal(np.asarray(adv), [0.5, -1.0, 1.0, 0.0])
    # batch_mean: one number for every row, the mean over the valid rows (11 / 3).
    base = ppo.baselines("batch_mean", shaped, valid)
    adv = losses.compute_advantages(shaped, base, where=valid)
    np.testing.assert_allclose(np.asarray(adv), [1 / 3, -5 / 3, 4 / 3, 0.0], rtol=1e-6)
    value = jnp.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(
        np.asarray(ppo.baselines("value", shaped, valid, value=value)), [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError) as err:
        ppo.baselines("item_mean", shaped, valid)
    assert str(err.value) == ("ppo.baseline must be one of ('user_mean', 'value', "
                              "'batch_mean'), got 'item_mean'")


def test_reference_value_exact_and_sampled():
    table = jnp.array([[0.0, 1.0, 2.0, 4.0], [0.0, 5.0, 3.0, 1.0]])
    scorer = table_scorer(table)
    sb = {"user": jnp.array([0, 1])}
    logits = jnp.array([[-jnp.inf, 0.0, np.log(2.0), np.log(3.0)],
                        [-jnp.inf, 0.0, 0.0, -jnp.inf]])
    exact = ppo.reference_value(scorer.last, scorer.params, sb, logits, None, 0)
    np.testing.assert_allclose(np.asarray(exact), [(1 + 4 + 12) / 6, 4.0], rtol=1e-6)
    sampled = ppo.reference_value(scorer.last, scorer.params, sb, logits,
                                  jax.random.PRNGKey(0), 20000)
    np.testing.assert_allclose(np.asarray(sampled), np.asarray(exact), atol=0.05)


@pytest.fixture(scope="module")
def setup():
    return policy_and_reference(CFG, B, L)


def one_step(setup, table, batch, **kw):
    mesh, graphdef, params, ref, _ = setup
    scorer = table_scorer(table)
    opt = optax.adam(1e-2)
    state = init_train_state(jax.tree.map(lambda x: x.copy(), params), opt, 0, mesh)
    step = ppo.make_ppo_step(graphdef, opt, scorer.last, state, epochs=1, chunk_size=7,
                             states="last", **kw)
    _, m = step(graphdef, state, shd.shard_batch(batch, mesh), ref, scorer.params)
    return {k: float(v) for k, v in m.items()}


def test_step_with_user_mean_on_a_constant_reward(setup):
    """Every item scores ``c_u`` for user ``u`` and ``kl_coef = 0``: the shaped reward is
    ``c_u`` whatever is sampled, so the logged mean advantage is ``mean(c_u − m_u)``."""
    batch = dict(setup[4])
    c = np.linspace(1.0, 5.0, B).astype(np.float32)
    m_u = np.linspace(2.0, 4.5, B).astype(np.float32)
    batch["user_mean"] = np.broadcast_to(m_u[:, None], (B, L)).copy()
    table = jnp.asarray(np.broadcast_to(c[:, None], (B, CFG.table_size)).copy())
    t = batch["lengths"] - 1
    valid = (batch["weights"] > 0)[np.arange(B), t] & (batch["targets"][np.arange(B), t] > 0)
    assert valid.all()
    m = one_step(setup, table, batch, baseline="user_mean", kl_coef=0.0)
    np.testing.assert_allclose(m["reward"], c.mean(), rtol=1e-6)
    np.testing.assert_allclose(m["baseline"], m_u.mean(), rtol=1e-6)
    np.testing.assert_allclose(m["advantage"], (c - m_u).mean(), rtol=1e-5, atol=1e-6)
    # The batch mean of a reward that only depends on the user leaves A = c_u − mean(c).
    m = one_step(setup, table, batch, baseline="batch_mean", kl_coef=0.0)
    np.testing.assert_allclose(m["baseline"], c.mean(), rtol=1e-6)
    assert abs(m["advantage"]) < 1e-5


def test_batch_mean_baseline_is_the_mean_shaped_reward(setup):
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.uniform(1, 5, (B, CFG.table_size)).astype(np.float32))
    m = one_step(setup, table, setup[4], baseline="batch_mean", kl_coef=0.1)
    np.testing.assert_allclose(m["baseline"], m["shaped_reward"], rtol=1e-6)
    assert abs(m["advantage"]) < 1e-5
    m = one_step(setup, table, setup[4], baseline="value", value_samples=0, kl_coef=0.1)
    assert 1.0 < m["baseline"] < 5.0 and np.isfinite(m["loss"])


def test_value_step_uses_the_reference_expectation(setup):
    """With ``value_samples=0`` the logged baseline is the mean over the states of
    ``Σ_a π_ref(a|s) r̂(s, a)`` (history excluded), computed here densely."""
    _, graphdef, _, ref, batch = setup
    rng = np.random.default_rng(2)
    table = rng.uniform(1, 5, (B, CFG.table_size)).astype(np.float32)
    m = one_step(setup, jnp.asarray(table), batch, baseline="value", value_samples=0)
    sb, _, valid = state_selection.select_states(
        {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.PRNGKey(0), "last")
    r = bind(graphdef, ref)
    h, _ = state_selection.state_vectors(r, sb)
    logits = np.asarray(state_selection.history_excluded_logits(r, h, sb["inputs"]), np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = (p * table).sum(1)[np.asarray(valid)].mean()
    np.testing.assert_allclose(m["baseline"], want, rtol=1e-5)


def test_columns_hold_each_users_mean_training_rating():
    # Two users: 3 events (2 for training, ratings 4, 2) and 2 events (1 for training, rating 5).
    ds = types.SimpleNamespace(lengths=np.array([3, 2]), offsets=np.array([0, 3, 5]),
                               num_events=5, num_users=2,
                               ratings=np.array([4.0, 2.0, 1.0, 5.0, 3.0], np.float32))
    split = types.SimpleNamespace(dataset=ds, train_len=np.array([2, 1]))
    train = {"inputs": np.zeros((2, 4), np.int32), "user": np.array([1, 0], np.int32)}
    data = types.SimpleNamespace(split=split, train=train)
    block = ml_collections.ConfigDict(ppo.DEFAULTS)
    cols, info = ppo.columns(block, data)
    np.testing.assert_array_equal(cols["user_mean"], [[5.0] * 4, [3.0] * 4])
    assert info == {"baseline_mean": 4.0}
    block.baseline = "value"
    cols, info = ppo.columns(block, data)
    assert not cols["user_mean"].any() and info == {}
    assert algorithms.get("ppo").column_keys == ("user_mean",)
    assert algorithms.get("ppo").defaults["baseline"] == "user_mean"
