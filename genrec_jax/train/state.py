"""Train state as a plain pytree, initialised directly onto its shardings.

``state = {"params": pure dict, "opt_state": optax state, "step": int32[], "rng": key data}``.
The model's graph definition is kept apart (static) and re-bound with ``bind`` (``nnx.merge``;
defined in ``genrec_jax.models.functional``, re-exported here) inside jitted functions, so every
step is a pure function of ``(graphdef, state, batch)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from genrec_jax import sharding as shd
from genrec_jax.models.functional import bind  # noqa: F401  (re-exported: train code binds here)


def make_optimizer(cfg: Mapping[str, Any]) -> optax.GradientTransformation:
    """AdamW(lr, β=(b1, b2), weight_decay) with optional warm-up and global-norm clipping.

    The hyper-parameters live in the optimizer state (``optax.inject_hyperparams``), not in the
    compiled program: runs that differ only in them (a learning-rate grid) compile one identical
    step, which a persistent compilation cache (the comparison sets one) then serves. With a
    warm-up, the schedule's peak learning rate stays a constant of the program."""
    lr = float(cfg.get("learning_rate", 1e-3))
    warmup = int(cfg.get("warmup_steps", 0))
    schedule = optax.linear_schedule(0.0, lr, warmup) if warmup > 0 else lr
    parts = []
    clip = float(cfg.get("grad_clip_norm", 0.0))
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    adamw = optax.inject_hyperparams(optax.adamw)
    parts.append(adamw(schedule, b1=float(cfg.get("b1", 0.9)), b2=float(cfg.get("b2", 0.98)),
                       eps=float(cfg.get("eps", 1e-8)),
                       weight_decay=float(cfg.get("weight_decay", 0.0))))
    return optax.chain(*parts)


def init_params(make_model: Callable[[nnx.Rngs], nnx.Module], seed: int, mesh: Mesh):
    """Builds the model inside ``jit`` with sharded outputs: no full copy of a sharded table is
    ever made on one device. Returns ``(graphdef, params)``."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make_model(nnx.Rngs(seed))))
    shardings = shd.param_shardings(abstract.to_pure_dict(), mesh)

    def build():
        return nnx.split(make_model(nnx.Rngs(seed)))[1].to_pure_dict()

    return graphdef, jax.jit(build, out_shardings=shardings)()


def init_train_state(params, optimizer: optax.GradientTransformation, seed: int, mesh: Mesh):
    """``{"params", "opt_state", "step", "rng"}`` with the optimizer state sharded like params."""
    # Moments whose path names an item table get the table's row sharding, the rest replicate.
    opt_shardings = shd.param_shardings(jax.eval_shape(optimizer.init, params), mesh)
    opt_state = jax.jit(optimizer.init, out_shardings=opt_shardings)(params)
    rep = shd.replicated(mesh)
    return {
        "params": params,
        "opt_state": opt_state,
        "step": jax.device_put(jnp.zeros((), jnp.int32), rep),
        "rng": jax.device_put(jax.random.PRNGKey(seed + 1), rep),
    }
