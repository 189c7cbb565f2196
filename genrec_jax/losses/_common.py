"""Shared helpers: masks, safe gathers and expectations.

Masking strategy ("double where"): a masked entry must give exactly zero loss *and* exactly zero
gradient, even when its inputs are garbage (an action of ``-1``, a row of ``-inf`` logits, a NaN
log-probability). Zeroing only the final loss is not enough: ``where(mask, f(x), 0)`` still
back-propagates ``0 * f'(x)``, which is NaN when ``f'(x)`` is infinite or NaN. So every input is
first replaced by a harmless constant under the mask, then the per-example loss is zeroed.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array


def broadcast_mask(where, shape) -> Optional[Array]:
    """Returns ``where`` as a boolean array of ``shape`` (``None`` stays ``None``).

    A float or int mask is read as ``where != 0``: it is a mask, not a weight.
    """
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        where = where != 0
    return jnp.broadcast_to(where, shape)


def clean(x, mask: Optional[Array], fill=0):
    """``x`` with masked entries replaced by ``fill`` (no gradient flows to them)."""
    x = jnp.asarray(x)
    if mask is None:
        return x
    return jnp.where(mask, x, jnp.asarray(fill, dtype=x.dtype))


def clean_rows(x, mask: Optional[Array], fill=0):
    """Like :func:`clean` for ``x`` of shape ``mask.shape + (V,)``: masks whole rows."""
    x = jnp.asarray(x)
    if mask is None:
        return x
    return jnp.where(mask[..., None], x, jnp.asarray(fill, dtype=x.dtype))


def apply_mask(loss: Array, mask: Optional[Array]) -> Array:
    """Per-example ``loss`` with masked entries set to exactly 0."""
    if mask is None:
        return loss
    return jnp.where(mask, loss, jnp.zeros((), loss.dtype))


def batch_shape(*arrays) -> tuple:
    """Broadcast shape of the given per-example arrays."""
    return jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))


def _as_float(x) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def take_logit(logits: Array, actions: Array) -> Array:
    """``logits[..., actions]`` for ``logits [..., V]`` and ``actions [...]``."""
    actions = jnp.asarray(actions)
    if not jnp.issubdtype(actions.dtype, jnp.integer):
        raise TypeError(f"actions must be integers, got dtype {actions.dtype}")
    return jnp.take_along_axis(logits, actions[..., None], axis=-1)[..., 0]


def masked_log_prob(logits, actions, mask: Optional[Array]) -> Array:
    """``log_softmax(logits)[a]``, exactly 0 (zero gradient) where ``mask`` is False."""
    logits = _as_float(logits)
    actions = jnp.asarray(actions)
    if mask is not None:
        actions = jnp.where(mask, actions, jnp.zeros((), actions.dtype))
        logits = clean_rows(logits, mask)
    logp = take_logit(logits, actions) - jax.nn.logsumexp(logits, axis=-1)
    return apply_mask(logp, mask)


def expectation(logits: Array, values: Array, axis: int = -1) -> Array:
    """``sum_a softmax(logits)_a * values_a`` over ``axis``; items of zero probability
    contribute exactly 0 even when their value is ``±inf`` or NaN."""
    logits = _as_float(logits)
    probs = jax.nn.softmax(logits, axis=axis)
    values = jnp.asarray(values)
    safe_values = jnp.where(probs > 0, values, jnp.zeros((), values.dtype))
    return jnp.sum(probs * safe_values, axis=axis)


def check_positive(name: str, value) -> None:
    """Raises ``ValueError`` if a concrete (non-traced) ``value`` is not > 0."""
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return
    if not concrete > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
