"""The one reward-ensemble training run: config + data in, a trained (and saved) ensemble out.

    trained = train_reward_ensemble(cfg, workdir, data=data)
    trained.ensemble.reward_fn(batch, items)                 # [M, B]
    load_ensemble(workdir)                                   # the same ensemble, from disk

Used by the reward ablation (``experiments.reward``, once per seed) and by the post-training
smoke run (``experiments.posttrain.smoke_reward``). Steps: the rating step and the class prior
of the training events (every event but each user's last) → :func:`reward_config` → rows
(:func:`reward_rows`, ``reward.holdout_fraction`` / ``reward.chunked``) → M members seeded
``member_seeds(seed, M)`` (bootstrap halves of the users with ``reward.bootstrap``, or the
training member and the judges on disjoint halves with ``reward.judge_users="disjoint"``) → the vmapped
step for ``epochs × batches per epoch`` steps (or ``num_steps`` when > 0) on shuffled batches
of ``batch_size`` rows → saved in ``workdir/reward_ensemble`` when ``workdir`` is given.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time

import jax
import numpy as np
from jax.sharding import Mesh

from genrec_jax import sharding as shd
from genrec_jax.data.batching import Batcher
from genrec_jax.data.prepare import PreparedData, prepare_data
from genrec_jax.data.sequences import training_mask
from genrec_jax.train import loop
from genrec_jax.train.reward.config import (check_num_members, member_seeds, rating_prior_of,
                                            rating_step_of, reward_config)
from genrec_jax.train.reward.ensemble import RewardEnsemble
from genrec_jax.train.reward.members import (bootstrap_masks, disjoint_masks, init_ensemble,
                                             init_ensemble_state, make_ensemble_step)
from genrec_jax.train.reward.rows import RewardRows, reward_rows
from genrec_jax.train.reward.storage import save_ensemble
from genrec_jax.train.state import make_optimizer


@dataclasses.dataclass
class TrainedEnsemble:
    """What :func:`train_reward_ensemble` returns.

    ``ensemble``: the M trained members as a judge; ``rows``: the rows it was trained on (with
    the held-out events and the test rows, for evaluation); ``seed`` and ``member_seeds``;
    ``num_steps`` trained; ``train_seconds`` (the training loop, compilation included);
    ``final_loss`` (mean over members of the last step's loss, NaN without steps); ``folder``:
    the saved ensemble's folder, or None when not saved.
    """

    ensemble: RewardEnsemble
    rows: RewardRows
    seed: int
    member_seeds: list[int]
    num_steps: int
    train_seconds: float
    final_loss: float
    folder: str | None


def optimizer_and_step(optimizer_cfg) -> tuple:
    """``(optimizer, step)`` for an optimizer config (a mapping, e.g. ``cfg.optimizer``): one
    optimizer and one jitted ensemble step (:func:`make_ensemble_step`) per distinct config, so
    that the seeds of an ablation (same shapes) share one compilation."""
    to_dict = getattr(optimizer_cfg, "to_dict", None)
    plain = to_dict() if to_dict is not None else dict(optimizer_cfg)
    return _optimizer_and_step(json.dumps(plain, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _optimizer_and_step(optimizer_json: str):
    optimizer = make_optimizer(json.loads(optimizer_json))
    return optimizer, make_ensemble_step(optimizer)


JUDGE_USERS = ("all", "disjoint")



def member_masks(reward_cfg, num_users: int, num_members: int, seed: int) -> np.ndarray:
    """Which users train which member: all (default), random bootstrap halves
    (``reward.bootstrap``), or ``reward.judge_users="disjoint"``: the training member
    (``reward.train_member``, default 0) on one half of the users and the judges on the other
    (:func:`disjoint_masks`)."""
    judge_users = str(reward_cfg.get("judge_users", "all"))
    if judge_users not in JUDGE_USERS:
        raise ValueError(f"reward.judge_users must be one of {JUDGE_USERS}, got {judge_users!r}")
    if judge_users == "disjoint":
        if bool(reward_cfg.get("bootstrap", False)):
            raise ValueError("reward.judge_users=disjoint and reward.bootstrap=True both choose "
                             "each member's users; use one")
        if num_members < 2:
            raise ValueError("reward.judge_users=disjoint needs at least 2 members (the "
                             "training reward model and a judge)")
        return disjoint_masks(num_users, num_members, seed,
                              int(reward_cfg.get("train_member", 0)))
    return bootstrap_masks(num_users, num_members, seed,
                           enabled=bool(reward_cfg.get("bootstrap", False)))


def train_reward_ensemble(cfg, workdir: str | None = None, *, data: PreparedData | None = None,
                          seed: int | None = None, num_members: int | None = None,
                          epochs: int | None = None, mesh: Mesh | None = None,
                          verbose: bool = False) -> TrainedEnsemble:
    """Trains one ensemble of reward models as configured; saves it in ``workdir`` if given.

    Args:
      cfg: an experiment config with the blocks of ``experiments/configs/reward.py``
        (``model``, ``reward``, ``optimizer``, ``mesh``, ``batch_size``, ``epochs``,
        ``num_steps``, ``seed``, ``log_every``, ``dataset``, ``smoke``).
      workdir: where to save (``workdir/reward_ensemble``); None: not saved.
      data: the prepared data (default ``prepare_data(cfg)``).
      seed: the run seed (default ``cfg.seed``): member seeds, held-out draw, bootstrap halves
        and batch order.
      num_members: M (default ``cfg.reward.num_members``).
      epochs: train ``epochs × batches per epoch`` steps (default: ``cfg.num_steps`` when > 0,
        else ``cfg.epochs`` epochs); 0 gives the untrained ensemble.
      mesh: the device mesh (default from ``cfg.mesh``).
      verbose: log training progress.
    """
    num_members = check_num_members(cfg.reward.num_members if num_members is None
                                    else num_members)
    mesh = mesh if mesh is not None else shd.mesh_from_config(cfg.mesh)
    batch_size = int(cfg.batch_size)
    shd.divisible_batch(batch_size, mesh)
    data = data if data is not None else prepare_data(cfg)
    seed = int(cfg.seed) if seed is None else int(seed)
    ds = data.dataset
    scale = tuple(float(v) for v in ds.rating_scale)
    rating_step = rating_step_of(ds.ratings)
    # The output-bias prior: rating class frequencies of the split's training events (no
    # validation or test event).
    prior = rating_prior_of(ds.ratings[training_mask(data.split)], scale, rating_step)
    rcfg = reward_config(cfg, num_items=ds.num_items, rating_scale=scale,
                         rating_step=rating_step, mesh=mesh, rating_prior=prior)
    optimizer, step_fn = optimizer_and_step(cfg.optimizer)

    holdout = float(cfg.reward.holdout_fraction)
    rows = reward_rows(ds, max_len=rcfg.max_len, seed=seed, holdout_fraction=holdout,
                       chunked=bool(cfg.reward.chunked), train_len=data.split.train_len)
    seeds = member_seeds(seed, num_members)
    graphdef, params = init_ensemble(rcfg, seeds, mesh)
    masks = member_masks(cfg.reward, ds.num_users, num_members, seed)
    state = init_ensemble_state(params, optimizer, seeds, mesh, masks)
    batcher = Batcher(rows.train, batch_size=batch_size, seed=seed, shuffle=True,
                      process_index=jax.process_index(), process_count=jax.process_count())
    if epochs is not None:
        num_steps = int(epochs) * batcher.batches_per_epoch
    elif int(cfg.num_steps) > 0:
        num_steps = int(cfg.num_steps)
    else:
        num_steps = int(cfg.epochs) * batcher.batches_per_epoch

    t0 = time.perf_counter()
    final_loss = math.nan
    if num_steps > 0:
        state, metrics, *_ = loop.run(step_fn=step_fn, graphdef=graphdef, state=state,
                                      batch_at=batcher.batch_at, mesh=mesh, num_steps=num_steps,
                                      writer=None, log_every=int(cfg.log_every), verbose=verbose)
        final_loss = float(metrics["loss"])
    train_seconds = time.perf_counter() - t0

    folder = None
    if workdir is not None:
        folder = save_ensemble(workdir, rcfg, state["params"], meta={
            "dataset": str(cfg.dataset), "seed": seed, "member_seeds": seeds,
            "holdout_fraction": holdout, "train_steps": num_steps, "smoke": bool(cfg.smoke)})
    return TrainedEnsemble(
        ensemble=RewardEnsemble(rcfg, graphdef, state["params"]), rows=rows, seed=seed,
        member_seeds=seeds, num_steps=num_steps, train_seconds=train_seconds,
        final_loss=final_loss, folder=folder)
