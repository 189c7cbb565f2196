"""The pure train step: sharded == unsharded, one compile per shape, checkpoint resume."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genrec_jax import sharding as shd
from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.train import loop
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.pretrain import next_item_loss_fn
from genrec_jax.train.state import init_params, init_train_state, make_optimizer
from genrec_jax.train.step import make_train_step
from tests.batches import random_train_batch

LOSS = ml_collections.ConfigDict(dict(kind="sampled", num_negatives=6, negatives_mode="auto",
                                      impl="chunked", chunk_size=8))
OPT = ml_collections.ConfigDict(dict(learning_rate=1e-2))


def _setup(mesh, loss_cfg=LOSS, table_multiple=8):
    cfg = HSTUConfig(num_items=21, max_len=6, dim=8, qk_dim=4, v_dim=4, dropout=0.1,
                     table_multiple=table_multiple)
    graphdef, params = init_params(lambda rngs: HSTU(cfg, rngs=rngs), 0, mesh)
    opt = make_optimizer(OPT)
    state = init_train_state(params, opt, 0, mesh)
    step = make_train_step(next_item_loss_fn(loss_cfg, mesh), opt, state)
    return graphdef, state, step


def _batch(i):
    return random_train_batch(21, 16, 6, seed=100 + i)


def _run(mesh, steps=3, loss_cfg=LOSS):
    graphdef, state, step = _setup(mesh, loss_cfg)
    losses = []
    for i in range(steps):
        state, m = step(graphdef, state, shd.shard_batch(_batch(i), mesh))
        losses.append(float(m["loss"]))
    return losses, jax.device_get(state["params"])


@pytest.mark.parametrize("kind", ["sampled", "full"])
def test_eight_device_mesh_matches_one_device(kind):
    loss_cfg = ml_collections.ConfigDict(dict(LOSS, kind=kind))
    one = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    eight = shd.make_mesh(4, 2)
    l1, p1 = _run(one, loss_cfg=loss_cfg)
    l8, p8 = _run(eight, loss_cfg=loss_cfg)
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_item_table_is_row_sharded():
    mesh = shd.make_mesh(2, 4)
    _, state, _ = _setup(mesh)
    table = state["params"]["item_emb"]
    assert table.sharding.spec == jax.sharding.PartitionSpec("model", None)
    per_device = shd.table_bytes_per_device(state["params"])
    assert list(per_device.values()) == [table.size * 4 // 4]
    # Adam moments follow the table's sharding.
    moments = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state["opt_state"])
               if "item_emb" in jax.tree_util.keystr(path)]
    assert len(moments) == 2  # Adam's mu and nu
    assert all(m.sharding.spec == table.sharding.spec for m in moments)


def test_one_compile_for_repeated_shapes():
    mesh = shd.make_mesh(8, 1)
    graphdef, state, step = _setup(mesh)
    for i in range(3):
        state, _ = step(graphdef, state, shd.shard_batch(_batch(i), mesh))
    assert step._cache_size() == 1


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    mesh = shd.make_mesh(8, 1)
    graphdef, state, step = _setup(mesh)
    full, _, _ = loop.run(step_fn=step, graphdef=graphdef, state=state, batch_at=_batch, mesh=mesh,
                       num_steps=6, verbose=False)
    want = jax.device_get(full["params"])

    graphdef, state, step = _setup(mesh)
    ckpt = Checkpointer(tmp_path / "ckpt", every=3, keep=2)
    loop.run(step_fn=step, graphdef=graphdef, state=state, batch_at=_batch, mesh=mesh,
             num_steps=3, checkpointer=ckpt, verbose=False)
    assert ckpt.latest_step == 3
    # A fresh process would start from a fresh state and restore onto it — on another mesh.
    other = shd.make_mesh(2, 4)
    graphdef, fresh, step = _setup(other)
    restored, meta = loop.resume(ckpt, fresh)
    assert int(restored["step"]) == 3 and meta["data_step"] == 3
    assert restored["params"]["item_emb"].sharding.mesh.shape == other.shape
    done, _, _ = loop.run(step_fn=step, graphdef=graphdef, state=restored, batch_at=_batch,
                       mesh=other, num_steps=6, checkpointer=ckpt, verbose=False)
    got = jax.device_get(done["params"])
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ckpt.all_steps() == [3, 6]


def test_non_finite_loss_stops_naming_the_step(tmp_path):
    mesh = shd.make_mesh(8, 1)
    graphdef, state, step = _setup(mesh)
    ckpt = Checkpointer(tmp_path / "ckpt", every=2, keep=3)

    def batch_at(i):
        b = _batch(i)
        if i == 2:  # the third step sees an infinite weight
            b["weights"] = b["weights"] * np.inf
        return b

    with pytest.raises(loop.NonFiniteLossError, match="at step 3"):
        loop.run(step_fn=step, graphdef=graphdef, state=state, batch_at=batch_at, mesh=mesh,
                 num_steps=5, checkpointer=ckpt, verbose=False)
    assert ckpt.all_steps() == [2]
