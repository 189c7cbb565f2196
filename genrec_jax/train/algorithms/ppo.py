"""Online PPO in its one-step (bandit) form, against a reward model.

One jitted step = one rollout batch followed by ``epochs`` updates on it:

1. a state per row (:func:`~genrec_jax.train.state_selection.select_states`);
2. rollout: ``a ~ π_old(·|s)`` = the current policy before this step's updates, with the
   state's history excluded (the distribution recommendations are served from); the log-probs
   of ``a`` under ``π_old``, ``π_θ`` and the frozen ``π_ref`` are all of this history-excluded
   softmax (:func:`~genrec_jax.train.state_selection.history_excluded_logps`: per state,
   ``[B, V]`` logits; the fused kernel has no per-row mask, see there);
3. ``reward = RM(s, a) − kl_coef·(log π_old(a) − log π_ref(a))``
   (:func:`genrec_jax.losses.kl_penalized_rewards`), ``A = reward − mean over the batch``
   (optionally normalised);
4. ``epochs`` gradient steps (:func:`~genrec_jax.train.onpolicy.update_epochs`) on
   ``ppo(log π_θ(a), log π_old(a), A)``, the clipped surrogate with ``ρ = π_θ/π_old``.

With dropout off (the post-training default for PPO) and a fresh rollout, ``ρ = 1`` at the
first update. Config block ``ppo``: ``clip_eps``, ``kl_coef``, ``epochs`` (updates per rollout
batch), ``normalize_advantages``, ``states`` (random | last).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genrec_jax import losses
from genrec_jax.train import state_selection
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.onpolicy import (jit_step, masked_logps, ratio_stats, reference_kl,
                                       update_epochs)
from genrec_jax.train.policy_ops import masked_mean
from genrec_jax.train.state import bind

DEFAULTS = {"clip_eps": 0.2, "kl_coef": 0.05, "epochs": 4, "normalize_advantages": True,
            "states": "random"}


def make_ppo_step(graphdef, optimizer: optax.GradientTransformation, scorer_fn, state=None, *,
                  clip_eps: float = 0.2, kl_coef: float = 0.05, epochs: int = 4,
                  normalize_advantages: bool = False, states: str = "random",
                  chunk_size: int = 4096, log_kl: bool = True):
    """Jitted ``step(graphdef, state, batch, ref_params, rm_params) -> (state, metrics)``.

    ``scorer_fn`` = ``Scorer.last``; ``chunk_size``: item chunk of the exact KL diagnostic.
    ``state["step"]`` counts rollout batches (each with ``epochs`` optimizer updates).

    Metrics: ``loss`` (mean over the epochs), ``reward`` (mean RM score of the sampled items),
    ``shaped_reward``, ``kl_sample`` (mean ``log π_old(a) − log π_ref(a)``), ``kl_ref`` (exact,
    at the states, before the update), ``ratio_first`` / ``ratio_last`` (mean ``ρ`` at the
    first / last epoch), ``ratio_dev_first`` (max ``|ρ − 1|`` at the first epoch),
    ``clip_frac`` (share of samples with ``|ρ − 1| > clip_eps``, mean over epochs),
    ``frac_states`` (rows with a state), ``grad_norm``.
    """
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"ppo.epochs must be >= 1, got {epochs}")

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
        adv = losses.compute_advantages(shaped, losses.batch_mean_baseline(shaped, where=valid),
                                        normalize=normalize_advantages, where=valid)
        old_logp, adv = jax.lax.stop_gradient(old_logp), jax.lax.stop_gradient(adv)
        count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)

        def objective(p, key):
            model = bind(graphdef, p)
            h, _ = state_selection.state_vectors(model, sb, dropout_key=key)
            logp = masked_logps(model, h, actions, history, valid)
            per = losses.ppo(logp, old_logp, adv, clip_eps=clip_eps, where=valid)
            return jnp.sum(per) / count, ratio_stats(logp, old_logp, valid, clip_eps)

        keys = jax.random.split(k_epochs, epochs)
        params, opt_state, (loss, (ratio, clip, dev), gnorm) = update_epochs(
            objective, optimizer, state["params"], state["opt_state"], keys)
        metrics = {
            "loss": jnp.mean(loss), "grad_norm": jnp.mean(gnorm),
            "reward": masked_mean(reward, valid), "shaped_reward": masked_mean(shaped, valid),
            "kl_sample": masked_mean(old_logp - ref_logp, valid),
            "ratio_first": ratio[0], "ratio_last": ratio[-1], "ratio_dev_first": dev[0],
            "clip_frac": jnp.mean(clip),
            "frac_states": jnp.mean(valid.astype(jnp.float32)),
        }
        if log_kl:
            metrics["kl_ref"] = reference_kl(old, h_old, ref, h_ref, valid, chunk_size=chunk_size)
        new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1,
                     "rng": rng}
        return new_state, metrics

    return jit_step(step, state)


def build(block, ctx):
    scorer = ctx.require_scorer("ppo")
    step = make_ppo_step(ctx.graphdef, ctx.optimizer, scorer.last, ctx.state,
                         clip_eps=float(block.clip_eps), kl_coef=float(block.kl_coef),
                         epochs=int(block.epochs),
                         normalize_advantages=bool(block.normalize_advantages),
                         states=str(block.states), chunk_size=ctx.chunk_size, log_kl=ctx.log_kl)
    return step, (scorer.params,)


register(Algorithm(
    name="ppo",
    summary="one-step PPO with reward-model rewards and a KL penalty to the reference",
    defaults=DEFAULTS,
    build=build,
    reward_model=True,
    dropout=0.0,
    smoke={"epochs": 2},
))
