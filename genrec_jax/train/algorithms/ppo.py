"""Online PPO in its one-step (bandit) form, against a reward model.

One jitted step = one rollout batch followed by ``epochs`` updates on it:

1. a state per row (:func:`~genrec_jax.train.state_selection.select_states`);
2. rollout: ``a ~ π_old(·|s)`` = the current policy before this step's updates, with the
   state's history excluded (the distribution recommendations are served from); the log-probs
   of ``a`` under ``π_old``, ``π_θ`` and the frozen ``π_ref`` are all of this history-excluded
   softmax (:func:`~genrec_jax.train.state_selection.history_excluded_logps`: per state,
   ``[B, V]`` logits; the fused kernel has no per-row mask, see there);
3. ``reward = RM(s, a) − kl_coef·(log π_old(a) − log π_ref(a))``
   (:func:`genrec_jax.losses.kl_penalized_rewards`), ``A = reward − b(s)`` (optionally
   normalised over the batch) with the baseline ``b`` of ``ppo.baseline`` (:func:`baselines`):

   * ``user_mean`` (default): the user's mean training rating (a ``[U, L]`` data column,
     ``user_mean``, as A-SFT's ``user_mean``; the reward model predicts on the rating scale);
   * ``value``: ``E_{a'~π_ref(·|s)} RM(s, a')``, the reward model's expected score under the
     reference policy at that state (history excluded), the mean over ``value_samples`` = K
     samples, or exact over the catalogue with K = 0 (``K`` or ``V`` extra scores per state);
   * ``batch_mean``: the mean shaped reward over the batch's states (one number for all users,
     the earlier form);

4. ``epochs`` gradient steps (:func:`~genrec_jax.train.onpolicy.update_epochs`) on
   ``ppo(log π_θ(a), log π_old(a), A)``, the clipped surrogate with ``ρ = π_θ/π_old``.

With dropout off (the post-training default for PPO) and a fresh rollout, ``ρ = 1`` at the
first update. Config block ``ppo``: ``clip_eps``, ``kl_coef``, ``epochs`` (updates per rollout
batch), ``normalize_advantages``, ``states`` (random | last), ``baseline`` (user_mean | value |
batch_mean), ``value_samples``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genrec_jax import losses
from genrec_jax.train import logged_rewards, state_selection
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.onpolicy import (finish_step, masked_logps, ratio_stats, reference_kl,
                                       update_epochs)
from genrec_jax.train.policy_ops import masked_mean
from genrec_jax.train.state import bind
from genrec_jax.train.step import jit_step

BASELINES = ("user_mean", "value", "batch_mean")
DEFAULTS = {"clip_eps": 0.2, "kl_coef": 0.05, "epochs": 4, "normalize_advantages": True,
            "states": "random", "baseline": "user_mean", "value_samples": 8}


def check_baseline(baseline: str) -> str:
    """``baseline``, checked; ValueError naming ``ppo.baseline`` otherwise."""
    if baseline not in BASELINES:
        raise ValueError(f"ppo.baseline must be one of {BASELINES}, got {baseline!r}")
    return baseline


def baselines(kind: str, shaped, valid, *, user_mean=None, value=None) -> jax.Array:
    """``[B]`` baseline ``b(s)`` of each state's shaped reward ``shaped [B]`` (``valid [B]``).

    ``"batch_mean"``: ``Σ_valid shaped / #valid`` for every row; ``"user_mean"``: ``user_mean
    [B]`` (the row's user's mean rating); ``"value"``: ``value [B]`` (``E_{π_ref} RM``).
    """
    if kind == "batch_mean":
        return losses.batch_mean_baseline(shaped, where=valid)
    if kind == "user_mean":
        return jnp.asarray(user_mean, jnp.float32)
    if kind == "value":
        return jnp.asarray(value, jnp.float32)
    return check_baseline(kind)


def reference_value(scorer_fn, rm_params, sb, ref_logits, key, num_samples: int) -> jax.Array:
    """``[B]`` ``E_{a~softmax(ref_logits)} RM(s, a)``: the mean RM score of ``num_samples``
    items drawn with replacement (``num_samples > 0``) or the exact expectation over all
    ``V`` items of ``ref_logits [B, V]`` (``0``)."""
    return logged_rewards.expected_reward(ref_logits, lambda cand: scorer_fn(rm_params, sb, cand),
                                          key, num_samples)


def make_ppo_step(graphdef, optimizer: optax.GradientTransformation, scorer_fn, state=None, *,
                  clip_eps: float = 0.2, kl_coef: float = 0.05, epochs: int = 4,
                  normalize_advantages: bool = False, states: str = "random",
                  baseline: str = "batch_mean", value_samples: int = 8,
                  chunk_size: int = 4096, log_kl: bool = True):
    """Jitted ``step(graphdef, state, batch, ref_params, rm_params) -> (state, metrics)``.

    ``scorer_fn`` = ``Scorer.last``; ``chunk_size``: item chunk of the exact KL diagnostic.
    ``state["step"]`` counts rollout batches (each with ``epochs`` optimizer updates).
    ``baseline`` (:func:`baselines`): ``"user_mean"`` reads ``batch["user_mean"] [B, L]``
    (:func:`columns`); ``"value"`` scores ``value_samples`` reference samples per state.

    Metrics: ``loss`` (mean over the epochs), ``reward`` (mean RM score of the sampled items),
    ``shaped_reward``, ``kl_sample`` (mean ``log π_old(a) − log π_ref(a)``), ``kl_ref`` (exact,
    at the states, before the update), ``ratio_first`` / ``ratio_last`` (mean ``ρ`` at the
    first / last epoch), ``ratio_dev_first`` (max ``|ρ − 1|`` at the first epoch),
    ``clip_frac`` (share of samples with ``|ρ − 1| > clip_eps``, mean over epochs),
    ``frac_states`` (rows with a state), ``grad_norm``, ``baseline`` (mean ``b(s)``),
    ``advantage`` (mean ``A`` before normalisation).
    """
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"ppo.epochs must be >= 1, got {epochs}")
    baseline = check_baseline(str(baseline))

    def step(graphdef, state, batch, ref_params, rm_params):
        rng, k_state, k_sample, k_epochs = jax.random.split(state["rng"], 4)
        sb, _, valid = state_selection.select_states(batch, k_state, states)
        history = sb["inputs"]

        # Rollout from pi_old = the current parameters (no dropout, no gradient).
        old = bind(graphdef, jax.lax.stop_gradient(state["params"]))
        h_old, _ = state_selection.state_vectors(old, sb)
        logits = state_selection.history_excluded_logits(old, h_old, history)
        actions = jax.random.categorical(k_sample, logits, axis=-1).astype(jnp.int32)
        valid = valid & jnp.isfinite(jnp.take_along_axis(logits, actions[:, None], 1)[:, 0])
        old_logp = masked_logps(old, h_old, actions, history, valid)
        ref = bind(graphdef, ref_params)
        h_ref, _ = state_selection.state_vectors(ref, sb)
        ref_logp = masked_logps(ref, h_ref, actions, history, valid)
        reward = scorer_fn(rm_params, sb, actions[:, None])[:, 0]
        shaped = losses.kl_penalized_rewards(reward, old_logp, ref_logp, kl_coef=kl_coef,
                                             where=valid)
        user_mean = batch["user_mean"][:, 0] if baseline == "user_mean" else None
        value = None
        if baseline == "value":
            ref_logits = state_selection.history_excluded_logits(ref, h_ref, history)
            value = reference_value(scorer_fn, rm_params, sb, ref_logits,
                                    jax.random.fold_in(k_sample, 1), int(value_samples))
        base = baselines(baseline, shaped, valid, user_mean=user_mean, value=value)
        adv = losses.compute_advantages(shaped, base, normalize=normalize_advantages,
                                        where=valid)
        old_logp, adv = jax.lax.stop_gradient(old_logp), jax.lax.stop_gradient(adv)
        count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)

        def objective(p, key):
            model = bind(graphdef, p)
            h, _ = state_selection.state_vectors(model, sb, dropout_key=key)
            logp = masked_logps(model, h, actions, history, valid)
            per = losses.ppo(logp, old_logp, adv, clip_eps=clip_eps, where=valid)
            return jnp.sum(per) / count, ratio_stats(logp, old_logp, valid, clip_eps)

        keys = jax.random.split(k_epochs, epochs)
        params, opt_state, per_epoch = update_epochs(objective, optimizer, state["params"],
                                                     state["opt_state"], keys)
        metrics = {
            "reward": masked_mean(reward, valid), "shaped_reward": masked_mean(shaped, valid),
            "kl_sample": masked_mean(old_logp - ref_logp, valid),
            "baseline": masked_mean(jnp.broadcast_to(base, shaped.shape), valid),
            "advantage": masked_mean(shaped - base, valid),
        }
        kl = (reference_kl(old, h_old, ref, h_ref, valid, chunk_size=chunk_size) if log_kl
              else None)
        return finish_step(state, rng, params, opt_state, per_epoch, valid, metrics,
                           kl_ref=kl)

    return jit_step(step, state)


def columns(block, data, **kw):
    """``({"user_mean": [U, L]}, info)``: each row's user's mean training rating at every
    position (:func:`~genrec_jax.train.logged_rewards.user_mean_ratings`; zeros unless
    ``ppo.baseline = user_mean``); info: ``baseline_mean`` over the users."""
    del kw
    kind = check_baseline(str(block.baseline))
    shape = data.train["inputs"].shape
    if kind != "user_mean":
        return {"user_mean": np.zeros(shape, np.float32)}, {}
    means = logged_rewards.user_mean_ratings(data.split)[data.train["user"]]
    col = np.broadcast_to(means[:, None], shape).astype(np.float32)
    return {"user_mean": col}, {"baseline_mean": float(means.mean())}


def build(block, ctx):
    scorer = ctx.require_scorer("ppo")
    step = make_ppo_step(ctx.graphdef, ctx.optimizer, scorer.last, ctx.state,
                         clip_eps=float(block.clip_eps), kl_coef=float(block.kl_coef),
                         epochs=int(block.epochs),
                         normalize_advantages=bool(block.normalize_advantages),
                         states=str(block.states), baseline=str(block.baseline),
                         value_samples=int(block.value_samples), chunk_size=ctx.chunk_size,
                         log_kl=ctx.log_kl)
    return step, (scorer.params,)


register(Algorithm(
    name="ppo",
    summary="one-step PPO with reward-model rewards, a per-state baseline and a KL penalty",
    defaults=DEFAULTS,
    build=build,
    reward_model=True,
    columns=columns,
    column_keys=("user_mean",),
    dropout=0.0,
    update_epochs_key="epochs",
    smoke={"epochs": 2, "value_samples": 4},
))
