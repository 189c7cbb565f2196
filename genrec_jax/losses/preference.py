"""Pairwise preference losses against a frozen reference policy: DPO and IPO.

Inputs are log-probabilities (e.g. from :func:`genrec_jax.losses.log_prob_of`) of a chosen
item ``y_w`` and a rejected item ``y_l`` under the trained policy and the frozen reference, all
broadcastable to one per-example shape ``[...]``. The reference log-probabilities are
treated as constants (``stop_gradient``). ``where`` masks entries (0 loss, 0 gradient).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.losses import _common
from genrec_jax.losses._registry import register

Array = jax.Array


def _margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, where):
    c = _common._as_float(chosen_logps)
    args = [c] + [jnp.asarray(x, c.dtype) for x in
                  (rejected_logps, ref_chosen_logps, ref_rejected_logps)]
    shape = _common.batch_shape(*args)
    mask = _common.broadcast_mask(where, shape)
    c, r, rc, rr = (_common.clean(x, mask) for x in args)
    rc, rr = jax.lax.stop_gradient(rc), jax.lax.stop_gradient(rr)
    z = (c - r) - (rc - rr)
    return jnp.broadcast_to(z, shape), mask


def dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
               beta: float = 1.0, where=None) -> Array:
    """The (scaled) DPO implicit-reward margin ``beta * z``.

    ``z = (logp(y_w) - logp(y_l)) - (logp_ref(y_w) - logp_ref(y_l))``. With the default
    ``beta=1`` this is ``z`` itself; with the training ``beta`` it is TRL's
    ``rewards/margins`` metric. Positive = the policy prefers ``y_w`` more than the reference.

    Returns:
      ``[...]`` margins (0 where masked).
    """
    z, mask = _margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, where)
    return _common.apply_mask(beta * z, mask)


@register("dpo")
def dpo(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
        beta: float = 0.1, label_smoothing: float = 0.0, where=None) -> Array:
    """Direct preference optimisation (Rafailov et al. 2023; TRL ``"sigmoid"``).

    ``z = (logp(y_w) - logp(y_l)) - (logp_ref(y_w) - logp_ref(y_l))``,
    ``L = -(1 - eps) * log sigmoid(beta * z) - eps * log sigmoid(-beta * z)``
    with ``eps = label_smoothing`` (conservative DPO); this equals
    ``optax.sigmoid_binary_cross_entropy(beta * z, 1 - eps)``.

    Args:
      chosen_logps, rejected_logps: ``[...]`` policy log-probabilities of ``y_w``, ``y_l``.
      ref_chosen_logps, ref_rejected_logps: ``[...]`` reference log-probabilities (constants).
      beta: inverse temperature of the implicit reward.
      label_smoothing: probability ``eps`` that a preference label is flipped.
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    z, mask = _margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, where)
    bz = beta * z
    loss = -(1 - label_smoothing) * jax.nn.log_sigmoid(bz)
    loss = loss - label_smoothing * jax.nn.log_sigmoid(-bz)
    return _common.apply_mask(loss, mask)


@register("ipo")
def ipo(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
        beta: float = 0.1, where=None) -> Array:
    """Identity preference optimisation (Azar et al. 2023; TRL ``"ipo"``).

    ``L = (z - 1 / (2 * beta))^2`` with the DPO margin
    ``z = (logp(y_w) - logp(y_l)) - (logp_ref(y_w) - logp_ref(y_l))``; minimised at
    ``z = 1 / (2 beta)``, so the policy never moves arbitrarily far from the reference.

    Args:
      chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps: as :func:`dpo`.
      beta: regularisation strength (``> 0``).
      where: optional mask broadcastable to ``[...]``.

    Returns:
      ``[...]`` per-example loss.
    """
    _common.check_positive("beta", beta)
    z, mask = _margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, where)
    return _common.apply_mask((z - 1 / (2 * beta)) ** 2, mask)
