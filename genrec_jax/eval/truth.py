"""Ground truth of any policy in the simulated world: one-step top-k and multi-step rollouts.

    ids = SimIds.from_dataset(data.dataset)                    # dense (model) <-> raw (simulator)
    one = true_topk_rating(sim, data.test, score_fn, ids=ids, ks=(1, 10))
    one["true_rating@10"], one["best_rating@10"], one["regret@10"]
    users, hist = eval_histories(data.test, ids)
    roll = true_rollout_value(sim, users, hist, score_fn, ids=ids, horizon=3, gamma=0.9, k=1)
    roll["true_value"]                                         # mean discounted true return

``score_fn(batch) -> [B, V]`` is a next-item scorer with the calling convention of
:func:`genrec_jax.eval.ranking.evaluate` and :func:`genrec_jax.eval.judge.judge_rollout`
(column ``j`` = dense item id ``j``, column 0 padding), e.g. ``model_score_fn(graphdef, params)``
or a :mod:`genrec_jax.eval.reference_policies` function. The batch holds the evaluation keys of
docs/architecture.md (``inputs, timestamps, query_timestamps, ratings [B, L]``, ``lengths``,
``exclude``, ``user``, ``valid``); ``exclude`` holds each user's *whole* history in order
(0-padded; zeros may sit between entries after a rollout step): the truth reads the user's state
from it, so evaluation arrays must be built with ``exclude="history"`` (the default).

One step (:func:`true_topk_rating`). For each valid row: ``state = sim.state_after(user,
history)``; the policy's top-k = the k highest scores over dense items not in the history (ties:
lower id first); ``true_rating@k`` = mean ``r*(state, ·)`` of those k, ``best_rating@k`` = mean of
the k largest ``r*(state, ·)`` over the same candidates, ``regret@k`` = their difference; each
averaged over valid rows.

Rollout (:func:`true_rollout_value`), the judge's H and γ (:mod:`genrec_jax.eval.judge`): for
``h = 0..H-1``: the policy shows its top-k ``S_h`` (history excluded); the user takes ``a_h =
S_h[argmax_j choice_sharpness·r*(s_h, S_h[j]) + g_{u,h,j}]`` with ``g`` the fixed Gumbel stream
:meth:`Simulator.rollout_gumbel` (``k = 1``: the top item, exactly the judge's greedy pick); the
return gains ``γ^h · r*(s_h, a_h)``; ``a_h`` joins the history (``exclude`` and, via
:func:`genrec_jax.eval.judge.append_item`, the input window, timestamp "now", rating input
``r*``) and the state steps. Unlike the judge, an item shown but not taken may be shown again.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from genrec_jax.data.simulator import Simulator, padded_ids
from genrec_jax.eval.judge import append_item
from genrec_jax.eval.ranking import padded_batches

__all__ = ["SimIds", "eval_histories", "history_arrays", "simulator_truth", "true_topk_rating",
           "true_rollout_value", "true_rollout_value_arrays"]

ScoreFn = Callable[[Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class SimIds:
    """The map between dense ids (models, evaluation arrays) and the simulator's raw ids.

    Attributes:
      user_keys: ``[U]`` raw user id of each dense user index ``0..U-1``.
      item_keys: ``[I + 1]`` raw item id of each dense item id (entry 0 = 0, padding).
    """

    user_keys: np.ndarray
    item_keys: np.ndarray

    @classmethod
    def from_dataset(cls, ds) -> "SimIds":
        """From a :class:`~genrec_jax.data.sequences.SequenceDataset` built from simulated
        events (its ``user_keys`` / ``item_keys``)."""
        items = np.asarray(ds.item_keys, dtype=object)
        items[0] = 0
        return cls(np.asarray(ds.user_keys, np.int64), items.astype(np.int64))

    @classmethod
    def identity(cls, sim: Simulator) -> "SimIds":
        """Dense id = raw id for every user and item (dense user index = raw id - 1)."""
        c = sim.config
        return cls(np.arange(1, c.num_users + 1, dtype=np.int64),
                   np.arange(0, c.num_items + 1, dtype=np.int64))

    @property
    def num_columns(self) -> int:
        """``V = I + 1``, the score width of a model of these items."""
        return len(self.item_keys)

    def raw_items(self, dense) -> np.ndarray:
        """Raw ids of dense item ids (0 stays 0)."""
        dense = np.asarray(dense, np.int64)
        if dense.size and (dense.min() < 0 or dense.max() >= self.num_columns):
            raise ValueError(f"dense item ids must be in 0..{self.num_columns - 1}")
        return self.item_keys[dense]

    def dense_items(self, raw) -> np.ndarray:
        """Dense ids of raw item ids (0 stays 0); ValueError for items absent from the data."""
        raw = np.asarray(raw, np.int64)
        known = self.item_keys[1:]
        pos = np.clip(np.searchsorted(known, raw), 0, len(known) - 1)
        ok = (known[pos] == raw) | (raw == 0)
        if not np.all(ok):
            raise ValueError(f"raw item ids not in the data: {np.unique(raw[~ok])[:5].tolist()}")
        return np.where(raw == 0, 0, pos + 1)

    def raw_users(self, dense_users) -> np.ndarray:
        """Raw user ids of dense user indices."""
        return self.user_keys[np.asarray(dense_users, np.int64)]

    def dense_users(self, raw) -> np.ndarray:
        """Dense user indices of raw user ids; ValueError for users absent from the data."""
        raw = np.asarray(raw, np.int64)
        pos = np.clip(np.searchsorted(self.user_keys, raw), 0, len(self.user_keys) - 1)
        if not np.all(self.user_keys[pos] == raw):
            raise ValueError(f"raw user ids not in the data: {raw[self.user_keys[pos] != raw][:5]}")
        return pos

    def columns(self, sim: Simulator, raw_table: np.ndarray) -> np.ndarray:
        """``[B, V]`` float64 from a simulator table ``[B, num_items]`` (column j = raw item
        j+1): column ``d`` = raw item ``item_keys[d]``, column 0 = -inf."""
        out = np.full((raw_table.shape[0], self.num_columns), -np.inf)
        out[:, 1:] = raw_table[:, self.item_keys[1:] - 1]
        return out


def _histories_of(batch: Mapping[str, Any], ids: SimIds):
    users = ids.raw_users(np.asarray(batch["user"]))
    exclude = np.asarray(batch["exclude"], np.int64)
    # Zeros may sit between entries after a rollout step: move them to the right, order kept.
    order = np.argsort(exclude == 0, axis=1, kind="stable")
    dense = np.take_along_axis(exclude, order, axis=1)
    return users, ids.raw_items(dense), dense


def eval_histories(arrays: Mapping[str, Any], ids: SimIds):
    """``(users [U] raw ids, histories [U, H] raw ids 0-padded)`` of evaluation arrays built
    with ``exclude="history"``."""
    users, raw, _ = _histories_of(arrays, ids)
    return users, raw


def _policy_topk(scores: np.ndarray, banned: np.ndarray, k: int) -> np.ndarray:
    """``[B, k]`` dense ids of the k best allowed scores, ties to the lower id."""
    masked = np.where(banned, -np.inf, np.asarray(scores, np.float64))
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def _banned(dense_hist: np.ndarray, num_columns: int) -> np.ndarray:
    banned = np.zeros((dense_hist.shape[0], num_columns), bool)
    rows, cols = np.nonzero(dense_hist > 0)
    banned[rows, dense_hist[rows, cols]] = True
    banned[:, 0] = True
    return banned


def _check_scores(scores, batch_size: int, num_columns: int) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.shape != (batch_size, num_columns):
        raise ValueError(f"score_fn must return [B, V] = [{batch_size}, {num_columns}] scores "
                         f"(V = 1 + items of ids), got shape {scores.shape}")
    return scores


def true_topk_rating(sim: Simulator, arrays: Mapping[str, Any], score_fn: ScoreFn, *,
                     ids: SimIds, ks: Sequence[int] = (1, 10), batch_size: int = 256
                     ) -> dict[str, Any]:
    """The true expected rating of the policy's top-k at each user's current state.

    Returns ``true_rating@k``, ``best_rating@k``, ``regret@k`` (means over valid rows, floats),
    ``num_users``, and ``per_user``: ``{"true_rating@k": [N], "best_rating@k": [N]}`` float64
    for all N rows (NaN for invalid rows). See the module docstring."""
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    kmax = max(ks)
    n = len(np.asarray(arrays["user"]))
    per = {f"{m}@{k}": np.full(n, np.nan) for m in ("true_rating", "best_rating") for k in ks}
    start = 0
    for batch, num_real in padded_batches(arrays, batch_size):
        users, raw_hist, dense_hist = _histories_of(batch, ids)
        scores = _check_scores(score_fn(batch), batch_size, ids.num_columns)
        truth = ids.columns(sim, sim.rating_from_state(sim.state_after(users, raw_hist), users))
        banned = _banned(dense_hist, ids.num_columns)
        top = _policy_topk(scores, banned, kmax)
        got = np.take_along_axis(truth, top, axis=1)
        ideal = -np.sort(-np.where(banned, -np.inf, truth), axis=1)[:, :kmax]
        valid = np.asarray(batch["valid"]) != 0
        rows = slice(start, start + num_real)
        for k in ks:
            per[f"true_rating@{k}"][rows] = np.where(valid, got[:, :k].mean(1), np.nan)[:num_real]
            per[f"best_rating@{k}"][rows] = np.where(valid, ideal[:, :k].mean(1), np.nan)[:num_real]
        start += num_real
    out: dict[str, Any] = {}
    for k in ks:
        out[f"true_rating@{k}"] = float(np.nanmean(per[f"true_rating@{k}"]))
        out[f"best_rating@{k}"] = float(np.nanmean(per[f"best_rating@{k}"]))
        out[f"regret@{k}"] = out[f"best_rating@{k}"] - out[f"true_rating@{k}"]
    out["num_users"] = int(np.sum(~np.isnan(per[f"true_rating@{kmax}"])))
    out["per_user"] = per
    return out


def history_arrays(users, histories, ids: SimIds, *, max_len: int = 50, timestamps=None,
                   ratings=None) -> dict[str, np.ndarray]:
    """Evaluation arrays (docs/architecture.md) of raw ``users [B]`` and raw ``histories``
    (``[B, H]`` 0-padded or ``B`` iterables, oldest first): the last ``max_len`` events as
    ``inputs``; ``timestamps`` / ``ratings`` ``[B, H]`` aligned with ``histories`` (default: all
    0 / 0.0); ``query_timestamps[i] = timestamps[i + 1]``, the last one repeating the last
    timestamp; ``exclude`` = the whole dense history; ``valid`` = 1 for non-empty histories."""
    users = np.atleast_1d(np.asarray(users, np.int64))
    hist = padded_ids(histories, len(users))
    count = (hist > 0).sum(1)
    b, h = hist.shape
    stamps = np.zeros((b, h), np.int64) if timestamps is None else np.asarray(timestamps, np.int64)
    rates = np.zeros((b, h), np.float32) if ratings is None else np.asarray(ratings, np.float32)
    if stamps.shape != (b, h) or rates.shape != (b, h):
        raise ValueError(f"timestamps and ratings must have the histories' shape {(b, h)}, got "
                         f"{stamps.shape} and {rates.shape}")
    dense = ids.dense_items(hist)
    lengths = np.minimum(count, max_len)
    j = np.arange(max_len)[None, :]
    src = np.clip(count[:, None] - lengths[:, None] + j, 0, max(h - 1, 0))
    mask = j < lengths[:, None]
    nxt = np.clip(src + 1, 0, max(h - 1, 0))
    last_stamp = stamps[np.arange(b), np.maximum(count - 1, 0)]
    query = np.where(j == lengths[:, None] - 1, last_stamp[:, None],
                     np.take_along_axis(stamps, nxt, 1))
    return {
        "inputs": np.where(mask, np.take_along_axis(dense, src, 1), 0).astype(np.int32),
        "timestamps": np.where(mask, np.take_along_axis(stamps, src, 1), 0),
        "query_timestamps": np.where(mask, query, 0),
        "ratings": np.where(mask, np.take_along_axis(rates, src, 1), 0).astype(np.float32),
        "lengths": lengths.astype(np.int32),
        "exclude": dense.astype(np.int32),
        "user": ids.dense_users(users).astype(np.int32),
        "valid": (count > 0).astype(np.float32),
    }


def true_rollout_value_arrays(sim: Simulator, arrays: Mapping[str, Any], score_fn: ScoreFn, *,
                              ids: SimIds, horizon: int = 3, gamma: float = 0.9, k: int = 1,
                              seed: int = 0, batch_size: int = 256) -> dict[str, Any]:
    """:func:`true_rollout_value` on evaluation arrays (``exclude="history"``), e.g.
    ``data.test``; same return value."""
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon!r}")
    if not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    horizon, k = int(horizon), int(k)
    n = len(np.asarray(arrays["user"]))
    returns = np.full(n, np.nan)
    chosen = np.zeros((n, horizon), np.int64)
    start = 0
    for batch, num_real in padded_batches(arrays, batch_size):
        users, raw_hist, _ = _histories_of(batch, ids)
        state = sim.state_after(users, raw_hist)
        consumed = (raw_hist > 0).sum(1)
        gumbel = sim.rollout_gumbel(users, horizon, k, seed=seed)              # [B, H, k]
        width = np.asarray(batch["exclude"]).shape[1]
        batch = dict(batch, exclude=np.concatenate(
            [np.asarray(batch["exclude"]), np.zeros((batch_size, horizon), np.int32)], 1))
        total = np.zeros(batch_size)
        for h in range(horizon):
            scores = _check_scores(score_fn(batch), batch_size, ids.num_columns)
            dense_hist = np.asarray(batch["exclude"], np.int64)
            top = _policy_topk(scores, _banned(dense_hist, ids.num_columns), k)   # [B, k]
            truth = ids.columns(sim, sim.rating_from_state(state, users))
            r = np.take_along_axis(truth, top, axis=1)
            pick = sim.choose(r, gumbel[:, h]) if k > 1 else np.zeros(batch_size, np.int64)
            item = top[np.arange(batch_size), pick]
            reward = r[np.arange(batch_size), pick]
            total += gamma ** h * reward
            chosen[start:start + num_real, h] = ids.raw_items(item)[:num_real]
            state = sim.step_state(state, users, ids.raw_items(item), consumed)
            consumed = consumed + 1
            exclude = np.array(batch["exclude"])
            exclude[:, width + h] = item
            appended = append_item({key: jnp.asarray(v) for key, v in batch.items()},
                                   jnp.asarray(item, jnp.int32),
                                   jnp.asarray(reward, jnp.float32))
            batch = {key: np.asarray(v) for key, v in appended.items()}
            batch["exclude"] = exclude
        valid = np.asarray(batch["valid"]) != 0
        returns[start:start + num_real] = np.where(valid, total, np.nan)[:num_real]
        start += num_real
    return {"true_value": float(np.nanmean(returns)), "per_user": returns, "chosen": chosen,
            "horizon": horizon, "gamma": float(gamma), "k": k,
            "num_users": int(np.sum(~np.isnan(returns)))}


def true_rollout_value(sim: Simulator, users, histories, score_fn: ScoreFn, *, ids: SimIds,
                       horizon: int = 3, gamma: float = 0.9, k: int = 1, max_len: int = 50,
                       timestamps=None, ratings=None, seed: int = 0, batch_size: int = 256
                       ) -> dict[str, Any]:
    """Discounted true return of an H-step rollout of the policy per user (module docstring).

    ``users [B]`` raw ids, ``histories`` raw ids (``[B, H]`` 0-padded or iterables, oldest
    first); ``timestamps`` / ``ratings`` optional, aligned with ``histories`` (see
    :func:`history_arrays`). Returns ``true_value`` (mean over users with a history),
    ``per_user [B]`` (NaN for empty histories), ``chosen [B, H]`` raw ids of the taken items,
    ``horizon``, ``gamma``, ``k``, ``num_users``."""
    arrays = history_arrays(users, histories, ids, max_len=max_len, timestamps=timestamps,
                            ratings=ratings)
    return true_rollout_value_arrays(sim, arrays, score_fn, ids=ids, horizon=horizon,
                                     gamma=gamma, k=k, seed=seed, batch_size=batch_size)


def simulator_truth(sim: Simulator, arrays: Mapping[str, Any], score_fn: ScoreFn, *, ids: SimIds,
                    ks: Sequence[int] = (1, 10), horizon: int = 3, gamma: float = 0.9,
                    seed: int = 0, batch_size: int = 256) -> dict[str, Any]:
    """Every truth figure of one policy on evaluation ``arrays`` (e.g. ``data.test``), as the
    comparison tables report them: ``true_rating@k``, ``best_rating@k``, ``regret@k``
    (:func:`true_topk_rating`) and ``true_value``, the discounted true return of the greedy
    ``horizon``-step rollout (:func:`true_rollout_value_arrays` with ``k = 1``, the judge's
    semantics, so ``true_value`` and the judge score are directly comparable). ``per_user``
    holds the per-row arrays of both (NaN for invalid rows)."""
    one = true_topk_rating(sim, arrays, score_fn, ids=ids, ks=ks, batch_size=batch_size)
    roll = true_rollout_value_arrays(sim, arrays, score_fn, ids=ids, horizon=horizon,
                                     gamma=gamma, k=1, seed=seed, batch_size=batch_size)
    out = {k: v for k, v in one.items() if k not in ("per_user", "num_users")}
    out["true_value"] = roll["true_value"]
    out["per_user"] = dict(one["per_user"], true_value=roll["per_user"])
    return out
