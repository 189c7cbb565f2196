"""The one jitted train step: a pure function of ``(graphdef, state, batch, *frozen)``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from genrec_jax.train.state import bind

LossFn = Callable[..., tuple[jax.Array, dict]]


def jit_step(step, state=None):
    """``jax.jit(step)`` with the graphdef static and the state donated; with ``state`` given,
    the new state keeps exactly its shardings (so the second call does not recompile for a
    sharding the compiler chose differently) and the metrics are replicated."""
    if state is None:
        return jax.jit(step, static_argnums=0, donate_argnums=1)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    replicated = jax.sharding.NamedSharding(state["step"].sharding.mesh,
                                            jax.sharding.PartitionSpec())
    return jax.jit(step, static_argnums=0, donate_argnums=1,
                   out_shardings=(shardings, replicated))


def bound_model(graphdef, params) -> tuple:
    """The default ``model_args``: ``(model,)`` bound from all of ``params``."""
    return (bind(graphdef, params),)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, state=None, *,
                    model_args: Callable[..., tuple] = bound_model):
    """``loss_fn(*model_args(graphdef, params), batch, key, *frozen) -> (loss, aux)`` becomes a
    jitted step (:func:`jit_step`); by default ``loss_fn(model, batch, key, *frozen)``.

    ``frozen`` are extra pytrees that are read but never updated or donated — e.g. the reference
    policy's parameters, passed as an argument rather than closed over. The state is donated.
    ``model_args`` maps the trained pytree to the loss's leading arguments (e.g. a policy and
    an algorithm's extra head, ``genrec_jax.train.algorithms.heads``); every leaf of
    ``state["params"]`` gets a gradient and one optimizer update.
    Returned metrics: ``loss``, ``grad_norm`` and everything in ``aux``.
    """

    def step(graphdef, state, batch, *frozen):
        rng, key = jax.random.split(state["rng"])

        def objective(params):
            return loss_fn(*model_args(graphdef, params), batch, key, *frozen)

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "rng": rng,
        }
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    return jit_step(step, state)
