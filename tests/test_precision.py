"""Mixed precision (``precision="bf16"``): float32 parameters and optimizer state, bfloat16
matmuls inside the encoders, float32 outputs and losses, and outputs close to float32's."""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from genrec_jax import sharding as shd
from genrec_jax.models.encoders import build_encoder, encoder_config
from genrec_jax.models.hstu import HSTUConfig
from genrec_jax.models.sasrec import SASRecConfig
from genrec_jax.train.next_item import next_item_losses
from genrec_jax.train.pretrain import next_item_loss_fn
from genrec_jax.train.state import init_params, init_train_state, make_optimizer
from genrec_jax.train.step import make_train_step
from tests.batches import random_train_batch

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    "hstu": HSTUConfig(num_items=30, max_len=12, dim=16, qk_dim=8, v_dim=8, dropout=0.0),
    "sasrec": SASRecConfig(num_items=30, max_len=12, dim=16, num_heads=2, dropout=0.0),
}
KINDS = sorted(CONFIGS)
# bfloat16 keeps 8 significant bits: unit roundoff u = 2⁻⁸. Each rounding of an activation adds
# a relative error ≤ u/2; the encoders round about 8 times on the way (embedding, 2 blocks of
# ~3 stored activations, output), so components of the unit-norm outputs may move by ≲ 4u ≈
# 0.016 = 2⁻⁶. Measured on these shapes (3 seeds): at most 0.003 (HSTU) and 0.006 (SASRec).
BF16_ATOL = 2.0**-6


def _bf16(cfg):
    return dataclasses.replace(cfg, precision="bf16")


def _pair(kind, seed=0):
    """The same parameters bound to the float32 and the bf16 graph of one encoder."""
    m32 = build_encoder(CONFIGS[kind], nnx.Rngs(seed))
    graph16, _ = nnx.split(build_encoder(_bf16(CONFIGS[kind]), nnx.Rngs(seed)))
    return m32, nnx.merge(graph16, nnx.split(m32)[1])


def _float_dtypes(tree):
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_and_optimizer_state_stay_float32(kind):
    mesh = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    cfg = _bf16(CONFIGS[kind])
    graphdef, params = init_params(lambda rngs: build_encoder(cfg, rngs), 0, mesh)
    opt = make_optimizer(ml_collections.ConfigDict(dict(learning_rate=1e-2)))
    state = init_train_state(params, opt, 0, mesh)
    loss_cfg = ml_collections.ConfigDict(dict(kind="sampled", num_negatives=6,
                                              negatives_mode="auto", impl="chunked",
                                              chunk_size=8))
    step = make_train_step(next_item_loss_fn(loss_cfg, mesh), opt, state)
    batch = shd.shard_batch(random_train_batch(cfg.num_items, 8, cfg.max_len, seed=2), mesh)
    for _ in range(2):
        state, metrics = step(graphdef, state, batch)
    assert _float_dtypes(state["params"]) == {"float32"}
    assert _float_dtypes(state["opt_state"]) == {"float32"}
    assert metrics["loss"].dtype == jnp.float32 and metrics["grad_norm"].dtype == jnp.float32
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_forward_is_close_to_float32(kind):
    m32, m16 = _pair(kind)
    batch = random_train_batch(30, 8, 12, seed=1)
    a, b = np.asarray(m32.encode(batch)), np.asarray(m16.encode(batch))
    assert b.dtype == np.float32
    valid = batch["inputs"] != 0
    np.testing.assert_allclose(b[valid], a[valid], atol=BF16_ATOL)
    np.testing.assert_allclose(np.linalg.norm(b[valid], axis=-1), 1.0, rtol=1e-5)
    assert np.abs(b - a).max() > 0  # the bf16 graph really computed something else


@pytest.mark.parametrize("kind", KINDS)
def test_matmuls_are_bfloat16_only_under_bf16(kind):
    m32, m16 = _pair(kind)
    batch = random_train_batch(30, 2, 12, seed=1)

    def dot_output_dtypes(model):
        text = str(jax.make_jaxpr(lambda b: model.encode(b))(batch))
        return re.findall(r":(\w+)\[[^\]]*\] = dot_general", text)

    d16, d32 = dot_output_dtypes(m16), dot_output_dtypes(m32)
    assert len(d16) == len(d32) >= 2 * 2  # ≥ 2 matmuls per block, 2 blocks
    assert set(d16) == {"bf16"} and set(d32) == {"f32"}


@pytest.mark.parametrize("loss,impl", [("sampled", "chunked"), ("full", "chunked"),
                                       ("full", "reference")])
@pytest.mark.parametrize("kind", KINDS)
def test_loss_and_gradients_are_float32_under_bf16(kind, loss, impl):
    _, m16 = _pair(kind)
    batch = random_train_batch(30, 4, 12, seed=3)
    graphdef, params = nnx.split(m16)

    def total(p):
        per_pos, vecs = next_item_losses(nnx.merge(graphdef, p), batch, jax.random.key(0),
                                         loss=loss, impl=impl, num_negatives=8, chunk_size=8)
        assert per_pos.dtype == jnp.float32 and vecs.dtype == jnp.float32
        return per_pos.sum()

    value, grads = jax.value_and_grad(total)(params)
    assert value.dtype == jnp.float32 and np.isfinite(float(value))
    assert _float_dtypes(grads) == {"float32"}


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match=r"HSTUConfig.precision must be one of "
                                         r"\('float32', 'bf16'\), got 'fp16'"):
        HSTUConfig(num_items=5, precision="fp16")
    with pytest.raises(ValueError, match=r"SASRecConfig.precision must be one of"):
        SASRecConfig(num_items=5, precision="bfloat16")
    block = dict(kind="sasrec", dim=8, num_blocks=1, num_heads=1, dropout=0.0, temperature=0.1)
    with pytest.raises(ValueError, match="SASRecConfig.precision"):
        encoder_config(block, 5, max_len=4, precision="half")


def test_bf16_smoke_pretraining_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.pretrain",
         "--config=experiments/configs/pretrain.py:smoke=True,precision=bf16",
         f"--workdir={tmp_path}"], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "bf16"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["hr@10"] <= 1.0 and metrics["steps"] > 0
