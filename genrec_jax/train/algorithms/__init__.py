"""Post-training algorithms, one module each, registered by name.

    from genrec_jax.train import algorithms
    algorithms.names()              # ('bc', 'rwbc', 'asft', 'dpo', 'ipo', 'ppo', 'cql', ...)
    algo = algorithms.get("asft")   # an Algorithm: defaults, build, reward_model, columns, ...
    params = algo.train_params(block, params, graphdef=graphdef, data=data)  # + its head, if any
    algorithms.policy_params(params)   # the plain policy (what is evaluated and served)

Adding an algorithm = one module ``genrec_jax/train/algorithms/<name>.py`` that calls
:func:`register` + one line in ``_MODULES`` below (the order is the comparison's row order).
Shared pieces live in ``genrec_jax.train``: :mod:`~genrec_jax.train.policy_ops`,
:mod:`~genrec_jax.train.state_selection`, :mod:`~genrec_jax.train.scorers`,
:mod:`~genrec_jax.train.offline_loss`, :mod:`~genrec_jax.train.preference_pairs`,
:mod:`~genrec_jax.train.onpolicy`.
"""

import importlib

from genrec_jax.train.algorithms.heads import HEAD_KEY, policy_params
from genrec_jax.train.algorithms.registry import (
    Algorithm,
    BuildContext,
    block_of,
    comparison_names,
    config_blocks,
    get,
    names,
    register,
)

_MODULES = (
    "bc",
    "rwbc",
    "asft",
    "dpo",
    "ipo",
    "ppo",
    "cql",
    "grpo",
)
for _name in _MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "HEAD_KEY",
    "Algorithm",
    "BuildContext",
    "block_of",
    "comparison_names",
    "config_blocks",
    "get",
    "names",
    "policy_params",
    "register",
]
