"""Conservative Q-learning (Kumar et al. 2020), discrete actions: the item logits are Q(s, .)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.losses import _common
from genrec_jax.losses._registry import register

Array = jax.Array


@register("cql_from_lse")
def cql_from_lse(lse, q_taken, targets, *, alpha: float = 1.0, where=None) -> Array:
    """CQL from a precomputed ``logsumexp`` (e.g. supplied by a fused softmax kernel).

    ``L = alpha * (lse - q_taken) + 1/2 * (q_taken - y)^2`` with ``y`` a constant. ``Q`` may be
    any map of the policy's logits ``z``: for ``Q = a*z + b`` pass ``lse = b + logsumexp(a*z)``
    and ``q_taken = a*z_taken + b`` (gradients flow into ``a`` and ``b`` through both).

    Args:
      lse: ``[...]`` ``logsumexp_a Q(s, a)`` over the catalogue.
      q_taken: ``[...]`` ``Q(s, a_logged)``.
      targets: ``[...]`` TD targets ``y`` (:func:`cql_targets`).
      alpha: weight of the conservative penalty.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    lse = _common._as_float(lse)
    args = [lse] + [jnp.asarray(x, lse.dtype) for x in (q_taken, targets)]
    shape = _common.batch_shape(*args)
    mask = _common.broadcast_mask(where, shape)
    lse, q, y = (_common.clean(x, mask) for x in args)
    y = jax.lax.stop_gradient(y)
    loss = alpha * (lse - q) + 0.5 * (q - y) ** 2
    return _common.apply_mask(jnp.broadcast_to(loss, shape), mask)


@register("cql")
def cql(q_values, actions, targets, *, alpha: float = 1.0, where=None) -> Array:
    """Discrete CQL: conservative penalty plus TD regression on the logged action.

    ``L = alpha * (logsumexp_a Q(s, a) - Q(s, a_logged)) + 1/2 * (Q(s, a_logged) - y)^2``.
    The penalty is ``alpha * bc(Q, a)``: it is ~0 when ``Q`` puts all softmax mass on the
    logged item. ``y`` is a constant (:func:`cql_targets`).

    Args:
      q_values: ``[..., V]`` Q-values over the catalogue (``-inf`` for never-valid items).
      actions: ``[...]`` logged items.
      targets: TD targets broadcastable to ``[...]``.
      alpha: weight of the conservative penalty.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    q = _common._as_float(q_values)
    actions = jnp.asarray(actions)
    mask = _common.broadcast_mask(where, actions.shape)
    if mask is not None:
        actions = jnp.where(mask, actions, jnp.zeros((), actions.dtype))
        q = _common.clean_rows(q, mask)
    lse = jax.nn.logsumexp(q, axis=-1)
    q_taken = _common.take_logit(q, actions)
    return cql_from_lse(lse, q_taken, targets, alpha=alpha, where=mask)


def cql_targets(rewards, next_q_values=None, next_policy_logits=None, *, gamma: float = 0.0,
                dones=None) -> Array:
    """TD targets ``y = r`` (``gamma = 0``) or ``y = r + gamma * (1 - done) * E_{a'~pi} Q(s', a')``.

    ``E_{a'~pi} Q(s', a') = sum_a' softmax(next_policy_logits)_a' * next_q_values_a'``; when
    ``next_policy_logits`` is ``None``, ``pi`` is the softmax (Boltzmann) policy of
    ``next_q_values`` itself. Items with zero probability (logit ``-inf``) contribute 0.

    Args:
      rewards: ``[...]`` rewards.
      next_q_values: ``[..., V]`` Q-values at the next state; needed unless ``gamma == 0``.
      next_policy_logits: optional ``[..., V]`` logits of the policy at the next state.
      gamma: discount.
      dones: optional ``[...]`` flags, 1/True where there is no next state.

    Returns:
      ``[...]`` targets, ``stop_gradient``-ed.
    """
    r = _common._as_float(rewards)
    if next_q_values is None:
        if isinstance(gamma, (int, float)) and gamma == 0:
            return jax.lax.stop_gradient(r)
        raise ValueError("cql_targets needs next_q_values when gamma != 0")
    next_q = jnp.asarray(next_q_values, r.dtype)
    logits = next_q if next_policy_logits is None else jnp.asarray(next_policy_logits, r.dtype)
    next_v = _common.expectation(logits, next_q)
    if dones is not None:
        next_v = jnp.where(jnp.asarray(dones).astype(bool), jnp.zeros((), r.dtype), next_v)
    return jax.lax.stop_gradient(r + gamma * next_v)
