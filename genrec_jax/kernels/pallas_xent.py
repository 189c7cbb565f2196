"""Pallas kernels for the full-catalogue softmax statistics and their gradients.

``pallas_lse_and_target_logit(hs, items, targets, valid_range)`` returns ``(lse [N], t [N])``
for ``logits = hs @ items.T`` (``lse`` over rows ``valid_range``, ``t`` = each row's target
logit) and has a ``jax.custom_vjp`` made of two more kernels, like a flash-attention backward:

* forward (grid over query blocks): loop over item tiles with an online (max, sum-exp); the target
  logit is picked from the tile that holds it;
* ``dh`` (grid over query blocks): loop over item tiles, ``dh += (g_lse*p + g_t*onehot) @ tile``;
* ``ditems`` (grid over item tiles): loop over query blocks,
  ``ditems_tile += (g_lse*p + g_t*onehot).T @ h_block``;

with ``p = exp(logits - lse)`` recomputed per tile, so no ``[N, V]`` array exists anywhere.

Inputs are zero-padded to whole blocks (N, V to the block sizes, D to a power of two >= 16): padded
query rows are all-zero with zero cotangent, padded item rows are outside ``valid_range``. Block
sizes are powers of two >= 16 so the kernels are valid Triton programs on GPU; on CPU Pallas has no
compiler and the kernels run with ``interpret=True`` (slow: use tiny shapes there).
"""
from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

_F32 = jnp.float32
BLOCK_N = 64    # query rows per block (max)
BLOCK_V = 128   # item rows per tile (max)
_MIN_BLOCK = 16


def _pow2_at_least(x: int, floor: int = _MIN_BLOCK) -> int:
    return max(floor, 1 << max(0, int(x) - 1).bit_length())


def _block(n: int, cap: int) -> int:
    return min(cap, _pow2_at_least(n))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _interpret() -> bool:
    return jax.default_backend() == "cpu"


def _compiler_params(interpret: bool):
    """Triton compiler parameters on GPU (JAX may default ``pallas_call`` to Mosaic GPU)."""
    if interpret:
        return None
    from jax.experimental.pallas import triton as pl_triton  # noqa: PLC0415

    return pl_triton.CompilerParams(num_warps=4, num_stages=2)


def _dot_nt(a, b):
    """``a @ b.T`` for 2-D blocks, float32 accumulation."""
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=_F32)


def _dot_nn(a, b):
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=_F32)


# --------------------------------------------------------------------------------------------------
# Kernels.
# --------------------------------------------------------------------------------------------------

def _fwd_kernel(h_ref, items_ref, tg_ref, lse_ref, t_ref, *, bv, n_tiles, lo, hi):
    h = h_ref[...]                      # [bn, Dp]
    tg = tg_ref[...]                    # [bn]
    bn = h.shape[0]

    def body(j, carry):
        m, s, t = carry
        r0 = pl.multiple_of(j * bv, bv)
        rows = items_ref[pl.ds(r0, bv), :]                       # [bv, Dp]
        logits = _dot_nt(h, rows)                                # [bn, bv]
        col = r0 + lax.broadcasted_iota(jnp.int32, (bn, bv), 1)
        t = t + jnp.sum(jnp.where(col == tg[:, None], logits, 0.0), axis=1)
        logits = jnp.where((col >= lo) & (col < hi), logits, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(logits, axis=1))
        shift = jnp.where(m_new == -jnp.inf, 0.0, m_new)
        s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(logits - shift[:, None]), axis=1)
        return m_new, s, t

    init = (jnp.full((bn,), -jnp.inf, _F32), jnp.zeros((bn,), _F32), jnp.zeros((bn,), _F32))
    m, s, t = lax.fori_loop(0, n_tiles, body, init)
    lse_ref[...] = m + jnp.log(s)
    t_ref[...] = t


def _dh_kernel(h_ref, items_ref, tg_ref, lse_ref, gl_ref, gt_ref, dh_ref, *, bv, n_tiles, lo, hi):
    h = h_ref[...]
    tg, lse, gl, gt = tg_ref[...], lse_ref[...], gl_ref[...], gt_ref[...]
    bn = h.shape[0]

    def body(j, acc):
        r0 = pl.multiple_of(j * bv, bv)
        rows = items_ref[pl.ds(r0, bv), :]
        logits = _dot_nt(h, rows)
        col = r0 + lax.broadcasted_iota(jnp.int32, (bn, bv), 1)
        valid = (col >= lo) & (col < hi)
        dlogits = (jnp.where(valid, jnp.exp(logits - lse[:, None]), 0.0) * gl[:, None]
                   + jnp.where(col == tg[:, None], gt[:, None], 0.0))
        return acc + _dot_nn(dlogits.astype(rows.dtype), rows)

    acc = lax.fori_loop(0, n_tiles, body, jnp.zeros(h.shape, _F32))
    dh_ref[...] = acc.astype(dh_ref.dtype)


def _ditems_kernel(h_ref, items_ref, tg_ref, lse_ref, gl_ref, gt_ref, di_ref, *, bn, n_blocks, lo,
                   hi):
    rows = items_ref[...]                                         # [bv, Dp]
    bv = rows.shape[0]
    r0 = pl.program_id(0) * bv
    row = r0 + lax.broadcasted_iota(jnp.int32, (bv, bn), 0)
    valid = (row >= lo) & (row < hi)

    def body(i, acc):
        q0 = pl.multiple_of(i * bn, bn)
        h = h_ref[pl.ds(q0, bn), :]                                # [bn, Dp]
        tg = tg_ref[pl.ds(q0, bn)]
        lse = lse_ref[pl.ds(q0, bn)]
        gl = gl_ref[pl.ds(q0, bn)]
        gt = gt_ref[pl.ds(q0, bn)]
        logits_t = _dot_nt(rows, h)                                # [bv, bn]
        dlogits_t = (jnp.where(valid, jnp.exp(logits_t - lse[None, :]), 0.0) * gl[None, :]
                     + jnp.where(row == tg[None, :], gt[None, :], 0.0))
        return acc + _dot_nn(dlogits_t.astype(h.dtype), h)

    acc = lax.fori_loop(0, n_blocks, body, jnp.zeros(rows.shape, _F32))
    di_ref[...] = acc.astype(di_ref.dtype)


# --------------------------------------------------------------------------------------------------
# pallas_call wrappers on padded arrays.
# --------------------------------------------------------------------------------------------------

def _full(shape):
    return pl.BlockSpec(shape, lambda *_: (0,) * len(shape))


def _fwd_call(hs, items, tg, *, bn, bv, lo, hi, interpret):
    n, d = hs.shape
    v = items.shape[0]
    kernel = functools.partial(_fwd_kernel, bv=bv, n_tiles=v // bv, lo=lo, hi=hi)
    vec = pl.BlockSpec((bn,), lambda i: (i,))
    return pl.pallas_call(
        kernel,
        grid=(n // bn,),
        in_specs=[pl.BlockSpec((bn, d), lambda i: (i, 0)), _full((v, d)), vec],
        out_specs=[vec, vec],
        out_shape=[jax.ShapeDtypeStruct((n,), _F32)] * 2,
        interpret=interpret,
        compiler_params=_compiler_params(interpret),
        name="weighted_xent_fwd",
    )(hs, items, tg)


def _bwd_calls(hs, items, tg, lse, gl, gt, *, bn, bv, lo, hi, interpret):
    n, d = hs.shape
    v = items.shape[0]
    vec = pl.BlockSpec((bn,), lambda i: (i,))
    dh = pl.pallas_call(
        functools.partial(_dh_kernel, bv=bv, n_tiles=v // bv, lo=lo, hi=hi),
        grid=(n // bn,),
        in_specs=[pl.BlockSpec((bn, d), lambda i: (i, 0)), _full((v, d)), vec, vec, vec, vec],
        out_specs=pl.BlockSpec((bn, d), lambda i: (i, 0)),
        out_shape=jax.ShapeDtypeStruct((n, d), hs.dtype),
        interpret=interpret,
        compiler_params=_compiler_params(interpret),
        name="weighted_xent_dh",
    )(hs, items, tg, lse, gl, gt)
    full_vec = _full((n,))
    ditems = pl.pallas_call(
        functools.partial(_ditems_kernel, bn=bn, n_blocks=n // bn, lo=lo, hi=hi),
        grid=(v // bv,),
        in_specs=[_full((n, d)), pl.BlockSpec((bv, d), lambda j: (j, 0)), full_vec, full_vec,
                  full_vec, full_vec],
        out_specs=pl.BlockSpec((bv, d), lambda j: (j, 0)),
        out_shape=jax.ShapeDtypeStruct((v, d), items.dtype),
        interpret=interpret,
        compiler_params=_compiler_params(interpret),
        name="weighted_xent_ditems",
    )(hs, items, tg, lse, gl, gt)
    return dh, ditems


@functools.lru_cache(maxsize=None)
def _padded_core(bn: int, bv: int, lo: int, hi: int, interpret: bool):
    kw = dict(bn=bn, bv=bv, lo=lo, hi=hi, interpret=interpret)

    @jax.custom_vjp
    def core(hs, items, tg):
        return tuple(_fwd_call(hs, items, tg, **kw))

    def fwd(hs, items, tg):
        lse, t = _fwd_call(hs, items, tg, **kw)
        return (lse, t), (hs, items, tg, lse)

    def bwd(res, cts):
        hs, items, tg, lse = res
        g_lse, g_t = cts
        dh, ditems = _bwd_calls(hs, items, tg, lse, g_lse.astype(_F32), g_t.astype(_F32), **kw)
        return dh, ditems, None

    core.defvjp(fwd, bwd)
    return core


def pallas_lse_and_target_logit(hs, items, targets, *, valid_range: Tuple[int, int],
                                interpret=None, block_n: int = BLOCK_N, block_v: int = BLOCK_V):
    """``(logsumexp over valid rows of hs @ items.T, logit of each target)``, both ``[N]`` float32.

    ``targets`` must already lie in ``[0, V)``. Differentiable in ``hs`` and ``items``.
    ``interpret`` defaults to ``jax.default_backend() == "cpu"``.
    """
    n, d = hs.shape
    v = items.shape[0]
    lo, hi = (int(x) for x in valid_range)
    if interpret is None:
        interpret = _interpret()
    bn = _block(n, _pow2_at_least(block_n))
    bv = _block(v, _pow2_at_least(block_v))
    n_pad, v_pad, d_pad = _round_up(n, bn), _round_up(v, bv), _pow2_at_least(d)
    hs_p = jnp.pad(hs, ((0, n_pad - n), (0, d_pad - d)))
    items_p = jnp.pad(items, ((0, v_pad - v), (0, d_pad - d)))
    tg_p = jnp.pad(targets.astype(jnp.int32), (0, n_pad - n))
    lse, t = _padded_core(bn, bv, lo, hi, bool(interpret))(hs_p, items_p, tg_p)
    return lse[:n], t[:n]
