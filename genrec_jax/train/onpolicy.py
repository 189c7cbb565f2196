"""Pieces of the on-policy steps (PPO, GRPO): rollout log-probs and the epochs of updates.

An on-policy step is one jitted function ``step(graphdef, state, batch, ref_params, rm_params)``
that samples from the current policy ``π_old``, scores the samples with the reward model and
then runs ``epochs`` optimizer updates on them (:func:`update_epochs`, a ``lax.scan``); it
mirrors :func:`genrec_jax.train.step.make_train_step` (state donated, frozen arguments, output
shardings pinned by :func:`genrec_jax.train.step.jit_step`); :func:`finish_step` assembles its new state and the
metrics the two steps share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genrec_jax.train import policy_ops, state_selection
from genrec_jax.train.policy_ops import masked_mean


def masked_logps(model, h, actions, history, where) -> jax.Array:
    """``log π̃(actions [B] | s)`` under the history-excluded policy, 0 where ``where`` is False
    (:func:`~genrec_jax.train.state_selection.history_excluded_logps`)."""
    return jnp.where(where, state_selection.history_excluded_logps(model, h, actions, history),
                     0.0)


def ratio_stats(logp, old_logp, where, clip_eps: float):
    """Diagnostics of the importance ratio ``ρ = π/π_old`` (no gradient): ``(mean ρ, fraction
    clipped (|ρ − 1| > clip_eps), max |ρ − 1|)`` over the entries where ``where`` is True."""
    ratio = jnp.exp(jax.lax.stop_gradient(logp) - old_logp)
    clipped = (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)
    dev = jnp.max(jnp.where(where, jnp.abs(ratio - 1.0), 0.0))
    return masked_mean(ratio, where), masked_mean(clipped, where), dev


def reference_kl(old, h_old, ref, h_ref, valid, *, chunk_size: int) -> jax.Array:
    """Mean exact ``KL(π_old ‖ π_ref)`` over the catalogue at the sampled states (``valid``)."""
    kl = policy_ops.kl_to_reference(h_old, old.item_vectors(), h_ref, ref.item_vectors(),
                                    temperature=old.config.temperature,
                                    valid_range=policy_ops.item_range(old),
                                    chunk_size=chunk_size)
    return masked_mean(kl, valid)


def update_epochs(objective, optimizer: optax.GradientTransformation, params, opt_state, keys):
    """``len(keys)`` gradient steps on ``objective(params, key) -> (loss, aux)``.

    Returns ``(params, opt_state, (loss [E], aux stacked over the E epochs, grad_norm [E]))``.
    """

    def epoch(carry, key):
        params, opt_state = carry
        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), (loss, aux, optax.tree.norm(grads))

    (params, opt_state), history = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, history


def finish_step(state, rng, params, opt_state, per_epoch, valid, metrics, *, kl_ref=None):
    """``(new_state, metrics)`` of an on-policy step after :func:`update_epochs`.

    ``per_epoch = (loss [E], (ratio, clip, dev) [E] each from :func:`ratio_stats`,
    grad_norm [E])`` (what :func:`update_epochs` returns);
    ``valid [B]``: rows with a state. Metrics: ``loss`` / ``grad_norm`` (means over the E
    epochs), ``ratio_first`` / ``ratio_last`` (mean ``ρ`` at the first / last epoch),
    ``ratio_dev_first`` (max ``|ρ − 1|`` at the first epoch), ``clip_frac`` (mean over the
    epochs), ``frac_states``, ``kl_ref`` when given, and the step's own ``metrics``.
    ``state["step"]`` counts rollout batches.
    """
    loss, (ratio, clip, dev), gnorm = per_epoch
    out = {"loss": jnp.mean(loss), "grad_norm": jnp.mean(gnorm),
           "ratio_first": ratio[0], "ratio_last": ratio[-1], "ratio_dev_first": dev[0],
           "clip_frac": jnp.mean(clip), "frac_states": jnp.mean(valid.astype(jnp.float32)),
           **metrics}
    if kl_ref is not None:
        out["kl_ref"] = kl_ref
    new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1,
                 "rng": rng}
    return new_state, out
