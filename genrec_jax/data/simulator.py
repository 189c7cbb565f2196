"""A seeded simulator of users, items and rating logs with known true preferences.

DESIGN.md §5. The world:

* item latent vectors ``v_i ~ N(0, I_d)``, user latent vectors ``w_u ~ N(0, I_d / d)``, so
  the affinity ``a(u, i) = w_u · v_i`` has about unit variance;
* user and item biases ``b_u, b_i ~ N(0, bias_scale²)``;
* a Zipf item popularity ``p_i ∝ rank_i^(-zipf_exponent)`` over a random ranking of items;
* the true expected rating ``r*(u, i) = 3 + 2 tanh((affinity_scale·a + b_u + b_i +
  rating_offset) / 2)``, strictly inside ``(1, 5)``.

The logging policy (unknown to the learner, imperfect) scores every item for user ``u`` as
``(q · z_u(r*) + (1 - q) · (z(log p) + ε_u) / √2) / T`` where ``z_u(r*)`` is the user's true
ratings standardised over items, ``z(log p)`` the standardised log-popularity, ``ε_u`` a
per-user "trend" noise ``N(0, 1)`` per item (fixed per user and seed), ``q =
policy_quality`` and ``T = policy_temperature``; it samples from the softmax of these
logits, without repeats within a user. Observed rating = ``round(r* + N(0,
rating_noise²))`` clipped to ``[1, 5]``. Raw ids run ``1..num_users`` and ``1..num_items``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from genrec_jax.data.events import Events

__all__ = ["Simulator", "SimulatorConfig"]

_CHUNK = 512  # users per vectorised generation chunk (fixed: results depend on it)


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """Sizes and knobs of the simulated world (see the module docstring).

    Attributes:
      num_users, num_items, dim: sizes.
      zipf_exponent: popularity skew (0 = uniform).
      events_per_user: inclusive ``(lo, hi)`` range of the number of events per user.
      rating_noise: std of the Gaussian noise added to ``r*`` before rounding.
      policy_quality: 0..1, how much the logging policy follows true preference (1) rather
        than popularity and trend noise (0).
      policy_temperature: softmax temperature of the logging policy (> 0).
      seed: everything is a deterministic function of the config, seed included.
      affinity_scale: weight of the latent affinity in ``r*``.
      bias_scale: std of user and item biases.
      rating_offset: shifts the mean true rating (0.5 gives a mean of about 3.4).
      start_time: earliest first-event timestamp (unix seconds).
      mean_gap_seconds: mean time between a user's consecutive events.
    """

    num_users: int = 200
    num_items: int = 300
    dim: int = 8
    zipf_exponent: float = 1.0
    events_per_user: Tuple[int, int] = (20, 60)
    rating_noise: float = 0.5
    policy_quality: float = 0.5
    policy_temperature: float = 0.5
    seed: int = 0
    affinity_scale: float = 1.5
    bias_scale: float = 0.4
    rating_offset: float = 0.5
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
        if not 0.0 <= self.policy_quality <= 1.0:
            raise ValueError(f"policy_quality must be in [0, 1], got {self.policy_quality}")
        if self.policy_temperature <= 0:
            raise ValueError(f"policy_temperature must be > 0, got {self.policy_temperature}")
        if self.rating_noise < 0 or self.zipf_exponent < 0 or self.bias_scale < 0:
            raise ValueError("rating_noise, zipf_exponent and bias_scale must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


ExcludeLike = Union[None, np.ndarray, Sequence[Iterable[int]]]


class Simulator:
    """The simulated world of a :class:`SimulatorConfig`; see the module docstring."""

    def __init__(self, config: Optional[SimulatorConfig] = None):
        self.config = config = config or SimulatorConfig()
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
        d = config.dim
        self.user_vectors = rng.standard_normal((config.num_users, d)) / np.sqrt(d)
        self.item_vectors = rng.standard_normal((config.num_items, d))
        self.user_bias = rng.normal(0.0, config.bias_scale, config.num_users)
        self.item_bias = rng.normal(0.0, config.bias_scale, config.num_items)
        ranks = rng.permutation(config.num_items) + 1.0
        weights = ranks ** (-config.zipf_exponent)
        self.item_popularity = weights / weights.sum()
        log_pop = np.log(self.item_popularity)
        spread = log_pop.std()
        self._pop_z = (log_pop - log_pop.mean()) / spread if spread > 0 else np.zeros_like(log_pop)

    # -- ids ---------------------------------------------------------------------------

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

    # -- ground truth ------------------------------------------------------------------

    def _squash(self, x: np.ndarray) -> np.ndarray:
        return 3.0 + 2.0 * np.tanh(x / 2.0)

    def true_rating(self, users, items) -> np.ndarray:
        """Expected rating ``r*(u, i)`` in ``(1, 5)``; ``users``/``items`` broadcast."""
        u = self._user_index(users)
        i = self._item_index(items)
        u, i = np.broadcast_arrays(u, i)
        c = self.config
        affinity = np.einsum("...d,...d->...", self.user_vectors[u], self.item_vectors[i])
        x = c.affinity_scale * affinity + self.user_bias[u] + self.item_bias[i] + c.rating_offset
        return self._squash(x).astype(np.float32)

    def rating_matrix(self, users) -> np.ndarray:
        """``[B, num_items]`` float32 true ratings of every item (column j = item j+1)."""
        u = self._user_index(np.atleast_1d(users))
        c = self.config
        x = c.affinity_scale * (self.user_vectors[u] @ self.item_vectors.T)
        x += self.user_bias[u][:, None] + self.item_bias[None, :] + c.rating_offset
        return self._squash(x).astype(np.float32)

    def _exclusion_mask(self, num_rows: int, exclude: ExcludeLike) -> np.ndarray:
        """``[B, I]`` bool from 0-padded raw ids ``[B, H]`` or per-row iterables."""
        mask = np.zeros((num_rows, self.config.num_items), dtype=bool)
        if exclude is None:
            return mask
        if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
            if exclude.shape[0] != num_rows:
                raise ValueError(f"exclude has {exclude.shape[0]} rows, expected {num_rows}")
            rows, cols = np.nonzero(exclude > 0)
            mask[rows, self._item_index(exclude[rows, cols])] = True
            return mask
        if len(exclude) != num_rows:
            raise ValueError(f"exclude has {len(exclude)} rows, expected {num_rows}")
        for row, items in enumerate(exclude):
            ids = np.fromiter((int(x) for x in items if int(x) > 0), dtype=np.int64)
            mask[row, self._item_index(ids)] = True
        return mask

    def best_rating(self, users, exclude: ExcludeLike = None) -> np.ndarray:
        """``[B]`` the best true rating among items not in ``exclude`` (for regret).

        ``exclude``: a ``[B, H]`` array of raw item ids, 0-padded, or a list of ``B``
        iterables of raw item ids. Users with every item excluded get ``nan``.
        """
        users = np.atleast_1d(users)
        ratings = self.rating_matrix(users).astype(np.float64)
        ratings[self._exclusion_mask(len(users), exclude)] = -np.inf
        best = ratings.max(axis=1)
        return np.where(np.isfinite(best), best, np.nan).astype(np.float32)

    # -- logging policy ----------------------------------------------------------------

    def _trend(self, user_index: np.ndarray) -> np.ndarray:
        c = self.config
        out = np.empty((len(user_index), c.num_items))
        for row, u in enumerate(user_index):
            rng = np.random.default_rng(np.random.SeedSequence([c.seed, 1, int(u)]))
            out[row] = rng.standard_normal(c.num_items)
        return out

    def _policy_logits(self, user_index: np.ndarray) -> np.ndarray:
        c = self.config
        r = self.rating_matrix(user_index + 1).astype(np.float64)
        std = r.std(axis=1, keepdims=True)
        aff = (r - r.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
        noise = (self._pop_z[None, :] + self._trend(user_index)) / np.sqrt(2.0)
        q = c.policy_quality
        return (q * aff + (1.0 - q) * noise) / c.policy_temperature

    def logging_probs(self, user: int, exclude_items: Iterable[int] = ()) -> np.ndarray:
        """``[num_items]`` the logging policy's probabilities for ``user`` (entry j = item
        j+1); ``exclude_items`` (raw ids) get probability 0, the rest sums to 1."""
        u = self._user_index(np.array([user]))
        logits = self._policy_logits(u)[0]
        mask = self._exclusion_mask(1, [list(exclude_items)])[0]
        if mask.all():
            raise ValueError("every item is excluded; the policy has nothing to sample")
        logits[mask] = -np.inf
        z = np.exp(logits - logits.max())
        return z / z.sum()

    # -- data --------------------------------------------------------------------------

    def generate(self) -> Events:
        """Sample every user's log: items without repeats from the logging policy,
        increasing timestamps, noisy rounded ratings. Users are written in id order."""
        c = self.config
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, 2]))
        lo, hi = c.events_per_user
        counts = rng.integers(lo, hi + 1, size=c.num_users)
        users, items, ratings, stamps = [], [], [], []
        for first in range(0, c.num_users, _CHUNK):
            idx = np.arange(first, min(first + _CHUNK, c.num_users))
            n = counts[idx]
            logits = self._policy_logits(idx)
            # Gumbel-top-k: the order of logits + Gumbel noise is a sample without
            # replacement from the softmax (successive draws renormalised).
            keys = logits + rng.gumbel(size=logits.shape)
            top = np.argsort(-keys, axis=1, kind="stable")[:, : n.max()]
            take = np.arange(top.shape[1])[None, :] < n[:, None]
            row = np.broadcast_to(idx[:, None], top.shape)[take]
            col = top[take]
            r_true = self.rating_matrix(idx + 1)[np.nonzero(take)[0], col].astype(np.float64)
            observed = np.clip(np.rint(r_true + rng.normal(0.0, c.rating_noise, r_true.shape)), 1, 5)
            gaps = 1 + np.floor(rng.exponential(c.mean_gap_seconds, top.shape)).astype(np.int64)
            start = c.start_time + rng.integers(0, 365 * 86_400, size=len(idx))
            times = start[:, None] + np.cumsum(gaps, axis=1)
            users.append(row + 1)
            items.append(col + 1)
            ratings.append(observed)
            stamps.append(times[take])
        return Events(
            user=np.concatenate(users).astype(np.int64),
            item=np.concatenate(items).astype(np.int64),
            rating=np.concatenate(ratings).astype(np.float32),
            timestamp=np.concatenate(stamps).astype(np.int64),
            source=f"simulator(seed={c.seed})",
            rating_scale=(1.0, 5.0),
        )
