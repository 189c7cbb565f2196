"""Online PPO in its one-step (bandit) form, against a reward model (DESIGN.md §2).

One jitted step = one rollout batch followed by ``ppo_epochs`` updates on it:

1. a state per row (:func:`~genrec_jax.train.posttrain_common.select_states`);
2. rollout: ``a ~ π_old(·|s)`` = the current policy before this step's updates, with the
   state's history excluded (the distribution recommendations are served from); the log-probs
   of ``a`` under ``π_old``, ``π_θ`` and the frozen ``π_ref`` are all of this history-excluded
   softmax (:func:`~genrec_jax.train.posttrain_common.history_excluded_logps`: per state,
   ``[B, V]`` logits; the fused kernel has no per-row mask, see there);
3. ``reward = RM(s, a) − kl_coef·(log π_old(a) − log π_ref(a))``
   (:func:`genrec_jax.losses.kl_penalized_rewards`), ``A = reward − mean over the batch``
   (optionally normalised);
4. ``ppo_epochs`` gradient steps (a ``lax.scan``) on ``ppo(log π_θ(a), log π_old(a), A)``, the
   clipped surrogate with ``ρ = π_θ/π_old``.

With dropout off (the post-training default for PPO) and a fresh rollout, ``ρ = 1`` at the
first update. The step mirrors :func:`genrec_jax.train.step.make_train_step`: the state is
donated, ``ref_params`` and ``rm_params`` are frozen arguments, output shardings are pinned.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genrec_jax import losses
from genrec_jax.train import posttrain_common as pc
from genrec_jax.train.state import bind


def make_ppo_step(graphdef, optimizer: optax.GradientTransformation, scorer_fn, state=None, *,
                  clip_eps: float = 0.2, kl_coef: float = 0.05, ppo_epochs: int = 4,
                  normalize_advantages: bool = False, states: str = "random",
                  chunk_size: int = 4096, log_kl: bool = True):
    """Jitted ``step(graphdef, state, batch, ref_params, rm_params) -> (state, metrics)``.

    ``scorer_fn`` = ``Scorer.last``; ``chunk_size``: item chunk of the exact KL diagnostic.
    ``state["step"]`` counts rollout batches (each with ``ppo_epochs`` optimizer updates).

    Metrics: ``loss`` (mean over the epochs), ``reward`` (mean RM score of the sampled items),
    ``shaped_reward``, ``kl_sample`` (mean ``log π_old(a) − log π_ref(a)``), ``kl_ref`` (exact,
    at the states, before the update), ``ratio_first`` / ``ratio_last`` (mean ``ρ`` at the
    first / last epoch), ``ratio_dev_first`` (max ``|ρ − 1|`` at the first epoch),
    ``clip_frac`` (share of samples with ``|ρ − 1| > clip_eps``, mean over epochs),
    ``frac_states`` (rows with a state), ``grad_norm``.
    """
    ppo_epochs = int(ppo_epochs)
    if ppo_epochs < 1:
        raise ValueError(f"ppo_epochs must be >= 1, got {ppo_epochs}")

    def logps(model, h, actions, history, where):
        return jnp.where(where, pc.history_excluded_logps(model, h, actions, history), 0.0)

    def step(graphdef, state, batch, ref_params, rm_params):
        rng, k_state, k_sample, k_epochs = jax.random.split(state["rng"], 4)
        sb, _, valid = pc.select_states(batch, k_state, states)
        history = sb["inputs"]

        # Rollout from pi_old = the current parameters (no dropout, no gradient).
        old = bind(graphdef, jax.lax.stop_gradient(state["params"]))
        h_old, _ = pc.state_vectors(old, sb)
        logits = pc.history_excluded_logits(old, h_old, history)
        actions = jax.random.categorical(k_sample, logits, axis=-1).astype(jnp.int32)
        valid = valid & jnp.isfinite(jnp.take_along_axis(logits, actions[:, None], 1)[:, 0])
        old_logp = logps(old, h_old, actions, history, valid)
        ref = bind(graphdef, ref_params)
        h_ref, _ = pc.state_vectors(ref, sb)
        ref_logp = logps(ref, h_ref, actions, history, valid)
        reward = scorer_fn(rm_params, sb, actions[:, None])[:, 0]
        shaped = losses.kl_penalized_rewards(reward, old_logp, ref_logp, kl_coef=kl_coef,
                                             where=valid)
        adv = losses.compute_advantages(shaped, losses.batch_mean_baseline(shaped, where=valid),
                                        normalize=normalize_advantages, where=valid)
        old_logp, adv = jax.lax.stop_gradient(old_logp), jax.lax.stop_gradient(adv)
        count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)

        def epoch(carry, key):
            params, opt_state = carry

            def objective(p):
                model = bind(graphdef, p)
                h, _ = pc.state_vectors(model, sb, dropout_key=key)
                logp = logps(model, h, actions, history, valid)
                per = losses.ppo(logp, old_logp, adv, clip_eps=clip_eps, where=valid)
                ratio = jnp.exp(jax.lax.stop_gradient(logp) - old_logp)
                clipped = (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)
                dev = jnp.max(jnp.where(valid, jnp.abs(ratio - 1.0), 0.0))
                return jnp.sum(per) / count, (pc.masked_mean(ratio, valid),
                                              pc.masked_mean(clipped, valid), dev)

            (loss, (ratio, clip, dev)), grads = jax.value_and_grad(objective, has_aux=True)(
                params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), (loss, ratio, clip, dev, optax.tree.norm(grads))

        keys = jax.random.split(k_epochs, ppo_epochs)
        (params, opt_state), (loss, ratio, clip, dev, gnorm) = jax.lax.scan(
            epoch, (state["params"], state["opt_state"]), keys)
        metrics = {
            "loss": jnp.mean(loss), "grad_norm": jnp.mean(gnorm),
            "reward": pc.masked_mean(reward, valid), "shaped_reward": pc.masked_mean(shaped, valid),
            "kl_sample": pc.masked_mean(old_logp - ref_logp, valid),
            "ratio_first": ratio[0], "ratio_last": ratio[-1], "ratio_dev_first": dev[0],
            "clip_frac": jnp.mean(clip),
            "frac_states": jnp.mean(valid.astype(jnp.float32)),
        }
        if log_kl:
            kl = pc.kl_to_reference(h_old, old.item_vectors(), h_ref, ref.item_vectors(),
                                    temperature=old.config.temperature,
                                    valid_range=pc.item_range(old), chunk_size=chunk_size)
            metrics["kl_ref"] = pc.masked_mean(kl, valid)
        new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1,
                     "rng": rng}
        return new_state, metrics

    if state is None:
        return jax.jit(step, static_argnums=0, donate_argnums=1)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    replicated = jax.sharding.NamedSharding(state["step"].sharding.mesh,
                                            jax.sharding.PartitionSpec())
    return jax.jit(step, static_argnums=0, donate_argnums=1,
                   out_shardings=(shardings, replicated))
