"""Reward models as judges of a policy's greedy multi-step recommendations (docs/method.md §4.4).

    out = judge_rollout(policy_score_fn, reward_fn, eval_arrays, horizon=3, gamma=0.9)
    out["judge_score"], out["judge_rel_std"]

For each user (row of the evaluation dict) and step ``h = 0 .. H-1``:

1. ``scores = policy_score_fn(batch)`` — ``[B, V]`` scores for the item after the last valid position;
2. ``a_h = argmax_j scores[j]`` over ``j >= 1`` not in ``batch["exclude"]`` (the logged history) and not
   recommended at an earlier step of this rollout (so no item is recommended twice or re-recommended
   from the history); ties go to the lowest id (``jnp.argmax``);
3. ``r = reward_fn(batch, a_h)`` — ``[M, B]`` ratings predicted by M judges for ``a_h`` after the current
   history ``s_h``;
4. ``a_h`` is appended to the history (:func:`append_item`), giving ``s_{h+1}``.

Per judge ``m`` and user: ``G_m = sum_h gamma**h * r_m(s_h, a_h)`` (the first step is undiscounted).
Reported: ``judge_score`` = mean of ``G`` over valid users and judges; ``per_judge`` = mean over valid
users per judge; ``judge_std`` = population std (``ddof=0``) of ``per_judge`` across the M judges;
``judge_rel_std = judge_std / |judge_score|`` (NaN when ``judge_score == 0``).

How an appended recommendation is written into the history (choices, not facts from a source):

- position: ``lengths`` (the first padding slot); when the window is full (``lengths == L``) all
  ``[B, L]`` history arrays are shifted left by one (the oldest event drops out) and the item is written
  at ``L - 1``; ``lengths`` becomes ``min(lengths + 1, L)``;
- timestamp: the batch's last query timestamp, ``query_timestamps[lengths - 1]`` — the time of the
  request being served. The rollout happens "now", so all recommendations share that time; the new
  position's query timestamp is the same value (the next request is also "now"), which keeps the HSTU
  time bias at its zero-gap bucket for the simulated steps instead of inventing gaps;
- rating input: the mean of the M judges' predicted ratings for the item — the best available
  guess of the rating the user would have given, shared by all judges so the history is one sequence.

``policy_score_fn`` and ``reward_fn`` are the caller's (usually jitted) functions; they are called from
Python once per step. The greedy pick and the history update are jitted here (:func:`append_item`,
``greedy_pick`` and the step update), each compiled once per batch shape.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.eval.ranking import exclusion_mask, padded_batches

__all__ = ["append_item", "greedy_pick", "judge_rollout"]

_HISTORY_KEYS = ("inputs", "timestamps", "query_timestamps", "ratings")


@jax.jit
def append_item(
    batch: Mapping[str, jax.Array], items: jax.Array, ratings: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Append ``items [B]`` to each row's right-padded history; returns a new batch dict.

    Writes at position ``lengths`` (shifting ``inputs``, ``timestamps``, ``query_timestamps`` and
    ``ratings`` left by one first where ``lengths == L``), sets the timestamp and query timestamp of the
    new position to the row's last query timestamp (``query_timestamps[lengths - 1]``; ``timestamps``
    when there is no ``query_timestamps``; position 0 for an empty row), the rating input to
    ``ratings [B]`` (0 when None), and ``lengths`` to ``min(lengths + 1, L)``. Of the history keys only
    ``inputs`` and ``lengths`` are required; other keys pass through unchanged.
    """
    inputs = batch["inputs"]
    num_rows, max_len = inputs.shape
    lengths = batch["lengths"]
    n = lengths.astype(jnp.int32)
    full = n >= max_len
    position = jnp.where(full, max_len - 1, jnp.maximum(n, 0))
    last = jnp.clip(n - 1, 0, max_len - 1)
    rows = jnp.arange(num_rows)

    if "query_timestamps" in batch:
        now = batch["query_timestamps"][rows, last]
    elif "timestamps" in batch:
        now = batch["timestamps"][rows, last]
    else:
        now = None
    new_values = {
        "inputs": items,
        "timestamps": now,
        "query_timestamps": now,
        "ratings": jnp.zeros((num_rows,), jnp.float32) if ratings is None else ratings,
    }

    out = dict(batch)
    for key in _HISTORY_KEYS:
        if key not in batch:
            continue
        value = batch[key]
        shifted = jnp.where(full[:, None], jnp.roll(value, -1, axis=1), value)
        out[key] = shifted.at[rows, position].set(new_values[key].astype(value.dtype))
    out["lengths"] = jnp.minimum(n + 1, max_len).astype(lengths.dtype)
    return out


@jax.jit
def greedy_pick(scores: jax.Array, exclude: jax.Array, recommended: jax.Array) -> jax.Array:
    """``argmax_j scores[b, j]`` over ``j >= 1`` not in ``exclude[b]`` nor ``recommended[b]``; int32 [B].

    Ties go to the lowest id. Returns 0 for a row where every column is banned.
    """
    num_columns = scores.shape[1]
    banned = exclusion_mask(
        jnp.concatenate([exclude.astype(jnp.int32), recommended.astype(jnp.int32)], axis=1),
        num_columns,
    )
    masked = jnp.where(banned, -jnp.inf, scores.astype(jnp.float32))
    best = jnp.argmax(masked, axis=1).astype(jnp.int32)
    return jnp.where(jnp.take_along_axis(banned, best[:, None], axis=1)[:, 0], 0, best)


@jax.jit
def _advance(
    batch: Mapping[str, jax.Array],
    recommended: jax.Array,
    returns: jax.Array,
    items: jax.Array,
    rewards: jax.Array,
    step: jax.Array,
    gamma: jax.Array,
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """One rollout step after the rewards are known: accumulate, record, append to the history."""
    rewards = rewards.astype(jnp.float32)
    returns = returns + jnp.power(gamma, step) * rewards
    recommended = recommended.at[:, step].set(items)
    batch = append_item(batch, items, jnp.mean(rewards, axis=0))
    return batch, recommended, returns


def _check_config(horizon: Any, gamma: Any, batch_size: Any) -> tuple[int, float, int]:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be ≥ 1 (number of greedy recommendation steps), got {horizon!r}")
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise ValueError(f"gamma must be a number in (0, 1], got {gamma!r}") from None
    if not 0.0 < g <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(horizon), g, int(batch_size)


def _check_rewards(rewards: Any, batch_size: int, num_judges: int | None) -> int:
    shape = tuple(np.shape(rewards))
    if len(shape) != 2 or shape[1] != batch_size:
        raise ValueError(
            f"reward_fn(batch, items) must return [M, B] = [M, {batch_size}] predicted ratings "
            f"(M judges), got shape {shape}"
        )
    if shape[0] == 0:
        raise ValueError(
            f"reward_fn returned shape {shape}: M = 0 judges; the judge needs at least one reward model"
        )
    if num_judges is not None and shape[0] != num_judges:
        raise ValueError(
            f"reward_fn changed the number of judges: expected [{num_judges}, {batch_size}], got shape {shape}"
        )
    return shape[0]


def judge_rollout(
    policy_score_fn: Callable[[Mapping[str, jax.Array]], jax.Array],
    reward_fn: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array],
    arrays: Mapping[str, Any],
    *,
    horizon: int = 3,
    gamma: float = 0.9,
    batch_size: int = 256,
    return_recommended: bool = False,
) -> dict[str, Any]:
    """Greedy H-step rollout of the policy, scored by M reward models (see the module docstring).

    Args:
      policy_score_fn: ``policy_score_fn(batch) -> [B, V]`` next-item scores after the batch's last valid
        position; ``batch`` is a dict of jax arrays with the keys of ``arrays`` (plus ``valid``).
      reward_fn: ``reward_fn(batch, items [B]) -> [M, B]`` ratings predicted by M judges for recommending
        ``items`` after the batch's current history.
      arrays: the evaluation dict of docs/architecture.md; needs ``inputs``, ``lengths``, ``exclude``
        (and uses ``timestamps``, ``query_timestamps``, ``ratings``, ``valid`` when present).
      horizon: H >= 1 steps; gamma: discount in (0, 1]; batch_size: rows per call (the last batch is
        padded with ``valid = 0`` rows, one compile).
      return_recommended: also return the recommended ids, int32 ``[U, H]`` for all U rows.

    Returns ``{"judge_score", "judge_std", "judge_rel_std", "per_judge" (list of M floats), "horizon",
    "gamma", "num_judges", "num_users"}`` (+ ``"recommended"``). With no valid user the scores are NaN.

    Raises ValueError for horizon < 1, gamma outside (0, 1], a reward_fn result that is not ``[M, B]``
    or has M = 0, and when a valid user has no recommendable item left.
    """
    horizon, gamma, batch_size = _check_config(horizon, gamma, batch_size)
    for key in ("inputs", "lengths", "exclude"):
        if key not in arrays:
            raise ValueError(f"arrays must contain {key!r}; got keys {sorted(arrays)}")

    num_judges: int | None = None
    totals: np.ndarray | None = None
    num_users = 0
    recommended_rows = []
    gamma_arr = jnp.asarray(gamma, jnp.float32)
    for host_batch, num_real in padded_batches(arrays, batch_size):
        valid = np.asarray(host_batch["valid"]) != 0
        batch = {key: jnp.asarray(value) for key, value in host_batch.items()}
        recommended = jnp.zeros((batch_size, horizon), jnp.int32)
        returns = None
        for step in range(horizon):
            scores = policy_score_fn(batch)
            shape = tuple(np.shape(scores))
            if len(shape) != 2 or shape[0] != batch_size:
                raise ValueError(
                    f"policy_score_fn must return [B, V] = [{batch_size}, V] scores, got shape {shape}"
                )
            items = greedy_pick(scores, batch["exclude"], recommended)
            if np.any(np.asarray(items)[valid] == 0):
                raise ValueError(
                    f"no recommendable item left at step {step}: the V = {shape[1]} columns are all "
                    "padding, history or already recommended for some user"
                )
            rewards = reward_fn(batch, items)
            num_judges = _check_rewards(rewards, batch_size, num_judges)
            if returns is None:
                returns = jnp.zeros((num_judges, batch_size), jnp.float32)
            batch, recommended, returns = _advance(
                batch, recommended, returns, items, jnp.asarray(rewards), jnp.int32(step), gamma_arr
            )
        batch_returns = np.asarray(returns, dtype=np.float64)[:, valid]
        totals = batch_returns.sum(axis=1) if totals is None else totals + batch_returns.sum(axis=1)
        num_users += int(valid.sum())
        if return_recommended:
            recommended_rows.append(np.asarray(recommended)[:num_real])

    assert totals is not None and num_judges is not None
    if num_users:
        per_judge = totals / num_users
        score = float(np.mean(per_judge))
        std = float(np.std(per_judge))
        rel_std = std / abs(score) if score != 0.0 else math.nan
    else:
        per_judge = np.full(num_judges, math.nan)
        score = std = rel_std = math.nan
    out: dict[str, Any] = {
        "judge_score": score,
        "judge_std": std,
        "judge_rel_std": rel_std,
        "per_judge": [float(v) for v in per_judge],
        "horizon": horizon,
        "gamma": gamma,
        "num_judges": num_judges,
        "num_users": num_users,
    }
    if return_recommended:
        out["recommended"] = np.concatenate(recommended_rows, axis=0).astype(np.int32)
    return out
