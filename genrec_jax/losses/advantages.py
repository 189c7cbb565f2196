"""Advantages ``A = r - b`` and the baselines ``b`` of A-SFT.

Everything here is a constant for the optimiser: outputs are ``stop_gradient``-ed. ``where``
masks select which entries count (e.g. real events, not padding); masked entries never enter a
mean, and :func:`advantages` returns 0 for them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.losses import _common

Array = jax.Array


def _weights(where, shape, dtype) -> Array:
    mask = _common.broadcast_mask(where, shape)
    if mask is None:
        return jnp.ones(shape, dtype)
    return mask.astype(dtype)


def advantages(rewards, baseline, *, normalize: bool = False, where=None,
               eps: float = 1e-8) -> Array:
    """Advantages ``A = r - b``, optionally normalised (AWR) over the unmasked entries.

    With ``normalize=True``: ``A <- (A - mean(A)) / (std(A) + eps)``, mean and (population) std
    over the unmasked entries of the whole array. Masked entries are 0.

    Args:
      rewards: ``[...]`` rewards.
      baseline: baseline broadcastable to ``[...]`` (see the ``*_baseline`` functions).
      normalize: whether to normalise to mean 0, std 1.
      where: optional mask broadcastable to the broadcast shape of ``rewards`` and ``baseline``.
      eps: added to the std.

    Returns:
      ``[...]`` advantages, ``stop_gradient``-ed.
    """
    r = _common._as_float(rewards)
    b = jnp.asarray(baseline, r.dtype)
    shape = _common.batch_shape(r, b)
    mask = _common.broadcast_mask(where, shape)
    a = jnp.broadcast_to(_common.clean(r, mask) - _common.clean(b, mask), shape)
    if normalize:
        w = _weights(mask, shape, a.dtype)
        n = jnp.maximum(jnp.sum(w), 1)
        mean = jnp.sum(w * a) / n
        var = jnp.sum(w * (a - mean) ** 2) / n
        a = (a - mean) / (jnp.sqrt(var) + eps)
    return jax.lax.stop_gradient(_common.apply_mask(a, mask))


def _group_mean(rewards, ids, num_groups: int, where) -> Array:
    r = _common._as_float(rewards)
    ids = jnp.broadcast_to(jnp.asarray(ids), r.shape)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    w = _weights(where, r.shape, r.dtype)
    mask = w > 0
    # Masked entries may carry garbage ids (padding): route them to group 0 with weight 0.
    flat_ids = jnp.where(mask, ids, 0).reshape(-1)
    flat_r = jnp.where(mask, r, 0).reshape(-1)
    sums = jax.ops.segment_sum(flat_r, flat_ids, num_segments=num_groups)
    counts = jax.ops.segment_sum(w.reshape(-1), flat_ids, num_segments=num_groups)
    means = sums / jnp.maximum(counts, 1)
    out = jnp.take(means, jnp.clip(ids, 0, num_groups - 1), axis=0)
    return jax.lax.stop_gradient(out)


def user_mean_baseline(rewards, user_ids, *, num_users: int, where=None) -> Array:
    """Per-user mean reward ``b = mean{ r_j : user_j = user_i, j unmasked }`` for each entry.

    Computed with ``segment_sum`` over the unmasked entries of the given arrays (e.g. a batch,
    or the whole training table). A user with no unmasked entry gets baseline 0.

    Args:
      rewards: ``[...]`` rewards.
      user_ids: integer ids in ``[0, num_users)``, broadcastable to ``rewards.shape``
        (e.g. ``user[:, None]`` for ``rewards [B, L]``).
      num_users: number of users (static).
      where: optional mask broadcastable to ``rewards.shape``.

    Returns:
      ``rewards.shape`` baselines, ``stop_gradient``-ed.
    """
    return _group_mean(rewards, user_ids, num_users, where)


def item_mean_baseline(rewards, item_ids, *, num_items: int, where=None) -> Array:
    """Per-item mean reward ``b = mean{ r_j : item_j = item_i, j unmasked }`` for each entry.

    As :func:`user_mean_baseline`, grouped by ``item_ids``. An item with no unmasked entry
    gets baseline 0.

    Args:
      rewards: ``[...]`` rewards.
      item_ids: integer ids in ``[0, num_items)``, broadcastable to ``rewards.shape``.
      num_items: number of item ids (static); with the 1-based dense ids of
        ``genrec_jax.data`` (0 = padding) pass ``num_items + 1``.
      where: optional mask broadcastable to ``rewards.shape``.

    Returns:
      ``rewards.shape`` baselines, ``stop_gradient``-ed.
    """
    return _group_mean(rewards, item_ids, num_items, where)


def batch_mean_baseline(rewards, *, where=None) -> Array:
    """Mean reward over the unmasked entries, broadcast to ``rewards.shape``.

    ``b = sum(mask * r) / max(sum(mask), 1)`` (0 when everything is masked).

    Args:
      rewards: ``[...]`` rewards.
      where: optional mask broadcastable to ``rewards.shape``.

    Returns:
      ``rewards.shape`` baselines, ``stop_gradient``-ed.
    """
    r = _common._as_float(rewards)
    w = _weights(where, r.shape, r.dtype)
    mean = jnp.sum(jnp.where(w > 0, r, 0)) / jnp.maximum(jnp.sum(w), 1)
    return jax.lax.stop_gradient(jnp.broadcast_to(mean, r.shape))


def value_baseline(policy_logits, reward_values, *, where=None) -> Array:
    """Value estimate ``b(s) = E_{a ~ pi(.|s)}[ r_hat(s, a) ] = sum_a softmax(logits)_a r_hat_a``.

    Args:
      policy_logits: ``[..., V]`` logits of the policy ``pi`` (e.g. the current model or the
        frozen reference); items at ``-inf`` have probability 0.
      reward_values: ``[..., V]`` (broadcastable) reward-model predictions for every item; values
        of zero-probability items are ignored even if infinite.
      where: optional mask broadcastable to ``[...]``; masked entries return 0.

    Returns:
      ``[...]`` baselines, ``stop_gradient``-ed.
    """
    logits = _common._as_float(policy_logits)
    values = jnp.asarray(reward_values, logits.dtype)
    shape = _common.batch_shape(logits[..., 0], values[..., 0])
    logits = jnp.broadcast_to(logits, shape + logits.shape[-1:])
    mask = _common.broadcast_mask(where, shape)
    logits = _common.clean_rows(logits, mask)
    b = _common.expectation(logits, values)
    return jax.lax.stop_gradient(_common.apply_mask(b, mask))
