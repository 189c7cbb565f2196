"""Ranking metrics against several held-out events per user (graded NDCG, pairwise accuracy).

    out = multi_target_metrics(scores, exclude, items, ratings, valid, k=10, gains=r_star)
    out["per_user"]["graded_ndcg@10"]     # [U] float64, NaN for users it does not cover
    out["mean"]["graded_ndcg@10"]         # mean over the covered users
    out["num_users"]["pairwise_acc"]      # how many users that mean covers

Inputs (numpy or anything ``np.asarray`` takes; column ``j`` of ``[U, V]`` arrays = item id ``j``):

* ``scores [U, V]``: the policy's score of every item (higher = recommended first; no NaN);
* ``exclude [U, V]`` bool: items not to rank (the user's history, padding column 0, ...; e.g.
  ``np.asarray(genrec_jax.eval.exclusion_mask(history, V))``);
* ``items [U, k]`` held-out item ids, ``ratings [U, k]`` their ratings (``>= 0``), ``valid [U, k]``
  which of the ``k`` slots are real (distinct items per user among the valid slots).

The ranked list. Per user, the eligible items are the non-excluded ones plus the valid
held-out items (a held-out item is always ranked, even if ``exclude`` marks it). They are sorted
by score, descending, ties broken by the smaller item id first, so every list is a strict
order (NDCG never exceeds 1); with tie-free scores it matches
:func:`genrec_jax.eval.ranking.target_ranks`. ``L_u = (l_1, ..., l_K)`` is its top ``K``.

Metrics per user, ``D(p) = 1 / log2(p + 1)`` the discount of position ``p`` (1-based):

* ``graded_ndcg@K = sum_{p <= K} g(l_p) D(p) / IDCG`` with ``g(i)`` = the rating of held-out item
  ``i`` (0 for other items) and ``IDCG = sum_{p <= min(K, n)} r_(p) D(p)`` over the user's ``n``
  held-out ratings sorted descending. NaN when the user has no held-out event or all its
  ratings are 0.
* ``hr@K = 1[some held-out item is in L_u]``; ``ndcg@K`` = the same NDCG with gain 1 for every
  held-out item (``IDCG = sum_{p <= min(K, n)} D(p)``). NaN without held-out events.
* ``pairwise_acc``: over the pairs of the user's held-out items with different ratings, the
  fraction whose scores are ordered like the ratings, a score tie counting 1/2 (the per-user
  form of :func:`genrec_jax.eval.rating_metrics.pairwise_accuracy`). NaN, and counted in
  ``num_users_without_pairs``, for a user with no such pair.
* ``gain_ndcg@K`` (only with ``gains [U, V]``, e.g. the simulator's true ratings ``r*(u, i)``):
  ``sum_{p <= K} gains[u, l'_p] D(p) / IDCG`` where ``L'_u`` is the top ``K`` of the
  *non-excluded* items only (held-out items get no special treatment) and ``IDCG`` the same sum
  over the ``K`` largest gains among the non-excluded items. Gains must be finite and ``>= 0`` on
  the non-excluded items; NaN for a user whose ideal DCG is 0 (e.g. nothing to rank).

Means are over the users where a metric is not NaN. Everything is vectorised over users (in
blocks, bounded memory); there is no Python loop per user.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "top_k_items",
    "held_out_metrics",
    "pairwise_accuracy_per_user",
    "gain_ndcg",
    "multi_target_metrics",
]

# Largest number of [users, V] entries sorted at once.
_BLOCK_ELEMENTS = 1 << 22


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _scores_and_exclude(scores: Any, exclude: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D [U, V] array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number):
        raise ValueError(f"scores must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if np.any(np.isnan(scores)):
        raise ValueError("scores must not be NaN (a NaN cannot be ranked)")
    if exclude is None:
        exclude = np.zeros(scores.shape, dtype=bool)
    else:
        exclude = np.asarray(exclude)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude must have the shape of scores {scores.shape}, "
                             f"got {exclude.shape}")
        exclude = exclude != 0
    return scores, exclude


def _held_out(items: Any, ratings: Any, valid: Any, shape: tuple[int, int]):
    num_users, num_items = shape
    items = np.asarray(items)
    if items.ndim != 2 or items.shape[0] != num_users:
        raise ValueError(f"items must be a 2-D [U, k] array with U = {num_users} (the rows of "
                         f"scores), got shape {items.shape}")
    if not np.issubdtype(items.dtype, np.integer):
        raise ValueError(f"items must be integer item ids, got dtype {items.dtype}")
    if valid is None:
        valid = np.ones(items.shape, dtype=bool)
    else:
        valid = np.asarray(valid)
        if valid.shape != items.shape:
            raise ValueError(f"valid must have the shape of items {items.shape}, "
                             f"got {valid.shape}")
        valid = valid != 0
    bad = valid & ((items < 0) | (items >= num_items))
    if np.any(bad):
        u, j = np.argwhere(bad)[0]
        raise ValueError(f"items must lie in [0, {num_items}) where valid, got items[{u}, {j}] "
                         f"= {items[u, j]}")
    items = np.where(valid, items, 0).astype(np.int64)
    # Duplicates among a user's valid slots would count one item's gain twice.
    srt = np.sort(np.where(valid, items, -1 - np.arange(items.shape[1])), axis=1)
    dup = np.any(srt[:, 1:] == srt[:, :-1], axis=1)
    if np.any(dup):
        u = int(np.flatnonzero(dup)[0])
        raise ValueError(f"items must be distinct within a user's valid slots; user {u} has "
                         f"{sorted(items[u][valid[u]].tolist())}")
    if ratings is not None:
        ratings = np.asarray(ratings)
        if ratings.shape != items.shape:
            raise ValueError(f"ratings must have the shape of items {items.shape}, "
                             f"got {ratings.shape}")
        ratings = np.where(valid, ratings.astype(np.float64), 0.0)
        if not np.all(np.isfinite(ratings)):
            raise ValueError("ratings must be finite where valid (found NaN or inf)")
        if np.any(ratings < 0):
            raise ValueError("ratings must be >= 0 where valid (they are NDCG gains)")
    return items, ratings, valid


def _blocks(num_users: int, num_items: int):
    step = max(1, _BLOCK_ELEMENTS // max(num_items, 1))
    for u0 in range(0, num_users, step):
        yield slice(u0, min(num_users, u0 + step))


def _top_k(scores: np.ndarray, eligible: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``[U, K]`` top item ids (score desc, id asc, eligible items first) and their eligibility."""
    num_users, num_items = scores.shape
    kk = min(k, num_items)
    top = np.zeros((num_users, kk), dtype=np.int64)
    ids = np.broadcast_to(np.arange(num_items), (1, num_items))
    for rows in _blocks(num_users, num_items):
        s, e = scores[rows], eligible[rows]
        # np.lexsort: last key is primary. Ineligible last, then score desc, then id asc.
        order = np.lexsort((np.broadcast_to(ids, s.shape), -s, ~e), axis=-1)
        top[rows] = order[:, :kk]
    ok = np.take_along_axis(eligible, top, axis=1)
    return top, ok


def top_k_items(scores: Any, exclude: Any = None, *, k: int = 10) -> np.ndarray:
    """``[U, min(k, V)]`` the ``k`` best non-excluded items of each user (score descending, ties
    by smaller id), ``-1`` where a user has fewer than ``k`` non-excluded items."""
    k = _check_k(k)
    scores, exclude = _scores_and_exclude(scores, exclude)
    top, ok = _top_k(scores, ~exclude, k)
    return np.where(ok, top, -1)


def _nan_where(values: np.ndarray, undefined: np.ndarray) -> np.ndarray:
    return np.where(undefined, np.nan, values)


def held_out_metrics(scores: Any, exclude: Any, items: Any, ratings: Any, valid: Any = None, *,
                     k: int = 10) -> dict[str, np.ndarray]:
    """Per-user ``graded_ndcg@K``, ``hr@K`` and ``ndcg@K`` over the held-out items.

    See the module docstring for the definitions; returns ``{name: float64 [U]}`` with NaN for
    the users a metric does not cover.
    """
    k = _check_k(k)
    scores, exclude = _scores_and_exclude(scores, exclude)
    items, ratings, valid = _held_out(items, ratings, valid, scores.shape)
    num_users = scores.shape[0]
    eligible = ~exclude
    rows = np.repeat(np.arange(num_users), items.shape[1]).reshape(items.shape)
    eligible[rows[valid], items[valid]] = True
    top, ok = _top_k(scores, eligible, k)
    kk = top.shape[1]
    disc = _discounts(kk)
    # match[u, p, j]: position p of user u's list holds its valid held-out slot j.
    match = (top[:, :, None] == items[:, None, :]) & valid[:, None, :] & ok[:, :, None]
    hit_at = match.any(axis=2)
    graded_dcg = (match * ratings[:, None, :]).sum(axis=2) @ disc
    binary_dcg = hit_at @ disc
    n_valid = valid.sum(axis=1)
    ideal_ratings = -np.sort(-np.where(valid, ratings, 0.0), axis=1)[:, :kk]
    pad = kk - ideal_ratings.shape[1]
    if pad > 0:
        ideal_ratings = np.pad(ideal_ratings, ((0, 0), (0, pad)))
    graded_idcg = ideal_ratings @ disc
    binary_idcg = np.cumsum(disc)[np.clip(np.minimum(n_valid, kk) - 1, 0, None)]
    none = n_valid == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        graded = graded_dcg / graded_idcg
        binary = binary_dcg / binary_idcg
    return {
        f"graded_ndcg@{k}": _nan_where(graded, none | (graded_idcg <= 0)),
        f"hr@{k}": _nan_where(hit_at.any(axis=1).astype(np.float64), none),
        f"ndcg@{k}": _nan_where(binary, none),
    }


def pairwise_accuracy_per_user(scores: Any, items: Any, ratings: Any,
                               valid: Any = None) -> np.ndarray:
    """Per-user ordering accuracy of ``scores`` on the held-out items (float64 ``[U]``).

    ``acc_u = (C + T / 2) / N`` over the ``N`` pairs of valid held-out items with different
    ratings, ``C`` of them with scores ordered like the ratings, ``T`` with tied scores. NaN for
    users with ``N = 0``. ``scores`` is ``[U, V]`` (NaN allowed only where never looked up).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D [U, V] array, got shape {scores.shape}")
    items, ratings, valid = _held_out(items, ratings, valid, scores.shape)
    if ratings is None:
        raise ValueError("ratings are required for the pairwise accuracy")
    s = np.take_along_axis(scores.astype(np.float64), items, axis=1)
    if np.any(np.isnan(s[valid])):
        raise ValueError("scores must not be NaN at the held-out items")
    dr = np.sign(ratings[:, :, None] - ratings[:, None, :])
    s = np.where(valid, s, 0.0)
    # Comparisons, not a difference: two -inf scores are a tie, not NaN.
    ds = (s[:, :, None] > s[:, None, :]).astype(np.float64) - (s[:, :, None] < s[:, None, :])
    pair = valid[:, :, None] & valid[:, None, :] & (dr != 0)
    pair &= np.triu(np.ones(dr.shape[1:], dtype=bool), k=1)[None]
    n = pair.sum(axis=(1, 2))
    credit = np.where(pair, (dr * ds > 0) + 0.5 * (ds == 0), 0.0).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, credit / np.maximum(n, 1), np.nan)


def gain_ndcg(scores: Any, gains: Any, exclude: Any = None, *, k: int = 10) -> np.ndarray:
    """Per-user NDCG@K of the top ``K`` non-excluded items under an arbitrary ``gains [U, V]``
    (ideal: the ``K`` largest gains among the non-excluded items). Float64 ``[U]``, NaN where
    the ideal DCG is 0."""
    k = _check_k(k)
    scores, exclude = _scores_and_exclude(scores, exclude)
    gains = np.asarray(gains)
    if gains.shape != scores.shape:
        raise ValueError(f"gains must have the shape of scores {scores.shape}, got {gains.shape}")
    gains = np.where(exclude, 0.0, gains.astype(np.float64))
    if not np.all(np.isfinite(gains)):
        raise ValueError("gains must be finite on the non-excluded items (found NaN or inf)")
    if np.any(gains < 0):
        raise ValueError("gains must be >= 0 on the non-excluded items")
    eligible = ~exclude
    top, ok = _top_k(scores, eligible, k)
    disc = _discounts(top.shape[1])
    dcg = np.where(ok, np.take_along_axis(gains, top, axis=1), 0.0) @ disc
    idcg = np.empty(scores.shape[0], dtype=np.float64)
    kk = top.shape[1]
    for rows in _blocks(scores.shape[0], scores.shape[1]):
        g = gains[rows]
        best = -np.partition(-g, kk - 1, axis=1)[:, :kk] if kk < g.shape[1] else g
        idcg[rows] = -np.sort(-best, axis=1) @ disc
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)


def multi_target_metrics(scores: Any, exclude: Any, items: Any, ratings: Any, valid: Any = None,
                         *, k: int = 10, gains: Any = None) -> dict[str, Any]:
    """All the metrics of this module for one policy.

    Returns ``{"per_user": {name: float64 [U]}, "mean": {name: float}, "num_users": {name: int},
    "num_users_without_pairs": int}`` with names ``graded_ndcg@K``, ``hr@K``, ``ndcg@K``,
    ``pairwise_acc`` and (when ``gains`` is given) ``gain_ndcg@K``. ``mean`` averages the
    non-NaN users (NaN when there are none); ``num_users`` counts them;
    ``num_users_without_pairs`` counts the users left out of ``pairwise_acc`` (no pair of
    held-out items with different ratings).
    ``per_user`` is the input :func:`genrec_jax.eval.paired_stats.paired_table` expects per seed.
    """
    per_user = held_out_metrics(scores, exclude, items, ratings, valid, k=k)
    per_user["pairwise_acc"] = pairwise_accuracy_per_user(scores, items, ratings, valid)
    if gains is not None:
        per_user[f"gain_ndcg@{k}"] = gain_ndcg(scores, gains, exclude, k=k)
    counts = {name: int(np.sum(~np.isnan(v))) for name, v in per_user.items()}
    means = {name: (float(np.nanmean(v)) if counts[name] else math.nan)
             for name, v in per_user.items()}
    without_pairs = int(np.sum(np.isnan(per_user["pairwise_acc"])))
    return {"per_user": per_user, "mean": means, "num_users": counts,
            "num_users_without_pairs": without_pairs}
