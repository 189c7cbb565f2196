"""SASRec against a naive per-position loop, causality, padding/packing invariance, output norms,
a training step, the encoder factory and a smoke pretraining run with ``model.kind=sasrec``."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from genrec_jax import sharding as shd
from genrec_jax.data.packing import pack
from genrec_jax.models.encoders import build_encoder, encoder_config
from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.models.sasrec import SASRec, SASRecConfig
from genrec_jax.train.pretrain import next_item_loss_fn
from genrec_jax.train.state import init_params, init_train_state, make_optimizer
from genrec_jax.train.step import make_train_step
from tests.batches import random_train_batch

REPO = pathlib.Path(__file__).resolve().parents[1]
CFG = SASRecConfig(num_items=30, max_len=7, dim=12, num_blocks=2, num_heads=2, dropout=0.0)


def _model(cfg=CFG, seed=0):
    """A SASRec whose layer norms and biases are non-trivial, so every term is exercised."""
    model = SASRec(cfg, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 10)
    norms = [model.final_norm] + [n for b in model.blocks for n in (b.attn_norm, b.ffn_norm)]
    for norm in norms:
        key, k1, k2 = jax.random.split(key, 3)
        norm.scale[...] = 1.0 + 0.3 * jax.random.normal(k1, norm.scale.shape)
        norm.bias[...] = 0.3 * jax.random.normal(k2, norm.bias.shape)
    for block in model.blocks:
        for lin in (block.qkv, block.ffn_in, block.ffn_out):
            key, k1 = jax.random.split(key)
            lin.bias[...] = 0.2 * jax.random.normal(k1, lin.bias.shape)
    return model


def _np(x):
    return np.asarray(x[...], np.float64)


def _naive_ln(x, norm):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-8) * _np(norm.scale) + _np(norm.bias)


def naive_encode(model: SASRec, batch) -> np.ndarray:
    """Loops over rows, heads, query and key positions, straight from the module docstring."""
    c = model.config
    dh = c.dim // c.num_heads
    emb, pos = _np(model.item_emb), _np(model.pos_emb)
    out = []
    for b in range(batch["inputs"].shape[0]):
        ids = batch["inputs"][b]
        length = len(ids)
        x = emb[ids] * np.sqrt(c.dim) + pos[:length]
        x[ids == 0] = 0.0
        for block in model.blocks:
            qkv = _naive_ln(x, block.attn_norm) @ _np(block.qkv.kernel) + _np(block.qkv.bias)
            q, k, v = qkv[:, :c.dim], qkv[:, c.dim:2 * c.dim], qkv[:, 2 * c.dim:]
            att = np.zeros((length, c.dim))
            for h in range(c.num_heads):
                cols = slice(h * dh, (h + 1) * dh)
                for i in range(length):
                    s = np.array([q[i, cols] @ k[j, cols] / np.sqrt(dh) for j in range(i + 1)])
                    p = np.exp(s - s.max())
                    p /= p.sum()
                    att[i, cols] = sum(p[j] * v[j, cols] for j in range(i + 1))
            x = x + att
            hid = np.maximum(_naive_ln(x, block.ffn_norm) @ _np(block.ffn_in.kernel)
                             + _np(block.ffn_in.bias), 0.0)
            x = x + hid @ _np(block.ffn_out.kernel) + _np(block.ffn_out.bias)
        x = _naive_ln(x, model.final_norm)
        x[ids == 0] = 0.0
        out.append(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6))
    return np.stack(out)


@pytest.mark.parametrize("num_blocks,num_heads", [(1, 1), (2, 2)])
def test_matches_naive_loop(num_blocks, num_heads):
    cfg = SASRecConfig(num_items=30, max_len=7, dim=12, num_blocks=num_blocks,
                       num_heads=num_heads, dropout=0.0)
    model = _model(cfg)
    batch = random_train_batch(cfg.num_items, 3, cfg.max_len, seed=3)
    got = np.asarray(model.encode(batch))
    want = naive_encode(model, batch)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)  # padding rows: both 0


def test_attention_of_one_block_by_hand():
    """L = 2, one head, D = 2: position 0 returns v₀; position 1 the softmax mix of v₀, v₁."""
    cfg = SASRecConfig(num_items=5, max_len=2, dim=2, num_blocks=1, num_heads=1, dropout=0.0)
    block = SASRec(cfg, rngs=nnx.Rngs(0)).blocks[0]
    block.qkv.kernel[...] = jnp.concatenate([jnp.eye(2)] * 3, axis=1)  # q = k = v = a
    block.qkv.bias[...] = jnp.zeros(6)
    a = jnp.array([[[1.0, 0.0], [1.0, 2.0]]])
    got = np.asarray(block.attention(a, jnp.tril(jnp.ones((2, 2), bool))[None]))
    s = np.array([1.0, 1.0 + 4.0]) / np.sqrt(2.0)  # q₁·k₀, q₁·k₁ over √2
    p = np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(got[0, 0], [1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(got[0, 1], p[0] * np.array([1.0, 0.0]) + p[1] * np.array([1.0, 2.0]),
                               rtol=1e-6)


def test_causality_later_items_do_not_change_earlier_outputs():
    model = _model()
    batch = random_train_batch(CFG.num_items, 2, CFG.max_len, seed=4, min_len=CFG.max_len)
    base = np.asarray(model.encode(batch))
    changed = dict(batch, inputs=batch["inputs"].copy())
    changed["inputs"][:, 4] = (batch["inputs"][:, 4] % CFG.num_items) + 1
    after = np.asarray(model.encode(changed))
    np.testing.assert_allclose(after[:, :4], base[:, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(after[:, 4], base[:, 4])


def test_right_padding_and_padding_content_do_not_change_valid_outputs():
    """Rows are right-padded (data convention): widening a batch with more padding columns or
    changing the non-id fields of padding positions leaves every valid position unchanged."""
    model = _model()
    batch = random_train_batch(CFG.num_items, 4, 5, seed=5, min_len=1)
    base = np.asarray(model.encode(batch))
    wide = {k: (np.pad(v, ((0, 0), (0, 2))) if v.ndim == 2 else v) for k, v in batch.items()}
    noisy = {k: v.copy() for k, v in batch.items()}
    pad = np.arange(5)[None] >= batch["lengths"][:, None]
    noisy["timestamps"][pad] = 999_999_999
    noisy["ratings"][pad] = 3.0
    valid = ~pad
    got_wide = np.asarray(model.encode(wide))
    np.testing.assert_allclose(got_wide[:, :5][valid], base[valid], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got_wide[:, 5:], 0.0)
    np.testing.assert_allclose(np.asarray(model.encode(noisy))[valid], base[valid], rtol=1e-6,
                               atol=1e-6)


def test_packed_rows_equal_padded_rows():
    model = _model(SASRecConfig(num_items=15, max_len=8, dim=8, num_heads=2, dropout=0.0))
    batch = random_train_batch(15, 6, 8, seed=1, min_len=1)
    packed = pack(batch, 6)
    assert packed["segment_ids"].max() >= 2  # something really was packed together
    padded_vecs = np.asarray(model.encode(batch))
    packed_vecs = np.asarray(model.encode(packed))
    seg = packed["segment_ids"] != 0
    users, positions = packed["token_user"][seg], packed["positions"][seg]
    np.testing.assert_allclose(packed_vecs[seg], padded_vecs[users, positions], rtol=1e-5,
                               atol=1e-6)


def test_outputs_normalised_and_logits_mask_non_items():
    cfg = SASRecConfig(num_items=10, max_len=5, dim=8, table_multiple=8, dropout=0.0)
    model = SASRec(cfg, rngs=nnx.Rngs(0))
    assert cfg.table_size == 16 and model.item_emb.shape == (16, 8)
    batch = random_train_batch(cfg.num_items, 3, cfg.max_len, seed=6)
    vecs = np.asarray(model.encode(batch))
    assert vecs.dtype == np.float32
    norms = np.linalg.norm(vecs, axis=-1)
    valid = batch["inputs"] != 0
    np.testing.assert_allclose(norms[valid], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(norms[~valid], 0.0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(model.item_vectors()), axis=-1), 1.0,
                               rtol=1e-5)
    logits = np.asarray(model.next_item_logits(batch))
    assert logits.shape == (3, 16)
    assert np.all(np.isneginf(logits[:, 0])) and np.all(np.isneginf(logits[:, 11:]))
    assert np.all(np.abs(logits[:, 1:11]) <= 1.0 / cfg.temperature + 1e-4)
    last = vecs[np.arange(3), batch["lengths"] - 1]
    items = np.asarray(model.item_vectors())
    np.testing.assert_allclose(logits[:, 1:11], last @ items[1:11].T / cfg.temperature,
                               rtol=1e-5, atol=1e-5)


def test_dropout_only_with_key():
    model = SASRec(SASRecConfig(num_items=10, max_len=5, dim=8, dropout=0.5), rngs=nnx.Rngs(0))
    batch = random_train_batch(10, 2, 5, seed=7)
    a, b = model.encode(batch), model.encode(batch)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = model.encode(batch, dropout_key=jax.random.key(0))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_jitted_training_steps_decrease_the_loss():
    mesh = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    cfg = SASRecConfig(num_items=21, max_len=6, dim=16, dropout=0.0)
    graphdef, params = init_params(lambda rngs: SASRec(cfg, rngs=rngs), 0, mesh)
    opt = make_optimizer(ml_collections.ConfigDict(dict(learning_rate=1e-2)))
    state = init_train_state(params, opt, 0, mesh)
    loss_cfg = ml_collections.ConfigDict(dict(kind="full", num_negatives=6,
                                              negatives_mode="auto", impl="chunked",
                                              chunk_size=8))
    step = make_train_step(next_item_loss_fn(loss_cfg, mesh), opt, state)
    batch = shd.shard_batch(random_train_batch(21, 8, 6, seed=9), mesh)
    losses = []
    for _ in range(5):
        state, metrics = step(graphdef, state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 0.1, losses  # full softmax on a fixed batch: must fit it


def test_factory_dispatch_defaults_and_errors():
    block = ml_collections.ConfigDict(dict(kind="sasrec", dim=50, num_blocks=2, num_heads=1,
                                           qk_dim=8, v_dim=8, dropout=0.2, temperature=0.05,
                                           num_time_buckets=128, output_slots=11))
    s = encoder_config(block, 40, max_len=20, table_multiple=4, precision="bf16")
    assert s == SASRecConfig(num_items=40, max_len=20, dim=50, num_blocks=2, num_heads=1,
                             dropout=0.2, temperature=0.05, table_multiple=4, precision="bf16")
    assert s.table_size == 44
    assert isinstance(build_encoder(s, nnx.Rngs(0)), SASRec)
    old = {k: v for k, v in block.items() if k not in ("kind", "output_slots")}
    h = encoder_config(old, 40, max_len=20)  # a config saved before `kind` existed
    assert h == HSTUConfig(num_items=40, max_len=20, dim=50, num_blocks=2, num_heads=1,
                           qk_dim=8, v_dim=8, dropout=0.2, temperature=0.05,
                           num_time_buckets=128, output_slots=0)
    assert isinstance(build_encoder(h, nnx.Rngs(0)), HSTU)
    with pytest.raises(ValueError, match=r"model.kind must be one of \('hstu', 'sasrec'\), "
                                         r"got 'gru'"):
        encoder_config(dict(block, kind="gru"), 40, max_len=20)
    with pytest.raises(TypeError, match="expected HSTUConfig or SASRecConfig, got dict"):
        build_encoder({}, nnx.Rngs(0))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="SASRecConfig.dropout must be in"):
        SASRecConfig(num_items=5, dropout=1.0)
    with pytest.raises(ValueError, match="SASRecConfig.dim=10 must be divisible by num_heads=3"):
        SASRecConfig(num_items=5, dim=10, num_heads=3)
    with pytest.raises(ValueError, match="SASRecConfig.num_items must be >= 1"):
        SASRecConfig(num_items=0)
    model = SASRec(SASRecConfig(num_items=5, max_len=3, dim=4), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"batch width 4 exceeds .*max_len=3"):
        model.encode(random_train_batch(5, 1, 4))


def test_smoke_pretraining_runs_and_records_the_kind(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.pretrain",
         "--config=experiments/configs/pretrain.py:smoke=True,model.kind=sasrec",
         f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"]["kind"] == "sasrec" and saved["precision"] == "float32"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["hr@10"] <= 1.0 and metrics["steps"] > 0


def test_posttraining_refuses_an_init_of_another_encoder_kind():
    import ml_collections

    from genrec_jax.train.pretrained import check_compatible

    def cfg(kind=None):
        model = {} if kind is None else {"kind": kind}
        return ml_collections.ConfigDict({
            "dataset": "ml-100k", "model": model,
            "data": {"max_len": 8, "min_events": 3, "validation": False}})

    check_compatible(cfg("sasrec"), cfg("sasrec"))
    check_compatible(cfg(), cfg("hstu"))  # a config without model.kind means HSTU
    with pytest.raises(ValueError, match=r"^model.kind=hstu in this config but the pretrained "
                       r"run \(--init config.json\) is model.kind=sasrec: pass model.kind=sasrec"):
        check_compatible(cfg("hstu"), cfg("sasrec"))
