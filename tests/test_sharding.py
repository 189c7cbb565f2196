"""Meshes from configs, and parameters / optimizer moments created directly on their shardings."""

import jax
import ml_collections
import numpy as np
import pytest

from genrec_jax import sharding as shd
from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.train import loop
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.state import init_params, init_train_state, make_optimizer

NUM_ITEMS, DIM = 37, 8


def _model_cfg(table_multiple):
    return HSTUConfig(num_items=NUM_ITEMS, max_len=6, dim=DIM, qk_dim=4, v_dim=4,
                      table_multiple=table_multiple)


def _state(mesh, seed=0):
    cfg = _model_cfg(mesh.shape[shd.MODEL])
    graphdef, params = init_params(lambda rngs: HSTU(cfg, rngs=rngs), seed, mesh)
    opt = make_optimizer(ml_collections.ConfigDict(dict(learning_rate=1e-2)))
    return cfg, graphdef, init_train_state(params, opt, seed, mesh)


def _table_moments(opt_state):
    return [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(opt_state)
            if "item_emb" in jax.tree_util.keystr(path)]


@pytest.mark.parametrize("data,model,want", [
    (8, 1, (8, 1)), (4, 2, (4, 2)), (2, 4, (2, 4)), (-1, 2, (4, 2)), (2, -1, (2, 4)),
    (-1, 1, (8, 1)), (1, -1, (1, 8)),
])
def test_mesh_from_config_resolves(data, model, want):
    mesh = shd.mesh_from_config(ml_collections.ConfigDict(dict(data=data, model=model)))
    assert mesh.axis_names == (shd.DATA, shd.MODEL)
    assert (mesh.shape[shd.DATA], mesh.shape[shd.MODEL]) == want
    assert mesh.devices.size == 8
    assert len(set(d.id for d in mesh.devices.flat)) == 8


def test_mesh_from_empty_config_uses_every_device_for_data():
    mesh = shd.mesh_from_config(None)
    assert dict(mesh.shape) == {shd.DATA: 8, shd.MODEL: 1}


@pytest.mark.parametrize("data,model,words", [
    (-1, -1, "at most one of data/model may be -1"),
    (3, -1, "8 devices do not divide into data=3"),
    (-1, 3, "8 devices do not divide into model=3"),
    (16, 1, "does not fit 8 devices"),
    (4, 4, "does not fit 8 devices"),
    (0, 1, "data=0 must be a positive size or -1"),
    (-1, 0, "model=0 must be a positive size or -1"),
    (-2, 1, "data=-2 must be a positive size or -1"),
])
def test_bad_mesh_shapes_give_clear_errors(data, model, words):
    with pytest.raises(ValueError, match=words):
        shd.mesh_from_config(ml_collections.ConfigDict(dict(data=data, model=model)))


@pytest.mark.parametrize("data,model", [(4, 2), (2, 4)])
def test_params_and_moments_are_created_on_their_shardings(data, model):
    mesh = shd.make_mesh(data, model)
    cfg, _, state = _state(mesh)
    rows = cfg.table_size
    assert rows % model == 0 and rows >= NUM_ITEMS + 1
    table = state["params"]["item_emb"]
    assert table.shape == (rows, DIM)
    assert table.sharding.spec == jax.sharding.PartitionSpec(shd.MODEL, None)
    # Built by the jitted constructor straight onto the mesh: one block per device, never a
    # whole table on one device.
    assert table.committed
    shards = table.addressable_shards
    assert {s.device for s in shards} == set(mesh.devices.flat)
    assert {s.data.shape for s in shards} == {(rows // model, DIM)}
    assert shd.table_bytes_per_device(state["params"]) == {
        "['item_emb']": rows * DIM * 4 // model}
    # The model-axis pieces tile the table without overlap.
    starts = sorted({s.index[0].start or 0 for s in shards})
    assert starts == [k * rows // model for k in range(model)]
    # Every other parameter is replicated.
    for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"]):
        if "item_emb" not in jax.tree_util.keystr(path):
            assert leaf.sharding.is_fully_replicated, jax.tree_util.keystr(path)
    # Adam's two moments of the table follow the table's sharding, shard by shard.
    moments = _table_moments(state["opt_state"])
    assert len(moments) == 2
    for m in moments:
        assert m.sharding.spec == table.sharding.spec
        assert {s.data.shape for s in m.addressable_shards} == {(rows // model, DIM)}
    assert shd.table_bytes_per_device({"mu": {"item_emb": moments[0]}}) == {
        "['mu']['item_emb']": rows * DIM * 4 // model}
    assert state["step"].sharding.is_fully_replicated
    assert state["rng"].sharding.is_fully_replicated


def test_sharded_init_has_the_same_values_as_one_device():
    one = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    # Same table_multiple so the two tables have the same rows.
    cfg = _model_cfg(4)
    _, p1 = init_params(lambda rngs: HSTU(cfg, rngs=rngs), 3, one)
    _, p8 = init_params(lambda rngs: HSTU(cfg, rngs=rngs), 3, shd.make_mesh(2, 4))
    for a, b in zip(jax.tree.leaves(jax.device_get(p1)), jax.tree.leaves(jax.device_get(p8))):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_restores_onto_a_different_mesh_split(tmp_path):
    """Saved on one (data, model) split, restored onto another: same values, new shardings."""
    # (8, 1) -> (2, 4) is covered with training in tests/test_train_step.py; here the model
    # split itself changes.
    save_shape, restore_shape = (2, 4), (4, 2)
    save_mesh = shd.make_mesh(*save_shape)
    restore_mesh = shd.make_mesh(*restore_shape)
    # Tables padded to a multiple of 4 rows in both runs so their shapes agree.
    def state_on(mesh, seed):
        cfg = _model_cfg(4)
        _, params = init_params(lambda rngs: HSTU(cfg, rngs=rngs), seed, mesh)
        opt = make_optimizer(ml_collections.ConfigDict(dict(learning_rate=1e-2)))
        return init_train_state(params, opt, seed, mesh)

    saved = state_on(save_mesh, seed=1)
    ckpt = Checkpointer(tmp_path / "ckpt", every=1)
    ckpt.save(5, saved, {"data_step": 5})
    target = state_on(restore_mesh, seed=2)  # other values: the restore must overwrite them
    restored, meta = loop.resume(ckpt, target)
    ckpt.close()
    assert meta["data_step"] == 5 and meta["step"] == 5
    for (path, a), b, t in zip(jax.tree_util.tree_leaves_with_path(saved),
                               jax.tree.leaves(restored), jax.tree.leaves(target)):
        np.testing.assert_array_equal(jax.device_get(a), jax.device_get(b),
                                      err_msg=jax.tree_util.keystr(path))
        assert b.sharding == t.sharding, jax.tree_util.keystr(path)
    model = restore_shape[1]
    table = restored["params"]["item_emb"]
    assert {s.data.shape for s in table.addressable_shards} == {(table.shape[0] // model, DIM)}
    for m in _table_moments(restored["opt_state"]):
        assert {s.data.shape for s in m.addressable_shards} == {(table.shape[0] // model, DIM)}


@pytest.mark.slow
def test_scaling_benchmark_quick_writes_its_table(tmp_path):
    """``benchmarks/scaling.py --quick`` runs each case in its own process and writes JSON
    (timings are not asserted: the quick cases run at once on shared cores)."""
    import json
    import subprocess
    import sys

    from tests.scripts import procs

    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, "benchmarks/scaling.py", f"--out={out}", "--quick"],
                          cwd=procs.ROOT, env=procs.cpu_env(1), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("steps/s on 2 devices relative to 1:")
    report = json.loads(out.read_text())
    assert report["benchmark"] == "scaling" and report["quick"] is True
    rows = {(r["devices"], tuple(r["mesh"])): r for r in report["results"]}
    assert set(rows) == {(1, (1, 1)), (2, (2, 1)), (2, (1, 2))}
    for r in rows.values():
        assert "error" not in r, r
        assert r["steps_per_s"] > 0 and r["compile_s"] > 0 and np.isfinite(r["final_loss"])
    for (_, (_, model)), r in rows.items():  # tables are padded to a multiple of `model` rows
        assert r["item_table_bytes_per_device"] == r["item_table_bytes_total"] // model
    assert rows[2, (2, 1)]["per_device_batch"] == report["global_batch"] // 2
    assert report["figure"]["value"] == pytest.approx(
        rows[2, (2, 1)]["steps_per_s"] / rows[1, (1, 1)]["steps_per_s"])


@pytest.mark.parametrize("kwargs,want", [
    ({}, None),
    ({"num_processes": 1, "process_id": 0}, None),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 1, "skip": True}, None),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 1},
     {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}),
    ({"coordinator_address": "auto"},  # TPU pod slice / SLURM: JAX detects everything
     {"coordinator_address": None, "num_processes": None, "process_id": None}),
])
def test_initialize_distributed_calls_jax_only_for_multi_process_runs(monkeypatch, kwargs, want):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    shd.initialize_distributed(**kwargs)
    if want is None:
        assert calls == []
    else:
        assert len(calls) == 1 and {k: calls[0][k] for k in want} == want
