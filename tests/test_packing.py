"""Packed batches: exact layout, and the packed model computation equals the padded one."""

import jax
import numpy as np
import pytest
from flax import nnx

from genrec_jax.data.packing import PackedBatcher, bucket_rows, first_fit_decreasing, pack
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


def _rows_cost(needs, multiple, counts):
    return sum(min(c for c in counts if c >= -(-n // multiple) * multiple) for n in needs)


def test_bucket_rows_hand_examples():
    assert bucket_rows([3, 9, 9], 4, 1) == (12,)
    assert bucket_rows([3, 9, 9], 4, 2) == (4, 12)
    assert bucket_rows([3, 9, 9], 4, 5) == (4, 12)  # only two distinct rounded needs
    # 24 batches need 1 row, one needs 10: one shape computes 250 rows, two shapes 34.
    assert bucket_rows([1] * 24 + [10], 1, 2) == (1, 10)
    assert _rows_cost([1] * 24 + [10], 1, (1, 10)) == 34
    with pytest.raises(ValueError, match="max_shapes"):
        bucket_rows([3], 4, 0)


def test_bucket_rows_is_optimal_against_brute_force():
    import itertools

    rng = np.random.default_rng(0)
    for trial in range(30):
        needs = rng.integers(1, 40, size=rng.integers(1, 25))
        multiple = int(rng.choice([1, 2, 8]))
        k = int(rng.integers(1, 5))
        got = bucket_rows(needs, multiple, k)
        assert len(got) <= k and all(c % multiple == 0 for c in got)
        top = -(-int(needs.max()) // multiple) * multiple
        assert got[-1] == top
        values = sorted({-(-int(n) // multiple) * multiple for n in needs})
        best = min(_rows_cost(needs, multiple, subset + (top,))
                   for r in range(k) for subset in itertools.combinations(values[:-1], r))
        assert _rows_cost(needs, multiple, got) == best, (trial, needs, multiple, k, got)


def test_packed_batcher_shapes_hold_each_batch_in_its_smallest_count():
    arrays = random_train_batch(20, 53, 10, seed=4, min_len=1)
    keep = np.arange(10)[None] < arrays["lengths"][:, None]
    for k in ("inputs", "targets", "weights"):
        arrays[k] = np.where(keep, arrays[k], 0).astype(arrays[k].dtype)
    one = PackedBatcher(arrays, batch_size=8, seed=0, num_steps=21, row_multiple=2)
    many = PackedBatcher(arrays, batch_size=8, seed=0, num_steps=21, row_multiple=2,
                         max_shapes=3)
    assert one.row_counts == (one.num_rows,) and many.num_rows == one.num_rows
    assert 1 < len(many.row_counts) <= 3
    seen = set()
    for step in range(21):
        need = len(first_fit_decreasing(many.batcher.batch_at(step)["lengths"], 10))
        rows = many.rows_at(step)
        assert rows == min(c for c in many.row_counts if c >= need)
        seen.add(rows)
        wide, narrow = one.batch_at(step), many.batch_at(step)
        for key in wide:  # the same layout, without the trailing empty rows
            np.testing.assert_array_equal(narrow[key], wide[key][:rows])
        assert not wide["segment_ids"][rows:].any()
    assert seen == set(many.row_counts)
    # A step past the plan still gets the smallest count that holds it.
    assert many.rows_at(500) in many.row_counts


def test_bucketed_rows_train_exactly_like_one_shape(tmp_path):
    """Padding rows draw the same random numbers (threefry is counter-based) and add nothing,
    so a run with several row counts trains like the run with the widest one."""
    from experiments.configs import pretrain as pretrain_config
    from genrec_jax.train.pretrain import pretrain

    runs = {}
    for shapes in (1, 3):
        cfg = pretrain_config.get_config(f"smoke=True,data.pack_shapes={shapes}")
        cfg.simulator.events_per_user = (3, 30)  # short and long users: needs vary by batch
        cfg.data.max_len = 32
        cfg.epochs = 2
        runs[shapes] = pretrain(cfg, str(tmp_path / str(shapes)), verbose=False)
    (one, _, params_one, _), (many, _, params_many, _) = runs[1], runs[3]
    assert one["compiled_shapes"] == 1 and many["compiled_shapes"] >= 2
    for key in ("hr@10", "ndcg@10", "mrr"):
        assert many[key] == pytest.approx(one[key], rel=1e-6, abs=1e-7)
    for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_many)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
