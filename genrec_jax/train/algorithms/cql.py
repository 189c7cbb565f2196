"""CQL on the logged events: ``ℓ = α·(lse(s) − Q(s,a)) + ½(Q(s,a) − y)²``.

``Q = logits = cos/τ`` of the policy; ``y = r`` (``γ = 0``) or
``y = r + γ·E_{a'~softmax Q(s',·)} Q(s', a')`` at the next position ``s'`` (from the current
parameters, without gradient, through the chunked
:func:`~genrec_jax.train.policy_ops.softmax_stats`; a row's last position is terminal).

Config block ``cql``: ``alpha`` (the conservative penalty's weight), ``gamma``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from genrec_jax import losses
from genrec_jax.train import policy_ops
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.offline_loss import make_offline_loss, offline_step
from genrec_jax.train.policy_ops import masked_mean

DEFAULTS = {"alpha": 1.0, "gamma": 0.0}


def head(model, batch, logp, lse, vecs, mask, *, alpha=1.0, gamma=0.0, chunk_size=4096):
    """Per-position CQL loss; logs ``q_taken``, ``td_error`` (mean ``|Q − y|``) and
    ``penalty`` (mean ``lse − Q``)."""
    del logp
    items = model.item_vectors()
    tau = model.config.temperature
    targets = batch["targets"]
    q = jnp.sum(vecs * jnp.take(items, targets, axis=0), axis=-1) / tau
    r = batch["target_ratings"]
    if gamma:
        b, length, d = vecs.shape
        # E_{a'~softmax Q(s', .)} Q(s', a') at position i + 1, no gradient.
        st = policy_ops.softmax_stats(vecs.reshape(-1, d), items, temperature=tau,
                                      valid_range=policy_ops.item_range(model),
                                      chunk_size=chunk_size)
        v_next = jnp.roll(st["mean_logit"].reshape(b, length), -1, axis=1)
        has_next = jnp.roll(mask, -1, axis=1).at[:, -1].set(False)
        y = losses.cql_targets(r) + gamma * jnp.where(has_next, v_next, 0.0)
    else:
        y = losses.cql_targets(r)
    per = losses.cql_from_lse(lse, q, y, alpha=alpha, where=mask)
    aux = {"q_taken": masked_mean(q, mask),
           "td_error": masked_mean(jnp.abs(jax.lax.stop_gradient(q) - y), mask),
           "penalty": masked_mean(jax.lax.stop_gradient(lse - q), mask)}
    return per, aux


def make_loss(graphdef, *, alpha=1.0, gamma=0.0, impl="chunked", chunk_size=4096, mesh=None,
              log_kl=True):
    """CQL's ``loss_fn(model, batch, key, ref_params)``."""
    h = functools.partial(head, alpha=alpha, gamma=gamma, chunk_size=chunk_size)
    return make_offline_loss(h, graphdef, impl=impl, chunk_size=chunk_size, mesh=mesh,
                             log_kl=log_kl)


def build(block, ctx):
    h = functools.partial(head, alpha=float(block.alpha), gamma=float(block.gamma),
                          chunk_size=ctx.chunk_size)
    return offline_step(h, ctx)


register(Algorithm(
    name="cql",
    summary="conservative Q-learning with the policy's logits as Q",
    defaults=DEFAULTS,
    build=build,
))
