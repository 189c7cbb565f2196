"""M reward models trained as one: member-stacked parameters and one vmapped jitted step.

    graphdef, params = init_ensemble(config, seeds=[0, 1, 2, 3, 4], mesh=mesh)
    state = init_ensemble_state(params, optimizer, seeds, mesh, user_masks=masks)
    step = make_ensemble_step(optimizer)
    state, metrics = step(graphdef, state, batch)          # all M members, one jitted call

The M members share one graph definition; their parameters, optimizer states and RNG keys are
stacked along a leading ``M`` axis and the per-member step is ``jax.vmap``-ed over that axis with
the batch shared (``in_axes=None``). Member ``m`` seeded with ``s_m`` starts from
``RewardModel(config, rngs=nnx.Rngs(s_m))`` and the RNG key ``PRNGKey(s_m + 1)`` — exactly what
:func:`genrec_jax.train.state.init_params` / ``init_train_state`` give a single model — so the
ensemble reproduces M separately trained models step for step. Optionally each member sees a
bootstrap half of the users: a ``[M, U]`` 0/1 mask multiplied into ``batch["weights"]`` through
``batch["user"]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genrec_jax import sharding as shd
from genrec_jax.models.functional import bind
from genrec_jax.models.reward import RewardConfig, RewardModel, masked_mean
from genrec_jax.train.reward.config import check_num_members


def _stacked_shardings(single, mesh: Mesh):
    """Shardings for member-stacked params: the single model's spec behind a leading None."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, P(None, *shd.param_spec(path, leaf))), single)


@functools.lru_cache(maxsize=8)
def _member_builder(config: RewardConfig):
    """One compiled initialiser per config: key → the pure params of one member."""
    return jax.jit(lambda key: nnx.to_pure_dict(
        nnx.split(RewardModel(config, rngs=nnx.Rngs(key)))[1]))


def init_ensemble(config: RewardConfig, seeds: Sequence[int], mesh: Mesh | None = None):
    """``(graphdef, params)`` with params stacked ``[M, ...]``; member m = seed ``seeds[m]``."""
    check_num_members(len(seeds))
    mesh = mesh or shd.make_mesh()
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: RewardModel(config, rngs=nnx.Rngs(0))))
    build = _member_builder(config)
    members = [build(jax.random.key(int(s))) for s in seeds]
    shardings = _stacked_shardings(nnx.to_pure_dict(abstract), mesh)
    params = jax.jit(lambda ms: jax.tree.map(lambda *xs: jnp.stack(xs), *ms),
                     out_shardings=shardings)(members)
    return graphdef, params


def disjoint_masks(num_users: int, num_members: int, seed: int,
                   train_member: int = 0) -> np.ndarray:
    """``[M, U]`` float32 for independent judges: member ``train_member`` (the reward model
    post-training optimises) on a random half A of the users, every other member (the judges)
    on the other half B, so no judge has seen a user that trained it."""
    check_num_members(num_members)
    if not 0 <= int(train_member) < num_members:
        raise ValueError(f"train_member {train_member} is not a member of an ensemble of "
                         f"{num_members}")
    half = np.zeros(num_users, np.float32)
    half[np.random.default_rng(seed).permutation(num_users)[: (num_users + 1) // 2]] = 1.0
    masks = np.tile(1.0 - half, (num_members, 1))
    masks[int(train_member)] = half
    return masks


def bootstrap_masks(num_users: int, num_members: int, seed: int,
                    enabled: bool = True) -> np.ndarray:
    """``[M, U]`` float32: each member's random half of the users (all ones when disabled)."""
    check_num_members(num_members)
    if not enabled:
        return np.ones((num_members, num_users), np.float32)
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_members, num_users), np.float32)
    for m in range(num_members):
        masks[m, rng.permutation(num_users)[: (num_users + 1) // 2]] = 1.0
    return masks


def init_ensemble_state(params, optimizer: optax.GradientTransformation, seeds: Sequence[int],
                        mesh: Mesh | None = None, user_masks: np.ndarray | None = None,
                        num_users: int = 1):
    """``{"params", "opt_state", "step", "rng", "user_mask"}``; all but ``step`` lead with M.

    ``rng[m] = PRNGKey(seeds[m] + 1)`` as :func:`genrec_jax.train.state.init_train_state` gives
    a single model; ``user_mask`` defaults to ones (no bootstrap)."""
    num_members = check_num_members(len(seeds))
    mesh = mesh or shd.make_mesh()
    rep = shd.replicated(mesh)
    if user_masks is None:
        user_masks = np.ones((num_members, num_users), np.float32)
    user_masks = np.asarray(user_masks, np.float32)
    if user_masks.ndim != 2 or user_masks.shape[0] != num_members:
        raise ValueError(f"user_masks must be [M={num_members}, U], got {user_masks.shape}")
    # The optimizer state is placed (committed) like the parameters it mirrors: left
    # uncommitted, the step's first call would compile for one placement and its second for
    # the placement of its own output.
    single = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), params)
    opt_shardings = _stacked_shardings(jax.eval_shape(optimizer.init, single), mesh)
    return {
        "params": params,
        "opt_state": jax.jit(jax.vmap(optimizer.init), out_shardings=opt_shardings)(params),
        "step": jax.device_put(jnp.zeros((), jnp.int32), rep),
        "rng": jax.device_put(jnp.stack([jax.random.PRNGKey(int(s) + 1) for s in seeds]), rep),
        "user_mask": jax.device_put(jnp.asarray(user_masks), rep),
    }


def reward_loss_fn(model: RewardModel, batch, key, weights=None):
    """``loss_fn(model, batch, key) -> (loss, aux)`` in the form of ``train.step``: the masked
    mean of the per-position rating loss (mask ``weights > 0``)."""
    per_pos, mask = model.losses(batch, dropout_key=key, weights=weights)
    return masked_mean(per_pos, mask), {}


def make_ensemble_step(optimizer: optax.GradientTransformation):
    """A jitted ``step(graphdef, state, batch) -> (state, metrics)`` over all M members.

    Member m's weights are ``batch["weights"] · user_mask[m, batch["user"]]``. The state is
    donated. Metrics: ``loss`` (mean over members), ``loss_min``, ``loss_max``, ``grad_norm``
    (mean over members).

    The new state keeps exactly the shardings of the state passed in (metrics are replicated):
    left to itself the compiler returns e.g. ``P()`` for a ``P(None)`` input or a
    ``NamedSharding`` for a single-device one, and the second step would compile the whole
    step again. One jitted function is kept per sharding layout of the state.
    """

    def member_step(graphdef, member, batch):
        rng, key = jax.random.split(member["rng"])
        weights = batch["weights"] * member["user_mask"][batch["user"]][:, None]

        def objective(params):
            return reward_loss_fn(bind(graphdef, params), batch, key, weights)[0]

        loss, grads = jax.value_and_grad(objective)(member["params"])
        updates, opt_state = optimizer.update(grads, member["opt_state"], member["params"])
        new = {"params": optax.apply_updates(member["params"], updates), "opt_state": opt_state,
               "rng": rng, "user_mask": member["user_mask"]}
        return new, loss, optax.tree.norm(grads)

    def step(graphdef, state, batch):
        members = {k: state[k] for k in ("params", "opt_state", "rng", "user_mask")}
        new, losses, norms = jax.vmap(member_step, in_axes=(None, 0, None))(
            graphdef, members, batch)
        metrics = {"loss": jnp.mean(losses), "loss_min": jnp.min(losses),
                   "loss_max": jnp.max(losses), "grad_norm": jnp.mean(norms)}
        return dict(new, step=state["step"] + 1), metrics

    jitted = {}

    def call(graphdef, state, batch):
        leaves, treedef = jax.tree.flatten(state)
        layout = (treedef, tuple(x.sharding for x in leaves))
        fn = jitted.get(layout)
        if fn is None:
            shardings = jax.tree.unflatten(treedef, list(layout[1]))
            counter = state["step"].sharding
            replicated = (NamedSharding(counter.mesh, P()) if isinstance(counter, NamedSharding)
                          else counter)
            fn = jitted[layout] = jax.jit(step, static_argnums=0, donate_argnums=1,
                                          out_shardings=(shardings, replicated))
        return fn(graphdef, state, batch)

    return call
