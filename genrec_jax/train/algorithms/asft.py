"""A-SFT: advantage-weighted supervised fine-tuning, ``ℓ = −min(exp(A/λ), w_max)·log π(a|s)``.

``A = r̂ − b`` per logged event (optionally normalised to mean 0 / std 1 over the batch's
targets, AWR's default). ``r̂`` and ``b`` are ``[U, L]`` columns precomputed on the host
(:func:`asft_columns`) and batched with the rows (keys ``reward`` and ``baseline``), except
``baseline="batch_mean"`` (the batch mean of ``reward``, in the step). ``λ = inf`` is BC;
``w_max`` ``inf`` or ≤ 0 = no clip. See docs/method.md for the derivation.

Config block ``asft``: ``lam``, ``w_max``, ``baseline`` (user_mean | item_mean | batch_mean |
value | none), ``reward_source`` (rating | reward_model), ``normalize_advantages``,
``value_samples`` (K samples of ``π_ref`` for ``baseline=value``; 0 = exact over the catalogue).
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from genrec_jax import losses
from genrec_jax.train import logged_rewards
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.offline_loss import make_offline_loss, offline_step
from genrec_jax.train.policy_ops import masked_mean

BASELINES = ("user_mean", "item_mean", "batch_mean", "value", "none")
REWARD_SOURCES = ("rating", "reward_model")
# AWR defaults: normalised advantages, lambda = 1, w_max = 20.
DEFAULTS = {"lam": 1.0, "w_max": 20.0, "baseline": "user_mean", "reward_source": "rating",
            "normalize_advantages": True, "value_samples": 8}


def clip_of(w_max) -> float | None:
    """``w_max`` as a clip value: None (no clip) for None, ``inf``, NaN or ≤ 0."""
    if w_max is None:
        return None
    w = float(w_max)
    return None if not math.isfinite(w) or w <= 0 else w


def head(model, batch, logp, lse, vecs, mask, *, lam=1.0, w_max=20.0,
         normalize_advantages=False, batch_mean_baseline=False):
    """Per-position ``−min(exp(A/λ), w_max)·log π(a|s)`` from ``batch["reward"]`` and
    ``batch["baseline"]`` (``batch_mean_baseline``: the batch mean of ``reward`` instead).

    Logs ``mean_weight``, ``mean_advantage``, ``mean_reward`` and (with a clip) ``frac_w_max``.
    """
    del model, lse, vecs
    r = batch["reward"]
    if batch_mean_baseline:
        b = losses.batch_mean_baseline(r, where=mask)
    else:
        b = batch["baseline"]
    adv = losses.compute_advantages(r, b, normalize=normalize_advantages, where=mask)
    per = losses.asft_from_logps(logp, adv, lam=lam, w_max=w_max, where=mask)
    w = losses.asft_weights(adv, lam=lam, w_max=w_max)
    aux = {"mean_weight": masked_mean(w, mask), "mean_advantage": masked_mean(adv, mask),
           "mean_reward": masked_mean(r, mask)}
    if w_max is not None:
        aux["frac_w_max"] = masked_mean((w >= w_max).astype(jnp.float32), mask)
    return per, aux


def make_loss(graphdef, *, lam=1.0, w_max=20.0, normalize_advantages=False,
              batch_mean_baseline=False, impl="chunked", chunk_size=4096, mesh=None,
              log_kl=True):
    """A-SFT's ``loss_fn(model, batch, key, ref_params)`` (``w_max`` through :func:`clip_of`)."""
    h = functools.partial(head, lam=lam, w_max=clip_of(w_max),
                          normalize_advantages=normalize_advantages,
                          batch_mean_baseline=batch_mean_baseline)
    return make_offline_loss(h, graphdef, impl=impl, chunk_size=chunk_size, mesh=mesh,
                             log_kl=log_kl)


def build(block, ctx):
    h = functools.partial(head, lam=float(block.lam), w_max=clip_of(block.w_max),
                          normalize_advantages=bool(block.normalize_advantages),
                          batch_mean_baseline=str(block.baseline) == "batch_mean")
    return offline_step(h, ctx)


def reward_model_reason(block) -> str | None:
    """A reward model is needed for ``reward_source=reward_model`` and ``baseline=value``."""
    if str(block.reward_source) == "reward_model":
        return "algo=asft with asft.reward_source=reward_model"
    if str(block.baseline) == "value":
        return "algo=asft with asft.baseline=value (E_{a~pi_ref}[RM(s,a)])"
    return None


def asft_columns(data, *, reward_source: str = "rating", baseline: str = "user_mean",
                 scorer=None, graphdef=None, ref_params=None, value_samples: int = 8,
                 seed: int = 0, batch_size: int = 64):
    """``{"reward": [U, L], "baseline": [U, L]}`` for ``data.train`` (0 where no target).

    ``reward_source``: ``"rating"`` (the observed target rating) or ``"reward_model"`` (the
    scorer's teacher-forced prediction for the logged target). ``baseline``: ``"user_mean"``
    (the user's mean training rating), ``"item_mean"`` (the logged item's mean training
    rating), ``"value"`` (:func:`~genrec_jax.train.logged_rewards.value_baseline_rows` with the
    scorer), ``"none"`` (0) or ``"batch_mean"`` (computed in the step; the column is 0 here).
    User and item means are of the observed ratings (the reward model predicts on the same
    scale).
    """
    if reward_source not in REWARD_SOURCES:
        raise ValueError(f"asft.reward_source must be one of {REWARD_SOURCES}, got "
                         f"{reward_source!r}")
    if baseline not in BASELINES:
        raise ValueError(f"asft.baseline must be one of {BASELINES}, got {baseline!r}")
    train = data.train
    mask = train["weights"] > 0
    if reward_source == "rating":
        reward = train["target_ratings"].astype(np.float32)
    else:
        reward = logged_rewards.rm_position_rewards(scorer, train, batch_size=batch_size)
    if baseline == "user_mean":
        means = logged_rewards.user_mean_ratings(data.split)
        base = np.broadcast_to(means[train["user"]][:, None], mask.shape)
    elif baseline == "item_mean":
        base = logged_rewards.item_mean_ratings(data.split)[train["targets"]]
    elif baseline == "value":
        base = logged_rewards.value_baseline_rows(graphdef, ref_params, scorer, train,
                                                  num_samples=value_samples, seed=seed)
    else:
        base = np.zeros(mask.shape, np.float32)
    return {"reward": np.where(mask, reward, 0.0).astype(np.float32),
            "baseline": np.where(mask, base, 0.0).astype(np.float32)}


def columns(block, data, *, scorer=None, graphdef=None, ref_params=None, seed=0):
    """``(columns, info)``: :func:`asft_columns` for the block, and the means of the reward,
    baseline and advantage over the training targets (logged in ``metrics.json``)."""
    reason = reward_model_reason(block)
    if scorer is None and reason:
        raise ValueError(f"{reason} needs a reward model: pass --reward_dir=RM_DIR (a workdir "
                         "of experiments.reward)")
    cols = asft_columns(data, reward_source=str(block.reward_source),
                        baseline=str(block.baseline), scorer=scorer, graphdef=graphdef,
                        ref_params=ref_params, value_samples=int(block.value_samples),
                        seed=int(seed))
    mask = data.train["weights"] > 0
    adv = cols["reward"][mask] - cols["baseline"][mask]
    info = {"reward_mean": float(cols["reward"][mask].mean()),
            "baseline_mean": float(cols["baseline"][mask].mean()),
            "advantage_mean": float(adv.mean()), "advantage_std": float(adv.std())}
    return cols, info


register(Algorithm(
    name="asft",
    summary="advantage-weighted supervised fine-tuning of the logged events",
    defaults=DEFAULTS,
    build=build,
    reward_model=reward_model_reason,
    columns=columns,
    column_keys=("reward", "baseline"),
    smoke={"value_samples": 4},
))
