"""Next-item objectives: sampled softmax vs full softmax; dense, counted and gathered negatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.train.next_item import (mean_over_targets, next_item_losses,
                                        sampled_softmax_positions, sampled_softmax_shared)
from tests.batches import random_train_batch

CFG = HSTUConfig(num_items=12, max_len=6, dim=8, qk_dim=4, v_dim=4, dropout=0.0)


def _setup(seed=0):
    model = HSTU(CFG, rngs=nnx.Rngs(seed))
    batch = jax.tree.map(jnp.asarray, random_train_batch(CFG.num_items, 3, CFG.max_len, seed))
    return model, batch


def test_every_item_as_negative_equals_full_softmax():
    model, batch = _setup()
    vecs = model.encode(batch)
    items = model.item_vectors()
    # Negatives = all items 1..V; the one equal to the target is masked, leaving the full softmax.
    all_items = jnp.broadcast_to(jnp.arange(1, CFG.num_items + 1), (*batch["targets"].shape,
                                                                     CFG.num_items))
    targets = jnp.maximum(batch["targets"], 1)
    sampled = sampled_softmax_positions(vecs, items, targets, all_items.astype(jnp.int32),
                                        temperature=CFG.temperature, mode="gather")
    logits = model.logits(vecs)
    full = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(sampled), np.asarray(full), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["dense", "counts"])
def test_negative_modes_agree_with_gather_with_gradients(mode):
    # 9 draws from 12 items: duplicates at most positions; one draw set to its target (masked).
    model, batch = _setup(1)
    graphdef, params = nnx.split(model)
    negatives = jax.random.randint(jax.random.key(0), (*batch["targets"].shape, 9), 1,
                                   CFG.num_items + 1)
    negatives = negatives.at[0, 1, :2].set(jnp.maximum(batch["targets"][0, 1], 1))

    def loss(params, mode):
        m = nnx.merge(graphdef, params)
        per = sampled_softmax_positions(m.encode(batch), m.item_vectors(),
                                        jnp.maximum(batch["targets"], 1), negatives,
                                        temperature=CFG.temperature, mode=mode)
        return jnp.sum(per * batch["weights"])

    ld, gd = jax.value_and_grad(loss)(params, mode)
    lg, gg = jax.value_and_grad(loss)(params, "gather")
    assert float(lg) > 0
    np.testing.assert_allclose(float(ld), float(lg), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(gd), jax.tree.leaves(gg)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("share", [1, 2, 4, 6])
def test_shared_negatives_equal_per_position_with_the_group_draws_repeated(share):
    # Groups of `share` consecutive positions score negatives [B, K, R]: the same numbers (and
    # gradients) as the per-position estimator fed each group's draws at its positions. L = 6,
    # so share 4 leaves a partial last group; share 6 is one draw per row.
    model, batch = _setup(4)
    graphdef, params = nnx.split(model)
    targets = jnp.maximum(batch["targets"], 1)
    length = targets.shape[1]
    groups = -(-length // share)
    negatives = jax.random.randint(jax.random.key(3), (targets.shape[0], groups, 7), 1,
                                   CFG.num_items + 1)
    # One negative equal to a target of its group, so the target mask matters.
    negatives = negatives.at[0, 0, 0].set(targets[0, 0])
    repeated = jnp.repeat(negatives, share, axis=1)[:, :length]

    def loss(params, shared):
        m = nnx.merge(graphdef, params)
        vecs, items = m.encode(batch), m.item_vectors()
        if shared:
            per = sampled_softmax_shared(vecs, items, targets, negatives, share=share,
                                         temperature=CFG.temperature)
        else:
            per = sampled_softmax_positions(vecs, items, targets, repeated,
                                            temperature=CFG.temperature, mode="gather")
        return jnp.sum(per * batch["weights"]), per

    (ls, per_s), gs = jax.value_and_grad(loss, has_aux=True)(params, True)
    (lp, per_p), gp = jax.value_and_grad(loss, has_aux=True)(params, False)
    np.testing.assert_allclose(np.asarray(per_s), np.asarray(per_p), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(ls), float(lp), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(gs), jax.tree.leaves(gp)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_negatives_share_draws_one_set_per_group_and_1_is_per_position():
    model, batch = _setup(5)
    vecs, items = model.encode(batch), model.item_vectors()
    key = jax.random.key(7)
    _, neg_key = jax.random.split(key)
    weights = batch["weights"]

    def weighted(per):
        return jnp.where(weights != 0, weights * per, 0.0)

    got, _ = next_item_losses(model, batch, key, num_negatives=3, negatives_share=4)
    groups = jax.random.randint(neg_key, (weights.shape[0], 2, 3), 1, CFG.num_items + 1)
    want = sampled_softmax_shared(vecs, items, batch["targets"], groups, share=4,
                                  temperature=CFG.temperature)
    np.testing.assert_allclose(np.asarray(got), np.asarray(weighted(want)), rtol=1e-6, atol=1e-7)
    # share = 1 (the default) is the per-position estimator with [B, L, R] draws.
    got1, _ = next_item_losses(model, batch, key, num_negatives=3)
    each = jax.random.randint(neg_key, (*weights.shape, 3), 1, CFG.num_items + 1)
    want1 = sampled_softmax_positions(vecs, items, batch["targets"], each,
                                      temperature=CFG.temperature)
    np.testing.assert_allclose(np.asarray(got1), np.asarray(weighted(want1)), rtol=1e-6,
                               atol=1e-7)
    with pytest.raises(ValueError, match="negatives_share must be an integer >= 1, got 0"):
        next_item_losses(model, batch, key, negatives_share=0)
    with pytest.raises(ValueError, match=r"need K = ceil\(L / share\) = 2 groups"):
        sampled_softmax_shared(vecs, items, batch["targets"], each, share=4, temperature=1.0)


def test_full_kernel_loss_matches_log_softmax_and_weights():
    model, batch = _setup(2)
    key = jax.random.key(0)
    w = batch["weights"] * jnp.linspace(0.5, 2.0, batch["weights"].size).reshape(
        batch["weights"].shape)
    per, vecs = next_item_losses(model, batch, key, loss="full", impl="chunked", chunk_size=5,
                                 weights=w)
    logits = model.logits(vecs)
    logp = jax.nn.log_softmax(logits, -1)
    want = -w * jnp.take_along_axis(logp, jnp.maximum(batch["targets"], 1)[..., None], -1)[..., 0]
    want = jnp.where(w != 0, want, 0.0)
    np.testing.assert_allclose(np.asarray(per), np.asarray(want), rtol=1e-5, atol=1e-5)
    count = int(np.sum(np.asarray(batch["targets"]) != 0))
    np.testing.assert_allclose(float(mean_over_targets(per, batch["targets"])),
                               float(jnp.sum(want)) / count, rtol=1e-6)


def test_padding_positions_contribute_nothing():
    model, batch = _setup(3)
    per, _ = next_item_losses(model, batch, jax.random.key(1), loss="sampled", num_negatives=4)
    pad = np.asarray(batch["weights"]) == 0
    assert np.all(np.asarray(per)[pad] == 0.0)
    assert np.all(np.asarray(per)[~pad] >= 0.0) and np.sum(np.asarray(per)[~pad]) > 0.0


def test_unknown_loss_and_mode_rejected():
    model, batch = _setup()
    with pytest.raises(ValueError, match="'sampled' or 'full'"):
        next_item_losses(model, batch, jax.random.key(0), loss="bogus")
    with pytest.raises(ValueError, match="negatives mode"):
        sampled_softmax_positions(jnp.zeros((1, 1, 8)), jnp.zeros((3, 8)),
                                  jnp.ones((1, 1), jnp.int32), jnp.ones((1, 1, 2), jnp.int32),
                                  temperature=1.0, mode="bogus")


def test_counts_mode_on_a_hand_computed_position_and_auto_choice():
    # One position, scores s = (u·e_v)/τ with τ = 1: target 1, draws (2, 2, 3, 1); the draw equal
    # to the target is dropped and item 2 counts twice: ℓ = log(e^{s1} + 2e^{s2} + e^{s3}) − s1.
    u = jnp.array([[[1.0, 0.5]]])
    items = jnp.array([[0.0, 0.0], [0.2, 0.1], [0.4, -0.3], [-0.5, 0.9]])
    targets = jnp.array([[1]])
    negatives = jnp.array([[[2, 2, 3, 1]]])
    s = np.asarray(items) @ np.asarray(u)[0, 0]
    expected = np.log(np.exp(s[1]) + 2 * np.exp(s[2]) + np.exp(s[3])) - s[1]
    for mode in ("counts", "gather", "auto"):
        got = sampled_softmax_positions(u, items, targets, negatives, temperature=1.0, mode=mode)
        np.testing.assert_allclose(float(got[0, 0]), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="negatives mode must be one of"):
        sampled_softmax_positions(u, items, targets, negatives, temperature=1.0, mode="sparse")
