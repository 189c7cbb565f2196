"""Two sets of independent training runs compared on one metric: difference of means, a
bootstrap interval over runs, and a permutation p-value.

    res = two_sample_runs([.0612, .0700, .0650], [.0850, .0763, .0838, .0775])
    # {"mean_a", "mean_b", "sd_a", "sd_b", "n_a", "n_b", "diff", "ci_low", "ci_high",
    #  "p_value", "exact"}

Use it where the unit of replication is a training run (a seed of ours, an unseeded run of
another implementation) and the runs of the two sets are not paired, e.g. our HSTU against the
public reference (``benchmarks/reference_parity.py``). Comparisons on the same users and seeds
are paired: use :mod:`genrec_jax.eval.paired_stats` for those.

Statistic: ``diff = mean(a) − mean(b)``.

p-value (two-sided, ``H0``: the two sets of runs come from one distribution): the permutation
test on the difference of means. Every way of splitting the pooled ``n_a + n_b`` values into
sets of sizes ``n_a`` and ``n_b`` is equally likely under ``H0``; ``p`` is the fraction of
splits whose ``|diff|`` is at least the observed one (ties count, with a relative tolerance of
1e-9). All ``C(n_a + n_b, n_a)`` splits are enumerated while there are at most ``max_exact``
(``exact=True``); beyond that ``num_resamples`` random splits estimate it as
``(1 + #{|diff*| ≥ |diff|}) / (1 + num_resamples)``. With few runs ``p`` cannot be small: it
is at least ``1 / C(n_a + n_b, n_a)``, twice that when ``n_a = n_b`` (a split and its mirror):
3 runs against 3 give at least 2/20 = 0.1, 3 against 7 at least 1/120 ≈ 0.008.

Interval: the percentile interval ``[q_{α/2}, q_{1−α/2}]`` of ``num_resamples`` bootstrap
replicates of ``diff``, each resampling the runs of ``a`` and of ``b`` separately with
replacement. It describes run-to-run noise only (each run's own metric also carries the noise
of its test users, shared by runs scored on the same users), and with 3 runs a side it is
rough (it tends to be too narrow); read it beside ``sd_a`` / ``sd_b`` and the p-value.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from genrec_jax.eval.paired_stats import _check_bootstrap_args, _resampled_means

__all__ = ["two_sample_runs"]

_TIE_RTOL = 1e-9


def _runs(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name} must be a 1-D sequence of at least 2 runs' values, got "
                         f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf): {arr.tolist()}")
    return arr


def _split_diffs_exact(pooled: np.ndarray, n_a: int) -> np.ndarray:
    """mean(first set) − mean(rest) for every choice of ``n_a`` of the pooled values."""
    n = pooled.size
    total = pooled.sum()
    sums = np.array([pooled[list(idx)].sum() for idx in itertools.combinations(range(n), n_a)])
    return sums / n_a - (total - sums) / (n - n_a)


def _split_diffs_sampled(pooled: np.ndarray, n_a: int, num: int,
                         rng: np.random.Generator) -> np.ndarray:
    n = pooled.size
    perms = np.argsort(rng.random((num, n)), axis=1)
    first = pooled[perms[:, :n_a]].sum(axis=1)
    return first / n_a - (pooled.sum() - first) / (n - n_a)


def two_sample_runs(a: Sequence[float], b: Sequence[float], *, num_resamples: int = 10000,
                    seed: int = 0, alpha: float = 0.05, max_exact: int = 200_000) -> dict:
    """Compare runs ``a`` with runs ``b`` (one metric value per run; see the module docstring).

    Returns ``mean_a``, ``mean_b``, ``sd_a``, ``sd_b`` (sample std, ddof 1), ``n_a``, ``n_b``,
    ``diff`` (mean_a − mean_b), ``ci_low`` / ``ci_high`` (bootstrap percentile interval at level
    1 − alpha), ``p_value`` (two-sided permutation test) and ``exact`` (whether every split was
    enumerated). Raises ``ValueError`` on fewer than 2 runs a side, non-finite values, or
    ``alpha`` / ``num_resamples`` out of range (``num_resamples`` must be a positive integer, as
    in :func:`genrec_jax.eval.paired_stats.paired_bootstrap`).
    """
    xa, xb = _runs(a, "a"), _runs(b, "b")
    _check_bootstrap_args(num_resamples, alpha)
    rng = np.random.default_rng(seed)
    diff = float(xa.mean() - xb.mean())
    pooled = np.concatenate([xa, xb])
    exact = math.comb(pooled.size, xa.size) <= int(max_exact)
    threshold = abs(diff) * (1.0 - _TIE_RTOL)
    if exact:
        split = _split_diffs_exact(pooled, xa.size)
        p_value = float(np.mean(np.abs(split) >= threshold))
    else:
        split = _split_diffs_sampled(pooled, xa.size, num_resamples, rng)
        p_value = float((1 + np.sum(np.abs(split) >= threshold)) / (1 + num_resamples))
    boot = (_resampled_means(xa, num_resamples, rng)
            - _resampled_means(xb, num_resamples, rng))
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"mean_a": float(xa.mean()), "mean_b": float(xb.mean()),
            "sd_a": float(xa.std(ddof=1)), "sd_b": float(xb.std(ddof=1)),
            "n_a": int(xa.size), "n_b": int(xb.size), "diff": diff,
            "ci_low": float(low), "ci_high": float(high), "p_value": min(1.0, p_value),
            "exact": bool(exact)}
