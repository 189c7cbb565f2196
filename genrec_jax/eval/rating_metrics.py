"""Accuracy of a rating predictor (reward model or baseline) on held-out events.

The reward-model ablation of docs/method.md §4.5:

    m = rating_metrics(pred, true, users)
    # {"rmse", "mae", "spearman", "pairwise_accuracy", "num_pairs", "num_events"}
    summary = summarize_runs([m_seed0, m_seed1, m_seed2])
    # {"rmse": {"mean": ..., "std": ...}, ...}

Definitions (n = number of held-out events):
  rmse               sqrt(mean((pred − true)²)).
  mae                mean(|pred − true|).
  spearman           Pearson correlation of the average ranks of pred and of true over all
                     events (tied values share the mean of the ranks they span). NaN when either
                     side is constant or n < 2.
  pairwise_accuracy  Within-user ordering accuracy: over all unordered pairs of events of the same
                     user whose true ratings differ, the fraction the predictions order the same
                     way, a prediction tie counting 0.5. Users with fewer than two distinct true
                     ratings add no pairs. NaN when there are no pairs. 0.5 is chance; a per-user
                     constant (e.g. UserMean) scores exactly 0.5.
  num_pairs          Number of such pairs (int).
  num_events         n (int).

Pairwise accuracy uses (C + T/2) / N = 1/2 + S / (2N), with C, D, T the concordant, discordant and
tied-prediction pairs, N = C + D + T and S = Σ sign(Δtrue)·sign(Δpred) over pairs (pairs with equal
true ratings add 0 to S). Events are sorted by user and users of equal event count are stacked, so
the pairwise sign products are computed a block of users at a time with bounded memory, never with a
Python loop per user.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from genrec_jax._checks import as_finite_1d, check_same_length

__all__ = ["rating_metrics", "average_ranks", "spearman", "pairwise_accuracy", "summarize_runs"]

# Largest number of pairwise entries materialised at once (float64: 8 bytes each).
_BLOCK_ELEMENTS = 1 << 20


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array; tied values get the mean of the ranks they occupy."""
    values = np.asarray(values)
    n = values.shape[0]
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    # Start index of every run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], n]  # exclusive
    run_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties; NaN if undefined."""
    pred = as_finite_1d("pred", pred)
    true = as_finite_1d("true", true)
    check_same_length(pred=pred, true=true)
    if pred.shape[0] < 2:
        return math.nan
    rp = average_ranks(pred)
    rt = average_ranks(true)
    rp -= rp.mean()
    rt -= rt.mean()
    denom = math.sqrt(float(rp @ rp) * float(rt @ rt))
    if denom == 0.0:
        return math.nan
    return float(rp @ rt) / denom


def _pair_sums(pred_block: np.ndarray, true_block: np.ndarray) -> tuple[int, int]:
    """(N, S) over unordered within-row pairs of a (k, n) block of k users with n events each."""
    k, n = true_block.shape
    rows = n if n * n <= _BLOCK_ELEMENTS else max(1, _BLOCK_ELEMENTS // n)
    users_per_chunk = max(1, _BLOCK_ELEMENTS // (rows * n))
    n_ordered = 0
    s_ordered = 0
    for u0 in range(0, k, users_per_chunk):
        t = true_block[u0 : u0 + users_per_chunk]
        p = pred_block[u0 : u0 + users_per_chunk]
        for r0 in range(0, n, rows):
            dt = np.sign(t[:, r0 : r0 + rows, None] - t[:, None, :])
            dp = np.sign(p[:, r0 : r0 + rows, None] - p[:, None, :])
            n_ordered += int(np.count_nonzero(dt))
            s_ordered += int(np.sum(dt * dp))
    # Ordered pairs count every unordered pair twice (the diagonal contributes 0 to both).
    return n_ordered // 2, s_ordered // 2


def _checked_triplet(pred, true, users):
    """Validated ``(pred, true, users)``: 1-D, finite predictions/ratings, equal lengths."""
    pred = as_finite_1d("pred", pred)
    true = as_finite_1d("true", true)
    users = np.asarray(users)
    if users.ndim != 1:
        raise ValueError(f"users must be a 1-D array, got shape {users.shape}")
    check_same_length(pred=pred, true=true, users=users)
    return pred, true, users


def pairwise_accuracy(pred: np.ndarray, true: np.ndarray, users: np.ndarray) -> tuple[float, int]:
    """Within-user ordering accuracy and its number of pairs (see the module docstring)."""
    pred, true, users = _checked_triplet(pred, true, users)
    if users.shape[0] == 0:
        return math.nan, 0
    order = np.argsort(users, kind="stable")
    users_sorted = users[order]
    pred_sorted = pred[order]
    true_sorted = true[order]
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    counts = np.diff(np.r_[starts, users_sorted.shape[0]])

    total_n = 0
    total_s = 0
    for size in np.unique(counts):
        if size < 2:
            continue
        group_starts = starts[counts == size]
        # (k, size) positions, in sorted order, of the events of the k users with `size` events.
        idx = group_starts[:, None] + np.arange(size)[None, :]
        n_pairs, s = _pair_sums(pred_sorted[idx], true_sorted[idx])
        total_n += n_pairs
        total_s += s
    if total_n == 0:
        return math.nan, 0
    return 0.5 + total_s / (2.0 * total_n), total_n


def rating_metrics(pred: Any, true: Any, users: Any) -> dict[str, float | int]:
    """RMSE, MAE, Spearman and within-user pairwise accuracy of ``pred`` against ``true``.

    Args:
      pred: (n,) predicted ratings.
      true: (n,) observed held-out ratings.
      users: (n,) user id of each event (any integer ids; need not be dense or sorted).

    Returns:
      dict with float ``rmse``, ``mae``, ``spearman``, ``pairwise_accuracy`` and int ``num_pairs``,
      ``num_events``. Definitions in the module docstring.

    Raises:
      ValueError: arrays not 1-D, of different lengths (the message names them), non-finite
        values, or no events.
    """
    pred, true, users = _checked_triplet(pred, true, users)
    if true.shape[0] == 0:
        raise ValueError("rating_metrics needs at least one event")

    err = pred - true
    acc, num_pairs = pairwise_accuracy(pred, true, users)
    return {
        "rmse": float(np.sqrt(np.mean(err * err))),
        "mae": float(np.mean(np.abs(err))),
        "spearman": spearman(pred, true),
        "pairwise_accuracy": float(acc),
        "num_pairs": int(num_pairs),
        "num_events": int(true.shape[0]),
    }


def summarize_runs(
    runs: Sequence[Mapping[str, float]], *, ddof: int = 1
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over runs (e.g. seeds).

    Args:
      runs: metric dicts with the same keys, e.g. ``rating_metrics`` outputs of several seeds.
      ddof: delta degrees of freedom of the std; 1 (default) is the sample std over seeds, 0 the
        population std. With ``len(runs) <= ddof`` the std is NaN.

    Returns:
      ``{metric: {"mean": float, "std": float}}`` in the key order of the first run. NaN values
      propagate.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("summarize_runs needs at least one run")
    keys = list(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        if set(run) != set(keys):
            raise ValueError(
                f"run {i} has metrics {sorted(run)} but run 0 has {sorted(keys)}"
            )
    summary = {}
    for key in keys:
        values = np.asarray([float(run[key]) for run in runs], dtype=np.float64)
        mean = float(values.mean())
        if values.shape[0] <= ddof:
            std = math.nan
        else:
            std = float(values.std(ddof=ddof))
        summary[key] = {"mean": mean, "std": std}
    return summary
