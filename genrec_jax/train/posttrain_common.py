"""Pieces shared by the post-training algorithms: policy log-probabilities, states, sampling,
exact KL to the reference, and reward functions ("scorers") that a jitted step can call.

Conventions (docs/architecture.md): item ids ``1..num_items`` (0 = padding; table rows beyond
``num_items`` are sharding padding), right-padded ``[B, L]`` rows, ``weights > 0`` where a
position has a target. The policy is the HSTU next-item softmax
``π(a|s) = softmax(cos(h_s, e_a) / τ)`` over the valid items.

Full-catalogue terms at every position (``log π(target)``, ``logsumexp``) go through the fused
kernel :func:`genrec_jax.kernels.weighted_softmax_xent` (``impl`` from the config), and the
expectations over the catalogue (KL, ``E_π[Q]``) through :func:`softmax_stats`, a chunked online
scan; neither builds ``[B·L, V]`` logits. Only per-*state* terms build ``[B, V]`` logits (one row
per user, as evaluation does): sampling from the policy at the state, and PPO's log-probs under
the history-excluded policy (:func:`history_excluded_logps`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.eval.ranking import exclusion_mask
from genrec_jax.kernels import weighted_softmax_xent

STATE_MODES = ("last", "random")
_STATS_TILE = 1 << 21  # logits per tile of softmax_stats


def item_range(model) -> tuple[int, int]:
    """``(1, num_items + 1)``: the rows of the item table that are items."""
    return 1, int(model.config.num_items) + 1


def target_mask(batch) -> jax.Array:
    """``[B, L]`` bool: positions with a target (``weights > 0`` and a non-padding target)."""
    return (batch["weights"] > 0) & (batch["targets"] > 0)


# ---------------------------------------------------------------------------------------------
# Policy log-probabilities through the fused kernel.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Expectations over the catalogue without [N, V] logits.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# States and sampling.
# ---------------------------------------------------------------------------------------------


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
    """One state per row for the per-state algorithms (DPO, IPO, PPO).

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


# ---------------------------------------------------------------------------------------------
# Reward functions ("scorers") callable inside jit with explicit parameters.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
    """A reward function ``r̂(s, a)`` as pure functions of explicit parameters.

    ``last(params, batch, items [B, K]) -> [B, K]`` scores candidates after each row's last
    position; ``positions(params, batch, items [B, L, K]) -> [B, L, K]`` after every position
    ``i`` (from events ``≤ i``). ``params`` is passed to jitted steps as a frozen argument (never
    closed over). ``max_len``: longest rows ``positions`` accepts (``None`` = any).
    """

    name: str
    params: Any
    last: Callable
    positions: Callable
    max_len: int | None = None


def table_scorer(table, name: str = "table") -> Scorer:
    """``r̂(s, a) = table[user(s), a]`` for a ``[U, V_table]`` table indexed by ``batch["user"]``
    (a stand-in reward model, e.g. the simulator's true ratings)."""

    def last(t, batch, items):
        return t[batch["user"][:, None], items]

    def positions(t, batch, items):
        return t[batch["user"][:, None, None], items]

    return Scorer(name, jnp.asarray(table, jnp.float32), last, positions)


def ensemble_member_scorer(ensemble, member: int = 0) -> Scorer:
    """Member ``member`` of a :class:`genrec_jax.train.reward.RewardEnsemble` as a scorer.

    Only the reward model's public API is used: ``last`` is its ``score`` and ``positions`` its
    teacher-forced ``predict_positions`` with ``targets`` replaced by each candidate column
    (``vmap``-ed over the candidates; the encoder does not depend on them, so it runs once).
    Rows are re-windowed to the RM's padded length; ``positions`` needs ``L ≤ reward max_len``
    so that every position keeps its events.
    """
    from genrec_jax.train.reward import MODEL_KEYS, fit_window
    from genrec_jax.train.state import bind

    m_count = ensemble.num_members
    if not 0 <= member < m_count:
        raise ValueError(f"reward member {member} does not exist: the ensemble has {m_count}")
    graphdef = ensemble.graphdef
    width = int(ensemble.config.max_len)
    params = jax.tree.map(lambda x: x[member], ensemble.params)

    def last(p, batch, items):
        rows = fit_window({k: batch[k] for k in MODEL_KEYS}, width)
        return bind(graphdef, p).score(rows, items)

    def positions(p, batch, items):
        length = batch["inputs"].shape[1]
        if length > width:
            raise ValueError(f"per-position reward-model scores need rows of at most the reward "
                             f"model's max_len ({width}), got L = {length}: retrain the reward "
                             f"model with reward.max_len >= {length} or post-train with "
                             f"data.max_len <= {width}")
        rm = bind(graphdef, p)
        rows = {k: batch[k] for k in MODEL_KEYS}

        def one(targets):                                            # [B, L] -> [B, L]
            padded = fit_window(dict(rows, targets=targets), width)
            return rm.predict_positions(padded)[:, :length]

        return jax.vmap(one, in_axes=-1, out_axes=-1)(items.astype(jnp.int32))

    return Scorer(f"reward_model[{member}]", params, last, positions, width)


def true_rating_table(data, table_size: int) -> np.ndarray:
    """``[U, table_size]`` simulator true ratings ``r*(u, i)`` by dense user and item id
    (non-item columns hold the scale minimum). Needs ``data.simulator``."""
    sim = data.simulator
    if sim is None:
        raise ValueError("true ratings need the simulator dataset (dataset=simulator)")
    ds = data.dataset
    raw_items = np.asarray(ds.item_keys[1:], np.int64)
    full = sim.rating_matrix(np.asarray(ds.user_keys, np.int64))          # [U, sim items]
    table = np.full((ds.num_users, table_size), float(ds.rating_scale[0]), np.float32)
    table[:, 1:ds.num_items + 1] = full[:, raw_items - 1]
    return table
