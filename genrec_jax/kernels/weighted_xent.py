"""Advantage-weighted softmax cross-entropy over a whole item catalogue.

For query vectors ``h [N, D]``, an item table ``items [V, D]``, ``targets [N]``, ``weights [N]``::

    logits = h @ items.T / temperature                                  # [N, V], never built
    lse    = logsumexp(logits[:, lo:hi], axis=-1)                       # [N]
    loss   = -weights * (logits[n, targets[n]] - lse)                   # [N]

Only item rows ``lo <= j < hi`` (``valid_range``, default ``(0, V)``) take part in the softmax; the
project keeps row 0 as padding and may pad ``V`` up so the table splits evenly over devices.

Four interchangeable implementations, selected with ``impl``:

* ``"reference"``: plain ``jnp``; materialises the ``[N, V]`` logits. For tests and as the baseline.
* ``"chunked"``: streams the item table in chunks of ``chunk_size`` rows with an online
  (max, sum-exp) logsumexp, in cache-sized tiles (query block x item chunk); a ``jax.custom_vjp``
  whose forward also accumulates ``softmax @ items`` (for ``d h``) and whose backward recomputes
  each tile's logits for ``d items``. No ``[N, V]`` array is stored: memory
  ``O(N*D + V*D + min(N, TILE/chunk_size)*chunk_size)``.
* ``"sharded"``: the item table is row-sharded over ``mesh``'s ``model_axis`` (and, optionally, the
  batch over ``data_axis``); every device runs the chunked scan over its own rows and the partial
  statistics are combined with ``lax.pmax`` / ``lax.psum``. The backward pass is written by hand
  inside ``jax.shard_map`` so that gradients equal the unsharded ones exactly (no implicit summing
  of replicated-input gradients).
* ``"pallas"``: Pallas kernels for the forward statistics and for both gradients (see
  :mod:`genrec_jax.kernels.pallas_xent`); interpreted on CPU, Triton on GPU with tile sizes
  autotuned per shape at the first call (:mod:`genrec_jax.kernels.pallas_tiles`) and gradient
  tiles of negligible softmax mass (below float32 precision) skipped.

All share one structure: a differentiable core ``(h/τ, items, targets) -> (lse, target_logit)``
and the loss assembled from it in plain ``jnp``, so gradients flow to ``h``, ``items``,
``weights`` (``d loss / d w = -(target_logit - lse)``) and a traced ``temperature``; ``targets``
get none. Cotangents of both outputs are honoured, so a loss that uses ``lse`` (CQL)
differentiates correctly.

Targets outside ``[0, V)`` are clipped into range; targets outside ``valid_range`` use their raw
logit. Rows with ``weight == 0`` therefore give loss 0 and no gradient through ``loss`` whatever
their target. ``lse`` is returned unweighted: mask it yourself before differentiating it.

Accumulation is float32 (float64 for float64 inputs). The Pallas path takes float32 or bfloat16
inputs (float64 is cast to float32) with float32 logits, statistics and accumulators, and returns
gradients in the input dtype.
"""
from __future__ import annotations

import functools
import numbers
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

IMPLS = ("reference", "chunked", "sharded", "pallas")

_F32 = jnp.float32


# --------------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------------

def _shape(x, name):
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ValueError(f"{name} must be an array, got {type(x).__name__}")
    return tuple(shape)


def _validate(h, items, targets, weights, temperature, valid_range, impl, chunk_size, mesh,
              model_axis, data_axis) -> Tuple[int, int]:
    """Checks arguments; returns the static ``(lo, hi)`` of the softmax range."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")
    hs, its, ts, ws = (_shape(h, "h"), _shape(items, "items"), _shape(targets, "targets"),
                       _shape(weights, "weights"))
    if len(hs) != 2:
        raise ValueError(f"h must have shape [N, D], got {hs}")
    if len(its) != 2:
        raise ValueError(f"items must have shape [V, D], got {its}")
    n, d = hs
    v = its[0]
    if its[1] != d:
        raise ValueError(f"h and items must share the last dimension D: h {hs}, items {its}")
    if v == 0:
        raise ValueError("items must have at least one row")
    if ts != (n,):
        raise ValueError(f"targets must have shape [N] = ({n},), got {ts}")
    if ws != (n,):
        raise ValueError(f"weights must have shape [N] = ({n},), got {ws}")
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"targets must be integers, got dtype {targets.dtype}")
    if not jnp.issubdtype(h.dtype, jnp.floating) or not jnp.issubdtype(items.dtype, jnp.floating):
        raise ValueError(f"h and items must be floating point, got {h.dtype} and {items.dtype}")
    if isinstance(temperature, numbers.Number) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral)
            or chunk_size <= 0):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if valid_range is None:
        lo, hi = 0, v
    else:
        try:
            lo, hi = (int(x) for x in valid_range)
        except (TypeError, ValueError):
            raise ValueError(f"valid_range must be a pair of ints (lo, hi), got {valid_range!r}")
        if not 0 <= lo < hi <= v:
            raise ValueError(f"valid_range must satisfy 0 <= lo < hi <= V={v}, got {(lo, hi)}")
    if impl == "sharded":
        if mesh is None:
            raise ValueError('impl="sharded" needs a jax.sharding.Mesh passed as mesh=')
        names = tuple(mesh.axis_names)
        if model_axis not in names:
            raise ValueError(f"model_axis {model_axis!r} is not an axis of the mesh {names}")
        m = mesh.shape[model_axis]
        if v % m:
            raise ValueError(f"V={v} must be divisible by the size {m} of mesh axis {model_axis!r}"
                             " (pad the item table and exclude the padding with valid_range)")
        if data_axis is not None:
            if data_axis not in names:
                raise ValueError(f"data_axis {data_axis!r} is not an axis of the mesh {names}")
            if data_axis == model_axis:
                raise ValueError("data_axis and model_axis must differ")
            if n % mesh.shape[data_axis]:
                raise ValueError(f"N={n} must be divisible by the size {mesh.shape[data_axis]} of "
                                 f"mesh axis {data_axis!r}")
    return lo, hi


# --------------------------------------------------------------------------------------------------
# Shared building blocks (also used inside shard_map).
#
# Work is done in tiles of (query block) x (item chunk) whose logits stay in cache: the chunk is
# `chunk_size` item rows and the query block is sized so the tile holds about _TILE_ELEMS floats.
# Measured on a 2-core CPU (V=100k, N=4096, D=64): tiles of 1-2M elements run the forward and
# backward ~1.6x faster than whole-batch chunks, whose 64-128 MB logits round-trip through DRAM.
#
# Forward, per query block, over item chunks (flash-attention style):
#     l = h_b @ rows.T;  m' = max(m, max_j l);  e = exp(l - m')
#     s = s * exp(m - m') + sum_j e;  acc = acc * exp(m - m') + e @ rows
# so lse = m + log s, and E = acc / s = softmax(l) @ items is what d lse / d h needs:
#     d h = g_lse * E + g_t * items[target].
# Backward, per item chunk, over query blocks (one matmul pair, both in the fast layout):
#     p.T = exp(rows @ h_b.T - lse_b) * g_lse_b;  d rows += p.T @ h_b.
# --------------------------------------------------------------------------------------------------

_TILE_ELEMS = 1 << 21  # logits per tile (8 MiB in float32)
_MIN_BLOCK_N = 16


def _acc(*xs):
    """Accumulation dtype: float32, or wider when the inputs are (float64 under x64)."""
    return jnp.promote_types(jnp.result_type(*xs), _F32)


def _mm(a, b, contract):
    """``a . b`` contracting ``contract = (dim_a, dim_b)``, accumulating in ``_acc(a, b)``."""
    dt = jnp.result_type(a.dtype, b.dtype)
    return lax.dot_general(a.astype(dt), b.astype(dt), (((contract[0],), (contract[1],)), ((), ())),
                           preferred_element_type=_acc(a, b))


def _row_mask(r0, size, bounds):
    """[size] bool: rows ``r0 .. r0+size-1`` inside ``bounds = (lo, hi)`` (traced scalars)."""
    rows = r0 + jnp.arange(size, dtype=jnp.int32)
    return (rows >= bounds[0]) & (rows < bounds[1])


def _vary(x, axes):
    """Marks a fresh value as varying over manual mesh ``axes`` (inside ``shard_map``).

    ``scan`` inside ``shard_map`` needs its initial carry typed as varying over the same mesh axes
    as the carry its body returns. ``axes=()`` (outside ``shard_map``) is a no-op.
    """
    if not axes or x is None:
        return x
    if hasattr(lax, "pcast"):
        return lax.pcast(x, tuple(axes), to="varying")
    return lax.pvary(x, tuple(axes))  # older JAX spelling


def _plan(start: int, stop: int, size: int):
    """Blocks covering rows ``[start, stop)``: ``(block size, full blocks, remainder rows)``."""
    n = stop - start
    size = min(size, n)
    count = n // size
    return size, count, n - count * size


def _block_rows(n: int, chunk: int) -> int:
    """Query rows per tile for item chunks of ``chunk`` rows."""
    return max(1, min(n, max(_MIN_BLOCK_N, _TILE_ELEMS // max(chunk, 1))))


def _fold(arrays, start, stop, size, fn, carry):
    """Folds ``fn(carry, blocks, r0)`` over row blocks ``[r0, r0+size)`` of ``[start, stop)``.

    ``blocks`` are the matching row slices of every array in ``arrays``. Full blocks go through one
    ``lax.scan``; a ragged last block is processed once with its own static shape, so nothing is
    padded and no mask is needed for raggedness.
    """
    size, count, rem = _plan(start, stop, size)
    if count == 1:
        carry = fn(carry, [lax.slice_in_dim(a, start, start + size) for a in arrays], start)
    elif count > 1:
        def body(c, k):
            r0 = start + k * size
            return fn(c, [lax.dynamic_slice_in_dim(a, r0, size) for a in arrays], r0), None

        carry, _ = lax.scan(body, carry, jnp.arange(count, dtype=jnp.int32))
    if rem:
        carry = fn(carry, [lax.slice_in_dim(a, stop - rem, stop) for a in arrays], stop - rem)
    return carry


def _map_rows(arrays, size, fn):
    """``fn(blocks)`` on row blocks of ``arrays`` (all ``[N, ...]``); outputs joined on rows."""
    n = arrays[0].shape[0]
    size, count, rem = _plan(0, n, size)
    outs = []
    if count == 1:
        outs.append(fn([lax.slice_in_dim(a, 0, size) for a in arrays]))
    elif count > 1:
        def body(_, k):
            return None, fn([lax.dynamic_slice_in_dim(a, k * size, size) for a in arrays])

        _, ys = lax.scan(body, None, jnp.arange(count, dtype=jnp.int32))
        outs.append(jax.tree.map(lambda y: y.reshape((count * size,) + y.shape[2:]), ys))
    if rem:
        outs.append(fn([lax.slice_in_dim(a, n - rem, n) for a in arrays]))
    if len(outs) == 1:
        return outs[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)


def _softmax_stats(hs, items, start, stop, chunk, *, bounds=None, with_mean=False, vary_axes=()):
    """Online softmax statistics of ``hs @ items[start:stop].T`` without storing the logits.

    Returns float32 ``(m [N], s [N], acc [N, D] or None)``: ``lse = m + log(s)`` and
    ``acc / s = softmax @ items`` (only when ``with_mean``). ``bounds`` (traced ``(lo, hi)``) masks
    rows dynamically (used per shard); a row with nothing valid gives ``m = -inf, s = 0, acc = 0``.
    ``vary_axes``: the manual mesh axes the carries vary over (inside ``shard_map``).
    """
    d = hs.shape[1]
    size = _plan(start, stop, chunk)[0]
    acc_dt = _acc(hs, items)

    def per_query_block(blocks):
        (hb,) = blocks
        bn = hb.shape[0]

        def update(carry, row_blocks, r0):
            m, s, acc = carry
            (rows,) = row_blocks
            logits = _mm(hb, rows, (1, 1))  # [bn, C]
            if bounds is not None:
                logits = jnp.where(_row_mask(r0, rows.shape[0], bounds)[None, :], logits, -jnp.inf)
            m_new = jnp.maximum(m, jnp.max(logits, axis=1))
            shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
            scale = jnp.exp(m - shift)
            e = jnp.exp(logits - shift[:, None])
            s = s * scale + jnp.sum(e, axis=1)
            if with_mean:
                acc = acc * scale[:, None] + _mm(e, rows, (1, 0))
            return m_new, s, acc

        init = (jnp.full((bn,), -jnp.inf, acc_dt), jnp.zeros((bn,), acc_dt),
                jnp.zeros((bn, d), acc_dt) if with_mean else None)
        init = tuple(_vary(x, vary_axes) for x in init)
        return _fold([items], start, stop, size, update, init)

    return _map_rows([hs], _block_rows(hs.shape[0], size), per_query_block)


def _items_grad(hs, items, lse, g_lse, start, stop, chunk, *, bounds=None, vary_axes=()):
    """``d sum(g_lse * lse) / d items`` (float32 ``[V, D]``, zero outside ``[start, stop)``)."""
    n = hs.shape[0]
    size = _plan(start, stop, chunk)[0]
    bn = _block_rows(n, size)
    acc_dt = _acc(hs, items)

    def per_chunk(ditems, row_blocks, r0):
        (rows,) = row_blocks
        mask = None if bounds is None else _row_mask(r0, rows.shape[0], bounds)[:, None]

        def update(acc, q_blocks, q0):
            hb, lse_b, g_b = q_blocks
            p_t = jnp.exp(_mm(rows, hb, (1, 1)) - lse_b[None, :])  # [C, bn]
            if mask is not None:
                p_t = jnp.where(mask, p_t, 0.0)
            return acc + _mm(p_t * g_b[None, :], hb, (1, 0))

        acc = _fold([hs, lse, g_lse], 0, n, bn, update,
                    _vary(jnp.zeros(rows.shape, acc_dt), vary_axes))
        return lax.dynamic_update_slice_in_dim(ditems, acc, r0, axis=0)

    init = _vary(jnp.zeros(items.shape, acc_dt), vary_axes)
    return _fold([items], start, stop, size, per_chunk, init)


def _take_rows(items, idx):
    return jnp.take(items, idx, axis=0).astype(_acc(items))


# --------------------------------------------------------------------------------------------------
# Cores: (hs = h / temperature, items, clipped targets) -> (lse [N], target logit [N]), float32+.
# --------------------------------------------------------------------------------------------------

def _reference_core(hs, items, targets, lo, hi):
    logits = _mm(hs, items, (1, 1))  # [N, V]
    cols = jnp.arange(items.shape[0])
    masked = jnp.where(((cols >= lo) & (cols < hi))[None, :], logits, -jnp.inf)
    lse = jax.nn.logsumexp(masked, axis=-1)
    t = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]
    return lse, t


@functools.lru_cache(maxsize=None)
def _chunked_core(lo: int, hi: int, chunk: int):
    def primal(hs, items, targets, with_mean):
        m, s, acc = _softmax_stats(hs, items, lo, hi, chunk, with_mean=with_mean)
        rows_t = _take_rows(items, targets)
        t = jnp.sum(hs.astype(rows_t.dtype) * rows_t, axis=-1)
        mean = None if acc is None else acc / s[:, None]
        return m + jnp.log(s), t, mean, rows_t

    @jax.custom_vjp
    def core(hs, items, targets):
        lse, t, _, _ = primal(hs, items, targets, False)
        return lse, t

    def fwd(hs, items, targets):
        lse, t, mean, rows_t = primal(hs, items, targets, True)
        return (lse, t), (hs, items, targets, lse, mean, rows_t)

    def bwd(res, cts):
        hs, items, targets, lse, mean, rows_t = res
        g_lse, g_t = (c.astype(lse.dtype) for c in cts)
        dhs = g_lse[:, None] * mean + g_t[:, None] * rows_t
        ditems = _items_grad(hs, items, lse, g_lse, lo, hi, chunk)
        ditems = ditems.at[targets].add(g_t[:, None] * hs.astype(ditems.dtype))
        return dhs.astype(hs.dtype), ditems.astype(items.dtype), None

    core.defvjp(fwd, bwd)
    return core


@functools.lru_cache(maxsize=None)
def _sharded_core(lo: int, hi: int, chunk: int, mesh, model_axis: str, data_axis: Optional[str]):
    row_spec = P(data_axis)           # [N] vectors: batch-sharded (or replicated), same on model
    h_spec = P(data_axis, None)       # [N, D]
    item_spec = P(model_axis, None)   # [V, D]: row-sharded over the model axis
    vary_axes = (model_axis,) if data_axis is None else (model_axis, data_axis)

    def local_view(items, targets):
        """Row offset of this shard, its valid-row bounds, and which targets it owns."""
        v_local = items.shape[0]
        off = lax.axis_index(model_axis) * v_local
        bounds = (jnp.clip(lo - off, 0, v_local), jnp.clip(hi - off, 0, v_local))
        local = targets - off
        mine = (local >= 0) & (local < v_local)
        return bounds, mine, jnp.clip(local, 0, v_local - 1)

    def fwd_local(hs, items, targets, with_mean):
        bounds, mine, idx = local_view(items, targets)
        m, s, acc = _softmax_stats(hs, items, 0, items.shape[0], chunk, bounds=bounds,
                                   with_mean=with_mean, vary_axes=vary_axes)
        m_all = lax.pmax(m, model_axis)  # finite: some shard holds valid rows
        scale = jnp.exp(m - m_all)
        s_all = lax.psum(s * scale, model_axis)
        lse = m_all + jnp.log(s_all)
        rows_t = lax.psum(jnp.where(mine[:, None], _take_rows(items, idx), 0.0), model_axis)
        t = jnp.sum(hs.astype(rows_t.dtype) * rows_t, axis=-1)
        if not with_mean:
            return lse, t
        mean = lax.psum(acc * scale[:, None], model_axis) / s_all[:, None]
        return lse, t, mean, rows_t

    def bwd_local(hs, items, targets, lse, g_lse, g_t):
        bounds, mine, idx = local_view(items, targets)
        ditems = _items_grad(hs, items, lse, g_lse, 0, items.shape[0], chunk, bounds=bounds,
                             vary_axes=vary_axes)
        g_t = jnp.where(mine, g_t, 0.0)
        ditems = ditems.at[idx].add(g_t[:, None] * hs.astype(ditems.dtype))
        # Each device saw only its batch rows: sum item gradients over the data axis.
        return ditems if data_axis is None else lax.psum(ditems, data_axis)

    def smap(f, in_specs, out_specs):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs)

    stats_sm = smap(functools.partial(fwd_local, with_mean=False), (h_spec, item_spec, row_spec),
                    (row_spec, row_spec))
    fwd_sm = smap(functools.partial(fwd_local, with_mean=True), (h_spec, item_spec, row_spec),
                  (row_spec, row_spec, h_spec, h_spec))
    bwd_sm = smap(bwd_local, (h_spec, item_spec) + (row_spec,) * 4, item_spec)

    @jax.custom_vjp
    def core(hs, items, targets):
        return stats_sm(hs, items, targets)

    def fwd(hs, items, targets):
        lse, t, mean, rows_t = fwd_sm(hs, items, targets)
        return (lse, t), (hs, items, targets, lse, mean, rows_t)

    def bwd(res, cts):
        # Written by hand so no gradient is implicitly summed over devices: d h needs only the
        # (already combined) softmax mean; d items needs the local rows and a psum over data.
        hs, items, targets, lse, mean, rows_t = res
        g_lse, g_t = (c.astype(lse.dtype) for c in cts)
        dhs = g_lse[:, None] * mean + g_t[:, None] * rows_t
        ditems = bwd_sm(hs, items, targets, lse, g_lse, g_t)
        return dhs.astype(hs.dtype), ditems.astype(items.dtype), None

    core.defvjp(fwd, bwd)
    return core


def _has_explicit_axes(mesh) -> bool:
    axis_type = getattr(jax.sharding, "AxisType", None)
    types = getattr(mesh, "axis_types", None) or ()
    return axis_type is not None and any(t == axis_type.Explicit for t in types)


# --------------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------------

def weighted_softmax_xent(
    h: jax.Array,
    items: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    *,
    temperature=1.0,
    valid_range: Optional[Sequence[int]] = None,
    impl: str = "chunked",
    chunk_size: int = 4096,
    mesh: Optional[jax.sharding.Mesh] = None,
    model_axis: str = "model",
    data_axis: Optional[str] = None,
) -> Tuple[jax.Array, jax.Array]:
    """Weighted full-catalogue softmax cross-entropy without building the ``[N, V]`` logits.

    Args:
      h: ``[N, D]`` query (user) vectors.
      items: ``[V, D]`` item table; logits are ``h @ items.T / temperature``.
      targets: ``[N]`` int row indices into ``items`` (clipped into ``[0, V)``).
      weights: ``[N]`` per-row weights (e.g. ``min(exp(A/λ), w_max)``); 0 masks a row.
      temperature: softmax temperature τ > 0 (a Python number, or an array to learn it).
      valid_range: ``(lo, hi)`` static ints: only rows ``lo <= j < hi`` enter the softmax.
        Default ``(0, V)``.
      impl: ``"reference"`` | ``"chunked"`` | ``"sharded"`` | ``"pallas"`` (see module docstring).
      chunk_size: item rows per chunk for ``"chunked"`` and ``"sharded"`` (per device); the
        query rows per tile follow from it (about 2M logits per tile). The reference ignores it;
        the Pallas path chooses its own power-of-two tiles (``pallas_tiles.select_tiles``).
      mesh: ``jax.sharding.Mesh`` for ``impl="sharded"`` (Auto or Explicit axes; with Explicit
        axes call inside ``jax.set_mesh(mesh)``, as JAX requires).
      model_axis: mesh axis over which ``items`` rows are sharded (``V`` must divide evenly).
      data_axis: optional mesh axis over which the batch rows are sharded (``N`` must divide).

    Returns:
      ``(loss [N], lse [N])`` in float32 (or wider): ``loss = -weights * (logit_target - lse)``,
      ``lse = logsumexp`` of the valid logits (not multiplied by ``weights``).

    Raises:
      ValueError: on shape/dtype mismatches, an unknown ``impl``, ``chunk_size <= 0``, a bad
        ``valid_range``, or ``impl="sharded"`` without a mesh / with ``V`` not divisible.
    """
    lo, hi = _validate(h, items, targets, weights, temperature, valid_range, impl, chunk_size, mesh,
                       model_axis, data_axis)
    v = items.shape[0]
    hs = h / temperature
    tc = jnp.clip(targets, 0, v - 1).astype(jnp.int32)
    if impl == "reference":
        lse, t = _reference_core(hs, items, tc, lo, hi)
    elif impl == "chunked":
        lse, t = _chunked_core(lo, hi, int(chunk_size))(hs, items, tc)
    elif impl == "sharded":
        if _has_explicit_axes(mesh):
            # Explicit-axis meshes (the `jax.make_mesh` default) need inputs laid out as shard_map's
            # in_specs say; `reshard` is differentiable, so gradients come back in the input layout.
            hs, items, tc, weights = (
                jax.reshard(x, NamedSharding(mesh, spec)) for x, spec in
                ((hs, P(data_axis, None)), (items, P(model_axis, None)), (tc, P(data_axis)),
                 (weights, P(data_axis))))
        lse, t = _sharded_core(lo, hi, int(chunk_size), mesh, model_axis, data_axis)(hs, items, tc)
    else:
        from genrec_jax.kernels import pallas_xent  # noqa: PLC0415 (Pallas imported lazily)

        lse, t = pallas_xent.pallas_lse_and_target_logit(hs, items, tc, valid_range=(lo, hi))
    loss = -weights * (t - lse)
    return loss, lse
