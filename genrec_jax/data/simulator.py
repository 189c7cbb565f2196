"""A seeded simulated world with sequential behaviour and known true preferences.

Run ``python -m genrec_jax.data.simulator --out=DIR --seed=S [--knob=value ...]`` to write
``DIR/events.csv`` (``user,item,rating,timestamp``, readable with ``dataset=csv``) and
``DIR/world.json`` (the knobs). Every mechanism below is a :class:`SimulatorConfig` field.

Items (``i = 1..I``, ``d = dim``):

* groups (genres) of ``items_per_group`` items; each group is cut into series of
  ``series_length`` items in series order; ``next(i)`` is the item after ``i`` in its series;
* vectors ``v_i = √g·c_group + √(1-g)·e_i`` with ``c, e ~ N(0, I_d / d)`` (so ``|v| ≈ 1``) and
  ``g = group_similarity``;
* release times: a series' first item comes out before the log starts (probability
  ``initial_catalog``) or uniformly within ``log_days``; its next items follow
  ``series_release_gap_days`` apart;
* popularity at time ``τ``: ``log pop_i(τ) = log zipf_i − age_i(τ) / popularity_decay_days``
  (``zipf_i ∝ rank^(-zipf_exponent)``, ``age`` in days since release; not yet released = 0).

A user's state after consuming ``a_0 .. a_{t-1}`` is ``(s_t, a_{t-1})`` with ``s_0 = w_u ~
N(0, I_d / d)`` and ``s_{t+1} = ρ·s_t + (1 − ρ)·v_{a_t} + σ_s·ε_{u,t}`` (``ρ = state_memory``,
``σ_s = state_noise``, ``ε_{u,t} ~ N(0, I_d / d)`` the row ``t`` of a per-(seed, user) stream),
so the state is a deterministic function of (user, consumed items): :meth:`Simulator.state_after`.

The true expected rating ``r*(state, i) = 3 + 2·tanh(x / 2)`` in ``(1, 5)``, with ``x =
affinity_scale·(s·v_i) + b_u + b_i + rating_offset + group_bonus·[grp(i) = grp(last)] +
series_bonus·[i = next(last)]`` (``b ~ N(0, bias_scale²)``). Observed rating =
``clip(round(r* + N(0, rating_noise²)), 1, 5)``.

Logging (per user, lockstep over users). Each user starts at a uniform time in the log and
takes steps ``exponential(mean_gap_seconds)`` apart. At each step the logging policy shows a
slate of ``slate_size`` items drawn without replacement from ``π(i) ∝ (1 − ε)·softmax((q·z(r*)
+ (1 − q)·z(log pop(τ))) / T) + ε / |R|`` over the released items ``R`` not yet consumed
(``z``: standardised over ``R``; ``q = policy_quality``, ``T = policy_temperature``, ``ε =
policy_exploration``). The user picks ``argmax`` of ``choice_sharpness·r*(state, i) + Gumbel``
over the slate and a "no choice" option worth ``choice_sharpness·no_choice_rating + Gumbel``;
no choice only advances time. A chosen item is logged with the step's timestamp, and the state
moves. No item is consumed twice. Each user logs a number of events uniform in
``events_per_user``. Raw ids run ``1..num_users`` and ``1..num_items``.

Truth at test time: :meth:`Simulator.rating_matrix`, :meth:`~Simulator.true_rating`,
:meth:`~Simulator.best_rating` and :meth:`~Simulator.logging_probs` use each user's state after
all but the last logged event (the leave-last-out test state; the log is generated on first
use). :class:`SyntheticRewardModel` is ``r* + bias + σ·η(u, i)``, a reward model whose error is
a knob.

True logging propensities (for off-policy evaluation): :meth:`Simulator.choice_propensities`
(any user, history and time), :meth:`~Simulator.test_choice_propensities` (each user's test
event) and :meth:`~Simulator.slate_choice_probs` give ``μ(a | s, τ)`` = P(the logged item is
``a`` | state, time, an item was chosen), the slate and the choice model marginalised: exact
by enumeration for small catalogues, else a seeded conditional Monte Carlo with its standard
error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from genrec_jax.data.events import Events

__all__ = ["Simulator", "SimulatorConfig", "SyntheticRewardModel", "UserState", "main",
           "padded_ids"]

_DAY = 86_400.0
# Streams of np.random.SeedSequence([seed, STREAM, ...]); fixed so results are reproducible.
_WORLD, _LOG, _STATE_NOISE, _REWARD_NOISE, _ROLLOUT, _PROPENSITY = 0, 2, 3, 11, 7, 13


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """Sizes and knobs of the simulated world (see the module docstring for the formulas).

    Attributes:
      num_users, num_items, dim: sizes.
      events_per_user: inclusive ``(lo, hi)`` range of the number of logged events per user.
      seed: everything is a deterministic function of the config, seed included.
      items_per_group: items per group (genre); the last group may be smaller.
      series_length: items per series inside a group (1 = no series).
      group_similarity: ``g``, the share of an item vector's variance from its group centre.
      state_memory: ``ρ`` in ``[0, 1)``, how much of the state survives one consumption.
      state_noise: ``σ_s``, std of the per-step state noise.
      affinity_scale: weight of ``s·v_i`` in ``r*``.
      bias_scale: std of user and item biases.
      rating_offset: shifts the mean true rating.
      group_bonus: added to ``x`` for items of the last consumed item's group.
      series_bonus: added to ``x`` for the next item in the last consumed item's series.
      rating_noise: std of the Gaussian noise added to ``r*`` before rounding.
      zipf_exponent: base popularity skew (0 = uniform).
      popularity_decay_days: e-folding time of an item's popularity after release.
      initial_catalog: fraction of series whose first item is out before the log starts.
      series_release_gap_days: days between the releases of consecutive items of a series.
      log_days: length of the log; users start uniformly within it.
      slate_size: items shown per step.
      policy_quality: ``q`` in ``[0, 1]``: the policy follows r* (1) or popularity (0).
      policy_temperature: ``T > 0`` of the policy softmax.
      policy_exploration: ``ε`` in ``[0, 1]``, mass of the uniform exploration.
      choice_sharpness: weight of r* in the user's choice utility (Gumbel noise of scale 1).
      no_choice_rating: the "no choice" option is worth an item of this r*.
      start_time: log start (unix seconds).
      mean_gap_seconds: mean time between a user's consecutive steps.
    """

    num_users: int = 200
    num_items: int = 300
    dim: int = 8
    events_per_user: Tuple[int, int] = (20, 60)
    seed: int = 0
    items_per_group: int = 15
    series_length: int = 5
    group_similarity: float = 0.6
    state_memory: float = 0.7
    state_noise: float = 0.1
    affinity_scale: float = 3.0
    bias_scale: float = 0.3
    rating_offset: float = -0.5
    group_bonus: float = 0.5
    series_bonus: float = 3.0
    rating_noise: float = 0.5
    zipf_exponent: float = 1.0
    popularity_decay_days: float = 30.0
    series_release_gap_days: float = 7.0
    initial_catalog: float = 0.5
    log_days: float = 365.0
    slate_size: int = 10
    policy_quality: float = 0.5
    policy_temperature: float = 0.5
    policy_exploration: float = 0.1
    choice_sharpness: float = 3.0
    no_choice_rating: float = 3.0
    start_time: int = 1_500_000_000
    mean_gap_seconds: float = 86_400.0

    def __post_init__(self):
        if self.num_users < 1 or self.num_items < 1 or self.dim < 1:
            raise ValueError("num_users, num_items and dim must be >= 1")
        lo, hi = self.events_per_user
        if not 1 <= lo <= hi <= self.num_items:
            raise ValueError(
                f"events_per_user must satisfy 1 <= lo <= hi <= num_items "
                f"({self.num_items}), got {self.events_per_user}"
            )
        checks = {
            "policy_quality": 0.0 <= self.policy_quality <= 1.0,
            "policy_exploration": 0.0 <= self.policy_exploration <= 1.0,
            "initial_catalog": 0.0 <= self.initial_catalog <= 1.0,
            "group_similarity": 0.0 <= self.group_similarity <= 1.0,
            "state_memory": 0.0 <= self.state_memory < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                bound = "[0, 1)" if name == "state_memory" else "[0, 1]"
                raise ValueError(f"{name} must be in {bound}, got {getattr(self, name)}")
        positive = ("policy_temperature", "popularity_decay_days", "log_days", "mean_gap_seconds")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("rating_noise", "zipf_exponent", "bias_scale", "state_noise",
                        "series_release_gap_days",
                        "choice_sharpness")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.items_per_group < 1 or self.series_length < 1 or self.slate_size < 1:
            raise ValueError("items_per_group, series_length and slate_size must be >= 1")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


class UserState(NamedTuple):
    """A batch of user states: ``vector [B, dim]`` float64 and ``last [B]`` raw item id of the
    last consumed item (0 = none yet)."""

    vector: np.ndarray
    last: np.ndarray


ExcludeLike = Union[None, np.ndarray, Sequence[Iterable[int]]]


def _squash(x: np.ndarray) -> np.ndarray:
    return np.tanh(x * np.float32(0.5)) * np.float32(2.0) + np.float32(3.0)


def padded_ids(histories, num_rows: int) -> np.ndarray:
    """``[B, H]`` int64 raw ids, 0-padded on the right, from an array or per-row iterables."""
    if isinstance(histories, np.ndarray) and histories.ndim == 2:
        if histories.shape[0] != num_rows:
            raise ValueError(f"histories has {histories.shape[0]} rows, expected {num_rows}")
        return histories.astype(np.int64)
    rows = [np.asarray([int(x) for x in h if int(x) > 0], np.int64) for h in histories]
    if len(rows) != num_rows:
        raise ValueError(f"histories has {len(rows)} rows, expected {num_rows}")
    out = np.zeros((num_rows, max([1] + [len(r) for r in rows])), np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class _Log:
    """What generation leaves behind besides the events (see :meth:`Simulator.generate`)."""

    events: Events
    true_rating: np.ndarray      # [E] r* of each logged event at the state it was chosen in
    test_state: UserState        # [U] state after all but the last event
    test_time: np.ndarray        # [U] timestamp of the last event


class Simulator:
    """The simulated world of a :class:`SimulatorConfig`; see the module docstring."""

    def __init__(self, config: Optional[SimulatorConfig] = None):
        self.config = c = config or SimulatorConfig()
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, _WORLD]))
        d, n = c.dim, c.num_items
        # Groups and series: a random permutation laid out group by group, series by series.
        order = rng.permutation(n)
        slot = np.empty(n, np.int64)
        slot[order] = np.arange(n)
        self.item_group = slot // c.items_per_group                             # [I]
        in_group = slot % c.items_per_group
        series = self.item_group * c.items_per_group + in_group // c.series_length
        self.item_series = series                                               # [I]
        self.series_position = in_group % c.series_length                       # [I]
        nxt = np.full(n, -1, np.int64)
        succ = order[1:]
        same = series[order[:-1]] == series[succ]
        nxt[order[:-1][same]] = succ[same]
        self._next_index = nxt                      # index of next(i), -1 for a series end
        num_groups = int(self.item_group.max()) + 1
        centres = rng.standard_normal((num_groups, d)) / np.sqrt(d)
        own = rng.standard_normal((n, d)) / np.sqrt(d)
        g = c.group_similarity
        self.item_vectors = np.sqrt(g) * centres[self.item_group] + np.sqrt(1 - g) * own
        self.user_vectors = rng.standard_normal((c.num_users, d)) / np.sqrt(d)
        self.user_bias = rng.normal(0.0, c.bias_scale, c.num_users)
        self.item_bias = rng.normal(0.0, c.bias_scale, n)
        ranks = rng.permutation(n) + 1.0
        self._log_zipf = -c.zipf_exponent * np.log(ranks)
        self._log_zipf -= np.log(np.exp(self._log_zipf).sum())
        # Release times (unix seconds): each series' first item early or during the log, the
        # next ones series_release_gap_days apart.
        span = c.log_days * _DAY
        early = rng.random(n) < c.initial_catalog
        first = np.where(early, c.start_time - rng.random(n) * span,
                         c.start_time + rng.random(n) * span)
        head = np.zeros(series.max() + 1, np.int64)
        head[series[self.series_position == 0]] = np.flatnonzero(self.series_position == 0)
        release = first[head[series]] + self.series_position * c.series_release_gap_days * _DAY
        self.item_release = release.astype(np.int64)                            # [I]
        # float32 copies for the [B, I] arithmetic.
        self._vectors_t = np.ascontiguousarray((c.affinity_scale * self.item_vectors).T,
                                               dtype=np.float32)
        self._item_bias32 = self.item_bias.astype(np.float32)
        self._pop_base = (self._log_zipf + (self.item_release - c.start_time)
                          / (c.popularity_decay_days * _DAY)).astype(np.float32)
        self._noise_cache: dict[int, np.ndarray] = {}
        self._log: Optional[_Log] = None

    # -- ids -----------------------------------------------------------------------------

    def _user_index(self, users) -> np.ndarray:
        users = np.asarray(users)
        if users.size and (users.min() < 1 or users.max() > self.config.num_users):
            raise ValueError(f"user ids must be in 1..{self.config.num_users}")
        return users.astype(np.int64) - 1

    def _item_index(self, items) -> np.ndarray:
        items = np.asarray(items)
        if items.size and (items.min() < 1 or items.max() > self.config.num_items):
            raise ValueError(f"item ids must be in 1..{self.config.num_items}")
        return items.astype(np.int64) - 1

    def next_in_series(self, items) -> np.ndarray:
        """Raw id of the next item in each item's series (0 at a series end); same shape."""
        i = self._item_index(items)
        return self._next_index[i] + 1

    # -- state -----------------------------------------------------------------------------

    def _state_noise(self, user_index: np.ndarray, length: int) -> np.ndarray:
        """``[B, length, dim]`` the state noise ``ε_{u,t}``, rows ``t = 0..length-1``.

        Row ``t`` of user ``u`` is the same whatever ``length`` (a prefix of one stream)."""
        c = self.config
        out = np.zeros((len(user_index), length, c.dim))
        if length == 0:
            return out
        for row, u in enumerate(np.asarray(user_index).tolist()):
            table = self._noise_cache.get(u)
            if table is None or len(table) < length:
                rng = np.random.default_rng(np.random.SeedSequence([c.seed, _STATE_NOISE, u]))
                table = rng.standard_normal((max(length, c.events_per_user[1] + 16), c.dim))
                self._noise_cache[u] = table
            out[row] = table[:length]
        return out / np.sqrt(c.dim)

    def initial_state(self, users) -> UserState:
        """The state before any consumption: ``s_0 = w_u``, no last item."""
        u = self._user_index(np.atleast_1d(users))
        return UserState(self.user_vectors[u].copy(), np.zeros(len(u), np.int64))

    def step_state(self, state: UserState, users, items, steps) -> UserState:
        """``s ← ρ·s + (1-ρ)·v_a + σ_s·ε_{u,t}`` for rows with ``items > 0`` (raw ids),
        where ``t = steps`` is the number of items the user had consumed before ``a``."""
        c = self.config
        u = self._user_index(np.atleast_1d(users))
        items = np.atleast_1d(np.asarray(items, np.int64))
        steps = np.broadcast_to(np.asarray(steps, np.int64), items.shape)
        take = items > 0
        vec, last = state.vector.copy(), state.last.copy()
        if take.any():
            rows = np.flatnonzero(take)
            eps = np.stack([self._state_noise(u[b:b + 1], int(steps[b]) + 1)[0, -1]
                            for b in rows])
            v = self.item_vectors[self._item_index(items[rows])]
            vec[rows] = c.state_memory * vec[rows] + (1 - c.state_memory) * v + c.state_noise * eps
            last[rows] = items[rows]
        return UserState(vec, last)

    def state_after(self, users, histories) -> UserState:
        """The state of each user after consuming its history, in order.

        ``users``: ``[B]`` raw ids; ``histories``: ``[B, H]`` raw item ids 0-padded on the
        right, or ``B`` iterables of raw ids. Deterministic: the same (user, items) always
        give the same state, whatever else was simulated."""
        users = np.atleast_1d(np.asarray(users, np.int64))
        hist = padded_ids(histories, len(users))
        c = self.config
        u = self._user_index(users)
        noise = self._state_noise(u, hist.shape[1])
        vec = self.user_vectors[u].copy()
        last = np.zeros(len(u), np.int64)
        for t in range(hist.shape[1]):
            take = hist[:, t] > 0
            if not take.any():
                continue
            v = self.item_vectors[self._item_index(hist[take, t])]
            vec[take] = (c.state_memory * vec[take] + (1 - c.state_memory) * v
                         + c.state_noise * noise[take, t])
            last[take] = hist[take, t]
        return UserState(vec, last)

    # -- ground truth ----------------------------------------------------------------------

    def _logits_x(self, state: UserState, users) -> np.ndarray:
        """``[B, I]`` float32 the pre-squash ``x`` of ``r*`` for every item."""
        c = self.config
        u = self._user_index(np.atleast_1d(users))
        # einsum, not BLAS: [B, d] x [d, I] with small d is faster without thread start-up.
        x = np.einsum("bd,di->bi", state.vector.astype(np.float32), self._vectors_t)
        x += (self.user_bias[u][:, None] + c.rating_offset).astype(np.float32)
        x += self._item_bias32[None, :]
        last = np.asarray(state.last, np.int64)
        has_last = last > 0
        if has_last.any():
            li = np.where(has_last, last - 1, 0)
            group = np.where(has_last, self.item_group[li], -1)
            np.add(x, np.float32(c.group_bonus), out=x,
                   where=self.item_group[None, :] == group[:, None])
            nxt = np.where(has_last, self._next_index[li], -1)
            rows = np.flatnonzero(nxt >= 0)
            x[rows, nxt[rows]] += np.float32(c.series_bonus)
        return x

    def rating_from_state(self, state: UserState, users) -> np.ndarray:
        """``[B, num_items]`` float32 ``r*(state_b, i)`` (column j = item j+1)."""
        return _squash(self._logits_x(state, users))

    def _ensure_log(self) -> _Log:
        if self._log is None:
            self.generate()
        assert self._log is not None
        return self._log

    def test_state(self, users) -> UserState:
        """Each user's state after all but its last logged event (the leave-last-out test
        state); generates the log on first use."""
        log = self._ensure_log()
        u = self._user_index(np.atleast_1d(users))
        return UserState(log.test_state.vector[u], log.test_state.last[u])

    def rating_matrix(self, users) -> np.ndarray:
        """``[B, num_items]`` float32 ``r*`` at each user's test state (column j = item j+1)."""
        users = np.atleast_1d(users)
        return self.rating_from_state(self.test_state(users), users).astype(np.float32)

    def true_rating(self, users, items) -> np.ndarray:
        """``r*`` at each user's test state; ``users``/``items`` (raw ids) broadcast."""
        u, i = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        flat_u = u.reshape(-1)
        self._item_index(i)
        uniq, inverse = np.unique(flat_u, return_inverse=True)
        table = self.rating_matrix(uniq) if uniq.size else np.zeros((0, self.config.num_items))
        out = table[inverse.reshape(-1), i.reshape(-1).astype(np.int64) - 1]
        return out.reshape(u.shape).astype(np.float32)

    def logged_true_rating(self) -> np.ndarray:
        """``[E]`` float32 ``r*`` of each logged event at the state it was chosen in, in the
        order of :meth:`generate`'s events (what the observed rating is a noisy rounding of)."""
        return self._ensure_log().true_rating.astype(np.float32)

    def event_true_rating(self, users, items) -> np.ndarray:
        """``r*`` of logged events ``(user, item)`` (raw ids, same shape) at the state each
        was chosen in (no item is logged twice per user, so the pair names the event). For a
        user's last event this is :meth:`true_rating`. ValueError for a pair never logged."""
        log = self._ensure_log()
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        users, items = np.broadcast_arrays(users, items)
        n = self.config.num_items + 1
        keys = log.events.user * n + log.events.item
        order = np.argsort(keys)
        want = (users * n + items).reshape(-1)
        pos = np.clip(np.searchsorted(keys[order], want), 0, len(keys) - 1)
        found = keys[order][pos] == want
        if not np.all(found):
            bad = np.stack([users.reshape(-1)[~found], items.reshape(-1)[~found]], 1)[:3]
            raise ValueError(f"(user, item) pairs never logged: {bad.tolist()}")
        return log.true_rating[order][pos].reshape(users.shape).astype(np.float32)

    def _exclusion_mask(self, num_rows: int, exclude: ExcludeLike) -> np.ndarray:
        """``[B, I]`` bool from 0-padded raw ids ``[B, H]`` or per-row iterables."""
        mask = np.zeros((num_rows, self.config.num_items), dtype=bool)
        if exclude is None:
            return mask
        ids = padded_ids(exclude, num_rows)
        rows, cols = np.nonzero(ids > 0)
        mask[rows, self._item_index(ids[rows, cols])] = True
        return mask

    def best_rating(self, users, exclude: ExcludeLike = None) -> np.ndarray:
        """``[B]`` the best ``r*`` at the test state among items not in ``exclude`` (raw ids,
        ``[B, H]`` 0-padded or ``B`` iterables). Users with every item excluded get ``nan``."""
        users = np.atleast_1d(users)
        ratings = self.rating_matrix(users).astype(np.float64)
        ratings[self._exclusion_mask(len(users), exclude)] = -np.inf
        best = ratings.max(axis=1)
        return np.where(np.isfinite(best), best, np.nan).astype(np.float32)

    # -- logging policy and choice ---------------------------------------------------------

    def released(self, times) -> np.ndarray:
        """``[B, I]`` bool: item released at or before each time (unix seconds)."""
        return self.item_release[None, :] <= np.atleast_1d(times)[:, None]

    def policy_probs(self, r_star: np.ndarray, times, allowed: np.ndarray) -> np.ndarray:
        """``[B, I]`` float32 the logging policy's distribution over ``allowed`` items.

        ``π ∝ (1-ε)·softmax(ℓ) + ε/|R|`` on the items ``R`` released by ``times [B]``,
        restricted to ``allowed [B, I]`` and renormalised (rows with nothing allowed are 0);
        ``ℓ = (q·z(r*) + (1-q)·z(log pop(τ))) / T``, ``z`` standardised over ``R``. Softmax and
        ``z`` ignore per-row shifts, and on ``R`` ``log pop_i(τ) = base_i − τ/decay`` with
        ``base_i = log zipf_i + release_i/decay``, so ``ℓ ≅ (q/σ_r)·r* + ((1-q)/σ_b)·base``
        (``σ``: row std over ``R``, up to the common ``1/T``)."""
        c = self.config
        times = np.atleast_1d(np.asarray(times, np.float64))
        rel = self.released(times)
        relf = rel.astype(np.float32)
        n = np.maximum(relf.sum(axis=1, keepdims=True), 1.0)
        base = self._pop_base
        b_mean = np.einsum("bi,i->b", relf, base)[:, None] / n
        b_var = np.maximum(np.einsum("bi,i->b", relf, base * base)[:, None] / n
                           - b_mean * b_mean, 0.0)
        r_star = np.asarray(r_star, np.float32)
        r_rel = r_star * relf
        r_mean = r_rel.sum(axis=1, keepdims=True) / n
        r_var = np.maximum((r_rel * r_star).sum(axis=1, keepdims=True) / n - r_mean * r_mean, 0.0)
        q, t = c.policy_quality, c.policy_temperature
        a_r = (q / t) / np.where(r_var > 0, np.sqrt(r_var), 1.0)
        a_p = ((1 - q) / t) / np.where(b_var > 0, np.sqrt(b_var), 1.0)
        logits = a_r.astype(np.float32) * r_star
        logits += a_p.astype(np.float32) * base[None, :]
        np.copyto(logits, np.float32(-np.inf), where=~rel)
        top = logits.max(axis=1, keepdims=True)
        logits -= np.where(np.isfinite(top), top, 0.0)     # rows with nothing released: all 0
        soft = np.exp(logits, out=logits)
        mass = soft.sum(axis=1, keepdims=True)
        soft *= ((1 - c.policy_exploration) / np.where(mass > 0, mass, 1.0)).astype(np.float32)
        soft += (c.policy_exploration / n).astype(np.float32) * relf
        np.multiply(soft, allowed, out=soft)
        total = soft.sum(axis=1, keepdims=True)
        soft /= np.where(total > 0, total, 1.0)
        return soft

    def logging_probs(self, user: int, exclude_items: Iterable[int] = ()) -> np.ndarray:
        """``[num_items]`` the logging policy's distribution for ``user`` at its test state and
        test time (entry j = item j+1; the first slate pick). Items released later and
        ``exclude_items`` (raw ids) get probability 0; the rest sums to 1."""
        users = np.array([user])
        log = self._ensure_log()
        u = self._user_index(users)
        r = self.rating_from_state(self.test_state(users), users)
        mask = self._exclusion_mask(1, [list(exclude_items)])
        allowed = ~mask & self.released(log.test_time[u])
        if not allowed.any():
            raise ValueError("every item is excluded or unreleased; the policy has nothing "
                             "to sample")
        return self.policy_probs(r, log.test_time[u], ~mask)[0]

    def rollout_gumbel(self, users, horizon: int, k: int, *, seed: int = 0) -> np.ndarray:
        """``[B, horizon, k]`` the fixed Gumbel noise of the choice model in policy rollouts
        (:mod:`genrec_jax.eval.truth`): a stream per (world seed, ``seed``, user)."""
        c = self.config
        u = self._user_index(np.atleast_1d(users))
        out = np.empty((len(u), horizon, k))
        for row, user in enumerate(u.tolist()):
            rng = np.random.default_rng(np.random.SeedSequence([c.seed, _ROLLOUT, seed, user]))
            out[row] = rng.gumbel(size=(horizon, k))
        return out

    def choose(self, r_star: np.ndarray, gumbel: np.ndarray) -> np.ndarray:
        """Index of the choice per row: ``argmax_j choice_sharpness·r*[b, j] + gumbel[b, j]``
        (entries with ``r* = -inf`` are not offered). A "no choice" column must be appended
        by the caller when it is an option."""
        return np.argmax(self.config.choice_sharpness * r_star + gumbel, axis=1)

    # -- logging propensities --------------------------------------------------------------

    def slate_choice_probs(self, policy: np.ndarray, r_star: np.ndarray, *,
                           num_samples: int = 2000, seed: int = 0,
                           max_exact: int = 20_000) -> Tuple[np.ndarray, np.ndarray]:
        """``(mu [B, I], se [B, I])`` float64: the logged-choice distribution of one logging step.

        For rows ``b`` of the slate policy ``policy [B, I]`` (e.g. :meth:`policy_probs`; 0 =
        never shown) and ``r_star [B, I]``: a slate ``S`` of ``k = min(slate_size, #{p > 0})``
        items is drawn without replacement from ``p`` (successive sampling, as in
        :meth:`generate`) and the user takes ``a ∈ S`` with probability ``w_a / (Σ_{j∈S} w_j +
        1)``, ``w_j = exp(β·(r*_j − no_choice_rating))`` (``β = choice_sharpness``; the Gumbel
        argmax with the "no choice" option). Then ``mu(a) = P(a) / Σ_b P(b)`` with ``P(a) =
        E_S[1[a∈S] w_a / (Σ_S w + 1)]``: the probability that the logged item is ``a`` given
        that an item was chosen at this step.

        Exact (enumerating ordered slates, ``P(s_1..s_k) = Π_j p_{s_j} / (1 − Σ_{i<j} p_{s_i})``)
        when a row has at most ``max_exact`` ordered slates (or ``#{p > 0} <= k``: the slate is
        fixed); ``se`` is then 0. Otherwise a seeded conditional Monte Carlo over ``num_samples``
        exponential races ``T_j = E_j / p_j`` (the slate = the ``k`` first arrivals): given the
        other items' times, ``a ∈ S`` iff ``T_a < T^{-a}_{(k)}`` (the k-th other arrival) and
        then ``S = {a} ∪`` the first ``k − 1`` others, so each race gives every item the term
        ``(1 − exp(−p_a T^{-a}_{(k)})) · w_a / (w_a + Σ_{first k−1 others} w + 1)`` (unbiased
        for ``P(a)``, nonzero for every item with ``p_a > 0``). ``se`` is the delta-method
        standard error of the ratio over the races (``std / sqrt(num_samples)``); the same
        ``seed`` gives the same estimate.
        """
        c = self.config
        policy = np.asarray(policy, np.float64)
        r_star = np.asarray(r_star, np.float64)
        if policy.ndim != 2 or policy.shape != r_star.shape or policy.shape[1] != c.num_items:
            raise ValueError(f"policy and r_star must both be [B, {c.num_items}], got "
                             f"{policy.shape} and {r_star.shape}")
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, _PROPENSITY, int(seed)]))
        mu = np.zeros(policy.shape)
        se = np.zeros(policy.shape)
        for b in range(policy.shape[0]):
            p = policy[b]
            pos = np.flatnonzero(p > 0)
            if not pos.size:
                raise ValueError(f"row {b} of policy has no item with probability > 0")
            w = np.exp(c.choice_sharpness * (r_star[b, pos] - c.no_choice_rating))
            q = p[pos] / p[pos].sum()
            k = min(c.slate_size, c.num_items, len(pos))
            if len(pos) <= k:                           # the slate is every such item
                mu[b, pos] = w / w.sum()
            elif _num_ordered_slates(len(pos), k, max_exact) <= max_exact:
                prob = _exact_choice(q, w, k)
                mu[b, pos] = prob / prob.sum()
            else:
                m, s = _race_choice(q, w, k, num_samples, rng)
                mu[b, pos], se[b, pos] = m, s
        return mu, se

    def choice_propensities(self, users, histories, times, *, num_samples: int = 2000,
                            seed: int = 0, max_exact: int = 20_000
                            ) -> Tuple[np.ndarray, np.ndarray]:
        """``(mu [B, I], se [B, I])``: the true logging propensities at any logging step.

        The step of user ``users[b]`` (raw id) after consuming ``histories[b]`` (raw ids,
        ``[B, H]`` 0-padded or iterables; the state is :meth:`state_after`) at ``times[b]``
        (unix seconds): the logging policy :meth:`policy_probs` over released, not yet consumed
        items, then :meth:`slate_choice_probs` (column j = item j+1; exact or Monte Carlo, see
        there). ``mu[b, a]`` = P(the logged item is a | this state and time, an item was chosen).
        """
        users = np.atleast_1d(np.asarray(users, np.int64))
        times = np.atleast_1d(np.asarray(times, np.float64))
        if times.shape != users.shape:
            raise ValueError(f"times must have one entry per user ({users.shape}), got "
                             f"{times.shape}")
        r = self.rating_from_state(self.state_after(users, histories), users)
        allowed = ~self._exclusion_mask(len(users), histories)
        p = self.policy_probs(r, times, allowed)
        return self.slate_choice_probs(p, r, num_samples=num_samples, seed=seed,
                                       max_exact=max_exact)

    def test_choice_propensities(self, users, *, num_samples: int = 2000, seed: int = 0,
                                 max_exact: int = 20_000) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`choice_propensities` at each user's test event: the test state, the test
        time, every item but the last logged one consumed. ``mu[b, last item - 1]`` is the
        propensity of the logged test item."""
        users = np.atleast_1d(np.asarray(users, np.int64))
        log = self._ensure_log()
        hist = self.histories()
        before = [hist[u][:-1] for u in self._user_index(users).tolist()]
        return self.choice_propensities(users, before, log.test_time[self._user_index(users)],
                                        num_samples=num_samples, seed=seed, max_exact=max_exact)

    # -- data ------------------------------------------------------------------------------

    def generate(self) -> Events:
        """Simulate every user's log (see the module docstring); users in id order, each
        user's events in time order. The result is cached (the truth methods use it)."""
        if self._log is not None:
            return self._log.events
        c = self.config
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, _LOG]))
        lo, hi = c.events_per_user
        num_u, num_i = c.num_users, c.num_items
        target = rng.integers(lo, hi + 1, size=num_u)
        span = c.log_days * _DAY
        now = c.start_time + np.floor(rng.random(num_u) * span)
        noise = self._state_noise(np.arange(num_u), hi)                       # [U, hi, d]
        vec = self.user_vectors.copy()
        last = np.zeros(num_u, np.int64)
        consumed = np.zeros((num_u, num_i), bool)
        done = np.zeros(num_u, np.int64)
        test_vec, test_last = vec.copy(), last.copy()
        rec_user: List[np.ndarray] = []
        rec_item: List[np.ndarray] = []
        rec_time: List[np.ndarray] = []
        rec_true: List[np.ndarray] = []
        rec_step: List[np.ndarray] = []
        all_users = np.arange(1, num_u + 1)
        max_steps = 1000 * hi
        for _ in range(max_steps):
            active = np.flatnonzero(done < target)
            if not active.size:
                break
            st = UserState(vec[active], last[active])
            r = self.rating_from_state(st, all_users[active])
            p = self.policy_probs(r, now[active], ~consumed[active])
            # Exponential race: the top-k of p / E (E ~ Exp(1)) is the Gumbel-top-k of log p,
            # a draw without replacement from p.
            keys = p / (rng.standard_exponential(p.shape, dtype=np.float32) + 1e-30)
            k = min(c.slate_size, num_i)
            slate = np.argpartition(-keys, k - 1, axis=1)[:, :k]               # [A, k]
            shown = np.take_along_axis(p, slate, axis=1) > 0
            r_slate = np.where(shown, np.take_along_axis(r, slate, axis=1), -np.inf)
            options = np.concatenate([r_slate, np.full((len(active), 1), c.no_choice_rating)], 1)
            pick = self.choose(options, rng.gumbel(size=options.shape))
            chose = pick < k
            rows = active[chose]
            items = slate[chose, pick[chose]]
            if rows.size:
                rec_user.append(rows)
                rec_item.append(items)
                rec_time.append(now[rows].copy())
                rec_true.append(r[chose, items])
                rec_step.append(done[rows].copy())
                final = done[rows] == target[rows] - 1
                test_vec[rows[final]] = vec[rows[final]]
                test_last[rows[final]] = last[rows[final]]
                eps = noise[rows, done[rows]]
                vec[rows] = (c.state_memory * vec[rows] + (1 - c.state_memory)
                             * self.item_vectors[items] + c.state_noise * eps)
                last[rows] = items + 1
                consumed[rows, items] = True
                done[rows] += 1
            now[active] += 1 + np.floor(rng.exponential(c.mean_gap_seconds, len(active)))
        else:
            raise RuntimeError(f"simulation did not log every user's events in {max_steps} "
                               "steps: lower no_choice_rating or policy_exploration")
        user = np.concatenate(rec_user)
        order = np.lexsort((np.concatenate(rec_step), user))
        user = user[order]
        item = np.concatenate(rec_item)[order]
        r_true = np.concatenate(rec_true)[order]
        stamps = np.concatenate(rec_time)[order].astype(np.int64)
        observed = np.clip(np.rint(r_true + rng.normal(0.0, c.rating_noise, r_true.shape)), 1, 5)
        events = Events(
            user=(user + 1).astype(np.int64),
            item=(item + 1).astype(np.int64),
            rating=observed.astype(np.float32),
            timestamp=stamps,
            source=f"simulator(seed={c.seed})",
            rating_scale=(1.0, 5.0),
        )
        ends = np.cumsum(np.bincount(user, minlength=num_u))
        self._log = _Log(events=events, true_rating=r_true,
                         test_state=UserState(test_vec, test_last),
                         test_time=stamps[ends - 1])
        return events

    def histories(self) -> List[np.ndarray]:
        """Each user's logged raw item ids in order (entry ``u - 1`` for user ``u``)."""
        ev = self._ensure_log().events
        ends = np.cumsum(np.bincount(ev.user - 1, minlength=self.config.num_users))
        return np.split(ev.item, ends[:-1])


def _num_ordered_slates(n: int, k: int, cap: int) -> int:
    """``n! / (n − k)!``, stopping once it exceeds ``cap``."""
    total = 1
    for j in range(k):
        total *= n - j
        if total > cap:
            break
    return total


def _exact_choice(q: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """``[n]`` ``P(a chosen)`` summed over every ordered slate of ``k`` of the ``n`` items
    (successive sampling from ``q``, choice ``w_a / (Σ_S w + 1)``)."""
    out = np.zeros(len(q))

    def visit(slate: List[int], prob: float, used: float) -> None:
        if len(slate) == k:
            idx = np.asarray(slate)
            out[idx] += prob * w[idx] / (w[idx].sum() + 1.0)
            return
        rest = 1.0 - used
        for j in range(len(q)):
            if j not in slate and q[j] > 0:
                visit(slate + [j], prob * q[j] / rest, used + q[j])

    visit([], 1.0, 0.0)
    return out


def _race_choice(q: np.ndarray, w: np.ndarray, k: int, num_samples: int,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Conditional Monte Carlo of :meth:`Simulator.slate_choice_probs` for one row with
    ``len(q) > k`` items, all ``q > 0``: ``(mu [n], se [n])``."""
    m = num_samples
    times = rng.standard_exponential((m, len(q))) / q[None, :]               # [M, n]
    first = np.argpartition(times, k, axis=1)[:, :k + 1]                      # k+1 earliest
    order = np.argsort(np.take_along_axis(times, first, 1), axis=1)
    first = np.take_along_axis(first, order, 1)                               # sorted
    t_k = np.take_along_axis(times, first[:, k - 1:k], 1)                    # k-th arrival
    t_k1 = np.take_along_axis(times, first[:, k:k + 1], 1)                   # (k+1)-th
    a_k = w[first[:, :k]].sum(1, keepdims=True)                               # Σ_{first k} w
    a_km1 = a_k - w[first[:, k - 1:k]]                                        # Σ_{first k-1} w
    inside = np.zeros(times.shape, bool)
    np.put_along_axis(inside, first[:, :k], True, 1)
    wr = w[None, :]
    terms = np.where(inside, -np.expm1(-q[None, :] * t_k1) * wr / (a_k + 1.0),
                     -np.expm1(-q[None, :] * t_k) * wr / (wr + a_km1 + 1.0))    # [M, n]
    p_hat = terms.mean(0)
    g = terms.sum(1)                                                          # [M]
    g_bar = g.mean()
    mu = p_hat / g_bar
    resid = (terms - mu[None, :] * g[:, None]) / g_bar
    se = resid.std(0, ddof=1) / np.sqrt(m)
    return mu, se


class SyntheticRewardModel:
    """A reward model with a chosen error: ``r̂(u, h, i) = r*(state_after(u, h), i) + bias +
    noise·η(u, i)``, ``η ~ N(0, 1)`` fixed per (user, item) and ``seed``.

    Its RMSE to r* is ``sqrt(bias² + noise²)`` in expectation, so reward-model accuracy can be
    swept independently of any training."""

    def __init__(self, sim: Simulator, *, noise: float = 0.0, bias: float = 0.0, seed: int = 0):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.sim, self.noise, self.bias, self.seed = sim, float(noise), float(bias), int(seed)
        c = sim.config
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, _REWARD_NOISE, int(seed)]))
        self._eta = rng.standard_normal((c.num_users, c.num_items))

    def rating_matrix(self, users, histories) -> np.ndarray:
        """``[B, num_items]`` predicted ratings after each history (raw ids, see
        :meth:`Simulator.state_after`)."""
        users = np.atleast_1d(np.asarray(users, np.int64))
        true = self.sim.rating_from_state(self.sim.state_after(users, histories), users)
        return true + self.bias + self.noise * self._eta[self.sim._user_index(users)]

    def score(self, users, histories, items) -> np.ndarray:
        """``[B]`` predicted rating of ``items [B]`` (raw ids) after each history."""
        items = np.atleast_1d(np.asarray(items, np.int64))
        table = self.rating_matrix(users, histories)
        return table[np.arange(len(items)), self.sim._item_index(items)]


# -- command line ------------------------------------------------------------------------------


def _parse_field(field: dataclasses.Field, text: str):
    default = field.default
    if isinstance(default, tuple):
        parts = text.replace(",", ":").split(":")
        return tuple(int(p) for p in parts)
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    return type(default)(text)


def main(argv: Optional[Sequence[str]] = None) -> pathlib.Path:
    """``--out=DIR --seed=S [--knob=value ...]``: writes ``DIR/events.csv`` and
    ``DIR/world.json``; returns DIR."""
    from genrec_jax.data.parsers import write_csv

    parser = argparse.ArgumentParser(prog="python -m genrec_jax.data.simulator",
                                     description="Write a simulated log as CSV + world.json.")
    parser.add_argument("--out", required=True, help="output folder")
    fields = {f.name: f for f in dataclasses.fields(SimulatorConfig)}
    for name, f in fields.items():
        parser.add_argument(f"--{name}", default=None,
                            help=f"default {f.default!r}" + (" (lo:hi)" if name ==
                                                               "events_per_user" else ""))
    args = parser.parse_args(argv)
    values = {}
    for name, f in fields.items():
        text = getattr(args, name)
        if text is not None:
            try:
                values[name] = _parse_field(f, text)
            except ValueError:
                parser.error(f"--{name}: cannot parse {text!r} as {type(f.default).__name__}")
    config = SimulatorConfig(**values)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events = Simulator(config).generate()
    write_csv(events, out / "events.csv")
    world = {k: (list(v) if isinstance(v, tuple) else v)
             for k, v in dataclasses.asdict(config).items()}
    (out / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    print(f"{len(events)} events of {config.num_users} users -> {out / 'events.csv'}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
