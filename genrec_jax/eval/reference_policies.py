"""Reference policies as next-item score functions, scored by the same evaluation as models.

    ids = SimIds.from_dataset(data.dataset)
    evaluate(most_popular_score_fn(data.popularity), data.test)          # training counts
    evaluate(logging_policy_score_fn(sim, ids), data.test)               # the simulator's logger
    evaluate(oracle_score_fn(sim, ids), data.test)                       # r*-greedy (upper bound)
    evaluate(top_rated_score_fn(mean), data.test)                        # non-personalised
    evaluate(markov_score_fn(counts, data.popularity), data.test)        # first-order Markov

Each ``score_fn(batch) -> [B, V]`` float32 numpy (column ``j`` = dense item id ``j``, column 0
``-inf``) follows the calling convention of :func:`genrec_jax.eval.ranking.evaluate`,
:func:`genrec_jax.eval.judge.judge_rollout` and :mod:`genrec_jax.eval.truth`. The simulator
policies read each user's state from ``batch["exclude"]``, the whole history in order (evaluation
arrays built with ``exclude="history"``, the default), and ``batch["user"]`` (dense user index).

* most popular: :func:`genrec_jax.eval.popularity.popularity_score_fn` of training counts;
* logging policy: ``log π(i | state, τ)`` of the simulator's logging policy at the state after the
  history and the request time ``τ = query_timestamps[lengths - 1]`` (items not released by ``τ``
  score ``-inf``);
* r*-greedy oracle: ``r*(state, i)``;
* top-rated: ``(Σ ratings_i + m·μ) / (n_i + m)``, the item's mean training rating shrunk toward
  the global mean ``μ`` with strength ``m`` (:func:`shrunk_item_means`); ties to the lower id;
* first-order Markov: ``C[last, j] + pop_j / (I + 1)`` where ``C[a, b]`` counts training pairs
  ``a → b`` (:func:`transition_counts`) and ``pop_j ∈ 1..I`` the popularity order, a tie-break
  below one count.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from genrec_jax.data.sequences import training_mask
from genrec_jax.data.simulator import Simulator, UserState
from genrec_jax.eval.popularity import popularity_score_fn, popularity_scores
from genrec_jax.eval.ranking import evaluate
from genrec_jax.eval.truth import SimIds, _histories_of, simulator_truth

__all__ = ["most_popular_score_fn", "logging_policy_score_fn", "oracle_score_fn",
           "shrunk_item_means", "top_rated_score_fn", "transition_counts", "markov_score_fn",
           "REFERENCE_POLICIES", "reference_policy_metrics", "reference_score_fns",
           "train_events"]

ScoreFn = Callable[[Mapping[str, Any]], np.ndarray]


def most_popular_score_fn(counts: Any) -> ScoreFn:
    """Most popular by training counts ``[I + 1]`` (``data.popularity``)."""
    return popularity_score_fn(counts)


def _state(sim: Simulator, batch: Mapping[str, Any], ids: SimIds) -> tuple[np.ndarray, UserState]:
    users, raw_hist, _ = _histories_of(batch, ids)
    return users, sim.state_after(users, raw_hist)


def oracle_score_fn(sim: Simulator, ids: SimIds) -> ScoreFn:
    """The r*-greedy oracle: ``r*(state after the history, i)`` for every dense item."""

    def score_fn(batch):
        users, state = _state(sim, batch, ids)
        return ids.columns(sim, sim.rating_from_state(state, users)).astype(np.float32)

    return score_fn


def logging_policy_score_fn(sim: Simulator, ids: SimIds) -> ScoreFn:
    """The simulator's logging policy: ``log π`` at the state after the history and the
    request time (see the module docstring)."""

    def score_fn(batch):
        users, state = _state(sim, batch, ids)
        r = sim.rating_from_state(state, users)
        lengths = np.asarray(batch["lengths"], np.int64)
        query = np.asarray(batch["query_timestamps"], np.int64)
        now = query[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
        allowed = np.ones_like(r, dtype=bool)
        with np.errstate(divide="ignore"):
            log_p = np.log(sim.policy_probs(r, now, allowed))
        return ids.columns(sim, log_p).astype(np.float32)

    return score_fn


def shrunk_item_means(items: Any, ratings: Any, num_items: int, *,
                      shrinkage: float = 10.0) -> np.ndarray:
    """``[I + 1]`` float64 ``(Σ r + m·μ) / (n + m)`` per dense item (entry 0 = 0).

    ``items``/``ratings``: training events (dense ids ``1..I``, 0 = padding, ignored); ``μ`` =
    mean training rating; ``m = shrinkage >= 0`` (an item never rated gets ``μ``)."""
    items = np.asarray(items, np.int64).reshape(-1)
    ratings = np.asarray(ratings, np.float64).reshape(-1)
    if items.shape != ratings.shape:
        raise ValueError(f"items and ratings must match, got {items.shape} and {ratings.shape}")
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    keep = items > 0
    if not keep.any():
        raise ValueError("no training events (every item id is 0)")
    items, ratings = items[keep], ratings[keep]
    mu = ratings.mean()
    n = np.bincount(items, minlength=num_items + 1).astype(np.float64)
    s = np.bincount(items, weights=ratings, minlength=num_items + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s + shrinkage * mu) / (n + shrinkage)
    out = np.where(n + shrinkage > 0, out, mu)
    out[0] = 0.0
    return out


def top_rated_score_fn(means: Any) -> ScoreFn:
    """Items ranked by :func:`shrunk_item_means` (the same list for every user)."""
    return popularity_score_fn(means)


def transition_counts(inputs: Any, targets: Any, num_items: int) -> np.ndarray:
    """``[I + 1, I + 1]`` float64 counts of pairs ``inputs[b, t] → targets[b, t]`` (training
    rows of :func:`genrec_jax.data.sequences.train_arrays`; pairs with a 0 are skipped)."""
    a = np.asarray(inputs, np.int64).reshape(-1)
    b = np.asarray(targets, np.int64).reshape(-1)
    keep = (a > 0) & (b > 0)
    v = num_items + 1
    return np.bincount(a[keep] * v + b[keep], minlength=v * v).reshape(v, v).astype(np.float64)


def markov_score_fn(counts: np.ndarray, popularity: Any) -> ScoreFn:
    """First-order Markov on the last input item: ``C[last, j] + pop_j / (I + 1)``."""
    counts = np.asarray(counts, np.float64)
    tie = popularity_scores(popularity).astype(np.float64)
    tie = np.where(np.isfinite(tie), tie / len(tie), 0.0)
    table = counts + tie[None, :]
    table[:, 0] = -np.inf

    def score_fn(batch):
        inputs = np.asarray(batch["inputs"], np.int64)
        lengths = np.asarray(batch["lengths"], np.int64)
        last = inputs[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
        return table[last].astype(np.float32)

    return score_fn


# The reference rows of every comparison table on the simulator (name -> what it is).
REFERENCE_POLICIES = {
    "most_popular": "training counts, the same list for every user",
    "top_rated": "items by their shrunk mean training rating, the same list for every user",
    "logging_policy": "the simulator's own logging policy (what produced the logs)",
    "oracle": "r*-greedy at each user's true state: an upper bound",
}


def train_events(split) -> tuple[np.ndarray, np.ndarray]:
    """``(items, ratings)`` of the training events of a :class:`~genrec_jax.data.sequences.Split`
    (each user's first ``train_len`` events), dense item ids."""
    keep = training_mask(split)
    return split.dataset.items[keep], split.dataset.ratings[keep]


def reference_score_fns(data, *, shrinkage: float = 10.0) -> dict[str, ScoreFn]:
    """``{name: score_fn}`` of the :data:`REFERENCE_POLICIES` on ``data`` (a
    :class:`~genrec_jax.data.prepare.PreparedData` of the simulator); ``shrinkage`` is the
    top-rated list's prior weight (:func:`shrunk_item_means`)."""
    sim = data.simulator
    if sim is None:
        raise ValueError("reference policies need the simulator dataset (dataset=simulator)")
    ids = SimIds.from_dataset(data.dataset)
    items, ratings = train_events(data.split)
    return {
        "most_popular": most_popular_score_fn(data.popularity),
        "top_rated": top_rated_score_fn(shrunk_item_means(items, ratings, data.dataset.num_items,
                                                          shrinkage=shrinkage)),
        "logging_policy": logging_policy_score_fn(sim, ids),
        "oracle": oracle_score_fn(sim, ids),
    }


def reference_policy_metrics(data, *, horizon: int = 3, gamma: float = 0.9,
                             batch_size: int = 256, shrinkage: float = 10.0
                             ) -> dict[str, dict[str, Any]]:
    """``{name: metrics}`` of the :data:`REFERENCE_POLICIES` on ``data.test`` (a
    :class:`~genrec_jax.data.prepare.PreparedData` of the simulator): the ranking metrics of
    :func:`~genrec_jax.eval.ranking.evaluate` and the truth of
    :func:`~genrec_jax.eval.truth.simulator_truth` (same ``horizon`` and ``gamma`` as the
    judge), i.e. the same columns as a trained policy's row. ``per_user`` arrays are dropped."""
    fns = reference_score_fns(data, shrinkage=shrinkage)
    ids = SimIds.from_dataset(data.dataset)
    out = {}
    for name, fn in fns.items():
        row = dict(evaluate(fn, data.test, batch_size=batch_size))
        truth = simulator_truth(data.simulator, data.test, fn, ids=ids, horizon=horizon,
                                gamma=gamma, batch_size=batch_size)
        truth.pop("per_user")
        row.update(truth)
        out[name] = row
    return out
