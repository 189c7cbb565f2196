"""GRPO (group relative policy optimisation, Shao et al. 2024) in its one-step (bandit) form.

For each state ``s`` draw a *group* of ``G`` recommendations ``a_1..a_G ~ pi_old(.|s)``, score
them with a reward model, and replace a learned value baseline by the group's own statistics:
:func:`group_advantages` standardises the ``G`` rewards within the group. The per-sample loss
:func:`grpo` is PPO's clipped surrogate plus a KL penalty towards a frozen reference policy,
estimated per sample with the non-negative ``k3`` estimator (:func:`k3_kl`).

Shapes: ``[..., G]``, the last axis being the group (e.g. ``[B, G]`` for ``B`` states).
:func:`grpo` itself is element-wise, so any shape works once the advantages are computed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.losses import _common
from genrec_jax.losses._registry import register
from genrec_jax.losses.policy_gradient import ppo

Array = jax.Array


def _check_non_negative(name: str, value) -> None:
    """Raises ``ValueError`` if a concrete (non-traced) ``value`` is not >= 0."""
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return
    if not concrete >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def group_advantages(rewards, *, eps: float = 1e-6, where=None) -> Array:
    """Group-standardised advantages ``A_i = (r_i - mean_g(r)) / (std_g(r) + eps)``.

    Mean and std run over the last axis (the ``G`` samples of one state), over the entries
    ``where`` marks valid only. The std is the *population* std (``ddof = 0``):
    ``std_g = sqrt(sum_i m_i (r_i - mean_g)^2 / sum_i m_i)``. A group whose valid rewards are all
    equal (or that has one valid sample) gets advantages exactly 0; a group with no valid sample
    gets 0s. Rewards are first shifted by the group's largest valid reward, so equal rewards cancel
    exactly (no rounding residue that ``eps`` would blow up).

    Args:
      rewards: ``[..., G]`` rewards of the sampled actions.
      eps: added to the std (``> 0``).
      where: optional mask broadcastable to ``[..., G]``; masked samples neither enter the group
        statistics nor get an advantage (0).

    Returns:
      ``[..., G]`` advantages, ``stop_gradient``-ed (constants for the optimiser).
    """
    _common.check_positive("eps", eps)
    r = _common._as_float(rewards)
    if r.ndim < 1:
        raise ValueError(f"rewards must have a group axis [..., G], got shape {r.shape}")
    mask = _common.broadcast_mask(where, r.shape)
    r = _common.clean(r, mask)
    w = jnp.ones(r.shape, r.dtype) if mask is None else mask.astype(r.dtype)
    valid = w > 0
    pivot = jnp.max(jnp.where(valid, r, -jnp.inf), axis=-1, keepdims=True)
    pivot = jnp.where(jnp.isfinite(pivot), pivot, jnp.zeros((), r.dtype))
    centred = jnp.where(valid, r - pivot, jnp.zeros((), r.dtype))
    n = jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), 1)
    mean = jnp.sum(centred, axis=-1, keepdims=True) / n
    dev = jnp.where(valid, centred - mean, jnp.zeros((), r.dtype))
    std = jnp.sqrt(jnp.sum(dev ** 2, axis=-1, keepdims=True) / n)
    adv = dev / (std + eps)
    return jax.lax.stop_gradient(_common.apply_mask(adv, mask))


def k3_kl(logps, ref_logps, *, where=None) -> Array:
    """Per-sample ``k3`` estimate of ``KL(pi || pi_ref)`` (Schulman 2020).

    ``k3 = exp(d) - d - 1`` with ``d = logp_ref(a) - logp(a)`` (computed as ``expm1(d) - d``).
    ``k3 >= 0`` for every sample, ``= 0`` iff ``logp = logp_ref``, and for ``a ~ pi`` it is
    unbiased: ``E_pi[pi_ref/pi - 1] = 0`` so ``E_pi[k3] = E_pi[log pi - log pi_ref] = KL``.
    Gradient flows to ``logps`` only (the reference is a constant).

    Args:
      logps: ``[...]`` log-probabilities of the sampled actions under the trained policy.
      ref_logps: ``[...]`` log-probabilities under the frozen reference.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-sample estimates (0 where masked).
    """
    logp = _common._as_float(logps)
    ref = jnp.asarray(ref_logps, logp.dtype)
    shape = _common.batch_shape(logp, ref)
    mask = _common.broadcast_mask(where, shape)
    logp, ref = _common.clean(logp, mask), jax.lax.stop_gradient(_common.clean(ref, mask))
    d = ref - logp
    return _common.apply_mask(jnp.broadcast_to(jnp.expm1(d) - d, shape), mask)


@register("grpo")
def grpo(logps, old_logps, ref_logps, advantages, *, clip_eps: float = 0.2,
         kl_coef: float = 0.04, where=None) -> Array:
    """GRPO per-sample loss: PPO clipped surrogate plus a ``k3`` KL penalty.

    ``rho = exp(logp - logp_old)``,
    ``L = -min(rho * A, clip(rho, 1 - clip_eps, 1 + clip_eps) * A) + kl_coef * k3``,
    ``k3 = exp(logp_ref - logp) - (logp_ref - logp) - 1`` (:func:`k3_kl`).
    ``A`` normally comes from :func:`group_advantages` over the ``G`` samples of each state;
    the per-state objective is the mean of ``L`` over its group. ``logp_old``, ``logp_ref`` and
    ``A`` are constants (``stop_gradient``). The gradient of the KL term is
    ``kl_coef * (1 - pi_ref(a) / pi(a)) * grad logp(a)``. With ``kl_coef = 0`` and
    ``rho = 1`` the gradient is the plain policy gradient ``-A * grad logp``.

    Args:
      logps: ``[..., G]`` log-probabilities of the sampled actions under the trained policy.
      old_logps: ``[..., G]`` log-probabilities under the sampling policy.
      ref_logps: ``[..., G]`` log-probabilities under the frozen reference policy.
      advantages: ``[..., G]`` advantages (e.g. :func:`group_advantages`).
      clip_eps: trust-region half-width ``eps`` (``> 0``).
      kl_coef: KL penalty coefficient (``>= 0``; ``0`` drops the term).
      where: optional mask broadcastable to ``[..., G]``.

    Returns:
      ``[..., G]`` per-sample loss (the broadcast shape of the inputs).
    """
    _common.check_positive("clip_eps", clip_eps)
    _check_non_negative("kl_coef", kl_coef)
    logp = _common._as_float(logps)
    args = [logp] + [jnp.asarray(x, logp.dtype) for x in (old_logps, ref_logps, advantages)]
    shape = _common.batch_shape(*args)
    logp, old, ref, adv = (jnp.broadcast_to(x, shape) for x in args)
    mask = _common.broadcast_mask(where, shape)
    loss = ppo(logp, old, adv, clip_eps=clip_eps, where=mask)
    if not (isinstance(kl_coef, (int, float)) and kl_coef == 0):
        loss = loss + kl_coef * k3_kl(logp, ref, where=mask)
    return _common.apply_mask(loss, mask)
