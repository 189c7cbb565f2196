"""Reward functions ("scorers") ``r̂(s, a)`` that a jitted step can call with explicit parameters:
a table (e.g. the simulator's true ratings) or one member of a reward-model ensemble."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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
