"""The loss scaffold of the offline algorithms (BC, RWBC, A-SFT, CQL): every logged event.

Every position with a target is one logged event ``(s, a, r)``: ``s`` = the events up to the
position, ``a`` = ``targets``, ``r`` = ``target_ratings``. An algorithm supplies a *head*

    head(model, batch, logp, lse, vecs, mask) -> (per [B, L], aux)

from the teacher-forced ``logp = log π(a|s)`` and ``lse = logsumexp`` of the fused kernel
(:func:`~genrec_jax.train.policy_ops.position_logps`, ``[B, L]``), the user vectors
``vecs [B, L, D]`` and the target ``mask [B, L]``; the loss is ``Σ per / #targets`` (as
pretraining). Logged besides the head's ``aux``: ``nll`` (``−Σ logp / #targets``) and, with
``log_kl``, ``kl_ref`` (exact KL to the frozen reference at each row's last position).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from genrec_jax.train import policy_ops
from genrec_jax.train.state import bind
from genrec_jax.train.step import make_train_step

Head = Callable[..., tuple[jax.Array, dict]]


def make_offline_loss(head: Head, graphdef, *, impl: str = "chunked", chunk_size: int = 4096,
                      mesh=None, log_kl: bool = True):
    """``loss_fn(model, batch, key, ref_params) -> (loss, aux)`` for
    :func:`~genrec_jax.train.step.make_train_step` (``key`` drives dropout).

    ``ref_params`` (the frozen pretrained policy) is an explicit argument, used for the logged
    ``kl_ref`` only.
    """

    def loss_fn(model, batch, key, ref_params):
        logp, lse, vecs, mask = policy_ops.position_logps(model, batch, dropout_key=key,
                                                          impl=impl, chunk_size=chunk_size,
                                                          mesh=mesh)
        count = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
        per, aux = head(model, batch, logp, lse, vecs, mask)
        aux = dict(aux)
        loss = jnp.sum(per) / count
        aux["nll"] = -jnp.sum(jax.lax.stop_gradient(logp)) / count
        if log_kl:
            ref = bind(graphdef, ref_params)
            aux["kl_ref"] = policy_ops.last_position_kl(model, jax.lax.stop_gradient(vecs), ref,
                                                        ref.encode(batch), batch["lengths"],
                                                        chunk_size=chunk_size)
        return loss, aux

    return loss_fn


def offline_step(head: Head, ctx):
    """``(step_fn, ())``: :func:`make_offline_loss` of ``head`` as a jitted train step for a
    :class:`~genrec_jax.train.algorithms.registry.BuildContext`."""
    loss_fn = make_offline_loss(head, ctx.graphdef, impl=ctx.impl, chunk_size=ctx.chunk_size,
                                mesh=ctx.kernel_mesh, log_kl=ctx.log_kl)
    return make_train_step(loss_fn, ctx.optimizer, ctx.state), ()
