"""Ensembles of reward models trained together, saved with Orbax and loaded as a judge.

    graphdef, params = init_ensemble(config, seeds=[0, 1, 2, 3, 4], mesh=mesh)
    state = init_ensemble_state(params, optimizer, seeds, mesh, user_masks=masks)
    step = make_ensemble_step(optimizer)
    state, metrics = step(graphdef, state, batch)          # all M members, one jitted call
    save_ensemble(workdir, config, state["params"])
    judge = load_ensemble(workdir)                          # RewardEnsemble
    judge.reward_fn(batch, items)                           # [M, B]  (genrec_jax.eval.judge)

The M members share one graph definition; their parameters, optimizer states and RNG keys are
stacked along a leading ``M`` axis and the per-member step is ``jax.vmap``-ed over that axis with
the batch shared (``in_axes=None``). Member ``m`` seeded with ``s_m`` starts from
``RewardModel(config, rngs=nnx.Rngs(s_m))`` and the RNG key ``PRNGKey(s_m + 1)`` — exactly what
:func:`genrec_jax.train.state.init_params` / ``init_train_state`` give a single model — so the
ensemble reproduces M separately trained models step for step. Optionally each member sees a
bootstrap half of the users: a ``[M, U]`` 0/1 mask multiplied into ``batch["weights"]`` through
``batch["user"]``.

Training rows (:func:`reward_rows`) follow the batch contract of docs/architecture.md, built here
from the ``SequenceDataset`` so that a random fraction of the training events can be held out:
a held-out event keeps its place in every history (so sequences are unchanged) but its rating input
is set to 0 ("unknown") everywhere and its target position weighs 0 in training; it is scored
teacher-forced afterwards. The test rows score each user's last event after the training history.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genrec_jax import sharding as shd
from genrec_jax.models.reward import RewardConfig, RewardModel, masked_mean
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.state import bind

ENSEMBLE_DIR = "reward_ensemble"
CONFIG_FILE = "reward_config.json"
MODEL_KEYS = ("inputs", "timestamps", "query_timestamps", "ratings", "lengths")
TRAIN_KEYS = ("inputs", "targets", "timestamps", "query_timestamps", "ratings", "target_ratings",
              "weights", "lengths", "user")


# ---------------------------------------------------------------------------- configuration


def check_num_members(num_members: Any) -> int:
    """M must be an integer ≥ 1; raises ValueError with a clear message otherwise."""
    if isinstance(num_members, bool) or int(num_members) != num_members or int(num_members) < 1:
        raise ValueError(f"reward ensemble size M (num_members) must be an integer >= 1, got "
                         f"{num_members!r}: an ensemble needs at least one reward model")
    return int(num_members)


def member_seeds(base_seed: int, num_members: int) -> list[int]:
    """Seeds of the M members of the ensemble trained with ``base_seed``."""
    num_members = check_num_members(num_members)
    return [int(base_seed) * 1000 + m for m in range(num_members)]


def rating_step_of(ratings: np.ndarray) -> float:
    """1.0 when every rating is a whole number, else 0.5 (half-star scales)."""
    r = np.asarray(ratings, dtype=np.float64)
    return 1.0 if np.allclose(r, np.round(r)) else 0.5


def rating_prior_of(ratings: np.ndarray, rating_scale: Sequence[float],
                    rating_step: float) -> tuple[float, ...]:
    """Class frequencies of ``ratings`` on the bins ``lo, lo + step, …, hi``."""
    lo, hi = (float(v) for v in rating_scale)
    k = int(round((hi - lo) / rating_step)) + 1
    bins = np.clip(np.round((np.asarray(ratings, np.float64) - lo) / rating_step), 0, k - 1)
    counts = np.bincount(bins.astype(np.int64), minlength=k).astype(np.float64)
    return tuple(float(c) for c in counts / max(counts.sum(), 1.0))


def reward_config(cfg, *, num_items: int, rating_scale: Sequence[float], rating_step: float,
                  mesh: Mesh | None = None, rating_prior: Sequence[float] = ()) -> RewardConfig:
    """A :class:`RewardConfig` from the experiment config's ``model`` / ``reward`` blocks."""
    m = cfg.model
    return RewardConfig(
        num_items=int(num_items), max_len=int(cfg.reward.max_len), dim=int(m.dim),
        num_blocks=int(m.num_blocks), num_heads=int(m.num_heads), qk_dim=int(m.qk_dim),
        v_dim=int(m.v_dim), dropout=float(m.dropout), num_time_buckets=int(m.num_time_buckets),
        output_slots=int(m.get("output_slots", 0)),
        table_multiple=1 if mesh is None else int(mesh.shape[shd.MODEL]),
        rating_scale=tuple(float(v) for v in rating_scale), rating_step=float(rating_step),
        head=str(cfg.reward.head), hidden_dim=int(cfg.reward.hidden_dim),
        rating_prior=tuple(rating_prior), bias_gain=float(cfg.reward.bias_gain),
        target_heads=int(cfg.reward.target_heads), target_dim=int(cfg.reward.target_dim),
        history_factor=bool(cfg.reward.history_factor),
        head_dropout=float(cfg.reward.head_dropout))


# ---------------------------------------------------------------------------- init


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
    return {
        "params": params,
        "opt_state": jax.jit(jax.vmap(optimizer.init))(params),
        "step": jax.device_put(jnp.zeros((), jnp.int32), rep),
        "rng": jax.device_put(jnp.stack([jax.random.PRNGKey(int(s) + 1) for s in seeds]), rep),
        "user_mask": jax.device_put(jnp.asarray(user_masks), rep),
    }


# ---------------------------------------------------------------------------- training step


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

    return jax.jit(step, static_argnums=0, donate_argnums=1)


# ---------------------------------------------------------------------------- rows


@dataclasses.dataclass
class RewardRows:
    """Arrays for training and evaluating reward models on one leave-last-out split.

    ``train``: training rows (``TRAIN_KEYS``, the batch contract of docs/architecture.md). Row
    ``u < U`` is user u's most recent ``max_len + 1`` training events (as
    ``genrec_jax.data.sequences.train_arrays``); with ``chunked`` further rows cover the user's
    older training events in windows of ``max_len`` targets, so every training event but the
    user's first is a target exactly once. Held-out targets weigh 0 and held-out rating inputs
    are 0. ``heldout`` (bool, like ``train["targets"]``) marks the held-out target positions.
    ``test``: one row per user with ≥ 1 training event, scoring the user's last event after the
    most recent ``max_len`` training events (``MODEL_KEYS`` + ``target``, ``target_rating``,
    ``user``; as ``eval_arrays(which="test")`` without a validation split).
    ``fit_users/items/ratings``: every training event not held out (for the baselines);
    ``heldout_users/items/ratings``: the held-out events in the order of ``train[...][heldout]``.
    """

    train: dict[str, np.ndarray]
    heldout: np.ndarray
    test: dict[str, np.ndarray]
    fit_users: np.ndarray
    fit_items: np.ndarray
    fit_ratings: np.ndarray
    heldout_users: np.ndarray
    heldout_items: np.ndarray
    heldout_ratings: np.ndarray


def _windows(start: int, stop: int, max_len: int, chunked: bool) -> list[tuple[int, int]]:
    """Event ranges ``[a, b)`` of a user's training rows, most recent first."""
    out = []
    end = stop
    while end - start >= 2 and (chunked or not out):
        out.append((max(start, end - (max_len + 1)), end))
        end -= max_len
    return out


def reward_rows(dataset, *, max_len: int, holdout_fraction: float = 0.0, seed: int = 0,
                chunked: bool = False) -> RewardRows:
    """Builds :class:`RewardRows` from a ``SequenceDataset`` (CSR ``offsets/items/ratings/
    timestamps``, each user's events chronological). Train = all but each user's last event.
    Exactly ``round(holdout_fraction · #targets)`` training targets, drawn uniformly with
    ``seed``, are held out."""
    if not 0.0 <= float(holdout_fraction) < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if int(max_len) < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    offsets = np.asarray(dataset.offsets, np.int64)
    items = np.asarray(dataset.items, np.int64)
    ratings = np.asarray(dataset.ratings, np.float32)
    stamps = np.asarray(dataset.timestamps, np.int64)
    num_users = len(offsets) - 1
    length = int(max_len)

    # Event index of every input / target position (−1 = padding), one row per window.
    first, extra = [], []
    test_hist = np.full((num_users, length), -1, np.int64)
    test_event = np.full(num_users, -1, np.int64)
    for u in range(num_users):
        start, stop = int(offsets[u]), int(offsets[u + 1])
        train_stop = stop - 1                     # the last event is the test event
        windows = _windows(start, train_stop, length, chunked)
        first.append((u, windows[0] if windows else (start, start)))
        extra.extend((u, w) for w in windows[1:])
        if train_stop > start:
            hist = np.arange(max(start, train_stop - length), train_stop)
            test_hist[u, :len(hist)] = hist
            test_event[u] = train_stop
    spans = first + extra
    row_user = np.asarray([u for u, _ in spans], np.int64)
    in_idx = np.full((len(spans), length), -1, np.int64)
    tg_idx = np.full((len(spans), length), -1, np.int64)
    for r, (_, (a, b)) in enumerate(spans):
        n_in = max(b - a - 1, 0)
        in_idx[r, :n_in] = np.arange(a, a + n_in)
        tg_idx[r, :n_in] = np.arange(a + 1, a + 1 + n_in)

    targets_flat = tg_idx[tg_idx >= 0]
    held = np.zeros(len(items), bool)
    num_held = int(round(float(holdout_fraction) * len(targets_flat)))
    if num_held:
        rng = np.random.default_rng(seed)
        held[rng.choice(targets_flat, size=num_held, replace=False)] = True

    def gather(values, idx, fill=0):
        return np.where(idx >= 0, values[np.maximum(idx, 0)], fill)

    def rating_inputs(idx):
        keep = (idx >= 0) & ~held[np.maximum(idx, 0)]
        return np.where(keep, ratings[np.maximum(idx, 0)], 0.0).astype(np.float32)

    heldout = (tg_idx >= 0) & held[np.maximum(tg_idx, 0)]
    train = {
        "inputs": gather(items, in_idx).astype(np.int32),
        "targets": gather(items, tg_idx).astype(np.int32),
        "timestamps": gather(stamps, in_idx).astype(np.int64),
        "query_timestamps": gather(stamps, tg_idx).astype(np.int64),
        "ratings": rating_inputs(in_idx),
        "target_ratings": gather(ratings, tg_idx, 0.0).astype(np.float32),
        "weights": ((tg_idx >= 0) & ~heldout).astype(np.float32),
        "lengths": (in_idx >= 0).sum(axis=1).astype(np.int32),
        "user": row_user.astype(np.int32),
    }
    has_test = test_event >= 0
    te = test_hist[has_test]
    # The event after history position j is j + 1 (the test event after the last one).
    te_query = gather(stamps, np.where(te >= 0, te + 1, -1))
    test = {
        "inputs": gather(items, te).astype(np.int32),
        "timestamps": gather(stamps, te).astype(np.int64),
        "query_timestamps": te_query.astype(np.int64),
        "ratings": rating_inputs(te),
        "lengths": (te >= 0).sum(axis=1).astype(np.int32),
        "target": items[test_event[has_test]].astype(np.int32),
        "target_rating": ratings[test_event[has_test]].astype(np.float32),
        "user": np.flatnonzero(has_test).astype(np.int32),
    }
    user_of = np.repeat(np.arange(num_users), np.diff(offsets))
    is_train = np.ones(len(items), bool)
    is_train[offsets[1:][offsets[1:] > offsets[:-1]] - 1] = False   # every user's last event
    fit = is_train & ~held
    ho = tg_idx[heldout]
    return RewardRows(
        train=train, heldout=heldout, test=test,
        fit_users=user_of[fit], fit_items=items[fit], fit_ratings=ratings[fit],
        heldout_users=user_of[ho], heldout_items=items[ho], heldout_ratings=ratings[ho])


# ---------------------------------------------------------------------------- the judge


def _model_inputs(batch: Mapping[str, Any], keys=MODEL_KEYS) -> dict[str, jax.Array]:
    return {k: jnp.asarray(batch[k]) for k in keys}


def fit_window(batch: Mapping[str, jax.Array], max_len: int) -> dict[str, jax.Array]:
    """Re-windows right-padded ``[B, L]`` rows to exactly ``[B, max_len]``: rows longer than
    ``max_len`` keep their most recent ``max_len`` events, shorter ones are zero-padded.

    The reward model's position table has ``max_len`` rows, so a caller with a longer window
    (e.g. a policy's evaluation rows) is cut to the events the model can see; padding keeps
    every call at the shape the model was trained at (HSTU normalises attention by its
    configured ``max_len``, so padding never changes a score)."""
    length = batch["inputs"].shape[1]
    out = dict(batch)
    keys = [k for k in batch if k != "lengths" and getattr(batch[k], "ndim", 0) == 2
            and batch[k].shape[1] == length]
    if length <= max_len:
        for k in keys:
            out[k] = jnp.pad(batch[k], ((0, 0), (0, max_len - length)))
        return out
    lengths = batch["lengths"].astype(jnp.int32)
    idx = jnp.maximum(lengths - max_len, 0)[:, None] + jnp.arange(max_len)[None, :]
    valid = idx < lengths[:, None]
    safe = jnp.minimum(idx, length - 1)
    for k in keys:
        taken = jnp.take_along_axis(batch[k], safe, axis=1)
        out[k] = jnp.where(valid, taken, jnp.zeros((), taken.dtype))
    out["lengths"] = jnp.minimum(lengths, max_len).astype(batch["lengths"].dtype)
    return out


def _ensemble_score(graphdef, max_len, params, batch, items):
    batch = fit_window(batch, max_len)
    return jax.vmap(lambda p: bind(graphdef, p).score(batch, items))(params)


def _ensemble_positions(graphdef, max_len, params, batch):
    length = batch["inputs"].shape[1]
    batch = fit_window(batch, max_len)
    out = jax.vmap(lambda p: bind(graphdef, p).predict_positions(batch))(params)
    return out[:, :, :length]


def _ensemble_reward(graphdef, max_len, params, batch, items):
    return _ensemble_score(graphdef, max_len, params, batch, items[:, None])[..., 0]


_score_jit = jax.jit(_ensemble_score, static_argnums=(0, 1))
_reward_jit = jax.jit(_ensemble_reward, static_argnums=(0, 1))
_positions_jit = jax.jit(_ensemble_positions, static_argnums=(0, 1))


class RewardEnsemble:
    """M reward models with stacked parameters, used as a judge.

    ``reward_fn(batch, items [B]) -> [M, B]`` (the interface of ``genrec_jax.eval.judge``),
    ``score(batch, items [B, K]) -> [M, B, K]``, ``mean_score`` / ``std_score -> [B, K]``,
    ``predict_positions(batch) -> [M, B, L]`` (teacher-forced). ``batch`` needs ``inputs,
    timestamps, query_timestamps, ratings [B, L]`` and ``lengths [B]`` (other keys are ignored);
    all calls are jitted (one compile per shape).
    """

    def __init__(self, config: RewardConfig, graphdef, params, meta: dict | None = None):
        self.config = config
        self.graphdef = graphdef
        self.params = params
        self.meta = dict(meta or {})
        self.num_members = check_num_members(jax.tree.leaves(params)[0].shape[0])

    def member(self, m: int) -> RewardModel:
        """The m-th reward model as an NNX module."""
        return bind(self.graphdef, jax.tree.map(lambda x: x[m], self.params))

    def score(self, batch, items) -> jax.Array:
        items = jnp.asarray(items, jnp.int32)
        if items.ndim != 2:
            raise ValueError(f"score: items must be [B, K], got shape {items.shape}")
        return _score_jit(self.graphdef, self.config.max_len, self.params, _model_inputs(batch),
                          items)

    def reward_fn(self, batch, items) -> jax.Array:
        items = jnp.asarray(items, jnp.int32)
        if items.ndim != 1:
            raise ValueError(f"reward_fn: items must be [B], got shape {items.shape}")
        return _reward_jit(self.graphdef, self.config.max_len, self.params, _model_inputs(batch),
                           items)

    __call__ = reward_fn

    def mean_score(self, batch, items) -> jax.Array:
        return jnp.mean(self.score(batch, items), axis=0)

    def std_score(self, batch, items) -> jax.Array:
        return jnp.std(self.score(batch, items), axis=0)

    def predict_positions(self, batch) -> jax.Array:
        """Teacher-forced ``[M, B, L]`` ratings of ``batch["targets"]`` (needs L ≤ max_len)."""
        if batch["inputs"].shape[1] > self.config.max_len:
            raise ValueError(f"predict_positions: rows of length {batch['inputs'].shape[1]} "
                             f"exceed the reward model's max_len {self.config.max_len}")
        return _positions_jit(self.graphdef, self.config.max_len, self.params,
                              _model_inputs(batch, (*MODEL_KEYS, "targets")))


def _ensemble_dir(path: str | os.PathLike) -> str:
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(os.path.join(path, CONFIG_FILE)):
        return path
    return os.path.join(path, ENSEMBLE_DIR)


def save_ensemble(directory: str | os.PathLike, config: RewardConfig, params,
                  meta: dict | None = None) -> str:
    """Writes ``directory/reward_ensemble/{reward_config.json, checkpoints/}`` (Orbax), replacing
    an earlier ensemble there. Returns the ensemble folder."""
    folder = os.path.join(os.path.abspath(os.fspath(directory)), ENSEMBLE_DIR)
    num_members = check_num_members(jax.tree.leaves(params)[0].shape[0])
    if jax.process_index() == 0 and os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    info = {"config": config.to_dict(), "num_members": num_members, "meta": dict(meta or {})}
    ckpt = Checkpointer(os.path.join(folder, "checkpoints"), every=1, keep=1)
    ckpt.save(0, {"params": params}, {"num_members": num_members}, force=True)
    ckpt.close()
    if jax.process_index() == 0:
        tmp = os.path.join(folder, CONFIG_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2, sort_keys=True, default=float)
        os.replace(tmp, os.path.join(folder, CONFIG_FILE))
    return folder


def load_ensemble(directory: str | os.PathLike, mesh: Mesh | None = None) -> RewardEnsemble:
    """The :class:`RewardEnsemble` saved by :func:`save_ensemble` in ``directory`` (the workdir
    or the ``reward_ensemble`` folder itself); parameters land replicated on ``mesh`` (default:
    the first device)."""
    folder = _ensemble_dir(directory)
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"no reward ensemble in {directory} (missing {config_path})")
    with open(config_path, encoding="utf-8") as f:
        info = json.load(f)
    config = RewardConfig.from_dict(info["config"])
    num_members = check_num_members(info["num_members"])
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: RewardModel(config, rngs=nnx.Rngs(0))))
    if mesh is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target_sharding = lambda path, leaf: sharding  # noqa: E731
    else:
        target_sharding = lambda path, leaf: NamedSharding(  # noqa: E731
            mesh, P(None, *shd.param_spec(path, leaf)))
    target = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.ShapeDtypeStruct((num_members, *leaf.shape), leaf.dtype,
                                                sharding=target_sharding(path, leaf)),
        nnx.to_pure_dict(abstract))
    ckpt = Checkpointer(os.path.join(folder, "checkpoints"), every=1, keep=1)
    state, _ = ckpt.restore({"params": target})
    ckpt.close()
    return RewardEnsemble(config, graphdef, state["params"], info.get("meta"))


# ---------------------------------------------------------------------------- evaluation helpers


def _batches(arrays: Mapping[str, np.ndarray], batch_size: int):
    from genrec_jax.eval.ranking import padded_batches  # local: eval imports stay optional here

    return padded_batches(arrays, batch_size)


def predict_rows(ensemble: RewardEnsemble, rows: Mapping[str, np.ndarray], *,
                 batch_size: int = 256) -> np.ndarray:
    """Teacher-forced ``[M, U, L]`` predictions for training-style rows (with ``targets``)."""
    keys = (*MODEL_KEYS, "targets")
    out = []
    for batch, num_real in _batches({k: rows[k] for k in keys}, batch_size):
        out.append(np.asarray(ensemble.predict_positions(batch))[:, :num_real])
    return np.concatenate(out, axis=1)


def score_rows(ensemble: RewardEnsemble, rows: Mapping[str, np.ndarray], *,
               batch_size: int = 256) -> np.ndarray:
    """``[M, U]`` predicted rating of ``rows["target"]`` after each row's history."""
    keys = (*MODEL_KEYS, "target")
    out = []
    for batch, num_real in _batches({k: rows[k] for k in keys}, batch_size):
        out.append(np.asarray(ensemble.reward_fn(batch, batch["target"]))[:, :num_real])
    return np.concatenate(out, axis=1)
