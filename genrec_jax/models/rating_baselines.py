"""Simple rating predictors: the yardsticks a learned reward model must beat.

On recommendation data a learned reward model is only slightly more accurate than the user's
or the item's mean rating (docs/method.md §1.1); the reward-model ablation (docs/method.md §4.5)
compares it with exactly these baselines. Each predictor here is pure numpy, is fitted on training
events only, and shares one interface:

    model = make_baseline("user_item_bias", reg_user=5.0, reg_item=5.0, iterations=10)
    model.fit(train_users, train_items, train_ratings)      # returns the model itself
    scores = model.predict(test_users, test_items)          # float32, clipped to the rating scale

Users and items are dense non-negative integer ids (1-D numpy integer arrays); ratings are floats.
Ids never seen in training are allowed at prediction time and fall back as documented per class.

Predictors (registry name -> class):
  "global_mean"    GlobalMean      r̂ = μ, the mean training rating.
  "user_mean"      UserMean        r̂ = mean rating of user u; μ for a user absent from training.
  "item_mean"      ItemMean        r̂ = mean rating of item i; μ for an item absent from training.
  "user_item_bias" UserItemBias    r̂ = μ + b_u + b_i, regularised biases fitted by alternating
                                   closed-form updates.

Every predictor takes ``clip=(lo, hi)`` (default ``(1.0, 5.0)``, the 1-5 star scale) applied to its
predictions; ``clip=None`` disables clipping.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from genrec_jax._checks import as_finite_1d, check_same_length

__all__ = [
    "RatingPredictor",
    "GlobalMean",
    "UserMean",
    "ItemMean",
    "UserItemBias",
    "BASELINES",
    "make_baseline",
]

DEFAULT_CLIP = (1.0, 5.0)


@runtime_checkable
class RatingPredictor(Protocol):
    """Anything fitted on (user, item, rating) events that then scores (user, item) pairs."""

    name: str

    def fit(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> "RatingPredictor":
        """Fits on training events (three 1-D arrays of one length); returns ``self``."""
        ...

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings, float32 of shape ``users.shape``."""
        ...


# --------------------------------------------------------------------------- input checking


def _as_ids(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold non-negative ids, got min {arr.min()}")
    return arr


def _check_fit_inputs(users, items, ratings):
    users = _as_ids("users", users)
    items = _as_ids("items", items)
    ratings = as_finite_1d("ratings", ratings)
    check_same_length(users=users, items=items, ratings=ratings)
    if ratings.size == 0:
        raise ValueError("cannot fit a rating predictor on zero events")
    return users, items, ratings


def _check_predict_inputs(users, items):
    users = _as_ids("users", users)
    items = _as_ids("items", items)
    check_same_length(users=users, items=items)
    return users, items


def _lookup(table: np.ndarray, ids: np.ndarray, fallback: float) -> np.ndarray:
    """table[ids], with ``fallback`` for ids past the end of the table."""
    out = np.full(ids.shape, fallback, dtype=np.float64)
    known = ids < table.shape[0]
    out[known] = table[ids[known]]
    return out


def _group_mean(ids: np.ndarray, values: np.ndarray, fallback: float) -> np.ndarray:
    """Mean of ``values`` per id in [0, max(ids)]; ``fallback`` for ids with no events."""
    sums = np.bincount(ids, weights=values)
    counts = np.bincount(ids, minlength=sums.shape[0])
    means = np.full(sums.shape, fallback, dtype=np.float64)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means


# --------------------------------------------------------------------------- predictors


class _Baseline:
    """Shared plumbing: clip handling, fitted check, float32 output."""

    name = "baseline"

    def __init__(self, *, clip: tuple[float, float] | None = DEFAULT_CLIP):
        if clip is not None:
            lo, hi = (float(c) for c in clip)
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                raise ValueError(f"clip must be (lo, hi) with finite lo <= hi, got {clip}")
            clip = (lo, hi)
        self.clip = clip
        self.global_mean_: float | None = None

    def fit(self, users, items, ratings):
        users, items, ratings = _check_fit_inputs(users, items, ratings)
        self.global_mean_ = float(ratings.mean())
        self._fit(users, items, ratings)
        return self

    def predict(self, users, items) -> np.ndarray:
        if self.global_mean_ is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before predict")
        users, items = _check_predict_inputs(users, items)
        pred = self._predict(users, items)
        if self.clip is not None:
            pred = np.clip(pred, self.clip[0], self.clip[1])
        return pred.astype(np.float32)

    def _fit(self, users, items, ratings) -> None:
        pass

    def _predict(self, users, items) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(clip={self.clip})"


class GlobalMean(_Baseline):
    """r̂(u, i) = μ, the mean of all training ratings."""

    name = "global_mean"

    def _predict(self, users, items):
        return np.full(users.shape, self.global_mean_, dtype=np.float64)


class UserMean(_Baseline):
    """r̂(u, i) = mean training rating of user u; global mean μ for users with no training event."""

    name = "user_mean"

    def _fit(self, users, items, ratings):
        self.user_means_ = _group_mean(users, ratings, self.global_mean_)

    def _predict(self, users, items):
        return _lookup(self.user_means_, users, self.global_mean_)


class ItemMean(_Baseline):
    """r̂(u, i) = mean training rating of item i; global mean μ for items with no training event."""

    name = "item_mean"

    def _fit(self, users, items, ratings):
        self.item_means_ = _group_mean(items, ratings, self.global_mean_)

    def _predict(self, users, items):
        return _lookup(self.item_means_, items, self.global_mean_)


class UserItemBias(_Baseline):
    """r̂(u, i) = μ + b_u + b_i with regularised user and item biases.

    μ is fixed to the mean training rating; the biases minimise

        J(b) = Σ_events (r − μ − b_u − b_i)² + λ_u Σ_u b_u² + λ_i Σ_i b_i²

    by exact alternating (block coordinate) minimisation, starting from b = 0. One sweep is

        b_i ← Σ_{events of i} (r − μ − b_u) / (λ_i + n_i)     (all items at once, users fixed)
        b_u ← Σ_{events of u} (r − μ − b_i) / (λ_u + n_u)     (all users at once, items fixed)

    where n_i, n_u are training event counts. Each half-step is the closed-form minimiser of J over
    that block, so J never increases (``objective_history_`` records J after every sweep); with
    λ_u, λ_i > 0, J is strictly convex and the sweeps converge to its unique minimiser. A fixed
    number of sweeps (default 10) is the classic recipe; raise ``iterations`` for an exact fit.
    Defaults λ_u = λ_i = 5 shrink the bias of a user or item with few ratings toward 0 (i.e. its
    prediction toward μ).

    Users or items absent from training get bias 0. With λ = 0, a group with no events also gets 0.
    """

    name = "user_item_bias"

    def __init__(
        self,
        *,
        reg_user: float = 5.0,
        reg_item: float = 5.0,
        iterations: int = 10,
        clip: tuple[float, float] | None = DEFAULT_CLIP,
    ):
        super().__init__(clip=clip)
        if not (np.isfinite(reg_user) and reg_user >= 0):
            raise ValueError(f"reg_user must be a finite number >= 0, got {reg_user}")
        if not (np.isfinite(reg_item) and reg_item >= 0):
            raise ValueError(f"reg_item must be a finite number >= 0, got {reg_item}")
        if int(iterations) != iterations or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations}")
        self.reg_user = float(reg_user)
        self.reg_item = float(reg_item)
        self.iterations = int(iterations)

    def _fit(self, users, items, ratings):
        mu = self.global_mean_
        resid = ratings - mu
        n_users = int(users.max()) + 1
        n_items = int(items.max()) + 1
        user_den = np.bincount(users, minlength=n_users) + self.reg_user
        item_den = np.bincount(items, minlength=n_items) + self.reg_item
        b_user = np.zeros(n_users)
        b_item = np.zeros(n_items)
        history = []
        for _ in range(self.iterations):
            item_num = np.bincount(items, weights=resid - b_user[users], minlength=n_items)
            b_item = np.divide(item_num, item_den, out=np.zeros(n_items), where=item_den > 0)
            user_num = np.bincount(users, weights=resid - b_item[items], minlength=n_users)
            b_user = np.divide(user_num, user_den, out=np.zeros(n_users), where=user_den > 0)
            history.append(self._objective(resid, users, items, b_user, b_item))
        self.user_bias_ = b_user
        self.item_bias_ = b_item
        self.objective_history_ = np.asarray(history)

    def _objective(self, resid, users, items, b_user, b_item) -> float:
        err = resid - b_user[users] - b_item[items]
        return float(
            err @ err + self.reg_user * (b_user @ b_user) + self.reg_item * (b_item @ b_item)
        )

    def _predict(self, users, items):
        return (
            self.global_mean_
            + _lookup(self.user_bias_, users, 0.0)
            + _lookup(self.item_bias_, items, 0.0)
        )

    def __repr__(self) -> str:
        return (
            f"UserItemBias(reg_user={self.reg_user}, reg_item={self.reg_item}, "
            f"iterations={self.iterations}, clip={self.clip})"
        )


# --------------------------------------------------------------------------- registry

BASELINES: dict[str, Callable[..., RatingPredictor]] = {
    GlobalMean.name: GlobalMean,
    UserMean.name: UserMean,
    ItemMean.name: ItemMean,
    UserItemBias.name: UserItemBias,
}


def make_baseline(name: str, **kwargs: Any) -> RatingPredictor:
    """Builds the baseline registered as ``name``; ``kwargs`` go to its constructor (e.g. clip)."""
    try:
        cls = BASELINES[name]
    except KeyError:
        raise ValueError(
            f"unknown rating baseline {name!r}; known: {', '.join(sorted(BASELINES))}"
        ) from None
    return cls(**kwargs)
