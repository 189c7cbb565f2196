"""A trained reward ensemble as a judge: M members scoring with stacked parameters.

    judge = RewardEnsemble(config, graphdef, params)       # or load_ensemble(workdir)
    judge.reward_fn(batch, items)                          # [M, B]  (genrec_jax.eval.judge)
    score_rows(judge, rows)                                # [M, U] ratings of rows["target"]

Every call re-windows its rows to the model's ``max_len`` (:func:`fit_window`) and is jitted
once per shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.eval.ranking import padded_batches
from genrec_jax.models.functional import bind
from genrec_jax.models.reward import RewardConfig, RewardModel
from genrec_jax.train.reward.config import check_num_members
from genrec_jax.train.reward.rows import MODEL_KEYS


def _model_inputs(batch: Mapping[str, Any], keys=MODEL_KEYS) -> dict[str, jax.Array]:
    return {k: jnp.asarray(batch[k]) for k in keys}


def fit_window(batch: Mapping[str, jax.Array], max_len: int) -> dict[str, jax.Array]:
    """Re-windows right-padded ``[B, L]`` rows to exactly ``[B, max_len]``: rows longer than
    ``max_len`` keep their most recent ``max_len`` events, shorter ones are zero-padded.

    The reward model's position table has ``max_len`` rows, so a caller with a longer window
    (e.g. a policy's evaluation rows) is cut to the events the model can see; padding keeps
    every call at the shape the model was trained at; padding never changes a score (attention
    is causal, and HSTU divides it by its configured padded length, not by the batch width)."""
    length = batch["inputs"].shape[1]
    out = dict(batch)
    keys = [k for k in batch if k != "lengths" and getattr(batch[k], "ndim", 0) == 2
            and batch[k].shape[1] == length]
    if length <= max_len:
        for k in keys:
            out[k] = jnp.pad(batch[k], ((0, 0), (0, max_len - length)))
        return out
    lengths = batch["lengths"].astype(jnp.int32)
    idx = jnp.maximum(lengths - max_len, 0)[:, None] + jnp.arange(max_len)[None, :]
    valid = idx < lengths[:, None]
    safe = jnp.minimum(idx, length - 1)
    for k in keys:
        taken = jnp.take_along_axis(batch[k], safe, axis=1)
        out[k] = jnp.where(valid, taken, jnp.zeros((), taken.dtype))
    out["lengths"] = jnp.minimum(lengths, max_len).astype(batch["lengths"].dtype)
    return out


def _ensemble_score(graphdef, params, batch, items):
    return jax.vmap(lambda p: bind(graphdef, p).score(batch, items))(params)


def _ensemble_positions(graphdef, params, batch):
    return jax.vmap(lambda p: bind(graphdef, p).predict_positions(batch))(params)


def _ensemble_reward(graphdef, params, batch, items):
    return _ensemble_score(graphdef, params, batch, items[:, None])[..., 0]


# The models are compiled for rows of exactly ``max_len`` (one compilation per batch size);
# re-windowing rows of another width is a separate, small compilation, so a judge that sees
# rollouts of several widths compiles the model once.
_window_jit = jax.jit(fit_window, static_argnums=1)
_score_jit = jax.jit(_ensemble_score, static_argnums=0)
_reward_jit = jax.jit(_ensemble_reward, static_argnums=0)
_positions_jit = jax.jit(_ensemble_positions, static_argnums=0)


def _windowed(batch: dict[str, jax.Array], max_len: int) -> dict[str, jax.Array]:
    """``batch`` as rows of exactly ``max_len`` (:func:`fit_window`; unchanged when it is)."""
    if batch["inputs"].shape[1] == max_len:
        return batch
    return _window_jit(batch, max_len)


class RewardEnsemble:
    """M reward models with stacked parameters, used as a judge.

    ``reward_fn(batch, items [B]) -> [M, B]`` (the interface of ``genrec_jax.eval.judge``),
    ``score(batch, items [B, K]) -> [M, B, K]``, ``mean_score`` / ``std_score -> [B, K]``,
    ``predict_positions(batch) -> [M, B, L]`` (teacher-forced). ``batch`` needs ``inputs,
    timestamps, query_timestamps, ratings [B, L]`` and ``lengths [B]`` (other keys are ignored);
    all calls are jitted (one compile per shape).
    """

    def __init__(self, config: RewardConfig, graphdef, params, meta: dict | None = None):
        self.config = config
        self.graphdef = graphdef
        self.params = params
        self.meta = dict(meta or {})
        self.num_members = check_num_members(jax.tree.leaves(params)[0].shape[0])

    def member(self, m: int) -> RewardModel:
        """The m-th reward model as an NNX module."""
        return bind(self.graphdef, jax.tree.map(lambda x: x[m], self.params))

    def score(self, batch, items) -> jax.Array:
        items = jnp.asarray(items, jnp.int32)
        if items.ndim != 2:
            raise ValueError(f"score: items must be [B, K], got shape {items.shape}")
        batch = _windowed(_model_inputs(batch), self.config.max_len)
        return _score_jit(self.graphdef, self.params, batch, items)

    def reward_fn(self, batch, items) -> jax.Array:
        items = jnp.asarray(items, jnp.int32)
        if items.ndim != 1:
            raise ValueError(f"reward_fn: items must be [B], got shape {items.shape}")
        batch = _windowed(_model_inputs(batch), self.config.max_len)
        return _reward_jit(self.graphdef, self.params, batch, items)

    __call__ = reward_fn

    def mean_score(self, batch, items) -> jax.Array:
        return jnp.mean(self.score(batch, items), axis=0)

    def std_score(self, batch, items) -> jax.Array:
        return jnp.std(self.score(batch, items), axis=0)

    def predict_positions(self, batch) -> jax.Array:
        """Teacher-forced ``[M, B, L]`` ratings of ``batch["targets"]`` (needs L ≤ max_len)."""
        if batch["inputs"].shape[1] > self.config.max_len:
            raise ValueError(f"predict_positions: rows of length {batch['inputs'].shape[1]} "
                             f"exceed the reward model's max_len {self.config.max_len}")
        length = batch["inputs"].shape[1]
        batch = _windowed(_model_inputs(batch, (*MODEL_KEYS, "targets")), self.config.max_len)
        return _positions_jit(self.graphdef, self.params, batch)[:, :, :length]


def predict_rows(ensemble: RewardEnsemble, rows: Mapping[str, np.ndarray], *,
                 batch_size: int = 256) -> np.ndarray:
    """Teacher-forced ``[M, U, L]`` predictions for training-style rows (with ``targets``)."""
    keys = (*MODEL_KEYS, "targets")
    out = []
    for batch, num_real in padded_batches({k: rows[k] for k in keys}, batch_size):
        out.append(np.asarray(ensemble.predict_positions(batch))[:, :num_real])
    return np.concatenate(out, axis=1)


def score_rows(ensemble: RewardEnsemble, rows: Mapping[str, np.ndarray], *,
               batch_size: int = 256) -> np.ndarray:
    """``[M, U]`` predicted rating of ``rows["target"]`` after each row's history."""
    keys = (*MODEL_KEYS, "target")
    out = []
    for batch, num_real in padded_batches({k: rows[k] for k in keys}, batch_size):
        out.append(np.asarray(ensemble.reward_fn(batch, batch["target"]))[:, :num_real])
    return np.concatenate(out, axis=1)
