"""Pallas kernels for the full-catalogue softmax statistics and their gradients.

``pallas_lse_and_target_logit(hs, items, targets, valid_range)`` returns ``(lse [N], t [N])``
for ``logits = hs @ items.T`` (``lse`` over rows ``valid_range``, ``t`` = each row's target
logit) and has a ``jax.custom_vjp`` made of two more kernels, like a flash-attention backward:

* forward (grid ``[N / block_n, v_splits]``): each program loops over the item tiles of its item
  range with an online (max, sum-exp) and picks the target logit from the tile that holds it; the
  ``v_splits`` partial results are combined outside: ``lse = M + log sum_s s_s exp(m_s - M)``;
* ``dh`` (grid ``[N / block_n, v_splits]``): loop over item tiles,
  ``dh += (g_lse * p + g_t * onehot) @ tile``, partial sums over the splits added outside;
* ``ditems`` (grid over item tiles): loop over query blocks,
  ``ditems_tile += (g_lse * p + g_t * onehot).T @ h_block``;

with ``p = exp(logits - lse)`` recomputed per tile, so no ``[N, V]`` array exists anywhere.

Gradient tiles with negligible softmax mass are skipped. In ``dh`` (per query block x item tile)
and ``ditems`` (per item tile x query block) the second matmul of a tile is left out when

    max over the tile of (logit - lse) < log(tau)   for every row with g_lse != 0, and
    the tile holds no target of a row with g_t != 0,

with ``tau = min(exp(-30), 2**-24 / V_valid)`` (:func:`skip_log_threshold`). Every skipped
``p`` is below ``tau``, so per query row the dropped softmax mass is below ``V_valid * tau <=
2**-24`` (float32's unit roundoff) of the row's total mass 1: the error in ``dh_n`` is at most
``2**-24 * |g_lse_n| * max_j |items_j|``, the size of one rounding step of the summed gradient,
and the error in ``ditems_j`` at most ``tau * sum_n |g_lse_n| |hs_n|``. On peaked softmaxes
(trained models, small temperatures) most tiles are skipped; pass ``skip_log_thr=-inf`` for the
exact sums. The forward pass cannot skip (it computes ``lse``), but every kernel branches
(``scf.if`` on GPU) so that per-element side work is done only by the tiles that need it: the
column mask only on tiles straddling ``lo`` or ``hi``, the target pick / one-hot term only on
tiles that hold a target of the block.

Precision: ``hs`` / ``items`` may be float32 or bfloat16 (float16 too); matmuls take the input
dtype and accumulate in float32 (``preferred_element_type``), and logits, ``lse``, the online
statistics and the gradient accumulators are float32. Before the gradient matmuls the
``[block, block]`` coefficients ``g_lse * p + g_t * onehot`` are cast to the input dtype (as
flash attention does with ``p``); gradients come back in the input dtype. float32 matmuls follow
JAX's default matmul precision (TF32 tensor cores on recent GPUs unless
``jax_default_matmul_precision`` asks for ``highest``). Mixed or float64 inputs are cast to one
common dtype first (float64 to float32).

Tile sizes (block rows, item tile rows, Triton ``num_warps`` / ``num_stages``, item-range splits)
are chosen per shape by :mod:`genrec_jax.kernels.pallas_tiles`: an autotune at the first call on
GPU (cached per process), the static table on CPU. Inputs are zero-padded to whole blocks (N to
``block_n``, V to ``block_v * v_splits``, D to a power of two >= 16): padded query rows are
all-zero with zero cotangent, padded item rows are outside ``valid_range``. On CPU Pallas has no
compiler and the kernels run with ``interpret=True`` (slow: use tiny shapes there).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from genrec_jax.kernels import pallas_tiles
from genrec_jax.kernels.pallas_tiles import Tiles

_F32 = jnp.float32
_KERNEL_DTYPES = ("float32", "bfloat16", "float16")


def skip_log_threshold(v_valid: int) -> float:
    """``log(tau)`` with ``tau = min(exp(-30), 2**-24 / v_valid)`` (see the module docstring)."""
    return min(-30.0, -24.0 * math.log(2.0) - math.log(max(int(v_valid), 1)))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _interpret() -> bool:
    return jax.default_backend() == "cpu"


def _compiler_params(tiles: Tiles, interpret: bool):
    """Triton compiler parameters on GPU (JAX may default ``pallas_call`` to Mosaic GPU)."""
    if interpret:
        return None
    from jax.experimental.pallas import triton as pl_triton  # noqa: PLC0415

    return pl_triton.CompilerParams(num_warps=tiles.num_warps, num_stages=tiles.num_stages)


def _dot_nt(a, b):
    """``a @ b.T`` for 2-D blocks, float32 accumulation."""
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=_F32)


def _dot_nn(a, b):
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=_F32)


def _any(mask):
    """Scalar bool: some entry of a bool vector is set."""
    return jnp.max(mask.astype(jnp.int32)) > 0


def _if(pred, fn, x):
    """``fn(x)`` where ``pred`` (a traced scalar bool), else ``x``: an ``scf.if`` on GPU."""
    return lax.cond(pred, fn, lambda y: y, x)


def _valid_cols(x, r0, lo, hi):
    """``x [bn, bv]`` (item columns ``r0 + j``) with columns outside ``[lo, hi)`` set to -inf.
    Only tiles that straddle ``lo`` or ``hi`` pay for the mask."""
    bn, bv = x.shape

    def mask(x):
        col = r0 + lax.broadcasted_iota(jnp.int32, (bn, bv), 1)
        return jnp.where((col >= lo) & (col < hi), x, -jnp.inf)

    return _if((r0 < lo) | (r0 + bv > hi), mask, x)


def _skip_or_add(z, hit, add, acc, log_thr):
    """``add(acc)`` unless the tile is negligible: every ``z = logit - lse`` (-inf where masked)
    is below ``log_thr`` and no live target falls in it (``hit``); ``log_thr = -inf``: always."""
    if log_thr == -math.inf:
        return add(acc)
    keep = (jnp.max(jnp.max(z, axis=1), axis=0) >= log_thr) | _any(hit)
    return _if(keep, add, acc)


# --------------------------------------------------------------------------------------------------
# Kernels. The backward kernels take ``lse_eff = where(g_lse != 0, lse, +inf)`` (rows without a
# softmax cotangent then give z = -inf: no mass, no work) and ``tgt = where(g_t != 0, target, -1)``
# (targets without a cotangent match no column).
# --------------------------------------------------------------------------------------------------

def _fwd_kernel(h_ref, items_ref, tg_ref, m_ref, s_ref, t_ref, *, bv, tiles_per_split, lo, hi):
    h = h_ref[...]                      # [bn, Dp]
    tg = tg_ref[...]                    # [bn]
    bn = h.shape[0]
    first = pl.program_id(1) * tiles_per_split

    def body(j, carry):
        m, s, t = carry
        r0 = pl.multiple_of((first + j) * bv, bv)
        rows = items_ref[pl.ds(r0, bv), :]                       # [bv, Dp]
        logits = _dot_nt(h, rows)                                # [bn, bv] float32

        def pick_targets(t):
            col = r0 + lax.broadcasted_iota(jnp.int32, (bn, bv), 1)
            return t + jnp.sum(jnp.where(col == tg[:, None], logits, 0.0), axis=1)

        t = _if(_any((tg >= r0) & (tg < r0 + bv)), pick_targets, t)
        logits = _valid_cols(logits, r0, lo, hi)
        m_new = jnp.maximum(m, jnp.max(logits, axis=1))
        shift = jnp.where(m_new == -jnp.inf, 0.0, m_new)
        s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(logits - shift[:, None]), axis=1)
        return m_new, s, t

    init = (jnp.full((bn,), -jnp.inf, _F32), jnp.zeros((bn,), _F32), jnp.zeros((bn,), _F32))
    m, s, t = lax.fori_loop(0, tiles_per_split, body, init)
    m_ref[...] = m
    s_ref[...] = s
    t_ref[...] = t


def _dh_kernel(h_ref, items_ref, tgt_ref, lse_ref, gl_ref, gt_ref, dh_ref, *, bv, tiles_per_split,
               lo, hi, log_thr):
    h = h_ref[...]
    tgt, lse, gl, gt = tgt_ref[...], lse_ref[...], gl_ref[...], gt_ref[...]
    bn = h.shape[0]
    first = pl.program_id(1) * tiles_per_split

    def body(j, acc):
        r0 = pl.multiple_of((first + j) * bv, bv)
        rows = items_ref[pl.ds(r0, bv), :]
        z = _valid_cols(_dot_nt(h, rows) - lse[:, None], r0, lo, hi)   # log p, [bn, bv]
        hit = (tgt >= r0) & (tgt < r0 + bv)

        def add(acc):
            def onehot(dl):
                col = r0 + lax.broadcasted_iota(jnp.int32, (bn, bv), 1)
                return dl + jnp.where(col == tgt[:, None], gt[:, None], 0.0)

            dlogits = _if(_any(hit), onehot, jnp.exp(z) * gl[:, None])
            return acc + _dot_nn(dlogits.astype(rows.dtype), rows)

        return _skip_or_add(z, hit, add, acc, log_thr)

    dh_ref[...] = lax.fori_loop(0, tiles_per_split, body, jnp.zeros(h.shape, _F32))


def _ditems_kernel(h_ref, items_ref, tgt_ref, lse_ref, gl_ref, gt_ref, di_ref, *, bn, n_blocks, lo,
                   hi, log_thr):
    rows = items_ref[...]                                         # [bv, Dp]
    bv = rows.shape[0]
    r0 = pl.program_id(0) * bv
    edge = (r0 < lo) | (r0 + bv > hi)

    def mask_rows(z):
        row = r0 + lax.broadcasted_iota(jnp.int32, (bv, bn), 0)
        return jnp.where((row >= lo) & (row < hi), z, -jnp.inf)

    def body(i, acc):
        q0 = pl.multiple_of(i * bn, bn)
        h = h_ref[pl.ds(q0, bn), :]                                # [bn, Dp]
        tgt = tgt_ref[pl.ds(q0, bn)]
        lse = lse_ref[pl.ds(q0, bn)]
        gl = gl_ref[pl.ds(q0, bn)]
        gt = gt_ref[pl.ds(q0, bn)]
        z = _if(edge, mask_rows, _dot_nt(rows, h) - lse[None, :])  # log p.T, [bv, bn]
        hit = (tgt >= r0) & (tgt < r0 + bv)

        def add(acc):
            def onehot(dl):
                row = r0 + lax.broadcasted_iota(jnp.int32, (bv, bn), 0)
                return dl + jnp.where(row == tgt[None, :], gt[None, :], 0.0)

            dlogits_t = _if(_any(hit), onehot, jnp.exp(z) * gl[None, :])
            return acc + _dot_nn(dlogits_t.astype(h.dtype), h)

        return _skip_or_add(z, hit, add, acc, log_thr)

    acc = lax.fori_loop(0, n_blocks, body, jnp.zeros(rows.shape, _F32))
    di_ref[...] = acc.astype(di_ref.dtype)


# --------------------------------------------------------------------------------------------------
# pallas_call wrappers on padded arrays.
# --------------------------------------------------------------------------------------------------

def _full(shape):
    return pl.BlockSpec(shape, lambda *_: (0,) * len(shape))


def _fwd_call(hs, items, tg, *, tiles, lo, hi, interpret):
    """Forward kernel + combine of the splits: ``(lse [N], t [N])`` float32."""
    n, d = hs.shape
    v = items.shape[0]
    bn, bv, splits = tiles.block_n, tiles.block_v, tiles.v_splits
    kernel = functools.partial(_fwd_kernel, bv=bv, tiles_per_split=v // (bv * splits), lo=lo,
                               hi=hi)
    out = pl.BlockSpec((pl.squeezed, bn), lambda i, s: (s, i))
    m, s, t = pl.pallas_call(
        kernel,
        grid=(n // bn, splits),
        in_specs=[pl.BlockSpec((bn, d), lambda i, s: (i, 0)), _full((v, d)),
                  pl.BlockSpec((bn,), lambda i, s: (i,))],
        out_specs=[out, out, out],
        out_shape=[jax.ShapeDtypeStruct((splits, n), _F32)] * 3,
        interpret=interpret,
        compiler_params=_compiler_params(tiles, interpret),
        name="weighted_xent_fwd",
    )(hs, items, tg)
    if splits == 1:
        return m[0] + jnp.log(s[0]), t[0]
    m_all = jnp.max(m, axis=0)  # finite: every row has valid items (lo < hi)
    return m_all + jnp.log(jnp.sum(s * jnp.exp(m - m_all[None, :]), axis=0)), jnp.sum(t, axis=0)


def _bwd_calls(hs, items, tg, lse, gl, gt, *, tiles, lo, hi, interpret, log_thr):
    n, d = hs.shape
    v = items.shape[0]
    bn, bv, splits = tiles.block_n, tiles.block_v, tiles.v_splits
    params = _compiler_params(tiles, interpret)
    vec = pl.BlockSpec((bn,), lambda i, s: (i,))
    dh_parts = pl.pallas_call(
        functools.partial(_dh_kernel, bv=bv, tiles_per_split=v // (bv * splits), lo=lo, hi=hi,
                          log_thr=log_thr),
        grid=(n // bn, splits),
        in_specs=[pl.BlockSpec((bn, d), lambda i, s: (i, 0)), _full((v, d)), vec, vec, vec, vec],
        out_specs=pl.BlockSpec((pl.squeezed, bn, d), lambda i, s: (s, i, 0)),
        out_shape=jax.ShapeDtypeStruct((splits, n, d), _F32),
        interpret=interpret,
        compiler_params=params,
        name="weighted_xent_dh",
    )(hs, items, tg, lse, gl, gt)
    dh = (dh_parts[0] if splits == 1 else jnp.sum(dh_parts, axis=0)).astype(hs.dtype)
    full_vec = _full((n,))
    ditems = pl.pallas_call(
        functools.partial(_ditems_kernel, bn=bn, n_blocks=n // bn, lo=lo, hi=hi, log_thr=log_thr),
        grid=(v // bv,),
        in_specs=[_full((n, d)), pl.BlockSpec((bv, d), lambda j: (j, 0)), full_vec, full_vec,
                  full_vec, full_vec],
        out_specs=pl.BlockSpec((bv, d), lambda j: (j, 0)),
        out_shape=jax.ShapeDtypeStruct((v, d), items.dtype),
        interpret=interpret,
        compiler_params=params,
        name="weighted_xent_ditems",
    )(hs, items, tg, lse, gl, gt)
    return dh, ditems


@functools.lru_cache(maxsize=None)
def _padded_core(tiles: Tiles, lo: int, hi: int, interpret: bool, log_thr: float):
    kw = dict(tiles=tiles, lo=lo, hi=hi, interpret=interpret)

    @jax.custom_vjp
    def core(hs, items, tg):
        return _fwd_call(hs, items, tg, **kw)

    def fwd(hs, items, tg):
        lse, t = _fwd_call(hs, items, tg, **kw)
        return (lse, t), (hs, items, tg, lse)

    def bwd(res, cts):
        hs, items, tg, lse = res
        g_lse, g_t = (c.astype(_F32) for c in cts)
        lse_eff = jnp.where(g_lse != 0.0, lse, jnp.inf)
        tgt = jnp.where(g_t != 0.0, tg, -1)
        dh, ditems = _bwd_calls(hs, items, tgt, lse_eff, g_lse, g_t, log_thr=log_thr, **kw)
        return dh, ditems, None

    core.defvjp(fwd, bwd)
    return core


# --------------------------------------------------------------------------------------------------
# Public entry point.
# --------------------------------------------------------------------------------------------------

def kernel_dtype(*dtypes) -> jnp.dtype:
    """The one dtype the kernels see: the promoted input dtype, float64 and others -> float32."""
    dt = jnp.dtype(jnp.result_type(*dtypes))
    return dt if dt.name in _KERNEL_DTYPES else jnp.dtype(_F32)


def _lse_and_t(hs, items, targets, tiles: Tiles, lo: int, hi: int, interpret: bool,
               log_thr: float):
    n, d = hs.shape
    v = items.shape[0]
    dt = kernel_dtype(hs.dtype, items.dtype)
    n_pad = _round_up(n, tiles.block_n)
    v_pad = _round_up(v, tiles.block_v * tiles.v_splits)
    d_pad = pallas_tiles.pow2_at_least(d)
    hs_p = jnp.pad(hs.astype(dt), ((0, n_pad - n), (0, d_pad - d)))
    items_p = jnp.pad(items.astype(dt), ((0, v_pad - v), (0, d_pad - d)))
    tg_p = jnp.pad(targets.astype(jnp.int32), (0, n_pad - n))
    lse, t = _padded_core(tiles, lo, hi, bool(interpret), float(log_thr))(hs_p, items_p, tg_p)
    return lse[:n], t[:n]


def _device(interpret: bool):
    """``(device kind, SM count)`` the tiles are chosen for: ``("cpu", None)`` in interpret mode;
    the generic ``"gpu"`` table row when compiling for a GPU on a host without one (export)."""
    if interpret:
        return "cpu", None
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return "gpu", None
    return getattr(dev, "device_kind", dev.platform), getattr(dev, "core_count", None)


def make_runner(n: int, v: int, d: int, dtype, lo: int, hi: int, interpret: bool,
                log_thr: float):
    """``tiles -> thunk`` for :func:`pallas_tiles.select_tiles`: each thunk runs forward +
    backward once on random inputs of this shape (unit rows, ``hs`` scaled by 20 as for a cosine
    softmax at temperature 0.05) and blocks on the gradients.

    The thunks run right away even when called while an outer function is being traced (which is
    where tile selection happens): inputs are made under ``jax.ensure_compile_time_eval`` and the
    step is compiled ahead of time.
    """
    dtype = jnp.dtype(dtype)

    def make(tiles: Tiles):
        state = {}

        def thunk():
            if not state:
                rng = np.random.default_rng(0)

                def unit(rows):
                    x = rng.standard_normal((rows, d)).astype(np.float32)
                    return x / np.linalg.norm(x, axis=1, keepdims=True)

                host = (20.0 * unit(n), unit(v), rng.integers(lo, hi, size=n).astype(np.int32))
                with jax.ensure_compile_time_eval():  # concrete arrays, even inside a trace
                    args = (jnp.asarray(host[0], dtype), jnp.asarray(host[1], dtype),
                            jnp.asarray(host[2]))

                def loss(hs, items, tg):
                    lse, t = _lse_and_t(hs, items, tg, tiles, lo, hi, interpret, log_thr)
                    return jnp.sum(lse - t)

                # Ahead-of-time compiled: its own trace, and calling it runs it right away.
                state["step"] = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*args).compile()
                state["args"] = args
            return jax.block_until_ready(state["step"](*state["args"]))

        return thunk

    return make


def select_tiles(n: int, v: int, d: int, dtype, *, valid_range: Tuple[int, int],
                 interpret: Optional[bool] = None, skip_log_thr: Optional[float] = None,
                 autotune: Optional[bool] = None, timer=None) -> pallas_tiles.TuneResult:
    """Tiles :func:`pallas_lse_and_target_logit` uses for this shape (autotuned or from the
    table; see :func:`pallas_tiles.select_tiles`). Call it ahead of a jit to tune outside the
    compile time."""
    lo, hi = (int(x) for x in valid_range)
    if interpret is None:
        interpret = _interpret()
    dt = jnp.dtype(dtype)
    log_thr = skip_log_threshold(hi - lo) if skip_log_thr is None else float(skip_log_thr)
    kind, sm_count = _device(bool(interpret))
    runs_here = not interpret and jax.devices()[0].platform != "cpu"
    if not interpret and not runs_here:  # compiling for a GPU this host lacks: nothing to time
        autotune = False
    return pallas_tiles.select_tiles(
        n, v, d, dt.name, device_kind=kind, interpret=not runs_here,
        make_runner=make_runner(n, v, d, dt, lo, hi, bool(interpret), log_thr), sm_count=sm_count,
        autotune=autotune, timer=timer)


def pallas_lse_and_target_logit(hs, items, targets, *, valid_range: Tuple[int, int],
                                interpret: Optional[bool] = None, block_n: Optional[int] = None,
                                block_v: Optional[int] = None, tiles: Optional[Tiles] = None,
                                skip_log_thr: Optional[float] = None):
    """``(logsumexp over valid rows of hs @ items.T, logit of each target)``, both ``[N]`` float32.

    ``targets`` must already lie in ``[0, V)``. Differentiable in ``hs`` and ``items`` (gradients
    in their dtypes). ``interpret`` defaults to ``jax.default_backend() == "cpu"``.

    Tiles: ``tiles`` if given; else with ``block_n`` / ``block_v`` the table's tiles with those
    blocks; else :func:`select_tiles` (autotune at the first call on GPU, cached). Blocks are
    clamped to the padded shape. ``skip_log_thr``: ``log(tau)`` of the gradient-tile skip
    (default :func:`skip_log_threshold` of the valid range; ``-inf`` disables skipping).
    """
    n, d = hs.shape
    v = items.shape[0]
    lo, hi = (int(x) for x in valid_range)
    if interpret is None:
        interpret = _interpret()
    log_thr = skip_log_threshold(hi - lo) if skip_log_thr is None else float(skip_log_thr)
    dt = kernel_dtype(hs.dtype, items.dtype)
    if tiles is None and block_n is None and block_v is None:
        tiles = select_tiles(n, v, d, dt, valid_range=(lo, hi), interpret=interpret,
                             skip_log_thr=log_thr).tiles
    elif tiles is None:
        kind, sm_count = _device(bool(interpret))
        base = pallas_tiles.default_tiles(n, v, d, dt.name, kind)
        tiles = Tiles(pallas_tiles.pow2_at_least(block_n or base.block_n),
                      pallas_tiles.pow2_at_least(block_v or base.block_v),
                      base.num_warps, base.num_stages)
        tiles = pallas_tiles.clamp(tiles, n, v, sm_count)
    else:  # explicit tiles: blocks clamped to the shape, v_splits kept
        p2 = pallas_tiles.pow2_at_least
        tiles = dataclasses.replace(tiles, block_n=min(tiles.block_n, p2(n)),
                                    block_v=min(tiles.block_v, p2(v)))
    return _lse_and_t(hs, items, targets, tiles, lo, hi, bool(interpret), log_thr)
