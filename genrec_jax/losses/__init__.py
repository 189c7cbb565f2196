"""Post-training losses for generative recommenders, as pure JAX functions (optax style).

Conventions (every function here):

* arrays in, per-example loss out: shape = the batch shape ``[...]``, no reduction;
* hyper-parameters are keyword-only;
* ``where``: optional mask broadcastable to ``[...]`` (bool, or numbers read as ``!= 0``);
  masked entries give exactly 0 loss and 0 gradient, even with garbage inputs;
* ``logits [..., V]`` score the whole catalogue, ``actions [...]`` index its last axis.

Only jax (and numpy) is needed: this package imports nothing else from ``genrec_jax``.

Losses are registered by name (:func:`get_loss`, :func:`available_losses`, :func:`register`)
so a config can select one with a string. Advantages and baselines live in
:mod:`genrec_jax.losses.advantages` (the function ``advantages`` is re-exported here as
:func:`compute_advantages`, since ``genrec_jax.losses.advantages`` names the module).
"""
from genrec_jax.losses import advantages
from genrec_jax.losses._registry import available_losses, get_loss, register
from genrec_jax.losses.advantages import (
    batch_mean_baseline,
    item_mean_baseline,
    user_mean_baseline,
    value_baseline,
)
from genrec_jax.losses.advantages import advantages as compute_advantages
from genrec_jax.losses.cql import cql, cql_from_lse, cql_targets
from genrec_jax.losses.grpo import group_advantages, grpo, k3_kl
from genrec_jax.losses.policy_gradient import (
    kl_penalized_rewards,
    ppo,
    ppo_objective,
    ppo_value_loss,
)
from genrec_jax.losses.preference import dpo, dpo_margin, ipo
from genrec_jax.losses.supervised import (
    asft,
    asft_from_logps,
    asft_weights,
    bc,
    bc_from_logps,
    log_prob_of,
    rwbc,
    rwbc_from_logps,
    rwbc_weights,
    sampled_softmax,
)

__all__ = [
    "advantages",
    "asft",
    "asft_from_logps",
    "asft_weights",
    "available_losses",
    "batch_mean_baseline",
    "bc",
    "bc_from_logps",
    "compute_advantages",
    "cql",
    "cql_from_lse",
    "cql_targets",
    "dpo",
    "dpo_margin",
    "get_loss",
    "group_advantages",
    "grpo",
    "ipo",
    "item_mean_baseline",
    "k3_kl",
    "kl_penalized_rewards",
    "log_prob_of",
    "ppo",
    "ppo_objective",
    "ppo_value_loss",
    "register",
    "rwbc",
    "rwbc_from_logps",
    "rwbc_weights",
    "sampled_softmax",
    "user_mean_baseline",
    "value_baseline",
]
