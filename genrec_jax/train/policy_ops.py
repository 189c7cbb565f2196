"""The policy's log-probabilities and expectations over the catalogue, without ``[B·L, V]`` logits.

Conventions (docs/architecture.md): item ids ``1..num_items`` (0 = padding; table rows beyond
``num_items`` are sharding padding), right-padded ``[B, L]`` rows, ``weights > 0`` where a
position has a target. The policy is the HSTU next-item softmax
``π(a|s) = softmax(cos(h_s, e_a) / τ)`` over the valid items.

Full-catalogue terms at every position (``log π(target)``, ``logsumexp``) go through the fused
kernel :func:`genrec_jax.kernels.weighted_softmax_xent` (``impl`` from the config), and the
expectations over the catalogue (KL, ``E_π[Q]``) through :func:`softmax_stats`, a chunked online
scan. Per-*state* terms (one row per user) live in :mod:`genrec_jax.train.state_selection`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.kernels import weighted_softmax_xent

_STATS_TILE = 1 << 21  # logits per tile of softmax_stats


def item_range(model) -> tuple[int, int]:
    """``(1, num_items + 1)``: the rows of the item table that are items."""
    return 1, int(model.config.num_items) + 1


def target_mask(batch) -> jax.Array:
    """``[B, L]`` bool: positions with a target (``weights > 0`` and a non-padding target)."""
    return (batch["weights"] > 0) & (batch["targets"] > 0)


def kernel_logps(h, items, actions, *, temperature, valid_range, impl="chunked",
                 chunk_size=4096, mesh=None, where=None):
    """``(log π(actions), logsumexp)`` for query vectors ``h [..., D]`` and ``actions [...]``.

    ``log π(a) = h·e_a / τ − logsumexp_{valid} h·e / τ`` from
    :func:`~genrec_jax.kernels.weighted_softmax_xent` (weight 1 on unmasked rows, 0 on masked
    ones, so masked rows give ``log π = 0`` and no gradient through it; their ``lse`` is still
    returned — mask it before differentiating).
    """
    shape = actions.shape
    d = h.shape[-1]
    w = jnp.ones(shape, jnp.float32) if where is None else where.astype(jnp.float32)
    loss, lse = weighted_softmax_xent(
        h.reshape(-1, d), items, actions.reshape(-1).astype(jnp.int32), w.reshape(-1),
        temperature=temperature, valid_range=valid_range, impl=impl, chunk_size=chunk_size,
        mesh=mesh)
    return (-loss).reshape(shape), lse.reshape(shape)


def position_logps(model, batch, *, dropout_key=None, impl="chunked", chunk_size=4096, mesh=None):
    """Teacher-forced ``log π(targets[:, i] | events ≤ i)`` at every position.

    Returns ``(logp [B, L], lse [B, L], user_vecs [B, L, D], mask [B, L])``; ``logp`` is 0 where
    ``mask`` is False.
    """
    h = model.encode(batch, dropout_key=dropout_key)
    mask = target_mask(batch)
    logp, lse = kernel_logps(h, model.item_vectors(), batch["targets"],
                             temperature=model.config.temperature, valid_range=item_range(model),
                             impl=impl, chunk_size=chunk_size, mesh=mesh, where=mask)
    return logp, lse, h, mask


def softmax_stats(h, items, *, temperature, valid_range, chunk_size=4096, h_ref=None,
                  items_ref=None):
    """Online statistics of ``p = softmax(h·itemsᵀ/τ)`` over the valid rows, chunked over items.

    Returns a dict of ``[N]`` arrays (no gradient): ``lse``; ``mean_logit = E_p[l]``; and with a
    second policy (``h_ref``, ``items_ref``): ``lse_ref`` and ``mean_ref_logit = E_p[l_ref]``,
    so ``KL(p ‖ p_ref) = mean_logit − lse − mean_ref_logit + lse_ref`` (:func:`kl_to_reference`).
    The item table is scanned in chunks of at most ``chunk_size`` rows (fewer for large ``N``, so
    a tile holds about 2M logits); memory ``O(N·chunk + V·D)``.
    """
    h = jax.lax.stop_gradient(h).astype(jnp.float32) / temperature
    items = jax.lax.stop_gradient(items).astype(jnp.float32)
    with_ref = h_ref is not None
    if with_ref:
        h_ref = jax.lax.stop_gradient(h_ref).astype(jnp.float32) / temperature
        items_ref = jax.lax.stop_gradient(items_ref).astype(jnp.float32)
    lo, hi = valid_range
    n = h.shape[0]
    v = hi - lo
    chunk = int(max(1, min(chunk_size, v, max(128, _STATS_TILE // max(n, 1)))))
    num_chunks = -(-v // chunk)
    pad = num_chunks * chunk - v

    def rows_of(table):
        rows = table[lo:hi]
        return jnp.pad(rows, ((0, pad), (0, 0))).reshape(num_chunks, chunk, -1)

    xs = [rows_of(items), jnp.arange(num_chunks) * chunk]
    if with_ref:
        xs.append(rows_of(items_ref))

    def body(carry, x):
        m, s, a1, a2, m_r, s_r = carry
        rows, start = x[0], x[1]
        keep = (start + jnp.arange(chunk)) < v
        logits = jnp.where(keep[None, :], h @ rows.T, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(logits, axis=1))
        scale = jnp.exp(m - m_new)
        e = jnp.exp(logits - m_new[:, None])
        s = s * scale + jnp.sum(e, axis=1)
        a1 = a1 * scale + jnp.sum(jnp.where(keep[None, :], e * logits, 0.0), axis=1)
        if with_ref:
            ref_logits = jnp.where(keep[None, :], h_ref @ x[2].T, -jnp.inf)
            a2 = a2 * scale + jnp.sum(jnp.where(keep[None, :], e * ref_logits, 0.0), axis=1)
            mr_new = jnp.maximum(m_r, jnp.max(ref_logits, axis=1))
            s_r = s_r * jnp.exp(m_r - mr_new) + jnp.sum(jnp.exp(ref_logits - mr_new[:, None]),
                                                         axis=1)
            m_r = mr_new
        return (m_new, s, a1, a2, m_r, s_r), None

    zeros = jnp.zeros((n,), jnp.float32)
    neg = jnp.full((n,), -jnp.inf, jnp.float32)
    (m, s, a1, a2, m_r, s_r), _ = jax.lax.scan(body, (neg, zeros, zeros, zeros, neg, zeros),
                                               tuple(xs))
    out = {"lse": m + jnp.log(s), "mean_logit": a1 / s}
    if with_ref:
        out.update(lse_ref=m_r + jnp.log(s_r), mean_ref_logit=a2 / s)
    return out


def kl_to_reference(h, items, h_ref, items_ref, *, temperature, valid_range, chunk_size=4096):
    """Exact ``KL(π_θ(·|s) ‖ π_ref(·|s))`` over the valid items for each row of ``h [N, D]``."""
    st = softmax_stats(h, items, temperature=temperature, valid_range=valid_range,
                       chunk_size=chunk_size, h_ref=h_ref, items_ref=items_ref)
    return st["mean_logit"] - st["lse"] - st["mean_ref_logit"] + st["lse_ref"]


def masked_mean(x, mask) -> jax.Array:
    """``Σ mask·x / max(Σ mask, 1)``."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(jnp.where(mask > 0, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1.0)


def last_position_kl(model, user_vecs, ref_model, ref_vecs, lengths, *, chunk_size=4096):
    """Mean exact KL to the reference at each row's last position (rows with ``lengths > 0``)."""
    h = model.last_position(user_vecs, lengths)
    h_ref = ref_model.last_position(ref_vecs, lengths)
    kl = kl_to_reference(h, model.item_vectors(), h_ref, ref_model.item_vectors(),
                         temperature=model.config.temperature, valid_range=item_range(model),
                         chunk_size=chunk_size)
    return masked_mean(kl, lengths > 0)


