"""The algorithm registry: one :class:`Algorithm` per post-training method, looked up by name.

Each algorithm module (``genrec_jax/train/algorithms/<name>.py``) calls :func:`register` once
with everything the trainer and the configs need to know about it:

* ``defaults``: the knobs of its config block (``cfg.<name>.*`` in
  ``experiments/configs/posttrain.py``, generated from here by :func:`config_blocks`) and
  ``smoke``: their smoke-mode overrides;
* ``build(block, ctx) -> (step_fn, extra)``: the jitted step
  ``step_fn(graphdef, state, batch, ref_params, *extra) -> (state, metrics)`` and its frozen
  arguments after the reference parameters (e.g. the reward model's parameters);
* ``reward_model``: whether it needs a training reward model (``True``, or a function of the
  block giving the reason, or None);
* ``columns(block, data, **kw) -> (arrays, info)``: extra ``[U, L]`` data columns batched with
  the training rows, or None; ``column_keys``: their names (e.g. A-SFT's ``reward`` /
  ``baseline``), checked against what ``columns`` returns;
* ``dropout``: its default post-training dropout (None = keep the pretrained rate);
* ``init_head(block, *, graphdef, params, data) -> {name: scalar} | None``: trainable
  parameters it adds beside the policy (e.g. CQL's affine Q map), or None; the trainer builds
  the train state from :meth:`Algorithm.train_params` and evaluates
  :func:`~genrec_jax.train.algorithms.heads.policy_params` of it (the plain policy);
  ``head_keys(block) -> names``: the names ``init_head`` gives, known without data (restoring
  a saved run needs them);
* ``update_epochs_key``: the block key counting gradient updates per training step (the
  on-policy methods' ``epochs``: one rollout, then that many updates), or None (one update per
  step); :meth:`Algorithm.updates_per_step` reads it, so budgets can be equalised in updates;
* ``in_comparison``: whether ``experiments.compare`` runs it by default.

``names()`` lists the algorithms in registration order (the comparison's row order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from genrec_jax.train.algorithms import heads

_REGISTRY: dict[str, Algorithm] = {}


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What an algorithm's ``build`` gets besides its config block.

    ``graphdef`` / ``optimizer`` / ``state``: the policy and its train state (``state`` fixes the
    step's output shardings; None in unit tests); ``scorer``: the training reward function
    (:class:`genrec_jax.train.scorers.Scorer`) or None; ``mesh``: the device mesh;
    ``rating_scale``: ``(r_min, r_max)``; ``impl`` / ``chunk_size``: the fused-softmax kernel
    (``cfg.loss``); ``log_kl``: log the exact KL to the reference.
    """

    graphdef: Any
    optimizer: Any
    state: Any = None
    scorer: Any = None
    mesh: Any = None
    rating_scale: tuple[float, float] = (1.0, 5.0)
    impl: str = "chunked"
    chunk_size: int = 4096
    log_kl: bool = True

    @property
    def kernel_mesh(self):
        """The mesh the fused kernel shards over (``impl="sharded"`` only)."""
        return self.mesh if self.impl == "sharded" else None

    def require_scorer(self, algo: str):
        """The training scorer; ValueError naming the missing ``--reward_dir`` if there is none."""
        if self.scorer is None:
            raise ValueError(f"algo={algo} needs a reward model: pass --reward_dir=RM_DIR (a "
                             "workdir of experiments.reward) or set reward.model=oracle on the "
                             "simulator")
        return self.scorer


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A registered post-training algorithm (see the module docstring for the fields)."""

    name: str
    summary: str
    defaults: Mapping[str, Any]
    build: Callable[[ml_collections.ConfigDict, BuildContext], tuple[Callable, tuple]]
    reward_model: bool | Callable[[ml_collections.ConfigDict], str | None] = False
    columns: Callable | None = None
    column_keys: tuple[str, ...] = ()
    dropout: float | None = None
    smoke: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    in_comparison: bool = True
    init_head: Callable[..., Mapping[str, Any] | None] | None = None
    head_keys: Callable[[ml_collections.ConfigDict], tuple[str, ...]] | None = None
    update_epochs_key: str | None = None

    def updates_per_step(self, block) -> int:
        """Optimizer updates one training step makes with this block (≥ 1)."""
        if self.update_epochs_key is None:
            return 1
        return max(int(block[self.update_epochs_key]), 1)

    def config(self, smoke: bool = False) -> ml_collections.ConfigDict:
        """A fresh config block of the defaults (with the smoke overrides if ``smoke``)."""
        block = dict(self.defaults)
        if smoke:
            unknown = sorted(set(self.smoke) - set(block))
            if unknown:
                raise KeyError(f"algorithm {self.name!r}: smoke overrides {unknown} are not "
                               f"among its defaults {sorted(block)}")
            block.update(self.smoke)
        return ml_collections.ConfigDict(block)

    def train_params(self, block, params, *, graphdef, data):
        """The parameters to post-train: ``params`` (the policy's), plus the head entry
        ``params["algo_head"]`` when ``init_head`` gives one for this block
        (:func:`~genrec_jax.train.algorithms.heads.with_head`)."""
        if self.init_head is None:
            return params
        head = self.init_head(block, graphdef=graphdef, params=params, data=data)
        if not head:
            return params
        return heads.with_head(params, head)

    def head_names(self, block) -> tuple[str, ...]:
        """The scalar names of the head this block trains (``()``: none); they let a saved run
        be restored without its data (``genrec_jax.train.pretrained``)."""
        return tuple(self.head_keys(block)) if self.head_keys is not None else ()

    def reward_model_reason(self, block) -> str | None:
        """Why this algorithm with this block needs a training reward model (None if not)."""
        if callable(self.reward_model):
            return self.reward_model(block)
        return f"algo={self.name} trains on reward-model scores" if self.reward_model else None


def register(algorithm: Algorithm) -> Algorithm:
    """Adds ``algorithm`` under its name; ValueError if the name is taken."""
    if algorithm.name in _REGISTRY:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered")
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def get(name: str) -> Algorithm:
    """The algorithm registered as ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[str(name)]
    except KeyError:
        raise ValueError(f"algo must be one of {names()}, got {name!r}") from None


def names() -> tuple[str, ...]:
    """All registered algorithm names, in registration order."""
    return tuple(_REGISTRY)


def comparison_names() -> tuple[str, ...]:
    """The algorithms ``experiments.compare`` runs by default, in registration order."""
    return tuple(n for n, a in _REGISTRY.items() if a.in_comparison)


def config_blocks(smoke: bool = False) -> dict[str, ml_collections.ConfigDict]:
    """``{name: config block}`` for every registered algorithm (the ``cfg.<name>`` blocks)."""
    return {name: algo.config(smoke) for name, algo in _REGISTRY.items()}


def block_of(cfg, name: str) -> ml_collections.ConfigDict:
    """``cfg[name]``, with a clear error when the config predates the algorithm."""
    if name not in cfg:
        raise KeyError(f"the post-training config has no {name!r} block: "
                       "experiments/configs/posttrain.py builds one per registered algorithm "
                       "(config_blocks())")
    return cfg[name]
