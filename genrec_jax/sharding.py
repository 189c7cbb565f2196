"""Device meshes, shardings and the multi-host entry point — the one place they are defined.

Mesh axes are ``data`` (batch rows) and ``model`` (rows of item tables). Parameters whose path
names an item table (``item_emb``) are row-sharded over ``model``; every other parameter is
replicated. Batches are split over ``data``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA, MODEL = "data", "model"
TABLE_PARAM_NAMES = ("item_emb",)

_log = logging.getLogger(__name__)


def mesh_shape(data: int = -1, model: int = 1, num_devices: int | None = None) -> tuple[int, int]:
    """Resolves (data, model) sizes where one of them may be -1 (= use the remaining devices)."""
    n = jax.device_count() if num_devices is None else num_devices
    for name, size in ((DATA, data), (MODEL, model)):
        if size != -1 and size < 1:
            raise ValueError(f"mesh: {name}={size} must be a positive size or -1 (= fill)")
    if data == -1 and model == -1:
        raise ValueError("mesh: at most one of data/model may be -1")
    if model == -1:
        if n % data:
            raise ValueError(f"mesh: {n} devices do not divide into data={data}")
        model = n // data
    if data == -1:
        if n % model:
            raise ValueError(f"mesh: {n} devices do not divide into model={model}")
        data = n // model
    if data < 1 or model < 1 or data * model > n:
        raise ValueError(f"mesh: data={data} x model={model} does not fit {n} devices")
    return data, model


def make_mesh(data: int = -1, model: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ('data', 'model') mesh with Auto axis types (so jit propagates shardings itself)."""
    devices = list(jax.devices() if devices is None else devices)
    d, m = mesh_shape(data, model, len(devices))
    grid = np.asarray(devices[: d * m]).reshape(d, m)
    return Mesh(grid, (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto))


def mesh_from_config(cfg: Mapping[str, Any] | None) -> Mesh:
    cfg = cfg or {}
    return make_mesh(int(cfg.get("data", -1)), int(cfg.get("model", 1)))


def _is_table(path) -> bool:
    names = {str(getattr(k, "key", getattr(k, "name", k))) for k in path}
    return any(name in names for name in TABLE_PARAM_NAMES)


def param_spec(path, leaf) -> P:
    """Row-shard item tables over ``model``; replicate the rest."""
    if _is_table(path) and getattr(leaf, "ndim", 0) >= 2:
        return P(MODEL, *([None] * (leaf.ndim - 1)))
    return P()


def param_shardings(params, mesh: Mesh):
    """A pytree of NamedShardings matching ``params`` (arrays or ShapeDtypeStructs)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, param_spec(path, leaf)), params)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's rows of the global batch on the mesh, split over ``data``.

    On one process the rows are the whole batch; on several, each passes its own share and the
    result is one global array (``jax.make_array_from_process_local_data``).
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return {k: jax.device_put(np.asarray(v), sharding) for k, v in batch.items()}
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()}


def table_bytes_per_device(params) -> dict[str, int]:
    """Bytes of each item table held by one device (to check that tables really are sharded)."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if _is_table(path) and hasattr(leaf, "addressable_shards"):
            shard = leaf.addressable_shards[0].data
            out[jax.tree_util.keystr(path)] = int(shard.size * shard.dtype.itemsize)
    return out


def initialize_distributed(*, coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           timeout_s: int = 300, skip: bool = False) -> None:
    """The one wrapper around ``jax.distributed.initialize``.

    ``skip=True`` (or a single process with no coordinator) leaves JAX single-process. On managed
    clusters (Cloud TPU pod slices, SLURM, Open MPI) pass ``coordinator_address="auto"``: JAX then
    discovers the coordinator, process count and id itself (``initialize()`` without arguments).
    """
    if skip or (coordinator_address is None and num_processes in (None, 1)
                and process_id in (None, 0)):
        return
    if coordinator_address == "auto":
        coordinator_address = None
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s)
    _log.info("distributed: process %d of %d, %d local / %d global devices",
              jax.process_index(), jax.process_count(), jax.local_device_count(),
              jax.device_count())


def divisible_batch(batch_size: int, mesh: Mesh) -> int:
    """Checks that the global batch splits evenly over the data axis and processes."""
    parts = math.lcm(mesh.shape[DATA], jax.process_count())
    if batch_size % parts:
        raise ValueError(f"batch_size {batch_size} must be divisible by the data axis "
                         f"({mesh.shape[DATA]}) and the process count ({jax.process_count()})")
    return batch_size
