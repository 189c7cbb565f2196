"""Paired comparison of methods on the same users: bootstrap intervals, p-values, Holm correction.

    res = paired_bootstrap([d_seed0, d_seed1, d_seed2])    # d = method - baseline, per user
    # {"mean_diff", "ci_low", "ci_high", "p_value", "se", "num_seeds", "num_users", ...}
    adjusted = holm([0.01, 0.04, 0.03, 0.005])             # [0.03, 0.06, 0.06, 0.02]
    rows = paired_table({"asft": {0: {"ndcg@10": u0, ...}, 1: ...}, "bc": {...}}, baseline="bc")

Statistic. Input: per seed ``s`` (one trained world / split), the paired per-user differences
``d[s][u] = metric(method, u) - metric(baseline, u)`` on the same users. The estimate is the
mean over seeds of the per-seed mean difference, every seed weighing the same::

    D = (1/S) * sum_s mean_u d[s][u]

Resampling: stratified by seed. Each of the ``B`` bootstrap replicates draws, independently in
every seed, ``n_s`` users with replacement from that seed's ``n_s`` users and recomputes ``D``.
The seeds themselves are never resampled, so the interval describes the user-sampling noise given
these seeds (worlds and trained models), not the spread one would see over new training seeds
(with 3 seeds a seed-level bootstrap would have only 10 distinct resamples); report the per-seed
spread next to it (:func:`genrec_jax.eval.comparison.mean_std`).

Interval: the percentile interval ``[q_{alpha/2}, q_{1-alpha/2}]`` of the ``B`` replicates.
p-value (two-sided, for ``H0: D = 0``): the normal approximation with the bootstrap standard
error, ``p = erfc(|D| / (se · √2))`` (``se`` = std of the replicates; ``p = 1`` when every
difference is 0). The replicates' own tail, ``2 · min(P*(D* <= 0), P*(D* >= 0))``, cannot go below
``1 / (B + 1)``, so with B = 2000 and a Holm family of 100 comparisons nothing could ever be
significant; the normal p agrees with the tail where the tail resolves it (tested).

Holm–Bonferroni (step-down) over a family of ``m`` p-values sorted ascending
``p_(1) <= ... <= p_(m)``: ``p~_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))``; it controls the
family-wise error rate, and rejecting ``p~ < alpha`` is Holm's procedure.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["paired_bootstrap", "holm", "paired_table", "format_paired_table"]

# Largest number of resampled indices materialised at once.
_BLOCK_ELEMENTS = 1 << 21


def _as_seed_arrays(diff_per_user_seed: Any) -> list[np.ndarray]:
    if isinstance(diff_per_user_seed, Mapping):
        items = list(diff_per_user_seed.items())
    elif isinstance(diff_per_user_seed, np.ndarray) and diff_per_user_seed.ndim == 1:
        items = [(0, diff_per_user_seed)]  # one seed
    else:
        items = list(enumerate(diff_per_user_seed))
    if not items:
        raise ValueError("diff_per_user_seed must hold at least one seed, got none")
    out = []
    for key, values in items:
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"diff_per_user_seed[{key!r}] must be a 1-D array of per-user "
                             f"differences, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"diff_per_user_seed[{key!r}] has no users")
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
            raise ValueError(f"diff_per_user_seed[{key!r}] must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"diff_per_user_seed[{key!r}] must be finite (found NaN or inf)")
        out.append(arr)
    return out


def _resampled_means(values: np.ndarray, num_resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``[B]`` means of ``B`` with-replacement resamples of ``values`` (``n`` draws each)."""
    n = values.shape[0]
    out = np.empty(num_resamples, dtype=np.float64)
    chunk = max(1, _BLOCK_ELEMENTS // n)
    for b0 in range(0, num_resamples, chunk):
        b1 = min(num_resamples, b0 + chunk)
        idx = rng.integers(0, n, size=(b1 - b0, n))
        out[b0:b1] = values[idx].mean(axis=1)
    return out


def _check_bootstrap_args(num_resamples: Any, alpha: Any) -> None:
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer)) \
            or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def paired_bootstrap(diff_per_user_seed: Any, *, num_resamples: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, float]:
    """Seed-stratified paired bootstrap of the mean difference (see the module docstring).

    Args:
      diff_per_user_seed: per-seed 1-D arrays of per-user paired differences (method minus
        baseline); a list / tuple, a ``{seed: array}`` mapping, or one 1-D array (one seed).
        Users may differ between seeds; values must be finite.
      num_resamples: number ``B`` of bootstrap replicates.
      seed: seed of the ``numpy`` generator (same seed and inputs, same result).
      alpha: 1 - confidence level of the percentile interval.

    Returns:
      ``{"mean_diff", "ci_low", "ci_high", "p_value", "se", "num_seeds", "num_users",
      "num_resamples"}``: ``se`` is the std of the replicates, ``num_users`` the total over seeds.
    """
    _check_bootstrap_args(num_resamples, alpha)
    arrays = _as_seed_arrays(diff_per_user_seed)
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([a.mean() for a in arrays]))
    replicates = np.zeros(num_resamples, dtype=np.float64)
    for arr in arrays:
        replicates += _resampled_means(arr, num_resamples, rng)
    replicates /= len(arrays)
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    se = float(np.std(replicates))
    if se > 0:
        p_value = math.erfc(abs(estimate) / (se * math.sqrt(2.0)))
    else:
        p_value = 1.0 if estimate == 0 else 0.0
    return {
        "mean_diff": estimate,
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": p_value,
        "se": se,
        "num_seeds": len(arrays),
        "num_users": int(sum(a.shape[0] for a in arrays)),
        "num_resamples": int(num_resamples),
    }


def holm(p_values: Any) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values, in the input order (float64 ``[m]``).

    ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the ascending order; the result is
    monotone in ``p`` and at most 1. Raises ``ValueError`` for values outside ``[0, 1]`` or NaN.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be a 1-D array, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    m = p.shape[0]
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def _seed_metric(per_user_metrics, method, seed, metric) -> np.ndarray:
    try:
        values = per_user_metrics[method][seed][metric]
    except KeyError:
        raise ValueError(f"per_user_metrics[{method!r}][{seed!r}] has no metric {metric!r}") \
            from None
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"per_user_metrics[{method!r}][{seed!r}][{metric!r}] must be 1-D "
                         f"(one value per user), got shape {arr.shape}")
    return arr


def paired_table(per_user_metrics: Mapping[str, Mapping[Any, Mapping[str, Any]]], *,
                 baseline: str, metrics: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None, num_resamples: int = 2000,
                 seed: int = 0, alpha: float = 0.05) -> list[dict[str, Any]]:
    """One row per (method, metric): paired difference to ``baseline`` with CI and p-values.

    Args:
      per_user_metrics: ``{method: {seed: {metric: array[U_seed]}}}``; within one seed, every
        method's arrays list the same users in the same order (``U_seed`` may vary by seed).
        Users whose value is NaN for the method or the baseline (e.g. no held-out pair) are
        dropped from that pair; a seed left with no user is dropped.
      baseline: the method every other one is compared with.
      metrics: the metrics to compare (default: the baseline's, sorted).
      methods: the methods to compare (default: all but the baseline, in the mapping's order).
      num_resamples, seed, alpha: as :func:`paired_bootstrap` (every row uses the same ``seed``).

    Returns:
      rows ``{"method", "metric", "baseline", "mean_method", "mean_baseline", "mean_diff",
      "ci_low", "ci_high", "p_value", "p_holm", "significant", "significant_holm", "se",
      "num_seeds", "num_users", "num_dropped"}``. Means are over seeds of per-seed user means
      (on the kept users); ``p_holm`` is Holm-adjusted over the whole methods x metrics family;
      ``significant`` is True when the interval excludes 0, ``significant_holm`` when
      ``p_holm < alpha``. A row with no usable user has NaN statistics and p-values of 1.
    """
    _check_bootstrap_args(num_resamples, alpha)
    if baseline not in per_user_metrics:
        raise ValueError(f"baseline {baseline!r} not in per_user_metrics (methods: "
                         f"{', '.join(map(str, per_user_metrics))})")
    base = per_user_metrics[baseline]
    seeds = list(base)
    if not seeds:
        raise ValueError(f"per_user_metrics[{baseline!r}] has no seeds")
    if metrics is None:
        metrics = sorted(set().union(*(set(base[s]) for s in seeds)))
    if methods is None:
        methods = [m for m in per_user_metrics if m != baseline]
    rows = []
    for method in methods:
        if method not in per_user_metrics:
            raise ValueError(f"method {method!r} not in per_user_metrics")
        missing = [s for s in seeds if s not in per_user_metrics[method]]
        if missing:
            raise ValueError(f"per_user_metrics[{method!r}] lacks seeds {missing} of the "
                             f"baseline {baseline!r}")
        for metric in metrics:
            diffs, means_m, means_b, dropped = [], [], [], 0
            for s in seeds:
                a = _seed_metric(per_user_metrics, method, s, metric)
                b = _seed_metric(per_user_metrics, baseline, s, metric)
                if a.shape != b.shape:
                    raise ValueError(
                        f"per_user_metrics[{method!r}][{s!r}][{metric!r}] has {a.shape[0]} users "
                        f"but the baseline {baseline!r} has {b.shape[0]}")
                keep = np.isfinite(a) & np.isfinite(b)
                dropped += int(np.sum(~keep))
                if np.any(keep):
                    diffs.append(a[keep] - b[keep])
                    means_m.append(a[keep].mean())
                    means_b.append(b[keep].mean())
            row = {"method": method, "metric": metric, "baseline": baseline}
            if diffs:
                res = paired_bootstrap(diffs, num_resamples=num_resamples, seed=seed,
                                       alpha=alpha)
                row.update(mean_method=float(np.mean(means_m)),
                           mean_baseline=float(np.mean(means_b)))
            else:
                res = dict(mean_diff=math.nan, ci_low=math.nan, ci_high=math.nan, p_value=1.0,
                           se=math.nan, num_seeds=0, num_users=0)
                row.update(mean_method=math.nan, mean_baseline=math.nan)
            row.update({k: res[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "se",
                                            "num_seeds", "num_users")})
            row["num_dropped"] = dropped
            row["significant"] = bool(res["ci_low"] > 0 or res["ci_high"] < 0)
            rows.append(row)
    adjusted = holm([r["p_value"] for r in rows]) if rows else np.zeros(0)
    for row, p in zip(rows, adjusted):
        row["p_holm"] = float(p)
        row["significant_holm"] = bool(p < alpha)
    return rows


def format_paired_table(rows: Sequence[Mapping[str, Any]], digits: int = 4) -> str:
    """Markdown table of :func:`paired_table` rows (``*`` marks ``significant_holm``)."""
    lines = ["| method | metric | Δ vs baseline | CI | p | p (Holm) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        star = " *" if r.get("significant_holm") else ""
        lines.append(
            f"| {r['method']} | {r['metric']} | {r['mean_diff']:+.{digits}f}{star} | "
            f"[{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}] | {r['p_value']:.3g} | "
            f"{r['p_holm']:.3g} |")
    return "\n".join(lines) + "\n"
