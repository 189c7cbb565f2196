"""Full-catalogue ranking evaluation (docs/method.md §4.3): target ranks, HR / NDCG / MRR, batched driver.

    ranks = target_ranks(scores, target, exclude)          # jitted, int32 [B]
    m = metrics_from_ranks(ranks, target_ratings=r, valid=v)
    per = per_user_from_ranks(ranks, target_ratings=r, valid=v)   # [N] per user; m = nan_means(per)
    m = evaluate(score_fn, eval_arrays, batch_size=256)    # score_fn(batch) -> [B, V]

Rank definition. ``scores`` is ``[B, V]`` with column ``j`` = dense item id ``j``; column 0 is padding.
For row ``b`` with target ``t`` and history ``exclude[b]`` (0-padded item ids)::

    rank = 1 + #{ j : 1 <= j < V, j not in exclude[b], j != t, scores[b, j] > scores[b, t] }

so 1 is best, ties with the target count in its favour (only strictly higher scores push it down) and the
target is never excluded, even when it appears in ``exclude``. ``-inf`` columns (e.g. sharding padding
of the item table) never count unless the target itself scores ``-inf``. Scores must not be NaN: a NaN
compares false both ways and silently gives an optimistic rank.

Metrics per user (then averaged over the valid users)::

    HR@K   = 1[rank <= K]
    NDCG@K = 1 / log2(rank + 1) if rank <= K else 0     (one relevant item, so IDCG = 1)
    MRR    = 1 / rank

and the same restricted to the users whose target rating is ``>= liked_threshold`` (suffix ``_liked``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_NDCG_KS",
    "exclusion_mask",
    "target_ranks",
    "ranks",
    "metrics_from_ranks",
    "nan_means",
    "padded_batches",
    "per_user_from_ranks",
    "evaluate",
]

DEFAULT_KS: tuple[int, ...] = (1, 10, 50, 200)
DEFAULT_NDCG_KS: tuple[int, ...] = (10, 50, 200)


def exclusion_mask(exclude: jax.Array, num_columns: int) -> jax.Array:
    """Boolean ``[B, num_columns]`` mask, True at column 0 and at every id in ``exclude [B, H]``.

    Ids outside ``[0, num_columns)`` (negative ones included) are ignored; 0 entries are padding and only
    re-mark column 0. Pure jnp, usable inside ``jax.jit`` (``num_columns`` must be static).
    """
    exclude = jnp.asarray(exclude)
    batch = exclude.shape[0]
    mask = jnp.zeros((batch, num_columns), dtype=bool)
    rows = jnp.arange(batch)[:, None]
    ids = exclude.astype(jnp.int32)
    ids = jnp.where(ids < 0, num_columns, ids)  # negative ids would wrap around; send them out of bounds
    mask = mask.at[rows, ids].set(True, mode="drop")
    return mask.at[:, 0].set(True)


@jax.jit
def target_ranks(scores: jax.Array, target: jax.Array, exclude: jax.Array) -> jax.Array:
    """Rank (1 = best) of each row's target among the non-excluded items; int32 ``[B]``.

    Args:
      scores: ``[B, V]`` float scores, column ``j`` = item id ``j``; column 0 never counts.
      target: ``[B]`` int target item ids (``1 <= target < V`` for meaningful rows).
      exclude: ``[B, H]`` int item ids to drop from the ranking (the user's history), 0-padded.
        The target is never excluded.

    Returns ``1 + #{j >= 1, j not excluded, j != target : scores[j] > scores[target]}``.
    """
    batch, num_columns = scores.shape
    rows = jnp.arange(batch)
    target = target.astype(jnp.int32)
    competes = ~exclusion_mask(exclude, num_columns)
    # The target is the reference, never a competitor of itself (and so never "excluded").
    competes = competes.at[rows, target].set(False, mode="drop")
    target_score = scores[rows, target]
    higher = (scores > target_score[:, None]) & competes
    return 1 + jnp.sum(higher, axis=1, dtype=jnp.int32)


# The name used in docs/architecture.md.
ranks = target_ranks


def _check_ks(name: str, ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(ks)
    for k in out:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{name} must be positive integers, got {ks!r}")
    return tuple(int(k) for k in out)


def _per_user_values(
    r: np.ndarray, keep: np.ndarray, ks: tuple[int, ...], ndcg_ks: tuple[int, ...], suffix: str
) -> dict[str, np.ndarray]:
    """``[N]`` float64 HR@K / NDCG@K / MRR of each row, NaN where ``keep`` is False."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hr@{k}{suffix}"] = np.where(keep, (r <= k).astype(np.float64), np.nan)
    gain = 1.0 / np.log2(r + 1.0)
    for k in ndcg_ks:
        out[f"ndcg@{k}{suffix}"] = np.where(keep, np.where(r <= k, gain, 0.0), np.nan)
    out[f"mrr{suffix}"] = np.where(keep, 1.0 / r, np.nan)
    return out


def nan_means(per_user: Mapping[str, Any]) -> dict[str, float]:
    """``{key: mean over the non-NaN entries}`` of per-user arrays (NaN when there are none).

    The single reduction from per-user values to the reported means, so a reported mean always
    equals ``np.nanmean`` of the saved per-user array."""
    out = {}
    for key, values in per_user.items():
        arr = np.asarray(values, dtype=np.float64)
        out[key] = float(np.nanmean(arr)) if np.any(~np.isnan(arr)) else math.nan
    return out


def _check_ranks_args(ranks, target_ratings, valid):
    """``(ranks as float64 [N] with 1 on invalid rows, valid mask [N], ratings or None)``."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be 1-D [N], got shape {ranks.shape}")
    n = ranks.shape[0]
    if valid is None:
        mask = np.ones(n, dtype=bool)
    else:
        valid = np.asarray(valid)
        if valid.shape != (n,):
            raise ValueError(f"valid must have shape ({n},) like ranks, got {valid.shape}")
        mask = valid != 0
    if np.any(ranks[mask] < 1):
        raise ValueError(f"ranks must be >= 1, got minimum {int(ranks[mask].min())}")
    if target_ratings is not None:
        target_ratings = np.asarray(target_ratings, dtype=np.float64)
        if target_ratings.shape != (n,):
            raise ValueError(
                f"target_ratings must have shape ({n},) like ranks, got {target_ratings.shape}"
            )
    # Invalid rows may hold any rank (even 0): 1 there avoids division warnings; they are NaN.
    r = np.where(mask, ranks, 1).astype(np.float64)
    return r, mask, target_ratings


def per_user_from_ranks(
    ranks: Any,
    *,
    target_ratings: Any = None,
    valid: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    liked_threshold: float = 4.0,
) -> dict[str, np.ndarray]:
    """Per-user HR@K, NDCG@K and MRR (float64 ``[N]``), NaN on rows that do not count.

    Same arguments as :func:`metrics_from_ranks`. Keys: ``hr@K`` for ``ks``, ``ndcg@K`` for
    ``ndcg_ks``, ``mrr`` (NaN on invalid rows), then, when ``target_ratings`` is given, the same
    with the suffix ``_liked`` (NaN also where ``rating < liked_threshold``). Row ``u`` with rank
    ``r_u``: ``hr@K = 1[r_u <= K]``, ``ndcg@K = 1[r_u <= K] / log2(r_u + 1)``, ``mrr = 1 / r_u``;
    :func:`metrics_from_ranks` is :func:`nan_means` of these arrays.
    """
    ks = _check_ks("ks", ks)
    ndcg_ks = _check_ks("ndcg_ks", ndcg_ks)
    r, mask, target_ratings = _check_ranks_args(ranks, target_ratings, valid)
    out = _per_user_values(r, mask, ks, ndcg_ks, "")
    if target_ratings is not None:
        liked = mask & (target_ratings >= liked_threshold)
        out.update(_per_user_values(r, liked, ks, ndcg_ks, "_liked"))
    return out


def metrics_from_ranks(
    ranks: Any,
    *,
    target_ratings: Any = None,
    valid: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    liked_threshold: float = 4.0,
) -> dict[str, float]:
    """HR@K, NDCG@K and MRR averaged over the valid users, overall and over "liked" targets.

    Args:
      ranks: ``[N]`` ints ``>= 1`` (from :func:`target_ranks`).
      target_ratings: ``[N]`` rating of each target; users with ``rating >= liked_threshold`` form the
        ``_liked`` group. When None, no ``_liked`` keys and no ``num_users_liked`` are returned.
      valid: ``[N]`` nonzero for rows to count (None = all rows).
      ks: cut-offs for ``hr@K``; ndcg_ks: cut-offs for ``ndcg@K``.

    Returns Python floats, keys in this order: ``hr@K`` for ``ks``, ``ndcg@K`` for ``ndcg_ks``, ``mrr``,
    the same with the suffix ``_liked``, then ``num_users`` and ``num_users_liked`` (counts, as floats).
    A group with no users has NaN metrics.
    """
    per_user = per_user_from_ranks(ranks, target_ratings=target_ratings, valid=valid, ks=ks,
                                   ndcg_ks=ndcg_ks, liked_threshold=liked_threshold)
    out: dict[str, float] = nan_means(per_user)
    _, mask, _ = _check_ranks_args(ranks, target_ratings, valid)
    out["num_users"] = float(np.sum(mask))
    if target_ratings is not None:
        out["num_users_liked"] = float(np.sum(~np.isnan(per_user["mrr_liked"])))
    return out


def _num_rows(arrays: Mapping[str, Any]) -> int:
    if not arrays:
        raise ValueError("arrays is empty: expected the evaluation dict of docs/architecture.md")
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in arrays.items()}
    bad = [k for k, s in sizes.items() if s is None]
    if bad:
        raise ValueError(f"arrays must all have a leading row axis; scalars at keys {bad}")
    distinct = set(sizes.values())
    if len(distinct) != 1:
        raise ValueError(f"arrays disagree on the number of rows: {sizes}")
    n = distinct.pop()
    if n == 0:
        raise ValueError("arrays hold no rows")
    return n


def padded_batches(
    arrays: Mapping[str, Any], batch_size: int
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Yield ``(batch, num_real)`` with every batch exactly ``batch_size`` rows (one compile).

    The last batch is filled up with copies of its first row marked ``valid = 0`` (copies rather than
    zeros so a score function never sees a degenerate empty history). A ``valid`` key of ones is added
    when ``arrays`` has none. ``num_real`` is how many leading rows of the batch are real rows.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = _num_rows(arrays)
    host = {k: np.asarray(v) for k, v in arrays.items()}
    if "valid" not in host:
        host["valid"] = np.ones(n, dtype=np.int32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        num_real = stop - start
        batch = {}
        for key, value in host.items():
            chunk = value[start:stop]
            if num_real < batch_size:
                fill = np.repeat(chunk[:1], batch_size - num_real, axis=0)
                if key == "valid":
                    fill = np.zeros_like(fill)
                chunk = np.concatenate([chunk, fill], axis=0)
            batch[key] = chunk
        yield batch, num_real


def evaluate(
    score_fn: Callable[[Mapping[str, Any]], jax.Array],
    arrays: Mapping[str, Any],
    *,
    batch_size: int = 256,
    ks: Sequence[int] = DEFAULT_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    liked_threshold: float = 4.0,
    return_ranks: bool = False,
    return_per_user: bool = False,
) -> dict[str, Any]:
    """Rank every row's target with ``score_fn`` and return :func:`metrics_from_ranks` over valid rows.

    Args:
      score_fn: ``score_fn(batch) -> [batch_size, V]`` scores for the next item (the caller jits it);
        ``batch`` is a dict of numpy arrays with the keys of ``arrays`` (plus ``valid``), always
        ``batch_size`` rows.
      arrays: the evaluation dict of docs/architecture.md (``target``, ``exclude``, ``target_rating``,
        ``valid``, ... all with the same leading row count N).
      batch_size: rows per call; the last batch is padded with ``valid = 0`` rows.
      return_ranks: also return the int32 ranks of all N rows under the key ``"ranks"`` (a numpy array;
        entries of invalid rows are meaningless).
      return_per_user: also return :func:`per_user_from_ranks` of all N rows under ``"per_user"``
        (float64 ``[N]`` arrays, NaN on invalid rows); every mean is :func:`nan_means` of them.

    Raises ValueError when a valid row's target is outside ``[1, V)`` or ``score_fn`` returns a wrong
    shape.
    """
    for key in ("target", "exclude"):
        if key not in arrays:
            raise ValueError(f"arrays must contain {key!r}; got keys {sorted(arrays)}")
    n = _num_rows(arrays)
    pieces = []
    num_columns = None
    for batch, num_real in padded_batches(arrays, batch_size):
        scores = score_fn(batch)
        shape = tuple(np.shape(scores))
        if len(shape) != 2 or shape[0] != batch_size or (num_columns not in (None, shape[1])):
            raise ValueError(
                f"score_fn must return [batch_size, V] = [{batch_size}, V] scores with one V, "
                f"got shape {shape}"
            )
        num_columns = shape[1]
        valid_rows = batch["valid"] != 0
        targets = batch["target"][valid_rows]
        if targets.size and (targets.min() < 1 or targets.max() >= num_columns):
            raise ValueError(
                f"valid rows need targets in [1, {num_columns}), got range "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        pieces.append((target_ranks(scores, batch["target"], batch["exclude"]), num_real))
    all_ranks = np.concatenate([np.asarray(r)[:k] for r, k in pieces]).astype(np.int32)
    assert all_ranks.shape == (n,)
    out: dict[str, Any] = metrics_from_ranks(
        all_ranks,
        target_ratings=arrays.get("target_rating"),
        valid=arrays.get("valid"),
        ks=ks,
        ndcg_ks=ndcg_ks,
        liked_threshold=liked_threshold,
    )
    if return_ranks:
        out["ranks"] = all_ranks
    if return_per_user:
        out["per_user"] = per_user_from_ranks(
            all_ranks,
            target_ratings=arrays.get("target_rating"),
            valid=arrays.get("valid"),
            ks=ks,
            ndcg_ks=ndcg_ks,
            liked_threshold=liked_threshold,
        )
    return out
