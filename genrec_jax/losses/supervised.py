"""Supervised next-item losses: BC, reward-weighted BC, A-SFT and sampled softmax.

Shapes: ``logits [..., V]`` are scores over the catalogue, ``actions [...]`` integer item
indices into the last axis (``0 <= a < V``); every loss returns the per-example loss of shape
``[...]`` (no reduction). ``where`` is an optional mask broadcastable to ``[...]``: masked
entries give exactly 0 loss and exactly 0 gradient, whatever their inputs hold (an action of
``-1``, a row of ``-inf`` logits). Logits may hold ``-inf`` for items that are never valid.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from genrec_jax.losses import _common
from genrec_jax.losses._registry import register

Array = jax.Array

_TRANSFORMS = ("linear", "minmax", "exp")


def log_prob_of(logits, actions, *, where=None) -> Array:
    """Log-probability of the taken actions under a softmax policy.

    ``logp[...] = log_softmax(logits)[..., actions[...]] = logits[a] - logsumexp(logits)``.

    Args:
      logits: ``[..., V]`` unnormalised scores.
      actions: ``[...]`` integer indices in ``[0, V)``.
      where: optional mask broadcastable to ``[...]``; masked entries return 0.

    Returns:
      ``[...]`` log-probabilities.
    """
    mask = _common.broadcast_mask(where, jnp.shape(actions))
    return _common.masked_log_prob(logits, actions, mask)


@register("bc")
def bc(logits, actions, *, where=None) -> Array:
    """Behaviour cloning / SFT: negative log-likelihood of the logged item.

    ``L = -log_softmax(logits)[a]``, the same as
    ``optax.softmax_cross_entropy_with_integer_labels(logits, actions)``.

    Args:
      logits: ``[..., V]`` policy logits over the catalogue.
      actions: ``[...]`` logged items (integers in ``[0, V)``).
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    mask = _common.broadcast_mask(where, jnp.shape(actions))
    return _common.apply_mask(-_common.masked_log_prob(logits, actions, mask), mask)


@register("bc_from_logps")
def bc_from_logps(logps, *, where=None) -> Array:
    """BC from precomputed log-probabilities: ``L = -logp``.

    Args:
      logps: ``[...]`` log-probabilities of the logged items (e.g. from :func:`log_prob_of`
        or a fused softmax kernel).
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    logps = jnp.asarray(logps)
    mask = _common.broadcast_mask(where, logps.shape)
    return _common.apply_mask(-_common.clean(logps, mask), mask)


def rwbc_weights(rewards, *, transform: str = "linear", r_min: float = 1.0,
                 r_max: float = 5.0, beta: float = 1.0) -> Array:
    """Reward weights ``g(r)`` of reward-weighted BC (no gradient flows through them).

    * ``"linear"``: ``g(r) = r / r_max`` (ratings 1-5 give 0.2 ... 1).
    * ``"minmax"``: ``g(r) = (r - r_min) / (r_max - r_min)`` (0 for the worst rating, 1 for
      the best).
    * ``"exp"``: ``g(r) = exp(beta * (r - r_max))``. This is the RWR weight ``exp(beta * r)``
      divided by the constant ``exp(beta * r_max)``, so weights lie in ``(0, 1]`` for
      ``r <= r_max`` and never overflow; the constant only rescales the loss (equivalently,
      the learning rate).

    No clipping: rewards outside ``[r_min, r_max]`` give weights outside the ranges above.

    Args:
      rewards: ``[...]`` rewards or ratings.
      transform: one of ``"linear"``, ``"minmax"``, ``"exp"``.
      r_min, r_max: the reward scale.
      beta: inverse temperature of ``"exp"``.

    Returns:
      ``[...]`` weights, ``stop_gradient``-ed.
    """
    r = _common._as_float(rewards)
    if transform == "linear":
        g = r / r_max
    elif transform == "minmax":
        concrete = isinstance(r_min, (int, float)) and isinstance(r_max, (int, float))
        if concrete and not r_max > r_min:
            raise ValueError(f"minmax needs r_max > r_min, got r_min={r_min}, r_max={r_max}")
        g = (r - r_min) / (r_max - r_min)
    elif transform == "exp":
        g = jnp.exp(beta * (r - r_max))
    else:
        raise ValueError(f"unknown rwbc transform {transform!r}; expected one of {_TRANSFORMS}")
    return jax.lax.stop_gradient(g)


@register("rwbc")
def rwbc(logits, actions, rewards, *, transform: str = "linear", r_min: float = 1.0,
         r_max: float = 5.0, beta: float = 1.0, where=None) -> Array:
    """Reward-weighted BC (RWR): ``L = -g(r) * log_softmax(logits)[a]``.

    ``g`` is :func:`rwbc_weights` (``"linear"``: ``r / r_max``; ``"minmax"``:
    ``(r - r_min) / (r_max - r_min)``; ``"exp"``: ``exp(beta * (r - r_max))``), held constant.

    Args:
      logits: ``[..., V]`` policy logits.
      actions: ``[...]`` logged items.
      rewards: rewards broadcastable to ``[...]``.
      transform, r_min, r_max, beta: see :func:`rwbc_weights`.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    mask = _common.broadcast_mask(where, jnp.shape(actions))
    logp = _common.masked_log_prob(logits, actions, mask)
    g = rwbc_weights(_common.clean(rewards, mask), transform=transform, r_min=r_min,
                     r_max=r_max, beta=beta)
    return _common.apply_mask(-_common.clean(g, mask) * logp, mask)


@register("rwbc_from_logps")
def rwbc_from_logps(logps, rewards, *, transform: str = "linear", r_min: float = 1.0,
                    r_max: float = 5.0, beta: float = 1.0, where=None) -> Array:
    """:func:`rwbc` from precomputed log-probabilities ``logps [...]``: ``L = -g(r) * logp``."""
    logps = jnp.asarray(logps)
    shape = _common.batch_shape(logps, rewards)
    mask = _common.broadcast_mask(where, shape)
    g = rwbc_weights(_common.clean(rewards, mask), transform=transform, r_min=r_min,
                     r_max=r_max, beta=beta)
    loss = -_common.clean(g, mask) * _common.clean(logps, mask)
    return _common.apply_mask(jnp.broadcast_to(loss, shape), mask)


def asft_weights(advantages, *, lam=1.0, w_max: Optional[float] = 20.0) -> Array:
    """A-SFT / AWR weights ``w = min(exp(A / lam), w_max)``, ``stop_gradient``-ed.

    ``A / lam`` is clipped at ``log(w_max)`` (and below the float type's overflow point) before
    the exponential, so huge advantages give ``w_max``, never ``inf``. ``lam = inf`` gives
    ``w = 1`` for every finite advantage (plain SFT).

    Args:
      advantages: ``[...]`` advantages ``A = r - b``.
      lam: temperature ``lambda > 0``; smaller = closer to imitating only the best events.
      w_max: upper bound on the weights; ``None`` (or ``inf``) for none.

    Returns:
      ``[...]`` weights.
    """
    _common.check_positive("lam", lam)
    if w_max is not None:
        _common.check_positive("w_max", w_max)
    a = _common._as_float(advantages)
    dtype = a.dtype
    x = a / jnp.asarray(lam, dtype)
    hi = jnp.log(jnp.asarray(jnp.finfo(dtype).max, dtype)) - 1
    if w_max is not None:
        w_max = jnp.asarray(w_max, dtype)
        hi = jnp.minimum(hi, jnp.log(w_max))
    w = jnp.exp(jnp.minimum(x, hi))
    if w_max is not None:
        w = jnp.minimum(w, w_max)
    return jax.lax.stop_gradient(w)


@register("asft")
def asft(logits, actions, advantages, *, lam=1.0, w_max: Optional[float] = 20.0,
         where=None) -> Array:
    """Advantage-weighted SFT (A-SFT): ``L = -w * log_softmax(logits)[a]``.

    ``w = stop_gradient(min(exp(A / lam), w_max))`` (:func:`asft_weights`), ``A = r - b(s)``
    (see :mod:`genrec_jax.losses.advantages`). ``lam -> inf`` recovers :func:`bc`; a
    constant advantage ``c`` gives ``exp(c / lam) * bc`` (while below ``w_max``).

    Args:
      logits: ``[..., V]`` policy logits.
      actions: ``[...]`` logged items.
      advantages: advantages broadcastable to ``[...]`` (treated as constants).
      lam: temperature ``lambda > 0`` (``jnp.inf`` allowed).
      w_max: weight clip (``None`` for none).
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    mask = _common.broadcast_mask(where, jnp.shape(actions))
    logp = _common.masked_log_prob(logits, actions, mask)
    w = asft_weights(_common.clean(advantages, mask), lam=lam, w_max=w_max)
    return _common.apply_mask(-_common.clean(w, mask) * logp, mask)


@register("asft_from_logps")
def asft_from_logps(logps, advantages, *, lam=1.0, w_max: Optional[float] = 20.0,
                    where=None) -> Array:
    """:func:`asft` from precomputed log-probabilities ``logps [...]``: ``L = -w * logp``."""
    logps = jnp.asarray(logps)
    shape = _common.batch_shape(logps, advantages)
    mask = _common.broadcast_mask(where, shape)
    w = asft_weights(_common.clean(advantages, mask), lam=lam, w_max=w_max)
    loss = -_common.clean(w, mask) * _common.clean(logps, mask)
    return _common.apply_mask(jnp.broadcast_to(loss, shape), mask)


@register("sampled_softmax")
def sampled_softmax(pos_logits, neg_logits, *, neg_mask=None, where=None) -> Array:
    """Softmax cross-entropy of the positive against sampled negatives.

    ``L = -log( exp(pos) / (exp(pos) + sum_{k valid} exp(neg_k)) )
        = logsumexp([pos, neg_valid]) - pos``.

    With every other catalogue item as a negative this is :func:`bc` over the full catalogue.

    Args:
      pos_logits: ``[...]`` logit of the positive (logged) item.
      neg_logits: ``[..., K]`` logits of ``K`` negatives.
      neg_mask: optional boolean ``[..., K]`` (broadcastable); ``False`` excludes a negative
        (e.g. one equal to the positive, or padding). All excluded gives loss 0.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    pos = _common._as_float(pos_logits)
    neg = jnp.asarray(neg_logits, pos.dtype)
    shape = _common.batch_shape(pos, neg[..., 0])
    pos = jnp.broadcast_to(pos, shape)
    neg = jnp.broadcast_to(neg, shape + neg.shape[-1:])
    mask = _common.broadcast_mask(where, shape)
    pos = _common.clean(pos, mask)
    neg = _common.clean_rows(neg, mask)
    if neg_mask is not None:
        keep = _common.broadcast_mask(neg_mask, neg.shape)
        neg = jnp.where(keep, neg, jnp.asarray(-jnp.inf, neg.dtype))
    # logsumexp over [pos, neg] without materialising their concatenation (a copy of the
    # whole [..., K] block): shift by the larger of pos and the largest negative, which is
    # finite because pos is, so excluded (-inf) negatives contribute exp(-inf) = 0.
    top = jax.lax.stop_gradient(jnp.maximum(pos, jnp.max(neg, axis=-1)))
    total = jnp.exp(pos - top) + jnp.sum(jnp.exp(neg - top[..., None]), axis=-1)
    return _common.apply_mask(top + jnp.log(total) - pos, mask)
