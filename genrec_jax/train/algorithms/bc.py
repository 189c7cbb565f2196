"""BC: continued behaviour cloning of the logged events, ``ℓ = −log π(a|s)``."""

from __future__ import annotations

from genrec_jax import losses
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.offline_loss import make_offline_loss, offline_step


def head(model, batch, logp, lse, vecs, mask):
    """Per-position ``−log π(a|s)`` (see :mod:`genrec_jax.train.offline_loss`)."""
    del model, batch, lse, vecs
    return losses.bc_from_logps(logp, where=mask), {}


def make_loss(graphdef, *, impl="chunked", chunk_size=4096, mesh=None, log_kl=True):
    """BC's ``loss_fn(model, batch, key, ref_params)``."""
    return make_offline_loss(head, graphdef, impl=impl, chunk_size=chunk_size, mesh=mesh,
                             log_kl=log_kl)


register(Algorithm(
    name="bc",
    summary="behaviour cloning of the logged events",
    defaults={},
    build=lambda block, ctx: offline_step(head, ctx),
))
