"""Trainable parameters an algorithm adds beside the policy (e.g. CQL's affine Q map).

An algorithm with a *head* trains ``state["params"] = {**policy, HEAD_KEY: head}``: the
policy's pure-dict parameters plus one extra entry ``head = {name: f32[]}``. One pytree means
one optimizer (the head's moments sit in the same ``opt_state``, global-norm clipping sees
both) and one checkpoint. The policy alone is always :func:`policy_params` of that pytree:
binding, evaluation and the saved policy never see the head.

Its step is :func:`make_head_train_step`: :func:`genrec_jax.train.step.make_train_step` with
``loss_fn(model, head, batch, key, *frozen)`` (the policy bound without the head).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from genrec_jax.train.state import bind
from genrec_jax.train.step import make_train_step

HEAD_KEY = "algo_head"


def policy_params(params):
    """``params`` without the head entry (the plain policy); ``params`` itself if it has none."""
    if not isinstance(params, Mapping) or HEAD_KEY not in params:
        return params
    return {k: v for k, v in params.items() if k != HEAD_KEY}


def head_of(params, algo: str = "this algorithm"):
    """The head entry of ``params``; KeyError naming the missing entry and how it is added."""
    if not isinstance(params, Mapping) or HEAD_KEY not in params:
        raise KeyError(f"{algo} trains extra parameters params[{HEAD_KEY!r}] that the train "
                       "state lacks: build the state from Algorithm.train_params(block, params, "
                       "graphdef=..., data=...)")
    return params[HEAD_KEY]


def with_head(params, head: Mapping[str, object]):
    """``{**params, HEAD_KEY: head}`` with each head value a float32 array, replicated on the
    mesh of the policy's first parameter (plain ``jnp`` arrays when that has no mesh)."""
    if HEAD_KEY in params:
        raise ValueError(f"params already hold a head entry {HEAD_KEY!r}")
    leaf = jax.tree.leaves(params)[0] if jax.tree.leaves(params) else None
    mesh = getattr(getattr(leaf, "sharding", None), "mesh", None)
    rep = (jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
           if isinstance(mesh, jax.sharding.Mesh) else None)

    def place(value):
        x = jnp.asarray(value, jnp.float32)
        return x if rep is None else jax.device_put(x, rep)

    return {**params, HEAD_KEY: {str(k): place(v) for k, v in head.items()}}


def make_head_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
                         state=None, *, algo: str = "this algorithm"):
    """Jitted ``step(graphdef, state, batch, *frozen) -> (state, metrics)`` for
    ``loss_fn(model, head, batch, key, *frozen) -> (loss, aux)``
    (:func:`genrec_jax.train.step.make_train_step`).

    ``model`` = the policy bound from :func:`policy_params`, ``head`` = ``params[HEAD_KEY]``;
    both get gradients and one optimizer update. Metrics: ``loss``, ``grad_norm`` (over policy
    and head) and ``aux``. State donated; with ``state`` given its shardings are kept.
    """

    def model_and_head(graphdef, params):
        return bind(graphdef, policy_params(params)), head_of(params, algo)

    return make_train_step(loss_fn, optimizer, state, model_args=model_and_head)
