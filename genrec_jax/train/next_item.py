"""Next-item objectives for a retrieval model: sampled softmax and full softmax.

Both return per-position losses ``[B, L]`` already multiplied by ``weights`` (the hook that
A-SFT/RWBC use; 1.0 for plain behaviour cloning, 0.0 where there is no target) and share the
same reduction, ``Σ w·ℓ / #targets``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax.kernels import weighted_softmax_xent
from genrec_jax.losses import sampled_softmax

NEGATIVE_MODES = ("auto", "counts", "dense", "gather")
# "auto" scores the draws through per-item counts (:func:`sampled_softmax_counts`) while the
# catalogue has at most this many rows per negative, else by gathering their vectors. Measured on
# the 2-core CPU (fwd + bwd, 64 rows x 200 positions, R = 128, D = 50; counts / gather time):
# 0.17 at V = 200, 0.53 at V = 1,682 (MovieLens 100K), 1.0 at V = 3,000, 2.1 at V = 10,004.
COUNTS_ROWS_PER_NEGATIVE = 16


def sample_negatives(key, shape, num_items: int, num_negatives: int) -> jax.Array:
    """Uniform item ids in ``1..num_items`` of shape ``shape + (num_negatives,)``."""
    return jax.random.randint(key, (*shape, num_negatives), 1, num_items + 1, dtype=jnp.int32)


def positive_logits(user_vecs, item_vecs, targets, temperature: float) -> jax.Array:
    """``u·e_target / τ`` at every position: ``[B, L, D]``, ``[V, D]``, ``[B, L]`` → ``[B, L]``."""
    return jnp.sum(user_vecs * item_vecs[targets], axis=-1) / temperature


def sampled_softmax_positions(user_vecs, item_vecs, targets, negatives, *, temperature: float,
                              mode: str = "auto") -> jax.Array:
    """−log softmax over {target} ∪ negatives at every position, negatives equal to the target
    masked. ``user_vecs [B, L, D]``, ``item_vecs [V, D]``, ``targets [B, L]``,
    ``negatives [B, L, R]`` → ``[B, L]``.

    ``mode="gather"`` gathers the negative vectors (memory ∝ R; its ``[B, L, R, D]`` gather and
    the scatter-add of its gradient dominate a CPU step); ``"dense"`` scores the whole catalogue
    with one matmul and gathers the sampled columns; ``"counts"`` scores the whole catalogue and
    weighs each item by how often it was drawn (:func:`sampled_softmax_counts`, no gather in the
    differentiated path; memory ∝ V). All three give the same numbers. ``"auto"`` is counts
    while ``V ≤ COUNTS_ROWS_PER_NEGATIVE · R``, else gather.
    """
    if mode not in NEGATIVE_MODES:
        raise ValueError(f"negatives mode must be one of {NEGATIVE_MODES}, got {mode!r}")
    if mode == "auto":
        small = item_vecs.shape[0] <= COUNTS_ROWS_PER_NEGATIVE * negatives.shape[-1]
        mode = "counts" if small else "gather"
    if mode == "counts":
        return sampled_softmax_counts(user_vecs, item_vecs, targets, negatives,
                                      temperature=temperature)
    pos = positive_logits(user_vecs, item_vecs, targets, temperature)
    if mode == "dense":
        scores = user_vecs @ item_vecs.T / temperature
        neg = jnp.take_along_axis(scores, negatives, axis=-1)
    else:
        neg = jnp.einsum("bld,blrd->blr", user_vecs, item_vecs[negatives]) / temperature
    return sampled_softmax(pos, neg, neg_mask=negatives != targets[..., None])


def sampled_softmax_counts(user_vecs, item_vecs, targets, negatives, *,
                           temperature: float) -> jax.Array:
    """:func:`sampled_softmax_positions` computed through draw counts: with ``c_v`` the number
    of draws of item ``v`` at a position (the target's set to 0),
    ``ℓ = log(exp(s_t) + Σ_v c_v·exp(s_v)) − s_t``, the same sum as over the draws one by one,
    duplicates included. ``s = u·Eᵀ/τ`` over every row of ``item_vecs`` is one matmul; the
    counts (one byte each while R < 256) are a constant built by one scatter of ones, so the
    gradient is two matmuls, with no ``[B, L, R, D]`` gather or scatter-add. Shapes as in
    :func:`sampled_softmax_positions`; the work and memory grow with ``B·L·V``, so it pays while
    the catalogue is small. A position whose every draw is its target gets loss 0."""
    batch, length, dim = user_vecs.shape
    rows, num_neg = batch * length, negatives.shape[-1]
    flat_neg = negatives.reshape(rows, num_neg)
    row_ids = jnp.broadcast_to(jnp.arange(rows)[:, None], flat_neg.shape)
    count_dtype = jnp.uint8 if num_neg < 256 else jnp.int32
    counts = jnp.zeros((rows, item_vecs.shape[0]), count_dtype).at[row_ids, flat_neg].add(1)
    counts = counts.at[jnp.arange(rows), targets.reshape(rows)].set(0)
    scores = user_vecs.reshape(rows, dim) @ item_vecs.T / temperature
    pos = positive_logits(user_vecs, item_vecs, targets, temperature).reshape(rows)
    # Item v drawn c_v times contributes c_v·exp(s_v) = exp(s_v + log c_v); undrawn items none.
    weighted = scores + jnp.log(jnp.maximum(counts, 1).astype(scores.dtype))
    return sampled_softmax(pos, weighted, neg_mask=counts > 0).reshape(batch, length)


def sampled_softmax_shared(user_vecs, item_vecs, targets, negatives, *, share: int,
                           temperature: float) -> jax.Array:
    """Like :func:`sampled_softmax_positions`, but each group of ``c`` consecutive positions
    (``c = share``; the last group may be shorter) scores the same draws:
    ``negatives [B, K, R]`` with ``K = ceil(L / c)`` → ``[B, L]``.

    Each position still sees R i.i.d. uniform negatives (the target masked), so its expected loss
    is the per-position estimator's; only draws are shared within a group, which makes the
    gradient noisier as ``c`` grows. The work is a ``[c, D] × [D, R]`` matmul per group and a
    ``[B, K, R, D]`` gather instead of ``[B, L, R, D]`` (MovieLens 100K: 64 packed rows × 200 ×
    128 × 50 floats = 410 MB, the largest cost of a CPU step, divided by ``c``).
    """
    batch, length, dim = user_vecs.shape
    groups, num_neg = negatives.shape[1], negatives.shape[2]
    size = int(share)
    if groups != -(-length // size):
        raise ValueError(f"negatives [B, K, R] need K = ceil(L / share) = {-(-length // size)} "
                         f"groups (L = {length}, share = {size}), got K = {groups}")
    pad = groups * size - length
    grouped = jnp.pad(user_vecs, ((0, 0), (0, pad), (0, 0))).reshape(batch, groups, size, dim)
    neg = jnp.einsum("bkcd,bkrd->bkcr", grouped, item_vecs[negatives])
    neg = neg.reshape(batch, groups * size, num_neg)[:, :length] / temperature
    pos = positive_logits(user_vecs, item_vecs, targets, temperature)
    per_position = jnp.repeat(negatives, size, axis=1)[:, :length]
    return sampled_softmax(pos, neg, neg_mask=per_position != targets[..., None])


def next_item_losses(model, batch, key, *, loss: str = "sampled", num_negatives: int = 128,
                     negatives_mode: str = "auto", negatives_share: int = 1,
                     impl: str = "chunked", chunk_size: int = 4096, mesh=None, weights=None):
    """Weighted per-position losses ``[B, L]`` and the user vectors ``[B, L, D]``.

    ``weights`` defaults to ``batch["weights"]``; positions without a target must weigh 0.
    ``loss="sampled"`` draws ``num_negatives`` uniform items per position
    (``negatives_share=1``, scored by ``negatives_mode``) or per group of ``negatives_share``
    consecutive positions, shared by the group (:func:`sampled_softmax_shared`).
    ``loss="full"`` uses the fused kernel (``impl`` = reference | chunked | sharded | pallas).
    """
    if int(negatives_share) < 1:
        raise ValueError(f"negatives_share must be an integer >= 1, got {negatives_share!r}")
    enc_key, neg_key = jax.random.split(key)
    weights = batch["weights"] if weights is None else weights
    user_vecs = model.encode(batch, dropout_key=enc_key)
    items = model.item_vectors()
    targets = batch["targets"]
    tau = model.config.temperature
    if loss == "sampled" and int(negatives_share) > 1:
        groups = -(-targets.shape[1] // int(negatives_share))
        negatives = sample_negatives(neg_key, (targets.shape[0], groups), model.config.num_items,
                                     num_negatives)
        per_pos = sampled_softmax_shared(user_vecs, items, targets, negatives,
                                         share=int(negatives_share), temperature=tau)
        per_pos = jnp.where(weights != 0, weights * per_pos, 0.0)
    elif loss == "sampled":
        negatives = sample_negatives(neg_key, targets.shape, model.config.num_items,
                                     num_negatives)
        per_pos = sampled_softmax_positions(user_vecs, items, targets, negatives,
                                            temperature=tau, mode=negatives_mode)
        per_pos = jnp.where(weights != 0, weights * per_pos, 0.0)
    elif loss == "full":
        flat = user_vecs.reshape(-1, user_vecs.shape[-1])
        per_pos, _ = weighted_softmax_xent(
            flat, items, targets.reshape(-1), weights.reshape(-1), temperature=tau,
            valid_range=(1, model.config.num_items + 1), impl=impl, chunk_size=chunk_size,
            mesh=mesh)
        per_pos = per_pos.reshape(targets.shape)
    else:
        raise ValueError(f"loss must be 'sampled' or 'full', got {loss!r}")
    return per_pos, user_vecs


def mean_over_targets(per_pos: jax.Array, targets: jax.Array) -> jax.Array:
    """Σ per-position loss / number of positions with a target (at least 1)."""
    count = jnp.sum(targets != 0)
    return jnp.sum(per_pos) / jnp.maximum(count, 1).astype(per_pos.dtype)
