"""CQL with the learned affine Q map ``Q = a·z + b`` (``z`` = the policy's logits): the loss
against a numpy reference, gradients into ``a`` and ``b``, the head in the train state, and
``q_head="logits"`` unchanged."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from batches import policy_and_reference
from genrec_jax import sharding as shd
from genrec_jax.models.hstu import HSTUConfig
from genrec_jax.train import algorithms
from genrec_jax.train.algorithms import cql
from genrec_jax.train.state import bind, init_train_state

NUM_ITEMS, B, L = 30, 8, 8
CFG = HSTUConfig(num_items=NUM_ITEMS, max_len=L, dim=8, num_blocks=1, num_heads=1, qk_dim=4,
                 v_dim=4, dropout=0.0)
ALPHA = 0.7


@pytest.fixture(scope="module")
def setup():
    return policy_and_reference(CFG, B, L)


def jbatch(batch):
    return {k: jnp.asarray(v) for k, v in batch.items()}


def numpy_cql(graphdef, params, batch, *, scale, bias, gamma):
    """Mean over targets of ``α(lse Q − Q_a) + ½(Q_a − y)²`` with ``Q = scale·z + bias``, and
    the analytic gradients in ``scale`` / ``bias`` (``γ = 0``: ``y`` does not depend on them)."""
    m = bind(graphdef, params)
    z = np.asarray(m.logits(m.encode(jbatch(batch))), np.float64)        # [B, L, V], -inf
    valid = np.isfinite(z[0, 0])
    zv = z[..., valid]
    qv = scale * zv + bias
    lse = np.log(np.exp(qv - qv.max(-1, keepdims=True)).sum(-1)) + qv.max(-1)
    z_a = np.take_along_axis(z, batch["targets"][..., None].astype(np.int64), -1)[..., 0]
    q_a = scale * z_a + bias
    p = np.exp(qv - lse[..., None])
    v_next = np.concatenate([(p * qv).sum(-1)[:, 1:], np.zeros((B, 1))], axis=1)
    mask = batch["weights"] > 0
    has_next = np.concatenate([mask[:, 1:], np.zeros((B, 1), bool)], axis=1)
    y = batch["target_ratings"] + gamma * np.where(has_next, v_next, 0.0)
    per = ALPHA * (lse - q_a) + 0.5 * (q_a - y) ** 2
    n = mask.sum()
    d_scale = ALPHA * ((p * zv).sum(-1) - z_a) + (q_a - y) * z_a
    d_bias = q_a - y
    return per[mask].sum() / n, d_scale[mask].sum() / n, d_bias[mask].sum() / n


def affine_loss(graphdef, params, ref, batch, q_params, *, gamma, impl="reference"):
    loss_fn = cql.make_loss(graphdef, alpha=ALPHA, gamma=gamma, q_params=q_params, impl=impl,
                            chunk_size=7, log_kl=False)
    return loss_fn(bind(graphdef, params), jbatch(batch), jax.random.PRNGKey(0), ref)


@pytest.mark.parametrize("gamma", [0.0, 0.9])
@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_affine_loss_is_the_numpy_formula(setup, gamma, impl):
    _, graphdef, params, ref, batch = setup
    q_params = {"scale": jnp.float32(0.3), "bias": jnp.float32(3.1)}
    loss, aux = affine_loss(graphdef, params, ref, batch, q_params, gamma=gamma, impl=impl)
    want, _, _ = numpy_cql(graphdef, params, batch, scale=0.3, bias=3.1, gamma=gamma)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert (float(aux["q_scale"]), float(aux["q_bias"])) == (np.float32(0.3), np.float32(3.1))


def test_gradient_reaches_scale_and_bias(setup):
    _, graphdef, params, ref, batch = setup

    def f(q_params):
        return affine_loss(graphdef, params, ref, batch, q_params, gamma=0.0, impl="chunked")[0]

    grads = jax.grad(f)({"scale": jnp.float32(0.3), "bias": jnp.float32(3.1)})
    _, d_scale, d_bias = numpy_cql(graphdef, params, batch, scale=0.3, bias=3.1, gamma=0.0)
    assert abs(d_scale) > 1e-3 and abs(d_bias) > 1e-3
    np.testing.assert_allclose(float(grads["scale"]), d_scale, rtol=1e-4)
    np.testing.assert_allclose(float(grads["bias"]), d_bias, rtol=1e-4)


def test_unit_affine_map_is_the_logits_form(setup):
    """``a = 1, b = 0`` gives ``Q = z``: the same loss as ``q_head="logits"``."""
    _, graphdef, params, ref, batch = setup
    unit = {"scale": jnp.float32(1.0), "bias": jnp.float32(0.0)}
    for gamma in (0.0, 0.5):
        affine, _ = affine_loss(graphdef, params, ref, batch, unit, gamma=gamma, impl="chunked")
        logits, _ = affine_loss(graphdef, params, ref, batch, None, gamma=gamma, impl="chunked")
        np.testing.assert_allclose(float(affine), float(logits), rtol=1e-6)


def data_of(batch):
    return types.SimpleNamespace(train=batch)


def block(**kw):
    return ml_collections.ConfigDict({**cql.DEFAULTS, "alpha": ALPHA, **kw})


def ctx_for(graphdef, opt, state):
    return algorithms.BuildContext(graphdef=graphdef, optimizer=opt, state=state,
                                   chunk_size=7, log_kl=False)


def test_affine_head_lives_in_the_train_state_and_trains(setup):
    mesh, graphdef, params, ref, batch = setup
    algo = algorithms.get("cql")
    assert algo.defaults["q_head"] == "affine"
    train_params = algo.train_params(block(), jax.tree.map(lambda x: x.copy(), params),
                                     graphdef=graphdef, data=data_of(batch))
    head = {k: float(v) for k, v in train_params[algorithms.HEAD_KEY].items()}
    mask = batch["weights"] > 0
    assert head["scale"] == np.float32(CFG.temperature)
    np.testing.assert_allclose(head["bias"], batch["target_ratings"][mask].mean(), rtol=1e-6)
    policy = algorithms.policy_params(train_params)
    assert jax.tree.structure(policy) == jax.tree.structure(params)
    opt = optax.adam(1e-2)
    state = init_train_state(train_params, opt, 0, mesh)
    step, extra = algo.build(block(), ctx_for(graphdef, opt, state))
    assert extra == ()
    sb = shd.shard_batch(batch, mesh)
    state, m = step(graphdef, state, sb, ref)
    # The first step's loss is the formula at the initial head (Q = cos + mean rating).
    want, _, _ = numpy_cql(graphdef, params, batch, scale=float(np.float32(CFG.temperature)),
                           bias=head["bias"], gamma=0.0)
    np.testing.assert_allclose(float(m["loss"]), want, rtol=1e-5)
    scale_1 = float(state["params"][algorithms.HEAD_KEY]["scale"])
    state, m = step(graphdef, state, sb, ref)
    assert float(m["q_scale"]) == scale_1          # the loss used the head of the state
    new_head = state["params"][algorithms.HEAD_KEY]
    assert float(new_head["scale"]) != head["scale"]
    assert float(new_head["bias"]) != head["bias"]
    # The trained policy is still a plain encoder.
    model = bind(graphdef, algorithms.policy_params(state["params"]))
    assert model.logits(jnp.ones((1, CFG.dim))).shape == (1, CFG.table_size)


def test_logits_form_has_no_head_and_matches_the_formula(setup):
    mesh, graphdef, params, ref, batch = setup
    algo = algorithms.get("cql")
    blk = block(q_head="logits")
    same = algo.train_params(blk, params, graphdef=graphdef, data=data_of(batch))
    assert same is params
    opt = optax.adam(1e-2)
    state = init_train_state(jax.tree.map(lambda x: x.copy(), params), opt, 0, mesh)
    step, _ = algo.build(blk, ctx_for(graphdef, opt, state))
    _, m = step(graphdef, state, shd.shard_batch(batch, mesh), ref)
    want, _, _ = numpy_cql(graphdef, params, batch, scale=1.0, bias=0.0, gamma=0.0)
    np.testing.assert_allclose(float(m["loss"]), want, rtol=1e-5)
    assert "q_scale" not in m


def test_errors_name_the_key(setup):
    mesh, graphdef, params, _, batch = setup
    with pytest.raises(ValueError) as err:
        cql.build(block(q_head="tanh"), ctx_for(graphdef, optax.sgd(0.1), None))
    assert str(err.value) == "cql.q_head must be one of ('affine', 'logits'), got 'tanh'"
    opt = optax.sgd(0.1)
    state = init_train_state(jax.tree.map(lambda x: x.copy(), params), opt, 0, mesh)
    with pytest.raises(KeyError, match=r"cql \(q_head=affine\) trains extra parameters "
                                       r"params\['algo_head'\]"):
        cql.build(block(), ctx_for(graphdef, opt, state))
    empty = dict(batch, weights=np.zeros_like(batch["weights"]))
    with pytest.raises(ValueError, match="mean training rating"):
        cql.init_head(block(), graphdef=graphdef, params=params, data=data_of(empty))


def test_a_saved_affine_cql_run_restores_as_its_plain_policy(setup, tmp_path):
    # A CQL workdir (used as --init, or by benchmarks/ope.py) holds the head in its params and
    # optimizer state; restore_pretrained must read it and return the policy alone.
    import json

    from experiments.configs import posttrain as posttrain_config
    from genrec_jax.train.algorithms import heads
    from genrec_jax.train.checkpoint import Checkpointer
    from genrec_jax.train.pretrained import restore_pretrained, saved_head_names
    from genrec_jax.train.state import make_optimizer

    mesh, _, params, _, _ = setup
    cfg = posttrain_config.get_config("algo=cql,data.max_len=8,model.dim=8,model.num_blocks=1,"
                                      "model.qk_dim=4,model.v_dim=4,model.dropout=0.0")
    assert saved_head_names(cfg) == ("scale", "bias")
    logits_cfg = posttrain_config.get_config("algo=cql,cql.q_head=logits")
    assert saved_head_names(logits_cfg) == ()
    assert saved_head_names(posttrain_config.get_config("algo=bc")) == ()
    trained = heads.with_head(jax.tree.map(lambda x: x + 0.5, params),
                              {"scale": 0.04, "bias": 3.5})
    state = init_train_state(trained, make_optimizer(cfg.optimizer), 0, mesh)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), every=1)
    ckpt.save(3, state, {"step": 3}, force=True)
    ckpt.close()
    _, restored, _ = restore_pretrained(str(tmp_path), NUM_ITEMS, mesh)
    assert heads.HEAD_KEY not in restored
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(heads.policy_params(trained))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
