"""GRPO in its one-step (bandit) form: a group of recommendations per state, no value model.

One jitted step = one rollout batch followed by ``epochs`` updates on it:

1. a state per row (:func:`~genrec_jax.train.state_selection.select_states`, as PPO);
2. rollout: ``G`` distinct items ``a_1..a_G`` from ``π_old(·|s)`` = the current policy before
   this step's updates, with the state's history excluded (Gumbel-top-k:
   :func:`~genrec_jax.train.state_selection.sample_without_replacement`); their log-probs
   under ``π_old`` and the frozen ``π_ref`` (history-excluded softmax, ``[B, V]`` logits);
3. the training reward model scores them, ``r_i = r̂(s, a_i)``, and
   :func:`genrec_jax.losses.group_advantages` standardises them within the group:
   ``A_i = (r_i − mean_g r) / (std_g r + ε)``;
4. ``epochs`` gradient steps (:func:`~genrec_jax.train.onpolicy.update_epochs`) on
   :func:`genrec_jax.losses.grpo`: the clipped surrogate with ``ρ = π_θ(a_i)/π_old(a_i)`` plus
   ``kl_coef·k3``, ``k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1``, averaged over
   the valid (state, item) samples.

A group whose rewards are all equal has ``A = 0``: with ``kl_coef = 0`` it gives no gradient.
Config block ``grpo``: ``group_size`` (G), ``clip_eps``, ``kl_coef``, ``epochs``, ``states``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genrec_jax import losses
from genrec_jax.train import state_selection
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.onpolicy import finish_step, ratio_stats, reference_kl, update_epochs
from genrec_jax.train.policy_ops import masked_mean
from genrec_jax.train.state import bind
from genrec_jax.train.step import jit_step

DEFAULTS = {"group_size": 8, "clip_eps": 0.2, "kl_coef": 0.04, "epochs": 2, "states": "random"}


def group_logps(model, h, items, history, where) -> jax.Array:
    """``[B, G]`` ``log π̃(items | s)`` under the history-excluded policy, 0 where not ``where``."""
    logits = state_selection.history_excluded_logits(model, h, history)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), items, axis=1)
    return jnp.where(where, logp, 0.0)


def group_std(rewards, where) -> jax.Array:
    """``[B]`` population std of each group's valid rewards (0 for an empty group)."""
    n = jnp.maximum(jnp.sum(where, axis=1), 1).astype(jnp.float32)
    mean = jnp.sum(jnp.where(where, rewards, 0.0), axis=1) / n
    var = jnp.sum(jnp.where(where, (rewards - mean[:, None]) ** 2, 0.0), axis=1) / n
    return jnp.sqrt(var)


def make_grpo_step(graphdef, optimizer: optax.GradientTransformation, scorer_fn, state=None, *,
                   group_size: int = 8, clip_eps: float = 0.2, kl_coef: float = 0.04,
                   epochs: int = 2, states: str = "random", chunk_size: int = 4096,
                   log_kl: bool = True):
    """Jitted ``step(graphdef, state, batch, ref_params, rm_params) -> (state, metrics)``.

    ``scorer_fn`` = ``Scorer.last`` (``[B, G]`` items → ``[B, G]`` rewards); ``chunk_size``:
    item chunk of the exact KL diagnostic. ``state["step"]`` counts rollout batches.

    Metrics: ``loss`` (mean over the epochs), ``grad_norm``, ``reward`` (mean RM score of the
    sampled items), ``group_reward_std`` (mean within-group std), ``kl_sample`` (mean ``k3`` of
    ``π_old`` against ``π_ref`` over the samples), ``kl_ref`` (exact, at the states, before the
    update), ``ratio_first`` / ``ratio_last``, ``ratio_dev_first``, ``clip_frac``,
    ``frac_states`` (rows with a state), ``frac_samples`` (valid samples per row / G).
    """
    group_size, epochs = int(group_size), int(epochs)
    if group_size < 2:
        raise ValueError(f"grpo.group_size must be >= 2, got {group_size}")
    if epochs < 1:
        raise ValueError(f"grpo.epochs must be >= 1, got {epochs}")

    def step(graphdef, state, batch, ref_params, rm_params):
        rng, k_state, k_sample, k_epochs = jax.random.split(state["rng"], 4)
        sb, _, valid = state_selection.select_states(batch, k_state, states)
        history = sb["inputs"]

        # Rollout: G distinct items from pi_old = the current parameters (no dropout).
        old = bind(graphdef, jax.lax.stop_gradient(state["params"]))
        h_old, _ = state_selection.state_vectors(old, sb)
        logits = state_selection.history_excluded_logits(old, h_old, history)
        items, ok = state_selection.sample_without_replacement(k_sample, logits, group_size)
        ok = ok & valid[:, None]                                            # [B, G]
        old_logp = group_logps(old, h_old, items, history, ok)
        ref = bind(graphdef, ref_params)
        h_ref, _ = state_selection.state_vectors(ref, sb)
        ref_logp = group_logps(ref, h_ref, items, history, ok)
        rewards = jax.lax.stop_gradient(scorer_fn(rm_params, sb, items)).astype(jnp.float32)
        adv = losses.group_advantages(rewards, where=ok)
        old_logp, ref_logp = jax.lax.stop_gradient(old_logp), jax.lax.stop_gradient(ref_logp)
        count = jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)

        def objective(p, key):
            model = bind(graphdef, p)
            h, _ = state_selection.state_vectors(model, sb, dropout_key=key)
            logp = group_logps(model, h, items, history, ok)
            per = losses.grpo(logp, old_logp, ref_logp, adv, clip_eps=clip_eps,
                              kl_coef=kl_coef, where=ok)
            return jnp.sum(per) / count, ratio_stats(logp, old_logp, ok, clip_eps)

        keys = jax.random.split(k_epochs, epochs)
        params, opt_state, per_epoch = update_epochs(objective, optimizer, state["params"],
                                                     state["opt_state"], keys)
        metrics = {
            "reward": masked_mean(rewards, ok),
            "group_reward_std": masked_mean(group_std(rewards, ok), valid),
            "kl_sample": masked_mean(losses.k3_kl(old_logp, ref_logp, where=ok), ok),
            "frac_samples": jnp.mean(ok.astype(jnp.float32)),
        }
        kl = (reference_kl(old, h_old, ref, h_ref, valid, chunk_size=chunk_size) if log_kl
              else None)
        return finish_step(state, rng, params, opt_state, per_epoch, valid, metrics,
                           kl_ref=kl)

    return jit_step(step, state)


def build(block, ctx):
    scorer = ctx.require_scorer("grpo")
    step = make_grpo_step(ctx.graphdef, ctx.optimizer, scorer.last, ctx.state,
                          group_size=int(block.group_size), clip_eps=float(block.clip_eps),
                          kl_coef=float(block.kl_coef), epochs=int(block.epochs),
                          states=str(block.states), chunk_size=ctx.chunk_size,
                          log_kl=ctx.log_kl)
    return step, (scorer.params,)


register(Algorithm(
    name="grpo",
    summary="group relative policy optimisation: G samples per state, group-normalised rewards",
    defaults=DEFAULTS,
    build=build,
    reward_model=True,
    dropout=0.0,
    update_epochs_key="epochs",
    smoke={"group_size": 4},
    in_comparison=True,
))
