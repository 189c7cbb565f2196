"""The reward-model configuration of an experiment: ensemble size, member seeds, rating scale.

``reward_config(cfg, num_items=..., rating_scale=..., rating_step=...)`` turns the experiment
config's ``model`` block (the encoder: ``model.kind`` HSTU or SASRec), top-level ``precision``
(float32 or bf16) and ``reward`` block (window, head) into a
:class:`~genrec_jax.models.reward.RewardConfig`. The rating step and the class prior of the
output bias come from the training ratings (:func:`rating_step_of`, :func:`rating_prior_of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from genrec_jax import sharding as shd
from genrec_jax.models.encoders import encoder_config
from genrec_jax.models.reward import RewardConfig


def check_num_members(num_members: Any) -> int:
    """M must be an integer ≥ 1; raises ValueError with a clear message otherwise."""
    if isinstance(num_members, bool) or int(num_members) != num_members or int(num_members) < 1:
        raise ValueError(f"reward ensemble size M (num_members) must be an integer >= 1, got "
                         f"{num_members!r}: an ensemble needs at least one reward model")
    return int(num_members)


def member_seeds(base_seed: int, num_members: int) -> list[int]:
    """Seeds of the M members of the ensemble trained with ``base_seed``:
    ``1000·base_seed + m`` for ``m = 0 … M−1``."""
    num_members = check_num_members(num_members)
    return [int(base_seed) * 1000 + m for m in range(num_members)]


def rating_step_of(ratings: np.ndarray) -> float:
    """1.0 when every rating is a whole number, else 0.5 (half-star scales)."""
    r = np.asarray(ratings, dtype=np.float64)
    return 1.0 if np.allclose(r, np.round(r)) else 0.5


def rating_prior_of(ratings: np.ndarray, rating_scale: Sequence[float],
                    rating_step: float) -> tuple[float, ...]:
    """Class frequencies of ``ratings`` on the K bins ``lo, lo + step, …, hi``:
    ``p_k = #{r : round((r − lo)/step) = k} / n`` (ratings off the scale go to the end bins)."""
    lo, hi = (float(v) for v in rating_scale)
    k = int(round((hi - lo) / rating_step)) + 1
    bins = np.clip(np.round((np.asarray(ratings, np.float64) - lo) / rating_step), 0, k - 1)
    counts = np.bincount(bins.astype(np.int64), minlength=k).astype(np.float64)
    return tuple(float(c) for c in counts / max(counts.sum(), 1.0))


def reward_config(cfg, *, num_items: int, rating_scale: Sequence[float], rating_step: float,
                  mesh: Mesh | None = None, rating_prior: Sequence[float] = ()) -> RewardConfig:
    """A :class:`RewardConfig` from the experiment config: the encoder of kind ``model.kind``
    (HSTU when absent) from the ``model`` block with the window ``reward.max_len`` (item table
    rows padded to the ``model`` mesh size), rating inputs on, and the compute precision of the
    top-level ``precision`` (float32 when absent); the head from the ``reward`` block."""
    r = cfg.reward
    encoder = encoder_config(cfg.model, num_items, max_len=int(r.max_len),
                             table_multiple=1 if mesh is None else int(mesh.shape[shd.MODEL]),
                             precision=str(cfg.get("precision", "float32")))
    encoder = dataclasses.replace(encoder, rating_inputs=True)
    return RewardConfig(
        encoder=encoder, rating_scale=tuple(float(v) for v in rating_scale),
        rating_step=float(rating_step), head=str(r.head), hidden_dim=int(r.hidden_dim),
        rating_prior=tuple(rating_prior), bias_gain=float(r.bias_gain),
        target_heads=int(r.target_heads), target_dim=int(r.target_dim),
        history_factor=bool(r.history_factor), head_dropout=float(r.head_dropout))
