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

NEGATIVE_MODES = ("auto", "dense", "gather")


def sample_negatives(key, shape, num_items: int, num_negatives: int) -> jax.Array:
    """Uniform item ids in ``1..num_items`` of shape ``shape + (num_negatives,)``."""
    return jax.random.randint(key, (*shape, num_negatives), 1, num_items + 1, dtype=jnp.int32)


def sampled_softmax_positions(user_vecs, item_vecs, targets, negatives, *, temperature: float,
                              mode: str = "auto") -> jax.Array:
    """−log softmax over {target} ∪ negatives at every position, negatives equal to the target
    masked. ``user_vecs [B, L, D]``, ``item_vecs [V, D]``, ``targets [B, L]``,
    ``negatives [B, L, R]`` → ``[B, L]``.

    ``mode="dense"`` scores the whole (small) catalogue with one matmul and gathers the sampled
    columns; ``"gather"`` gathers the negative vectors (memory ∝ R). Both give the same numbers.
    ``"auto"`` picks dense only when ``V ≤ 2·R``: on MovieLens 100K (V = 1683, R = 128, 72 packed
    rows of 200) a CPU train step took 0.81 s dense vs 0.55 s gathered.
    """
    if mode not in NEGATIVE_MODES:
        raise ValueError(f"negatives mode must be one of {NEGATIVE_MODES}, got {mode!r}")
    if mode == "auto":
        mode = "dense" if item_vecs.shape[0] <= 2 * negatives.shape[-1] else "gather"
    pos = jnp.sum(user_vecs * item_vecs[targets], axis=-1) / temperature
    if mode == "dense":
        scores = user_vecs @ item_vecs.T / temperature
        neg = jnp.take_along_axis(scores, negatives, axis=-1)
    else:
        neg = jnp.einsum("bld,blrd->blr", user_vecs, item_vecs[negatives]) / temperature
    return sampled_softmax(pos, neg, neg_mask=negatives != targets[..., None])


def next_item_losses(model, batch, key, *, loss: str = "sampled", num_negatives: int = 128,
                     negatives_mode: str = "auto", impl: str = "chunked", chunk_size: int = 4096,
                     mesh=None, weights=None):
    """Weighted per-position losses ``[B, L]`` and the user vectors ``[B, L, D]``.

    ``weights`` defaults to ``batch["weights"]``; positions without a target must weigh 0.
    ``loss="full"`` uses the fused kernel (``impl`` = reference | chunked | sharded | pallas).
    """
    enc_key, neg_key = jax.random.split(key)
    weights = batch["weights"] if weights is None else weights
    user_vecs = model.encode(batch, dropout_key=enc_key)
    items = model.item_vectors()
    targets = batch["targets"]
    tau = model.config.temperature
    if loss == "sampled":
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
