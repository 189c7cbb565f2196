"""CQL on the logged events: ``ℓ = α·(lse_a Q(s,a) − Q(s,a_t)) + ½(Q(s,a_t) − y)²``.

The Q-function is read off the policy's logits ``z = cos/τ`` (``[B, L, V]``, never materialised:
the fused kernel gives the ``logsumexp``):

* ``q_head="affine"`` (default): ``Q = a·z + b`` with two trained scalars ``a`` (init ``τ``, so
  ``Q`` starts as the cosine) and ``b`` (init the mean training rating), kept in the post-trained
  params pytree as ``params["algo_head"] = {"scale": a, "bias": b}``
  (:mod:`~genrec_jax.train.algorithms.heads`), so ``Q`` can reach the 1–5 rating targets. The
  penalty uses the same ``Q``: ``lse_a Q = b + lse_a(a·z)`` (the kernel on ``a·h``), so
  ``α·(lse_a Q − Q(s,a_t)) = −α·log softmax(a·z)_{a_t}``; the policy itself is ``softmax(z)``.
* ``q_head="logits"``: ``Q = z`` (``|Q| ≤ 1/τ``), the earlier form.

``y = r`` (``γ = 0``) or ``y = r + γ·E_{a'~softmax Q(s',·)} Q(s', a')`` at the next position
``s'`` (from the current parameters, without gradient, through the chunked
:func:`~genrec_jax.train.policy_ops.softmax_stats`; a row's last position is terminal).

Config block ``cql``: ``alpha`` (the conservative penalty's weight), ``gamma``, ``q_head``
(affine | logits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax import losses
from genrec_jax.train import policy_ops
from genrec_jax.train.algorithms import heads
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.offline_loss import make_offline_loss, offline_step
from genrec_jax.train.policy_ops import masked_mean
from genrec_jax.train.state import bind

Q_HEADS = ("affine", "logits")
DEFAULTS = {"alpha": 1.0, "gamma": 0.0, "q_head": "affine"}


def q_head_of(block) -> str:
    """``block.q_head``, checked; ValueError naming ``cql.q_head`` otherwise."""
    q_head = str(block.get("q_head", "affine"))
    if q_head not in Q_HEADS:
        raise ValueError(f"cql.q_head must be one of {Q_HEADS}, got {q_head!r}")
    return q_head


def head(model, batch, logp, lse, vecs, mask, *, alpha=1.0, gamma=0.0, chunk_size=4096,
         q_params=None, impl="chunked", mesh=None):
    """Per-position CQL loss ``[B, L]``.

    ``q_params``: None (``Q = z``, the logits) or ``{"scale": a, "bias": b}`` (``Q = a·z + b``;
    ``lse_a Q`` from the kernel on ``a·vecs`` with ``impl`` / ``chunk_size`` / ``mesh``).
    Logs ``q_taken`` (mean ``Q(s, a_t)``), ``td_error`` (mean ``|Q − y|``), ``penalty`` (mean
    ``lse_a Q − Q(s, a_t)``) and, with the affine map, ``q_scale`` / ``q_bias``.
    """
    del logp
    items = model.item_vectors()
    tau = model.config.temperature
    targets = batch["targets"]
    r = batch["target_ratings"]
    z_taken = jnp.sum(vecs * jnp.take(items, targets, axis=0), axis=-1) / tau
    if q_params is None:
        q, lse_q, h_q = z_taken, lse, vecs
    else:
        scale, bias = q_params["scale"], q_params["bias"]
        h_q = vecs * scale                                  # logits of h_q = a·z
        _, lse_scaled = policy_ops.kernel_logps(h_q, items, targets, temperature=tau,
                                                valid_range=policy_ops.item_range(model),
                                                impl=impl, chunk_size=chunk_size, mesh=mesh,
                                                where=mask)
        q, lse_q = scale * z_taken + bias, lse_scaled + bias
    if gamma:
        b, length, d = vecs.shape
        # E_{a'~softmax Q(s', .)} Q(s', a') at position i + 1, no gradient.
        st = policy_ops.softmax_stats(h_q.reshape(-1, d), items,
                                      temperature=tau, valid_range=policy_ops.item_range(model),
                                      chunk_size=chunk_size)
        v_next = jnp.roll(st["mean_logit"].reshape(b, length), -1, axis=1)
        if q_params is not None:
            v_next = v_next + bias
        has_next = jnp.roll(mask, -1, axis=1).at[:, -1].set(False)
        y = losses.cql_targets(r) + gamma * jnp.where(has_next, v_next, 0.0)
    else:
        y = losses.cql_targets(r)
    per = losses.cql_from_lse(lse_q, q, y, alpha=alpha, where=mask)
    aux = {"q_taken": masked_mean(q, mask),
           "td_error": masked_mean(jnp.abs(jax.lax.stop_gradient(q) - y), mask),
           "penalty": masked_mean(jax.lax.stop_gradient(lse_q - q), mask)}
    if q_params is not None:
        aux["q_scale"] = jax.lax.stop_gradient(q_params["scale"])
        aux["q_bias"] = jax.lax.stop_gradient(q_params["bias"])
    return per, aux


def make_loss(graphdef, *, alpha=1.0, gamma=0.0, q_params=None, impl="chunked",
              chunk_size=4096, mesh=None, log_kl=True):
    """CQL's ``loss_fn(model, batch, key, ref_params)``; ``q_params`` as :func:`head`
    (None: ``Q`` = the logits)."""
    h = functools.partial(head, alpha=alpha, gamma=gamma, chunk_size=chunk_size,
                          q_params=q_params, impl=impl, mesh=mesh)
    return make_offline_loss(h, graphdef, impl=impl, chunk_size=chunk_size, mesh=mesh,
                             log_kl=log_kl)


def make_affine_step(graphdef, optimizer, state=None, *, alpha=1.0, gamma=0.0,
                     impl="chunked", chunk_size=4096, mesh=None, log_kl=True):
    """Jitted ``step(graphdef, state, batch, ref_params)`` training the policy and the affine
    map ``state["params"]["algo_head"]`` together (one optimizer update)."""

    def loss_fn(model, q_params, batch, key, ref_params):
        inner = make_loss(graphdef, alpha=alpha, gamma=gamma, q_params=q_params, impl=impl,
                          chunk_size=chunk_size, mesh=mesh, log_kl=log_kl)
        return inner(model, batch, key, ref_params)

    return heads.make_head_train_step(loss_fn, optimizer, state, algo="cql (q_head=affine)")


def init_head(block, *, graphdef, params, data):
    """``{"scale": τ, "bias": mean training rating}`` for ``q_head="affine"``; None for
    ``"logits"`` (no extra parameters)."""
    if q_head_of(block) == "logits":
        return None
    tau = float(bind(graphdef, heads.policy_params(params)).config.temperature)
    train = data.train
    mask = np.asarray(train["weights"]) > 0
    ratings = np.asarray(train["target_ratings"], np.float64)[mask]
    if ratings.size == 0:
        raise ValueError("cql.q_head=affine initialises its bias at the mean training rating, "
                         "but data.train has no rated target (all weights are 0)")
    return {"scale": np.float32(tau), "bias": np.float32(ratings.mean())}


def build(block, ctx):
    alpha, gamma = float(block.alpha), float(block.gamma)
    if q_head_of(block) == "logits":
        h = functools.partial(head, alpha=alpha, gamma=gamma, chunk_size=ctx.chunk_size)
        return offline_step(h, ctx)
    if ctx.state is not None:
        heads.head_of(ctx.state["params"], "cql (q_head=affine)")
    step = make_affine_step(ctx.graphdef, ctx.optimizer, ctx.state, alpha=alpha, gamma=gamma,
                            impl=ctx.impl, chunk_size=ctx.chunk_size, mesh=ctx.kernel_mesh,
                            log_kl=ctx.log_kl)
    return step, ()


register(Algorithm(
    name="cql",
    summary="conservative Q-learning, Q = a learned affine map of the policy's logits",
    defaults=DEFAULTS,
    build=build,
    init_head=init_head,
    head_keys=lambda block: () if q_head_of(block) == "logits" else ("scale", "bias"),
))
