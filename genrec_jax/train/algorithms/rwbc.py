"""RWBC: reward-weighted behaviour cloning, ``ℓ = −g(r)·log π(a|s)``.

``g`` = :func:`genrec_jax.losses.rwbc_weights` of the logged rating ``r`` on the dataset's
rating scale: ``transform`` = linear | minmax | exp, ``beta`` its temperature (exp).
"""

from __future__ import annotations

import functools

from genrec_jax import losses
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.offline_loss import make_offline_loss, offline_step
from genrec_jax.train.policy_ops import masked_mean

DEFAULTS = {"transform": "linear", "beta": 1.0}


def head(model, batch, logp, lse, vecs, mask, *, transform="linear", beta=1.0,
         rating_scale=(1.0, 5.0)):
    """Per-position ``−g(r)·log π(a|s)``; logs ``mean_weight`` (mean ``g`` over the targets)."""
    del model, lse, vecs
    r_min, r_max = (float(v) for v in rating_scale)
    r = batch["target_ratings"]
    per = losses.rwbc_from_logps(logp, r, transform=transform, r_min=r_min, r_max=r_max,
                                 beta=beta, where=mask)
    g = losses.rwbc_weights(r, transform=transform, r_min=r_min, r_max=r_max, beta=beta)
    return per, {"mean_weight": masked_mean(g, mask)}


def make_loss(graphdef, *, transform="linear", beta=1.0, rating_scale=(1.0, 5.0),
              impl="chunked", chunk_size=4096, mesh=None, log_kl=True):
    """RWBC's ``loss_fn(model, batch, key, ref_params)``."""
    h = functools.partial(head, transform=transform, beta=beta, rating_scale=rating_scale)
    return make_offline_loss(h, graphdef, impl=impl, chunk_size=chunk_size, mesh=mesh,
                             log_kl=log_kl)


def build(block, ctx):
    h = functools.partial(head, transform=str(block.transform), beta=float(block.beta),
                          rating_scale=ctx.rating_scale)
    return offline_step(h, ctx)


register(Algorithm(
    name="rwbc",
    summary="reward-weighted behaviour cloning of the logged events",
    defaults=DEFAULTS,
    build=build,
))
