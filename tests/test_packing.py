"""Packed batches: exact layout, and the packed model computation equals the padded one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genrec_jax.data.packing import PackedBatcher, first_fit_decreasing, pack
from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.train.next_item import mean_over_targets, next_item_losses
from tests.batches import random_train_batch


def test_first_fit_decreasing_hand_example():
    # widths 5: lengths 4, 3, 2, 1, 0 → [4,1], [3,2]; the empty row is dropped.
    assert first_fit_decreasing(np.array([1, 3, 0, 4, 2]), 5) == [[3, 0], [1, 4]]


def test_pack_layout():
    batch = random_train_batch(9, 3, 5, seed=0)
    batch["lengths"][:] = [2, 3, 0]
    pos = np.arange(5)[None]
    for k in ("inputs", "targets", "weights"):
        batch[k] = np.where(pos < batch["lengths"][:, None], batch[k], 0)
    out = pack(batch, 2)
    # Row 0 holds user 1 (3 tokens) then user 0 (2 tokens); row 1 is empty.
    np.testing.assert_array_equal(out["segment_ids"], [[1, 1, 1, 2, 2], [0] * 5])
    np.testing.assert_array_equal(out["positions"], [[0, 1, 2, 0, 1], [0] * 5])
    np.testing.assert_array_equal(out["inputs"][0], np.r_[batch["inputs"][1, :3],
                                                          batch["inputs"][0, :2]])
    np.testing.assert_array_equal(out["token_user"][0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(out["lengths"], [5, 0])
    with pytest.raises(ValueError, match="needs 2 packed rows"):
        pack(dict(batch, lengths=np.array([4, 3, 0])), 1)


def test_packed_encoding_and_loss_equal_padded():
    cfg = HSTUConfig(num_items=15, max_len=8, dim=8, qk_dim=4, v_dim=4, num_heads=2, dropout=0.0)
    model = HSTU(cfg, rngs=nnx.Rngs(0))
    for block in model.blocks:
        block.bias.time[...] = jax.random.normal(jax.random.key(3), block.bias.time.shape)
        block.bias.position[...] = jax.random.normal(jax.random.key(4), block.bias.position.shape)
    batch = random_train_batch(cfg.num_items, 6, cfg.max_len, seed=1, min_len=1)
    packed = pack(batch, 6)
    assert packed["segment_ids"].max() >= 2  # something really was packed together
    padded_vecs = np.asarray(model.encode(batch))
    packed_vecs = np.asarray(model.encode(packed))
    for r in range(6):
        for t in range(cfg.max_len):
            if packed["segment_ids"][r, t] == 0:
                continue
            user, p = packed["token_user"][r, t], packed["positions"][r, t]
            np.testing.assert_allclose(packed_vecs[r, t], padded_vecs[user, p], rtol=1e-5,
                                       atol=1e-6)
    key = jax.random.key(0)
    per_padded, _ = next_item_losses(model, batch, key, loss="full", impl="reference")
    per_packed, _ = next_item_losses(model, packed, key, loss="full", impl="reference")
    np.testing.assert_allclose(float(mean_over_targets(per_packed, packed["targets"])),
                               float(mean_over_targets(per_padded, batch["targets"])), rtol=1e-5)


def test_packed_batcher_layout_is_the_same_for_any_process_count():
    arrays = random_train_batch(20, 37, 10, seed=2, min_len=1)
    arrays["lengths"] = np.minimum(arrays["lengths"], 4)  # short rows: several fit in one
    keep = np.arange(10)[None] < arrays["lengths"][:, None]
    for k in ("inputs", "targets", "weights"):
        arrays[k] = np.where(keep, arrays[k], 0).astype(arrays[k].dtype)
    one = PackedBatcher(arrays, batch_size=8, seed=0, num_steps=30, row_multiple=2)
    two = [PackedBatcher(arrays, batch_size=8, seed=0, num_steps=30, process_index=p,
                         process_count=2, row_multiple=2) for p in range(2)]
    assert one.num_rows == two[0].num_rows and one.num_rows % 2 == 0
    assert one.num_rows < 8  # packing saved rows
    for step in range(30):
        full = one.batch_at(step)
        parts = [b.batch_at(step) for b in two]
        for key in full:  # the processes' rows, in order, are exactly the global packed batch
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full[key])
