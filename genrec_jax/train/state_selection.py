"""One state per training row, the policy at that state, and sampling from it.

The per-state algorithms (DPO, IPO, PPO, ...) pick one position of each row as the state ``s``
(:func:`select_states`), encode the row truncated there, and act on the history-excluded
policy ``π̃(·|s)`` (the distribution recommendations are served from): ``[B, V]`` logits, one
row per user, as evaluation does.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from genrec_jax.eval.ranking import exclusion_mask
from genrec_jax.train.policy_ops import target_mask

STATE_MODES = ("last", "random")


def truncate_rows(batch: Mapping[str, jax.Array], lengths: jax.Array) -> dict[str, jax.Array]:
    """The rows cut to their first ``lengths`` positions: every ``[B, L]`` entry is zeroed at
    positions ``≥ lengths``; ``lengths`` replaced. Other keys pass through."""
    out = dict(batch)
    width = batch["inputs"].shape[1]
    keep = jnp.arange(width)[None, :] < lengths[:, None]
    for key, value in batch.items():
        if key != "lengths" and getattr(value, "ndim", 0) == 2 and value.shape[1] == width:
            out[key] = jnp.where(keep, value, jnp.zeros((), value.dtype))
    out["lengths"] = lengths.astype(batch["lengths"].dtype)
    return out


def select_states(batch, key, mode: str = "random"):
    """One state per row for the per-state algorithms (DPO, IPO, PPO, ...).

    ``mode="last"``: the row's last training position ``t = lengths − 1`` (the most recent
    history); ``"random"``: a uniformly random position ``t`` with a target. The state is the
    history ``inputs[:t + 1]``; the row is truncated there (:func:`truncate_rows`), so "the last
    position" of the returned batch is the state and its request time is the logged next
    event's. Returns ``(state_batch, logged [B], valid [B])``: ``logged`` = the logged next item
    ``targets[t]``, ``valid`` = the row has such a position.
    """
    if mode not in STATE_MODES:
        raise ValueError(f"states must be one of {STATE_MODES}, got {mode!r}")
    lengths = jnp.asarray(batch["lengths"]).astype(jnp.int32)
    if mode == "last":
        t = jnp.maximum(lengths - 1, 0)
    else:
        u = jax.random.uniform(key, lengths.shape)
        t = jnp.minimum(jnp.floor(u * lengths).astype(jnp.int32), jnp.maximum(lengths - 1, 0))
    rows = jnp.arange(lengths.shape[0])
    logged = jnp.asarray(batch["targets"])[rows, t]
    valid = (lengths > 0) & jnp.asarray(target_mask(batch))[rows, t]
    return truncate_rows(batch, jnp.where(lengths > 0, t + 1, 0)), logged, valid


def state_vectors(model, batch, *, dropout_key=None):
    """``(h [B, D], all user vectors [B, L, D])`` at each row's last position."""
    vecs = model.encode(batch, dropout_key=dropout_key)
    return model.last_position(vecs, batch["lengths"]), vecs


def history_excluded_logits(model, h, history) -> jax.Array:
    """``[B, V_table]`` policy logits with non-items and the ``history [B, H]`` items at −inf."""
    logits = model.logits(h)
    return jnp.where(exclusion_mask(history, logits.shape[1]), -jnp.inf, logits)


def history_excluded_logps(model, h, actions, history) -> jax.Array:
    """``log π̃(a|s)`` under the policy with the history excluded (what recommendations are
    sampled from): ``log_softmax`` of :func:`history_excluded_logits` at ``actions [B]``.

    Per state, so ``[B, V]`` logits (as evaluation and sampling). The fused kernel has no
    per-row mask, and ``lse − log(1 − history mass)`` from it loses all precision when the
    history holds almost all of the mass, so this one term is computed densely.
    """
    logp = jax.nn.log_softmax(history_excluded_logits(model, h, history), axis=-1)
    return jnp.take_along_axis(logp, actions[:, None].astype(jnp.int32), axis=1)[:, 0]


def sample_without_replacement(key, logits, k: int):
    """``k`` distinct items per row from ``softmax(logits)`` (Gumbel-top-k).

    Returns ``(items [B, k] int32, valid [B, k] bool)``; ``valid`` is False for picks beyond the
    number of items with finite logits.
    """
    g = logits + jax.random.gumbel(key, logits.shape, dtype=logits.dtype)
    _, idx = jax.lax.top_k(g, k)
    ok = jnp.isfinite(jnp.take_along_axis(logits, idx, axis=1))
    return idx.astype(jnp.int32), ok

