"""Post-training of a pretrained HSTU with any registered algorithm, end to end.

    metrics = posttrain(cfg, workdir, init_dir=PRETRAIN_DIR, reward_dir=RM_DIR)

1. The policy starts from the latest Orbax checkpoint of a pretraining workdir
   (:func:`~genrec_jax.train.pretrained.restore_pretrained`, restored onto the current mesh);
   the reference policy ``π_ref`` is a frozen copy of those parameters, passed to every jitted
   step as an explicit argument (never closed over, never donated).
2. Reward models (``--reward_dir``, a workdir of ``experiments.reward``): ensemble member
   ``reward.train_member`` (default 0) is the *training* reward model (the scorer of the
   algorithms that need one, e.g. DPO/IPO/PPO, A-SFT's ``asft.reward_source=reward_model``
   and ``asft.baseline=value``); the *judges* are the other members (all members when the
   ensemble has only one, flagged in the metrics). With ``reward.model="oracle"`` (simulator
   only) the training reward is the simulator's true expected rating instead.
3. Training: ``cfg.algo`` names an algorithm of :mod:`genrec_jax.train.algorithms`; its config
   block ``cfg[cfg.algo]`` and a :class:`~genrec_jax.train.algorithms.BuildContext` build its
   jitted step (:func:`build_step`), and its ``columns`` (if any) extend the training rows
   (:func:`train_arrays_for`). Data-parallel on the mesh through
   :func:`genrec_jax.train.loop.run` (checkpoints in ``workdir/checkpoints``, resumable;
   ``metrics.jsonl`` / TensorBoard logs). One step = one batch of training rows (for the
   on-policy algorithms: one rollout batch and its update epochs).
4. Evaluation of the initial (pretrained) and the final policy
   (:func:`~genrec_jax.train.policy_eval.evaluate_policy`): the test ranking metrics
   (HR/NDCG/MRR and ``_liked``), the judge score when reward models are given, and on the
   simulator the true expected rating of the greedy top-1 / top-10 recommendations.
   ``workdir/metrics.json`` = ``{"algo", "config", "initial", "final", "delta", "train", ...}``;
   the per-user values behind those means (one row per test user, the means are their
   nan-means; :mod:`genrec_jax.eval.per_user`) go to ``workdir/per_user.npz`` (final policy)
   and ``workdir/per_user_initial.npz`` (the pretrained policy).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import jax
import numpy as np

from genrec_jax import sharding as shd
from genrec_jax.data.batching import Batcher
from genrec_jax.data.prepare import PreparedData, prepare_data
from genrec_jax.eval.per_user import PER_USER_FILE, save_per_user
from genrec_jax.train import algorithms, loop
from genrec_jax.train.algorithms.heads import HEAD_KEY, policy_params
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.policy_eval import evaluate_policy, metric_delta, true_reward_metrics
from genrec_jax.train.pretrain import write_json
from genrec_jax.train.pretrained import (check_compatible, copy_params, load_init_config,
                                         restore_pretrained)
from genrec_jax.train.scorers import (Scorer, ensemble_member_scorer, table_scorer,
                                      true_rating_table)
from genrec_jax.train.state import init_train_state, make_optimizer
from genrec_jax.train.validation import monitor_from_config

LOSS_IMPLS = ("reference", "chunked", "sharded", "pallas")
# The pretrained (initial) policy's per-user metrics, next to the final policy's per_user.npz.
INITIAL_PER_USER_FILE = "per_user_initial.npz"

__all__ = [
    "build_step",
    "copy_params",
    "evaluate_policy",
    "judge_ensemble",
    "load_init_config",
    "needs_reward_model",
    "post_dropout",
    "posttrain",
    "restore_pretrained",
    "score_on_test",
    "test_report",
    "train_arrays_for",
    "training_scorer",
    "true_reward_metrics",
]


def _algorithm(cfg):
    """``(Algorithm, its config block)`` for ``cfg.algo``."""
    algo = algorithms.get(str(cfg.algo))
    return algo, algorithms.block_of(cfg, algo.name)


# ---------------------------------------------------------------------------------------------
# Reward models: the training scorer and the judges.
# ---------------------------------------------------------------------------------------------


def needs_reward_model(cfg) -> str | None:
    """Why this config needs ``--reward_dir`` (None if it does not)."""
    if str(cfg.reward.model) == "oracle":
        return None
    algo, block = _algorithm(cfg)
    return algo.reward_model_reason(block)


def training_scorer(cfg, ensemble, data: PreparedData, table_size: int, mesh) -> Scorer | None:
    """The reward function post-training optimises: ensemble member ``reward.train_member``, or
    the simulator's true rating with ``reward.model="oracle"``; None when unused."""
    kind = str(cfg.reward.model)
    if kind == "oracle":
        scorer = table_scorer(true_rating_table(data, table_size), name="oracle")
        return dataclasses.replace(scorer,
                                   params=jax.device_put(scorer.params, shd.replicated(mesh)))
    if kind != "ensemble":
        raise ValueError(f"reward.model must be 'ensemble' or 'oracle', got {kind!r}")
    if ensemble is None:
        return None
    return ensemble_member_scorer(ensemble, int(cfg.reward.train_member))


def judge_ensemble(ensemble, train_member: int | None):
    """``(judges, includes_training_rm)``: the members other than ``train_member`` (all of them
    when there is only one member, or when ``train_member`` is None)."""
    from genrec_jax.train.reward import RewardEnsemble

    m = ensemble.num_members
    if train_member is None or m == 1:
        return ensemble, train_member is not None
    keep = np.asarray([i for i in range(m) if i != int(train_member)])
    params = jax.tree.map(lambda x: x[keep], ensemble.params)
    return RewardEnsemble(ensemble.config, ensemble.graphdef, params, ensemble.meta), False


# ---------------------------------------------------------------------------------------------
# The trainer.
# ---------------------------------------------------------------------------------------------


TRUTH_PREFIXES = ("true_", "best_rating", "regret")


def split_evaluator(graphdef, data: PreparedData, split: str, batch_size: int,
                    metric: str = "ndcg@10"):
    """``params -> metrics`` of the policy on ``split`` ("validation": each user's validation
    event, its input the events before it; "test"): the ranking metrics and, on the simulator
    when ``metric`` is one of its truth figures (e.g. ``true_rating@10``), the truth at that
    split's states (no judge: it is reported once, at the end)."""
    view = dataclasses.replace(data, test=data.valid) if split == "validation" else data
    truth = str(metric).startswith(TRUTH_PREFIXES)
    return lambda params: evaluate_policy(graphdef, policy_params(params), view,
                                          batch_size=batch_size, truth=truth)


def post_dropout(cfg, pretrained_rate: float) -> float:
    """The dropout rate during post-training: ``cfg.dropout`` if ≥ 0; otherwise the algorithm's
    default (0 for the reward-model-driven ones, e.g. dpo / ipo / ppo), or the pretrained rate
    when it has none."""
    if float(cfg.dropout) >= 0:
        return float(cfg.dropout)
    default = algorithms.get(str(cfg.algo)).dropout
    return pretrained_rate if default is None else float(default)


def build_step(cfg, graphdef, optimizer, state, *, scorer=None, mesh=None,
               rating_scale=(1.0, 5.0)):
    """``(step_fn, extra frozen arguments after ref_params)`` for ``cfg.algo``."""
    algo, block = _algorithm(cfg)
    ctx = algorithms.BuildContext(graphdef=graphdef, optimizer=optimizer, state=state,
                                  scorer=scorer, mesh=mesh, rating_scale=tuple(rating_scale),
                                  impl=str(cfg.loss.impl), chunk_size=int(cfg.loss.chunk_size),
                                  log_kl=bool(cfg.log_kl))
    return algo.build(block, ctx)


def train_arrays_for(cfg, data: PreparedData, *, scorer=None, graphdef=None, ref_params=None):
    """``(arrays, info)``: ``data.train`` plus the algorithm's extra columns (e.g. A-SFT's
    ``reward`` / ``baseline``) and what it reports about them."""
    arrays = dict(data.train)
    algo, block = _algorithm(cfg)
    if algo.columns is None:
        return arrays, {}
    cols, info = algo.columns(block, data, scorer=scorer, graphdef=graphdef,
                              ref_params=ref_params, seed=int(cfg.seed))
    if sorted(cols) != sorted(algo.column_keys):
        raise ValueError(f"algorithm {algo.name!r} declares the columns "
                         f"{sorted(algo.column_keys)} but built {sorted(cols)}")
    arrays.update(cols)
    return arrays, info


def _check_config(cfg) -> None:
    algorithms.get(str(cfg.algo))
    if str(cfg.loss.impl) not in LOSS_IMPLS:
        raise ValueError(f"loss.impl must be reference | chunked | sharded | pallas, got "
                         f"{cfg.loss.impl!r}")


def posttrain(cfg, workdir: str, *, init_dir: str, reward_dir: str | None = None,
              data: PreparedData | None = None, verbose: bool = True) -> dict[str, Any]:
    """Post-trains ``cfg.algo`` from the pretraining workdir ``init_dir``; writes and returns
    ``workdir/metrics.json`` (see the module docstring)."""
    _check_config(cfg)
    if init_dir is None:
        raise ValueError("posttrain needs --init=PRETRAIN_DIR (a workdir of experiments.pretrain)")
    reason = needs_reward_model(cfg)
    if reason and not reward_dir:
        raise ValueError(f"{reason}: pass --reward_dir=RM_DIR (a workdir of experiments.reward "
                         "holding reward_ensemble/)")
    t_start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    main_process = jax.process_index() == 0
    if main_process:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))
    init_cfg = load_init_config(init_dir)
    check_compatible(cfg, init_cfg)
    mesh = shd.mesh_from_config(cfg.mesh)
    shd.divisible_batch(int(cfg.batch_size), mesh)
    data = data or prepare_data(cfg)
    pretrained_rate = float(init_cfg.model.dropout)
    dropout = post_dropout(cfg, pretrained_rate)
    graphdef, params, hcfg = restore_pretrained(init_dir, data.dataset.num_items, mesh,
                                                dropout=dropout, init_cfg=init_cfg,
                                                precision=str(cfg.get("precision", "float32")))
    ref_params = copy_params(params)

    ensemble = None
    if reward_dir:
        from genrec_jax.train.reward import load_ensemble

        ensemble = load_ensemble(reward_dir, mesh=mesh)
    scorer = training_scorer(cfg, ensemble, data, hcfg.table_size, mesh)
    judges, judge_overlap = (None, False)
    if ensemble is not None and bool(cfg.judge.enabled):
        train_member = int(cfg.reward.train_member) if str(cfg.reward.model) == "ensemble" else None
        judges, judge_overlap = judge_ensemble(ensemble, train_member)
    eval_kw = dict(batch_size=int(cfg.eval.batch_size), judge=judges,
                   horizon=int(cfg.judge.horizon), gamma=float(cfg.judge.gamma))
    final_test = bool(cfg.eval.get("final_test", True))
    arrays, column_info = train_arrays_for(cfg, data, scorer=scorer, graphdef=graphdef,
                                           ref_params=ref_params)
    optimizer = make_optimizer(cfg.optimizer)
    # The trained pytree: the policy, plus the algorithm's own head if it has one (e.g. CQL's
    # affine Q map); evaluation always sees the plain policy (heads.policy_params).
    algo, block = _algorithm(cfg)
    trained = algo.train_params(block, params, graphdef=graphdef, data=data)
    state = init_train_state(trained, optimizer, int(cfg.seed), mesh)
    step_fn, extra = build_step(cfg, graphdef, optimizer, state, scorer=scorer, mesh=mesh,
                                rating_scale=tuple(data.dataset.rating_scale))
    # One user per row (not packed): states, per-user columns and the KL need whole rows.
    batcher = Batcher(arrays, batch_size=int(cfg.batch_size), seed=int(cfg.seed), shuffle=True,
                      process_index=jax.process_index(), process_count=jax.process_count())
    num_steps = (int(cfg.num_steps) if int(cfg.num_steps) > 0
                 else int(cfg.epochs) * batcher.batches_per_epoch)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), every=int(cfg.checkpoint_every),
                        keep=int(cfg.keep_checkpoints))
    state, _ = loop.resume(ckpt, state)
    writer = MetricWriter(workdir, enabled=main_process)
    monitor = monitor_from_config(
        cfg.eval, lambda split: split_evaluator(graphdef, data, split, eval_kw["batch_size"],
                                                str(cfg.eval.metric)),
        workdir=workdir, steps_per_epoch=batcher.batches_per_epoch, writer=writer,
        start_step=int(jax.device_get(state["step"])),
        validation_available=data.valid is not None, enabled=main_process)
    t_train = time.perf_counter()
    state, last, timing = loop.run(step_fn=step_fn, graphdef=graphdef, state=state,
                                   batch_at=batcher.batch_at, mesh=mesh, num_steps=num_steps,
                                   frozen=(ref_params, *extra), checkpointer=ckpt, writer=writer,
                                   log_every=int(cfg.log_every),
                                   meta={"dataset": str(cfg.dataset), "algo": str(cfg.algo)},
                                   verbose=verbose,
                                   describe={"posttrain": str(cfg.algo),
                                             "dataset": str(cfg.dataset),
                                             "users": data.dataset.num_users,
                                             "items": data.dataset.num_items},
                                   monitor=monitor)
    train_seconds = time.perf_counter() - t_train
    num_steps = int(timing["steps_done"])
    selection = {}
    if monitor is not None:
        selection = {"validation": monitor.summary(), "curve": monitor.curve}
        if bool(cfg.eval.keep_best):
            state = monitor.restore_best(state)
        monitor.close()
    head = state["params"].get(HEAD_KEY) if isinstance(state["params"], dict) else None
    report = (test_report(graphdef, ref_params, policy_params(state["params"]), data, eval_kw,
                          workdir=workdir if main_process else None)
              if final_test else {})
    for prefix, key in (("test/initial/", "initial"), ("test/", "final")):
        if key in report:
            writer.write(num_steps, {k: v for k, v in report[key].items()
                                     if isinstance(v, float) and math.isfinite(v)},
                         prefix=prefix)
    writer.close()
    ckpt.close()
    metrics = {
        "algo": str(cfg.algo),
        "config": json.loads(cfg.to_json_best_effort()),
        **report,
        **selection,
        "train": {"steps": num_steps, "epochs": num_steps / batcher.batches_per_epoch,
                  "updates": num_steps * algo.updates_per_step(block),
                  "samples": num_steps * int(cfg.batch_size),
                  "seconds": train_seconds,
                  "compile_seconds": timing["compile_seconds"],
                  "last": {k: float(v) for k, v in jax.device_get(last).items()},
                  **({"head": {k: float(v) for k, v in jax.device_get(head).items()}}
                     if head else {}),
                  **column_info},
        "init_dir": os.path.abspath(init_dir),
        "reward_dir": os.path.abspath(reward_dir) if reward_dir else None,
        "training_reward": scorer.name if scorer is not None else None,
        "judges": (None if judges is None else
                   {"num_members": judges.num_members, "includes_training_rm": judge_overlap}),
        "dropout": dropout,
        "dataset": str(cfg.dataset),
        "num_users": int(data.dataset.num_users), "num_items": int(data.dataset.num_items),
        "total_seconds": time.perf_counter() - t_start,
    }
    if main_process:
        write_json(os.path.join(workdir, "metrics.json"), metrics)
    return metrics


def test_report(graphdef, ref_params, params, data: PreparedData, eval_kw: dict, *,
                workdir: str | None = None) -> dict[str, Any]:
    """``{"initial", "final", "delta"}``: the test evaluation of the pretrained policy
    ``ref_params`` (skipped when None: ``{"final"}`` only) and of the post-trained ``params``
    (:func:`evaluate_policy` with ``eval_kw``); with ``workdir``, their per-user metrics go to
    ``per_user_initial.npz`` / ``per_user.npz`` there."""
    out = {}
    for key, p, name in (("initial", ref_params, INITIAL_PER_USER_FILE),
                         ("final", params, PER_USER_FILE)):
        if p is None:
            continue
        out[key] = evaluate_policy(graphdef, p, data, per_user=True, **eval_kw)
        rows = out[key].pop("per_user")
        if workdir is not None:
            save_per_user(os.path.join(workdir, name), rows)
    if "initial" in out:
        out["delta"] = metric_delta(out["initial"], out["final"])
    return out


def score_on_test(workdir: str, *, init_dir: str, reward_dir: str | None = None,
                  data: PreparedData | None = None, initial: bool = True) -> dict[str, Any]:
    """The test evaluation of a finished post-training run trained with ``eval.final_test=False``
    (e.g. one point of a validation grid, scored only once it is selected): its selected policy
    (``workdir/best`` when it kept the best validation state, else its last checkpoint) and the
    pretrained one from ``init_dir``, judged by the reward ensemble of ``reward_dir`` as
    :func:`posttrain` would. Adds ``initial`` / ``final`` / ``delta`` to ``workdir/metrics.json``
    and writes the per-user files; returns the updated metrics. ``initial=False`` skips the
    pretrained policy (only ``final``)."""
    cfg = load_init_config(workdir)
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    mesh = shd.mesh_from_config(cfg.mesh)
    data = data or prepare_data(cfg)
    precision = str(cfg.get("precision", "float32"))
    graphdef, ref_params, _ = restore_pretrained(init_dir, data.dataset.num_items, mesh,
                                                 precision=precision)
    # The run's architecture is its init's (posttrain builds the policy from init_dir's config,
    # whatever its own model block says).
    run_cfg = load_init_config(workdir)
    run_cfg.model = load_init_config(init_dir).model
    _, params, _ = restore_pretrained(workdir, data.dataset.num_items, mesh, precision=precision,
                                      init_cfg=run_cfg)
    judges = None
    if reward_dir and bool(cfg.judge.enabled):
        from genrec_jax.train.reward import load_ensemble

        train_member = int(cfg.reward.train_member) if str(cfg.reward.model) == "ensemble" else None
        judges, _ = judge_ensemble(load_ensemble(reward_dir, mesh=mesh), train_member)
    eval_kw = dict(batch_size=int(cfg.eval.batch_size), judge=judges,
                   horizon=int(cfg.judge.horizon), gamma=float(cfg.judge.gamma))
    main_process = jax.process_index() == 0
    metrics.update(test_report(graphdef, ref_params if initial else None, params, data, eval_kw,
                               workdir=workdir if main_process else None))
    if main_process:
        write_json(os.path.join(workdir, "metrics.json"), metrics)
    return metrics
