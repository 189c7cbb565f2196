"""Post-training trainers on a tiny random HSTU: equivalences, frozen reference, pairs, PPO, CQL,
and the chunked kernel path against the reference path."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from batches import random_train_batch
from genrec_jax import sharding as shd
from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.train import policy_ops, state_selection
from genrec_jax.train.algorithms import asft, bc, cql, dpo, ppo
from genrec_jax.train.preference_pairs import build_pairs
from genrec_jax.train.scorers import table_scorer
from genrec_jax.train.state import bind, init_params, init_train_state
from genrec_jax.train.step import make_train_step

NUM_ITEMS, B, L = 30, 8, 8
CFG = HSTUConfig(num_items=NUM_ITEMS, max_len=L, dim=8, num_blocks=1, num_heads=1, qk_dim=4,
                 v_dim=4, dropout=0.0)


@pytest.fixture(scope="module")
def mesh():
    return shd.make_mesh(1, 1)


@pytest.fixture(scope="module")
def model(mesh):
    graphdef, params = init_params(lambda rngs: HSTU(CFG, rngs=rngs), 0, mesh)
    # A different "reference" so KL and DPO margins are not trivially 0.
    _, ref = init_params(lambda rngs: HSTU(CFG, rngs=rngs), 1, mesh)
    return graphdef, params, ref


@pytest.fixture(scope="module")
def batch():
    b = random_train_batch(NUM_ITEMS, B, L, seed=3)
    rng = np.random.default_rng(0)
    b["reward"] = b["target_ratings"].copy()
    b["baseline"] = (rng.normal(3.0, 0.5, (B, L)) * b["weights"]).astype(np.float32)
    return b


def table(seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(1, 5, (B, CFG.table_size)).astype(np.float32)
    return jnp.asarray(t)


def loss_and_grad(loss_fn, graphdef, params, batch, *frozen, key=0):
    batch = {k: jnp.asarray(v) for k, v in batch.items()}

    def f(p):
        return loss_fn(bind(graphdef, p), batch, jax.random.PRNGKey(key), *frozen)

    (loss, aux), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(params)
    return loss, aux, grads


def copy(tree):
    return jax.tree.map(lambda x: x.copy(), tree)


def run_steps(loss_fn, graphdef, params, batch, mesh, frozen, steps=2, lr=1e-2):
    opt = optax.adam(lr)
    state = init_train_state(copy(params), opt, 0, mesh)
    step = make_train_step(loss_fn, opt, state)
    sb = shd.shard_batch(batch, mesh)
    for _ in range(steps):
        state, metrics = step(graphdef, state, sb, *frozen)
    return state, metrics


def test_asft_lambda_inf_is_bc(model, batch, mesh):
    graphdef, params, ref = model
    bc_loss = bc.make_loss(graphdef, log_kl=False)
    asft_loss = asft.make_loss(graphdef, lam=jnp.inf, w_max=20.0, normalize_advantages=True,
                               log_kl=False)
    s_bc, _ = run_steps(bc_loss, graphdef, params, batch, mesh, (ref,))
    s_asft, m = run_steps(asft_loss, graphdef, params, batch, mesh, (ref,))
    assert float(m["mean_weight"]) == 1.0
    for a, b in zip(jax.tree.leaves(s_bc["params"]), jax.tree.leaves(s_asft["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Data-parallel over the 8 test devices: the same steps up to summation order.
    mesh8 = shd.make_mesh(-1, 1)
    assert mesh8.shape["data"] == 8
    rep = jax.sharding.NamedSharding(mesh8, jax.sharding.PartitionSpec())
    params8, ref8 = jax.device_put((params, ref), rep)
    s_dp, _ = run_steps(asft_loss, graphdef, params8, batch, mesh8, (ref8,))
    assert s_dp["params"]["pos_emb"].sharding.mesh.shape["data"] == 8
    for a, b in zip(jax.tree.leaves(s_bc["params"]), jax.tree.leaves(s_dp["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_asft_constant_advantage_is_scaled_bc(model, batch):
    graphdef, params, ref = model
    c, lam = 0.7, 0.5
    const = dict(batch, reward=np.full((B, L), 4.0, np.float32),
                 baseline=np.full((B, L), 4.0 - c, np.float32))
    bc_loss = bc.make_loss(graphdef, log_kl=False)
    asft_loss = asft.make_loss(graphdef, lam=lam, w_max=20.0, log_kl=False)
    l_bc, _, g_bc = loss_and_grad(bc_loss, graphdef, params, const, ref)
    l_as, aux, g_as = loss_and_grad(asft_loss, graphdef, params, const, ref)
    w = np.exp(c / lam)
    np.testing.assert_allclose(float(aux["mean_weight"]), w, rtol=1e-6)
    np.testing.assert_allclose(float(l_as), w * float(l_bc), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_as), jax.tree.leaves(g_bc)):
        np.testing.assert_allclose(np.asarray(a), w * np.asarray(b), rtol=1e-4, atol=1e-6)


def test_reference_is_frozen_and_not_donated(model, batch, mesh):
    graphdef, params, ref = model
    ref_arg = copy(ref)
    before = [np.asarray(x).copy() for x in jax.tree.leaves(ref_arg)]
    opt = optax.adam(1e-2)
    state = init_train_state(copy(params), opt, 0, mesh)
    donated = jax.tree.leaves(state["params"])
    step = make_train_step(asft.make_loss(graphdef), opt, state)
    state, metrics = step(graphdef, state, shd.shard_batch(batch, mesh), ref_arg)
    state, metrics = step(graphdef, state, shd.shard_batch(batch, mesh), ref_arg)
    assert all(x.is_deleted() for x in donated)          # the state is donated ...
    assert not any(x.is_deleted() for x in jax.tree.leaves(ref_arg))   # ... the reference not
    for a, b in zip(before, jax.tree.leaves(ref_arg)):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert float(metrics["kl_ref"]) > 0
    moved = [not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state["params"]))]
    assert any(moved)


def test_pairs_on_known_rewards():
    cands = jnp.asarray([[3, 5, 7, 9], [2, 4, 6, 8], [1, 2, 3, 4]])
    scores = jnp.asarray([[2.0, 4.5, 1.0, 3.0], [3.0, 3.0, 3.0, 3.0], [5.0, 1.0, 2.0, 4.0]])
    valid = jnp.asarray([[True] * 4, [True] * 4, [False, True, True, False]])
    logged = jnp.asarray([11, 12, 2])
    c, r, sc, sr, ok = build_pairs(cands, scores, valid, logged, mode="best_worst")
    np.testing.assert_array_equal(c, [5, 2, 3])
    np.testing.assert_array_equal(r, [7, 2, 2])
    np.testing.assert_array_equal(ok, [True, False, True])      # all tied -> no pair
    np.testing.assert_allclose(sc - sr, [3.5, 0.0, 1.0])
    c, r, _, _, ok = build_pairs(cands, scores, valid, logged, mode="logged_worst")
    np.testing.assert_array_equal(c, [11, 12, 2])
    np.testing.assert_array_equal(r, [7, 2, 2])
    np.testing.assert_array_equal(ok, [True, True, False])      # worst == logged item


def test_sampled_pairs_with_reward_table(model, batch):
    """K >= number of available items: the sampled set is the whole available catalogue, so
    chosen / rejected are the best / worst available items of the table, whatever the draw."""
    graphdef, params, ref = model
    t = table()
    scorer = table_scorer(t)

    @jax.jit
    def pairs(ref, t, jb, key):
        sb, logged, valid = state_selection.select_states(jb, key, "random")
        r = bind(graphdef, ref)
        h, _ = state_selection.state_vectors(r, sb)
        logits = state_selection.history_excluded_logits(r, h, sb["inputs"])
        cands, ok = state_selection.sample_without_replacement(key, logits, NUM_ITEMS)
        scores = scorer.last(t, sb, cands)
        return (sb, logged, cands, ok) + build_pairs(cands, scores, ok, logged)

    jb = {k: jnp.asarray(v) for k, v in batch.items()}
    sb, logged, cands, ok, chosen, rejected, _, _, pair_ok = pairs(ref, scorer.params, jb,
                                                                 jax.random.PRNGKey(5))
    tt = np.asarray(t).copy()
    for row in range(B):
        hist = set(np.asarray(sb["inputs"][row])) | {0}
        avail = [i for i in range(1, NUM_ITEMS + 1) if i not in hist]
        assert int(ok[row].sum()) == len(avail)
        assert set(np.asarray(cands[row])[np.asarray(ok[row])]) == set(avail)
        assert int(chosen[row]) == avail[int(np.argmax(tt[row, avail]))]
        assert int(rejected[row]) == avail[int(np.argmin(tt[row, avail]))]
        assert bool(pair_ok[row])
    # The states are real training positions and the truncated rows end there.
    t_idx = np.asarray(sb["lengths"]) - 1
    np.testing.assert_array_equal(logged, batch["targets"][np.arange(B), t_idx])
    beyond = np.arange(L)[None] >= np.asarray(sb["lengths"])[:, None]
    assert np.all(np.asarray(sb["inputs"])[beyond] == 0)


def test_kl_matches_dense(model, batch):
    graphdef, params, ref = model

    @jax.jit
    def both(params, ref, jb):
        m, r = bind(graphdef, params), bind(graphdef, ref)
        h, _ = state_selection.state_vectors(m, jb)
        h_ref, _ = state_selection.state_vectors(r, jb)
        p, q = jax.nn.log_softmax(m.logits(h)), jax.nn.log_softmax(r.logits(h_ref))
        dense = jnp.sum(jnp.where(jnp.isfinite(p), jnp.exp(p) * (p - q), 0.0), axis=1)
        kl = policy_ops.kl_to_reference(h, m.item_vectors(), h_ref, r.item_vectors(),
                                        temperature=CFG.temperature,
                                        valid_range=policy_ops.item_range(m), chunk_size=7)
        return kl, dense

    kl, dense = both(params, ref, {k: jnp.asarray(v) for k, v in batch.items()})
    np.testing.assert_allclose(kl, dense, rtol=1e-4, atol=1e-5)
    assert float(jnp.min(kl)) > 0


@pytest.mark.parametrize("gamma", [0.0, 0.9])
def test_cql_loss_is_the_formula(model, batch, gamma):
    graphdef, params, ref = model
    alpha = 0.7
    loss_fn = cql.make_loss(graphdef, impl="reference", alpha=alpha, gamma=gamma, log_kl=False)
    loss, _, _ = loss_and_grad(loss_fn, graphdef, params, batch, ref)
    m = bind(graphdef, params)
    q = np.asarray(m.logits(m.encode({k: jnp.asarray(v) for k, v in batch.items()})),
                   np.float64)                                       # [B, L, V] with -inf
    valid = np.isfinite(q[0, 0])
    qv = q[..., valid]
    lse = np.log(np.exp(qv).sum(-1))
    q_a = np.take_along_axis(q, batch["targets"][..., None].astype(np.int64), -1)[..., 0]
    p = np.exp(qv - lse[..., None])
    v_next = np.concatenate([(p * qv).sum(-1)[:, 1:], np.zeros((B, 1))], axis=1)
    mask = batch["weights"] > 0
    has_next = np.concatenate([mask[:, 1:], np.zeros((B, 1), bool)], axis=1)
    y = batch["target_ratings"] + gamma * np.where(has_next, v_next, 0.0)
    per = alpha * (lse - q_a) + 0.5 * (q_a - y) ** 2
    expected = per[mask].sum() / mask.sum()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def _assert_close_trees(a, b, rtol=2e-4, atol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _asft_loss(graphdef, impl):
    return asft.make_loss(graphdef, impl=impl, chunk_size=7, log_kl=False), ()


def _cql_loss(graphdef, impl):
    return cql.make_loss(graphdef, impl=impl, chunk_size=7, gamma=0.5, log_kl=False), ()


def _dpo_loss(graphdef, impl):
    scorer = table_scorer(table())
    loss_fn = dpo.make_loss(graphdef, scorer.last, beta=0.5, impl=impl, chunk_size=7,
                            num_candidates=4, log_kl=False)
    return loss_fn, (scorer.params,)


# bc and rwbc share asft's path (kernel log-probs, other weights); ipo shares dpo's.
@pytest.mark.parametrize("make", [_asft_loss, _cql_loss, _dpo_loss])
def test_chunked_path_equals_reference(model, batch, make):
    graphdef, params, ref = model
    out = {}
    for impl in ("reference", "chunked"):
        loss_fn, extra = make(graphdef, impl)
        out[impl] = loss_and_grad(loss_fn, graphdef, params, batch, ref, *extra)
    (l_ref, aux_ref, g_ref), (l_ch, aux_ch, g_ch) = out["reference"], out["chunked"]
    np.testing.assert_allclose(float(l_ch), float(l_ref), rtol=1e-5)
    for k in aux_ref:
        np.testing.assert_allclose(float(aux_ch[k]), float(aux_ref[k]), rtol=1e-4, atol=1e-6)
    _assert_close_trees(g_ch, g_ref)
    assert np.isfinite(float(l_ch))
    if make is _dpo_loss:
        assert float(aux_ch["frac_pairs"]) > 0.5


def test_ppo_fresh_rollout_has_ratio_one(model, batch, mesh):
    graphdef, params, ref = model
    scorer = table_scorer(table())
    opt = optax.adam(1e-2)
    state = init_train_state(copy(params), opt, 0, mesh)
    step = ppo.make_ppo_step(graphdef, opt, scorer.last, state, epochs=1, kl_coef=0.1,
                             chunk_size=7)
    state, m = step(graphdef, state, shd.shard_batch(batch, mesh), ref, scorer.params)
    assert abs(float(m["ratio_first"]) - 1.0) < 1e-6
    assert float(m["ratio_dev_first"]) < 1e-5
    assert float(m["clip_frac"]) == 0.0
    assert np.isfinite(float(m["loss"])) and float(m["kl_ref"]) > 0
    assert 1.0 <= float(m["reward"]) <= 5.0
    # A second step: a fresh rollout from the updated policy, again ratio 1 at its update.
    state, m2 = step(graphdef, state, shd.shard_batch(batch, mesh), ref, scorer.params)
    assert float(m2["ratio_dev_first"]) < 1e-5


def test_value_baseline_exact_and_sampled(model, batch):
    from genrec_jax.train.logged_rewards import value_baseline_rows

    graphdef, params, ref = model
    scorer = table_scorer(table())
    exact = value_baseline_rows(graphdef, ref, scorer, batch, num_samples=0, rows=3)
    sampled = value_baseline_rows(graphdef, ref, scorer, batch, num_samples=4000, rows=8)
    m = bind(graphdef, ref)
    logits = np.asarray(m.logits(m.encode({k: jnp.asarray(v) for k, v in batch.items()})),
                        np.float64)
    t = np.asarray(table(), np.float64)
    for b in range(B):
        for i in range(int(batch["lengths"][b])):
            lg = logits[b, i].copy()
            lg[np.unique(batch["inputs"][b, :i + 1])] = -np.inf
            p = np.exp(lg - lg.max())
            p /= p.sum()
            np.testing.assert_allclose(exact[b, i], (p * t[b]).sum(), rtol=1e-4)
    mask = batch["weights"] > 0
    assert np.all(exact[~mask] == 0)
    np.testing.assert_allclose(sampled[mask], exact[mask], atol=0.1)
