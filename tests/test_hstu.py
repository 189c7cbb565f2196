"""HSTU against a naive per-position implementation, plus causality and padding invariance."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genrec_jax.models.hstu import HSTU, HSTUConfig, time_buckets
from tests.batches import random_train_batch

CFG = HSTUConfig(num_items=30, max_len=7, dim=12, num_blocks=2, num_heads=2, qk_dim=4, v_dim=5,
                 dropout=0.0, temperature=0.05, num_time_buckets=16)


def _model(cfg=CFG, seed=0):
    model = HSTU(cfg, rngs=nnx.Rngs(seed))
    # Non-trivial biases so the relative-bias path is exercised.
    for block in model.blocks:
        block.bias.position[...] = jax.random.normal(jax.random.key(1), block.bias.position.shape)
        block.bias.time[...] = jax.random.normal(jax.random.key(2), block.bias.time.shape)
    return model


def _naive_ln(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)


def _silu(x):
    return x / (1.0 + np.exp(-x))


def naive_encode(model: HSTU, batch) -> np.ndarray:
    """Loop over rows, heads, query and key positions, straight from the equations."""
    c = model.config
    emb = np.asarray(model.item_emb[...], np.float64)
    pos = np.asarray(model.pos_emb[...], np.float64)
    out = []
    n = c.max_len + c.output_slots  # the padded length: divisor and position-table centre
    for b in range(batch["inputs"].shape[0]):
        ids = batch["inputs"][b]
        L = len(ids)
        x = emb[ids] * np.sqrt(c.dim) + pos[:L]
        x[ids == 0] = 0.0
        for block in model.blocks:
            w = np.asarray(block.uvqk.kernel[...], np.float64)
            wp = np.asarray(block.bias.position[...], np.float64)
            wt = np.asarray(block.bias.time[...], np.float64)
            h, dq, dv = c.num_heads, c.qk_dim, c.v_dim
            uvqk = _silu(_naive_ln(x) @ w)
            u, v = uvqk[:, : h * dv], uvqk[:, h * dv: 2 * h * dv]
            q, k = uvqk[:, 2 * h * dv: 2 * h * dv + h * dq], uvqk[:, 2 * h * dv + h * dq:]
            mixed = np.zeros((L, h * dv))
            for head in range(h):
                for i in range(L):
                    acc = np.zeros(dv)
                    for j in range(i + 1):
                        dt = abs(float(batch["query_timestamps"][b, i]) - float(batch["timestamps"][b, j]))
                        bucket = int(np.clip(np.floor(np.log(max(dt, 1.0)) / 0.301), 0, c.num_time_buckets))
                        s = q[i, head * dq:(head + 1) * dq] @ k[j, head * dq:(head + 1) * dq]
                        s += wp[n - 1 + j - i] + wt[bucket]
                        acc += _silu(s) / n * v[j, head * dv:(head + 1) * dv]
                    mixed[i, head * dv:(head + 1) * dv] = acc
            wo = np.asarray(block.out.kernel[...], np.float64)
            bo = np.asarray(block.out.bias[...], np.float64)
            x = x + (u * _naive_ln(mixed)) @ wo + bo
        out.append(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6))
    return np.stack(out)


@pytest.mark.parametrize("output_slots", [0, 3, 11])
def test_matches_naive_loop(output_slots):
    cfg = dataclasses.replace(CFG, output_slots=output_slots)
    model = _model(cfg)
    batch = random_train_batch(CFG.num_items, 3, CFG.max_len, seed=3)
    got = np.asarray(model.encode(batch))
    want = naive_encode(model, batch)
    valid = batch["inputs"] != 0
    np.testing.assert_allclose(got[valid], want[valid], rtol=2e-4, atol=2e-5)


def test_time_buckets_hand_values():
    q = jnp.array([[0, 10, 1000]])
    k = jnp.array([[0, 0, 0]])
    got = np.asarray(time_buckets(q, k, 128))[0, :, 0]
    # ln(1)/0.301 = 0; ln(10)/0.301 = 7.65 → 7; ln(1000)/0.301 = 22.9 → 22
    np.testing.assert_array_equal(got, [0, 7, 22])
    assert int(time_buckets(jnp.array([[10**9]]), jnp.array([[0]]), 16)[0, 0, 0]) == 16


def test_time_buckets_exact_for_unix_seconds():
    # Gaps of 10 s and 100 s at ~1.5e9 s (float32 spacing there: 128 s): buckets 7 and 15
    # (ln 100 / 0.301 = 15.3), as the reference's int64 difference gives; casting each
    # timestamp to float32 first gave 0 for both.
    t0 = 1_500_000_000
    q = np.array([[t0 + 10, t0 + 100]], np.int64)
    k = np.array([[t0, t0]], np.int64)
    got = np.asarray(time_buckets(jnp.asarray(q), jnp.asarray(k), 128))[0, :, 0]
    np.testing.assert_array_equal(got, [7, 15])


def test_causality_later_items_do_not_change_earlier_outputs():
    model = _model()
    batch = random_train_batch(CFG.num_items, 2, CFG.max_len, seed=4, min_len=CFG.max_len)
    base = np.asarray(model.encode(batch))
    changed = dict(batch)
    changed["inputs"] = batch["inputs"].copy()
    changed["inputs"][:, 4] = (batch["inputs"][:, 4] % CFG.num_items) + 1
    changed["timestamps"] = batch["timestamps"].copy()
    changed["timestamps"][:, 4:] += 12345
    after = np.asarray(model.encode(changed))
    np.testing.assert_allclose(after[:, :4], base[:, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(after[:, 4], base[:, 4])


def test_padding_content_is_ignored():
    model = _model()
    batch = random_train_batch(CFG.num_items, 4, CFG.max_len, seed=5)
    base = np.asarray(model.encode(batch))
    noisy = {k: v.copy() for k, v in batch.items()}
    pad = np.arange(CFG.max_len)[None] >= batch["lengths"][:, None]
    noisy["timestamps"][pad] = 999_999_999
    noisy["query_timestamps"][pad] = 5
    noisy["ratings"][pad] = 3.0
    got = np.asarray(model.encode(noisy))
    valid = ~pad
    np.testing.assert_allclose(got[valid], base[valid], rtol=1e-6, atol=1e-6)


def test_outputs_normalised_and_logits_mask_non_items():
    cfg = HSTUConfig(num_items=10, max_len=5, dim=8, qk_dim=4, v_dim=4, table_multiple=8,
                     dropout=0.0)
    model = HSTU(cfg, rngs=nnx.Rngs(0))
    assert cfg.table_size == 16
    batch = random_train_batch(cfg.num_items, 2, cfg.max_len, seed=6)
    vecs = model.encode(batch)
    norms = np.linalg.norm(np.asarray(vecs), axis=-1)
    np.testing.assert_allclose(norms[batch["inputs"] != 0], 1.0, rtol=1e-5)
    logits = np.asarray(model.next_item_logits(batch))
    assert logits.shape == (2, 16)
    assert np.all(np.isneginf(logits[:, 0])) and np.all(np.isneginf(logits[:, 11:]))
    assert np.all(np.abs(logits[:, 1:11]) <= 1.0 / cfg.temperature + 1e-4)


def test_dropout_only_with_key():
    cfg = HSTUConfig(num_items=10, max_len=5, dim=8, qk_dim=4, v_dim=4, dropout=0.5)
    model = HSTU(cfg, rngs=nnx.Rngs(0))
    batch = random_train_batch(cfg.num_items, 2, cfg.max_len, seed=7)
    a, b = model.encode(batch), model.encode(batch)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = model.encode(batch, dropout_key=jax.random.key(0))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_padded_length_sets_tables_and_divisor():
    cfg = dataclasses.replace(CFG, output_slots=4)
    assert cfg.padded_length == CFG.max_len + 4
    model = HSTU(cfg, rngs=nnx.Rngs(0))
    assert model.pos_emb.shape == (cfg.padded_length, cfg.dim)
    assert model.blocks[0].bias.position.shape == (2 * cfg.padded_length - 1,)


def test_initial_scales_follow_the_reference():
    cfg = HSTUConfig(num_items=4000, max_len=500, dim=64, qk_dim=64, v_dim=64, num_heads=2)
    model = HSTU(cfg, rngs=nnx.Rngs(3))
    n = cfg.padded_length
    pos = np.asarray(model.pos_emb[...])
    np.testing.assert_allclose(pos.std(), math.sqrt(2.0 / (n + cfg.dim)), rtol=0.03)
    items = np.asarray(model.item_emb[...])
    np.testing.assert_allclose(items.std(), 0.02 * 0.88, rtol=0.03)  # truncated at ±2σ
    assert np.abs(items).max() <= 0.04 + 1e-6
    block = model.blocks[0]
    np.testing.assert_allclose(np.asarray(block.uvqk.kernel[...]).std(), 0.02, rtol=0.03)
    bound = 1 / math.sqrt(cfg.num_heads * cfg.v_dim)
    bias = np.asarray(block.out.bias[...])
    assert np.abs(bias).max() <= bound and bias.std() > 0.4 * bound  # U(±bound): std 0.58·bound
    np.testing.assert_allclose(np.asarray(block.out.kernel[...]).var(),
                               1 / (cfg.num_heads * cfg.v_dim), rtol=0.1)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="dropout"):
        HSTUConfig(num_items=5, dropout=1.0)
    with pytest.raises(ValueError, match="num_items"):
        HSTUConfig(num_items=0)
    with pytest.raises(ValueError, match="output_slots"):
        HSTUConfig(num_items=5, output_slots=-1)


def test_layer_norm_keeps_the_input_dtype_and_takes_float32_statistics():
    from genrec_jax.models.hstu import layer_norm

    x = jnp.array([[1000.0, 1001.0, 1002.0, 1003.0]])
    want = (np.arange(4) - 1.5) / np.sqrt(1.25 + 1e-6)  # hand value: mean 1001.5, var 1.25
    np.testing.assert_allclose(np.asarray(layer_norm(x)), want[None], rtol=1e-5)
    # 1000, 1004, 1008, 1012 are exact in bfloat16 but their mean 1006 is not (spacing 4 there):
    # statistics taken in bfloat16 would be off by 2 / √20 ≈ 0.45; in float32 they are exact.
    y = jnp.array([[1000.0, 1004.0, 1008.0, 1012.0]], jnp.bfloat16)
    got16 = layer_norm(y)
    assert got16.dtype == jnp.bfloat16
    want16 = np.array([-6.0, -2.0, 2.0, 6.0]) / np.sqrt(20.0 + 1e-6)
    np.testing.assert_allclose(np.asarray(got16, np.float32), want16[None], rtol=2**-8)


def test_precision_field_defaults_to_float32_and_changes_no_parameter():
    assert CFG.precision == "float32" and CFG.compute_dtype == jnp.float32
    bf16 = dataclasses.replace(CFG, precision="bf16")
    assert bf16.compute_dtype == jnp.bfloat16
    p32 = nnx.split(HSTU(CFG, rngs=nnx.Rngs(0)))[1].to_pure_dict()
    p16 = nnx.split(HSTU(bf16, rngs=nnx.Rngs(0)))[1].to_pure_dict()
    for a, b in zip(jax.tree.leaves(p32), jax.tree.leaves(p16)):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
