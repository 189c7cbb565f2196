"""PPO in its one-step (bandit) form: clipped surrogate, value loss, KL-shaped reward.

A recommendation is one action per state: sample ``a ~ pi_old(.|s)``, score it
(``reward = RM(s, a) - kl_coef * (logp(a) - logp_ref(a))``, :func:`kl_penalized_rewards`),
take ``A = reward - b(s)`` with a baseline ``b`` (a value head, an estimate of ``V(s)`` such as
:func:`~genrec_jax.losses.value_baseline`, the user's mean rating, or the batch mean), then
minimise :func:`ppo` (plus :func:`ppo_value_loss` for a value head) for a few epochs over the
same samples.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.losses import _common
from genrec_jax.losses._registry import register

Array = jax.Array


@register("ppo")
def ppo(logps, old_logps, advantages, *, clip_eps: float = 0.2, where=None) -> Array:
    """PPO clipped surrogate (Schulman et al. 2017).

    ``rho = exp(logp - logp_old)``,
    ``L = -min(rho * A, clip(rho, 1 - clip_eps, 1 + clip_eps) * A)``.
    With ``rho = 1`` the gradient is the plain policy gradient ``-A * grad logp``; once ``rho``
    leaves the trust region in the direction ``A`` favours, the gradient is 0.

    Args:
      logps: ``[...]`` log-probabilities of the sampled actions under the trained policy.
      old_logps: ``[...]`` log-probabilities under the sampling policy (constants).
      advantages: ``[...]`` advantages (constants).
      clip_eps: trust-region half-width ``eps``.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    logp = _common._as_float(logps)
    args = [logp] + [jnp.asarray(x, logp.dtype) for x in (old_logps, advantages)]
    shape = _common.batch_shape(*args)
    mask = _common.broadcast_mask(where, shape)
    logp, old, adv = (_common.clean(x, mask) for x in args)
    old, adv = jax.lax.stop_gradient(old), jax.lax.stop_gradient(adv)
    ratio = jnp.exp(logp - old)
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    loss = -jnp.minimum(unclipped, clipped)
    return _common.apply_mask(jnp.broadcast_to(loss, shape), mask)


@register("ppo_value")
def ppo_value_loss(values, returns, *, where=None) -> Array:
    """Value-head regression ``L = 1/2 * (v - R)^2`` (``R`` is a constant target).

    Args:
      values: ``[...]`` predicted values ``V(s)``.
      returns: ``[...]`` targets (in the bandit form, the KL-penalised rewards).
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    v = _common._as_float(values)
    ret = jnp.asarray(returns, v.dtype)
    shape = _common.batch_shape(v, ret)
    mask = _common.broadcast_mask(where, shape)
    v = _common.clean(v, mask)
    ret = jax.lax.stop_gradient(_common.clean(ret, mask))
    return _common.apply_mask(jnp.broadcast_to(0.5 * (v - ret) ** 2, shape), mask)


def kl_penalized_rewards(rewards, logps, ref_logps, *, kl_coef, where=None) -> Array:
    """KL-shaped reward ``r - kl_coef * (logp - logp_ref)``, ``stop_gradient``-ed.

    ``logp - logp_ref`` of a sampled action is the single-sample estimate of
    ``KL(pi || pi_ref)`` at that state.

    Args:
      rewards: ``[...]`` reward-model scores of the sampled actions.
      logps: ``[...]`` log-probabilities under the sampling policy.
      ref_logps: ``[...]`` log-probabilities under the frozen reference.
      kl_coef: penalty coefficient.
      where: optional mask broadcastable to ``[...]``; masked entries are 0.

    Returns:
      ``[...]`` shaped rewards.
    """
    r = _common._as_float(rewards)
    args = [r] + [jnp.asarray(x, r.dtype) for x in (logps, ref_logps)]
    shape = _common.batch_shape(*args)
    mask = _common.broadcast_mask(where, shape)
    r, lp, ref = (_common.clean(x, mask) for x in args)
    shaped = jnp.broadcast_to(r - kl_coef * (lp - ref), shape)
    return jax.lax.stop_gradient(_common.apply_mask(shaped, mask))


@register("ppo_objective")
def ppo_objective(logits, actions, old_logps, advantages, *, values=None, returns=None,
                  clip_eps: float = 0.2, value_coef: float = 0.5, entropy_coef: float = 0.0,
                  where=None) -> Array:
    """Combined per-example PPO loss from policy logits.

    ``L = ppo(logp(a), old_logp, A) + value_coef * 1/2 (v - R)^2 - entropy_coef * H(pi(.|s))``
    with ``logp(a) = log_softmax(logits)[a]`` and ``H = -sum_a pi_a log pi_a``. The value term is
    included only when both ``values`` and ``returns`` are given; the entropy term only when
    ``entropy_coef != 0`` (items at ``-inf`` contribute 0 to the entropy).

    Args:
      logits: ``[..., V]`` policy logits.
      actions: ``[...]`` sampled actions.
      old_logps, advantages: ``[...]`` as :func:`ppo`.
      values, returns: optional ``[...]`` value predictions and targets.
      clip_eps, value_coef, entropy_coef: coefficients.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    shape = jnp.shape(actions)
    mask = _common.broadcast_mask(where, shape)
    logp = _common.masked_log_prob(logits, actions, mask)
    loss = ppo(logp, old_logps, advantages, clip_eps=clip_eps, where=mask)
    if (values is None) != (returns is None):
        raise ValueError("pass both values and returns, or neither")
    if values is not None:
        loss = loss + value_coef * ppo_value_loss(values, returns, where=mask)
    if not (isinstance(entropy_coef, (int, float)) and entropy_coef == 0):
        logits = _common.clean_rows(_common._as_float(logits), mask)
        entropy = -_common.expectation(logits, jax.nn.log_softmax(logits, axis=-1))
        loss = loss - entropy_coef * entropy
    return _common.apply_mask(loss, mask)
