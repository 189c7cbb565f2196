"""Off-policy evaluation: the value of a target policy from logged bandit feedback.

    mu = popularity_propensities(train_actions, V)[actions]      # or model_propensities(...)
    est = estimate_all(actions, rewards, mu, target_probs=pi, reward_model=r_hat, max_weight=20)
    est["dr"]["value"], est["dr"]["se"]

Logged data: ``N`` events ``(s_n, a_n, r_n)`` with the state ``s_n`` drawn from the user
distribution, ``a_n ~ mu(.|s_n)`` from the logging policy and ``r_n`` the observed reward. Row
``n`` of every ``[N, V]`` array is about state ``s_n`` (the rows *are* the states, repeated as
often as they were logged), column ``a`` about item ``a``.

* ``target_probs [N, V]``: ``pi(.|s_n)``, the target policy (rows sum to 1);
  ``target_action_probs [N]``: just ``pi(a_n|s_n)`` (enough for the IPS family);
* ``propensities [N]``: ``mu(a_n|s_n) > 0``, true or estimated;
* ``reward_model [N, V]``: predictions ``r^(s_n, .)``.

Estimators of ``V(pi) = E_s E_{a~pi(.|s)} E[r|s, a]``, with ``w_n = pi(a_n|s_n) / mu(a_n|s_n)``::

    DM      = 1/N sum_n sum_a pi(a|s_n) r^(s_n, a)
    IPS     = 1/N sum_n w_n r_n
    cIPS    = 1/N sum_n min(w_n, M) r_n                     (clipped at M)
    SNIPS   = sum_n w_n r_n / sum_n w_n
    DR      = DM + 1/N sum_n w_n (r_n - r^(s_n, a_n))

With the true propensities (and ``mu > 0`` wherever ``pi > 0``) IPS and DR are unbiased (DR for
any reward model), SNIPS is consistent (bias ``O(1/N)``); DM is unbiased only with a correct
reward model; clipping trades variance for a downward bias (for ``r >= 0``). Every estimate
comes with a standard error: for the mean-type estimators the sample std of the per-event terms
over ``sqrt(N)``, for SNIPS the delta-method ``sqrt(sum w_n^2 (r_n - SNIPS)^2) / sum w_n``. They
assume independent events; events of one user are not independent, so treat them as a lower
bound when users contribute many events.

Propensities. A real log rarely records ``mu``; estimate it: :func:`popularity_propensities`
(a context-free ``mu^(a) ∝ count(a) + smoothing``, mis-specified whenever the logging policy
depends on the state, which biases IPS) or :func:`model_propensities` (any model's
``[N, V]`` probabilities, e.g. a behaviour-cloning model's softmax over the logged states).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "popularity_propensities",
    "model_propensities",
    "importance_weights",
    "direct_method",
    "ips",
    "snips",
    "doubly_robust",
    "estimate_all",
]

# Rows of probability matrices must sum to 1 within this tolerance (float32 softmax outputs).
_ROW_SUM_TOL = 1e-3


# ---------------------------------------------------------------- input checks

def _vector(name: str, values: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D [N] array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have N = {n} entries like actions, got {arr.shape[0]}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


def _matrix(name: str, values: Any, n: int, num_items: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} must be a 2-D [N, V] array with N = {n}, got shape {arr.shape}")
    if num_items is not None and arr.shape[1] != num_items:
        raise ValueError(f"{name} must have V = {num_items} columns, got {arr.shape[1]}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


def _probabilities(name: str, values: Any, n: int, num_items: int | None = None) -> np.ndarray:
    arr = _matrix(name, values, n, num_items)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 (probabilities)")
    sums = arr.sum(axis=1)
    bad = np.abs(sums - 1.0) > _ROW_SUM_TOL
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} rows must sum to 1 (probabilities over the V items); "
                         f"row {i} sums to {sums[i]:.6g}")
    return arr


def _actions(actions: Any, num_items: int | None = None) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.ndim != 1:
        raise ValueError(f"actions must be a 1-D [N] array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("actions must hold at least one logged event")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"actions must be integer item ids, got dtype {arr.dtype}")
    if num_items is not None and (arr.min() < 0 or arr.max() >= num_items):
        raise ValueError(f"actions must lie in [0, {num_items}), got range "
                         f"[{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def _propensities(values: Any, n: int) -> np.ndarray:
    mu = _vector("propensities", values, n)
    bad = ~((mu > 0) & (mu <= 1 + 1e-6))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"propensities must be in (0, 1] (the logging policy must give every "
                         f"logged action a positive probability); event {i} has {float(mu[i])!r}")
    return mu


def _estimate(terms: np.ndarray) -> dict[str, float]:
    n = terms.shape[0]
    se = float(np.std(terms, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"value": float(np.mean(terms)), "se": se}


# ---------------------------------------------------------------- propensities

def popularity_propensities(train_actions: Any, num_items: int, *, smoothing: float = 1.0,
                            support: Any = None) -> np.ndarray:
    """Context-free logging propensities ``mu^(a) = (c_a + smoothing) / sum_b (c_b + smoothing)``.

    ``c_a`` counts item ``a`` in ``train_actions`` (a log of the same logging policy, e.g. the
    training split). ``support [V]`` (bool, optional) restricts the distribution to the items
    that can be logged (e.g. all but the padding id 0): the others get 0 and no smoothing.
    Index the result with the logged actions: ``popularity_propensities(...)[actions]``.

    Returns:
      float64 ``[V]`` summing to 1.
    """
    if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)) \
            or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    if not (isinstance(smoothing, (int, float, np.floating)) and smoothing >= 0
            and math.isfinite(smoothing)):
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
    acts = np.asarray(train_actions)
    if acts.ndim != 1:
        raise ValueError(f"train_actions must be a 1-D array, got shape {acts.shape}")
    if acts.size and not np.issubdtype(acts.dtype, np.integer):
        raise ValueError(f"train_actions must be integer item ids, got dtype {acts.dtype}")
    if acts.size and (acts.min() < 0 or acts.max() >= num_items):
        raise ValueError(f"train_actions must lie in [0, {num_items}), got range "
                         f"[{acts.min()}, {acts.max()}]")
    counts = np.bincount(acts.astype(np.int64), minlength=num_items).astype(np.float64)
    mass = counts + smoothing
    if support is not None:
        support = np.asarray(support)
        if support.shape != (num_items,):
            raise ValueError(f"support must have shape ({num_items},), got {support.shape}")
        support = support != 0
        outside = counts[~support].sum()
        if outside:
            raise ValueError(f"train_actions hold {int(outside)} events outside the support")
        mass = np.where(support, mass, 0.0)
    total = mass.sum()
    if total <= 0:
        raise ValueError("popularity_propensities: no training action and smoothing = 0 leave "
                         "every item at probability 0")
    return mass / total


def model_propensities(logging_probs: Any, actions: Any, *,
                       min_propensity: float | None = None) -> np.ndarray:
    """``mu^(a_n|s_n) = logging_probs[n, a_n]`` from any model of the logging policy.

    Args:
      logging_probs: ``[N, V]`` the model's probabilities at the logged states (rows sum to 1),
        e.g. ``softmax(bc_model(states))``.
      actions: ``[N]`` logged actions.
      min_propensity: optional floor: values below it are raised to it (a model may give a
        logged action almost 0 probability, which makes its weight explode).

    Returns:
      float64 ``[N]`` propensities.
    """
    acts = _actions(actions)
    probs = _probabilities("logging_probs", logging_probs, acts.shape[0])
    if acts.max() >= probs.shape[1] or acts.min() < 0:
        raise ValueError(f"actions must lie in [0, {probs.shape[1]}) (the columns of "
                         f"logging_probs), got range [{acts.min()}, {acts.max()}]")
    mu = probs[np.arange(acts.shape[0]), acts]
    if min_propensity is not None:
        if not (isinstance(min_propensity, (int, float, np.floating))
                and 0 < min_propensity <= 1):
            raise ValueError(f"min_propensity must be in (0, 1], got {min_propensity!r}")
        mu = np.maximum(mu, min_propensity)
    return mu


# ---------------------------------------------------------------- estimators

def importance_weights(target_action_probs: Any, propensities: Any) -> np.ndarray:
    """``w_n = pi(a_n|s_n) / mu(a_n|s_n)``, float64 ``[N]``."""
    pi = _vector("target_action_probs", target_action_probs)
    if np.any(pi < 0) or np.any(pi > 1 + 1e-6):
        raise ValueError("target_action_probs must be in [0, 1] (probabilities)")
    mu = _propensities(propensities, pi.shape[0])
    return pi / mu


def direct_method(target_probs: Any, reward_model: Any) -> dict[str, float]:
    """``DM = 1/N sum_n sum_a pi(a|s_n) r^(s_n, a)`` with its standard error."""
    probs = np.asarray(target_probs)
    n = probs.shape[0] if probs.ndim else 0
    probs = _probabilities("target_probs", probs, n)
    r_hat = _matrix("reward_model", reward_model, n, probs.shape[1])
    if n == 0:
        raise ValueError("target_probs must hold at least one logged state")
    return _estimate(np.sum(probs * r_hat, axis=1))


def ips(rewards: Any, target_action_probs: Any, propensities: Any, *,
        max_weight: float | None = None) -> dict[str, float]:
    """``IPS = 1/N sum_n w_n r_n``; with ``max_weight = M`` the clipped ``min(w_n, M)``."""
    w = importance_weights(target_action_probs, propensities)
    r = _vector("rewards", rewards, w.shape[0])
    if max_weight is not None:
        if not (isinstance(max_weight, (int, float, np.floating)) and max_weight > 0):
            raise ValueError(f"max_weight must be > 0, got {max_weight!r}")
        w = np.minimum(w, max_weight)
    return _estimate(w * r)


def snips(rewards: Any, target_action_probs: Any, propensities: Any) -> dict[str, float]:
    """Self-normalised IPS ``sum w_n r_n / sum w_n`` with its delta-method standard error."""
    w = importance_weights(target_action_probs, propensities)
    r = _vector("rewards", rewards, w.shape[0])
    total = w.sum()
    if total <= 0:
        return {"value": math.nan, "se": math.nan}
    value = float(np.sum(w * r) / total)
    se = float(math.sqrt(np.sum(w ** 2 * (r - value) ** 2)) / total)
    return {"value": value, "se": se}


def doubly_robust(actions: Any, rewards: Any, propensities: Any, target_probs: Any,
                  reward_model: Any) -> dict[str, float]:
    """``DR = 1/N sum_n [sum_a pi(a|s_n) r^(s_n, a) + w_n (r_n - r^(s_n, a_n))]``."""
    acts = _actions(actions)
    n = acts.shape[0]
    probs = _probabilities("target_probs", target_probs, n)
    r_hat = _matrix("reward_model", reward_model, n, probs.shape[1])
    _actions(acts, probs.shape[1])
    rows = np.arange(n)
    w = importance_weights(probs[rows, acts], propensities)
    r = _vector("rewards", rewards, n)
    terms = np.sum(probs * r_hat, axis=1) + w * (r - r_hat[rows, acts])
    return _estimate(terms)


def estimate_all(actions: Any, rewards: Any, propensities: Any, *, target_probs: Any = None,
                 target_action_probs: Any = None, reward_model: Any = None,
                 max_weight: float | None = None) -> dict[str, Any]:
    """Every estimator the inputs allow, as ``{name: {"value", "se"}}`` plus diagnostics.

    Args:
      actions: ``[N]`` logged actions; rewards: ``[N]`` observed rewards.
      propensities: ``[N]`` logging propensities ``mu(a_n|s_n)``.
      target_probs: ``[N, V]`` ``pi(.|s_n)``; or only ``target_action_probs [N]``
        (then DM and DR are skipped). Giving both checks they agree.
      reward_model: ``[N, V]`` ``r^(s_n, .)`` (needed, with ``target_probs``, for DM and DR).
      max_weight: clipping level ``M`` of ``clipped_ips`` (omitted when None).

    Returns:
      ``{"ips", "snips", ["clipped_ips"], ["dm", "dr"]: {"value", "se"},
      "diagnostics": {"num_events", "mean_weight", "max_weight", "ess"}}`` where
      ``ess = (sum w)^2 / sum w^2`` is the effective sample size and ``mean_weight`` should be
      close to 1 when the propensities are right (``E_mu[w] = 1``).
    """
    acts = _actions(actions)
    n = acts.shape[0]
    r = _vector("rewards", rewards, n)
    if target_probs is None and target_action_probs is None:
        raise ValueError("pass target_probs [N, V] or target_action_probs [N]")
    probs = None
    if target_probs is not None:
        probs = _probabilities("target_probs", target_probs, n)
        _actions(acts, probs.shape[1])
        pi_a = probs[np.arange(n), acts]
        if target_action_probs is not None:
            given = _vector("target_action_probs", target_action_probs, n)
            if not np.allclose(given, pi_a, rtol=1e-4, atol=1e-6):
                raise ValueError("target_action_probs disagree with target_probs at the logged "
                                 "actions")
    else:
        pi_a = _vector("target_action_probs", target_action_probs, n)
    mu = _propensities(propensities, n)
    out: dict[str, Any] = {
        "ips": ips(r, pi_a, mu),
        "snips": snips(r, pi_a, mu),
    }
    if max_weight is not None:
        out["clipped_ips"] = ips(r, pi_a, mu, max_weight=max_weight)
    if reward_model is not None and probs is not None:
        out["dm"] = direct_method(probs, reward_model)
        out["dr"] = doubly_robust(acts, r, mu, probs, reward_model)
    elif reward_model is not None:
        raise ValueError("reward_model needs target_probs [N, V] (DM and DR sum over all items)")
    w = pi_a / mu
    out["diagnostics"] = {
        "num_events": n,
        "mean_weight": float(w.mean()),
        "max_weight": float(w.max()),
        "ess": float(w.sum() ** 2 / np.sum(w ** 2)) if np.any(w > 0) else 0.0,
    }
    return out
