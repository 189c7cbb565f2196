"""Post-training of a pretrained HSTU: BC, RWBC, A-SFT, CQL, DPO, IPO and PPO, end to end.

    metrics = posttrain(cfg, workdir, init_dir=PRETRAIN_DIR, reward_dir=RM_DIR)

1. The policy starts from the latest Orbax checkpoint of a pretraining workdir
   (:func:`restore_pretrained`, restored onto the current mesh); the reference policy ``π_ref``
   is a frozen copy of those parameters, passed to every jitted step as an explicit argument
   (never closed over, never donated).
2. Reward models (``--reward_dir``, a workdir of ``experiments.reward``): ensemble member
   ``reward.train_member`` (default 0) is the *training* reward model (DPO/IPO/PPO rewards,
   A-SFT's ``reward_source="reward_model"`` and ``baseline="value"``); the *judges* are the
   other members (all members when the ensemble has only one, flagged in the metrics). With
   ``reward.model="oracle"`` (simulator only) the training reward is the simulator's true
   expected rating instead.
3. Training: data-parallel on the mesh through :func:`genrec_jax.train.loop.run` (checkpoints
   in ``workdir/checkpoints``, resumable; ``metrics.jsonl`` / TensorBoard logs). Offline and
   preference algorithms use :func:`genrec_jax.train.step.make_train_step`; PPO its own step
   (:mod:`~genrec_jax.train.posttrain_ppo`). One step = one batch of training rows (for PPO:
   one rollout batch and ``ppo_epochs`` updates).
4. Evaluation of the initial (pretrained) and the final policy: the test ranking metrics
   (HR/NDCG/MRR and ``_liked``), the judge score (:func:`genrec_jax.eval.judge.judge_rollout`)
   when reward models are given, and on the simulator the true expected rating of the greedy
   top-1 / top-10 recommendations (:func:`true_reward_metrics`). ``workdir/metrics.json`` =
   ``{"algo", "config", "initial", "final", "delta", "train", ...}``.

Algorithms and modules: :mod:`~genrec_jax.train.posttrain_offline` (bc, rwbc, asft, cql),
:mod:`~genrec_jax.train.posttrain_preference` (dpo, ipo), :mod:`~genrec_jax.train.posttrain_ppo`
(ppo), shared helpers in :mod:`~genrec_jax.train.posttrain_common`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from genrec_jax import sharding as shd
from genrec_jax.data.batching import Batcher
from genrec_jax.data.prepare import PreparedData, prepare_data
from genrec_jax.eval.judge import judge_rollout
from genrec_jax.eval.model_eval import evaluate_model, model_score_fn, next_item_scores
from genrec_jax.eval.ranking import exclusion_mask, padded_batches
from genrec_jax.models.hstu import HSTU
from genrec_jax.train import loop
from genrec_jax.train import posttrain_common as pc
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.posttrain_offline import OFFLINE_ALGOS, asft_columns, make_offline_loss
from genrec_jax.train.posttrain_ppo import make_ppo_step
from genrec_jax.train.posttrain_preference import PREFERENCE_ALGOS, make_preference_loss
from genrec_jax.train.pretrain import model_config, write_json
from genrec_jax.train.state import init_train_state, make_optimizer
from genrec_jax.train.step import make_train_step

ALGOS = ("bc", "rwbc", "asft", "cql", "dpo", "ipo", "ppo")
ONLINE_DEFAULT_DROPOUT = 0.0  # dpo / ipo / ppo train without dropout (as TRL's default)

__all__ = [
    "ALGOS",
    "copy_params",
    "evaluate_policy",
    "judge_ensemble",
    "load_init_config",
    "needs_reward_model",
    "posttrain",
    "restore_pretrained",
    "training_scorer",
    "true_reward_metrics",
]


# ---------------------------------------------------------------------------------------------
# The pretrained policy.
# ---------------------------------------------------------------------------------------------


def load_init_config(init_dir: str) -> ml_collections.ConfigDict:
    """The config a pretraining workdir was trained with (``init_dir/config.json``)."""
    path = os.path.join(os.fspath(init_dir), "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init={init_dir} is not a pretraining workdir: {path} is "
                                "missing (run experiments.pretrain first)")
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def _plain(x):
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (ml_collections.ConfigDict, dict)):
        return {k: _plain(v) for k, v in dict(x).items()}
    return x


def check_compatible(cfg, init_cfg) -> None:
    """Raises ValueError unless ``cfg`` describes the data the pretrained model was trained on
    (dataset, simulator knobs, ``data.max_len`` / ``min_events`` / ``validation``)."""
    diffs = []
    if str(cfg.dataset) != str(init_cfg.dataset):
        diffs.append(f"dataset: {cfg.dataset} vs {init_cfg.dataset}")
    if str(cfg.dataset) == "simulator":
        a, b = _plain(cfg.simulator), _plain(init_cfg.simulator)
        diffs += [f"simulator.{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b))
                  if a.get(k) != b.get(k)]
    for key in ("max_len", "min_events", "validation"):
        if _plain(cfg.data[key]) != _plain(init_cfg.data[key]):
            diffs.append(f"data.{key}: {cfg.data[key]} vs {init_cfg.data[key]}")
    if diffs:
        raise ValueError("the post-training data differ from the pretraining run's (this config "
                         "vs --init config.json): " + "; ".join(diffs))


def _with_table(params, table_size: int):
    item_emb = params["item_emb"]
    rows = item_emb.shape[0]
    if rows == table_size:
        return params
    fixed = (item_emb[:table_size] if rows > table_size
             else np.pad(np.asarray(item_emb), ((0, table_size - rows), (0, 0))))
    return dict(params, item_emb=fixed)


def restore_pretrained(init_dir: str, num_items: int, mesh, *, dropout: float | None = None,
                       init_cfg=None, step: int | None = None):
    """``(graphdef, params, hstu_config)`` from the latest (or ``step``) checkpoint of a
    pretraining workdir, restored onto ``mesh`` (item table row-sharded over ``model``).

    The architecture comes from ``init_dir/config.json``; ``dropout`` (if given) replaces the
    model's dropout rate for post-training (the parameters do not depend on it). A checkpoint
    saved with another ``model`` mesh size (a differently padded item table) is re-padded.
    """
    init_cfg = init_cfg if init_cfg is not None else load_init_config(init_dir)
    hcfg = model_config(init_cfg, num_items, mesh)
    if dropout is not None:
        hcfg = dataclasses.replace(hcfg, dropout=float(dropout))
    saved_multiple = int(init_cfg.mesh.get("model", 1)) if "mesh" in init_cfg else 1
    saved_cfg = dataclasses.replace(hcfg, table_multiple=max(saved_multiple, 1))
    _, abstract = nnx.split(nnx.eval_shape(lambda: HSTU(saved_cfg, rngs=nnx.Rngs(0))))
    abstract = abstract.to_pure_dict()
    rep = shd.replicated(mesh)
    divisible = saved_cfg.table_size % mesh.shape[shd.MODEL] == 0

    def shardings_of(tree):
        if divisible:
            return shd.param_shardings(tree, mesh)
        return jax.tree.map(lambda _: rep, tree)

    def sds(tree):
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            tree, shardings_of(tree))

    params_t = sds(abstract)
    opt_t = sds(jax.eval_shape(make_optimizer(init_cfg.optimizer).init, params_t))
    key_t = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    target = {"params": params_t, "opt_state": opt_t,
              "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
              "rng": jax.ShapeDtypeStruct(key_t.shape, key_t.dtype, sharding=rep)}
    ckpt = Checkpointer(os.path.join(os.fspath(init_dir), "checkpoints"))
    try:
        if ckpt.latest_step is None:
            raise FileNotFoundError(f"--init={init_dir}: no checkpoint in {ckpt.directory}")
        state, _ = ckpt.restore(target, step)
    finally:
        ckpt.close()
    params = state["params"]
    if saved_cfg.table_size != hcfg.table_size or not divisible:
        host = _with_table(jax.device_get(params), hcfg.table_size)
        params = jax.device_put(host, shd.param_shardings(host, mesh))
    graphdef = nnx.split(nnx.eval_shape(lambda: HSTU(hcfg, rngs=nnx.Rngs(0))))[0]
    return graphdef, params, hcfg


def copy_params(params):
    """A copy with its own buffers (so donating the train state never frees the reference)."""
    return jax.tree.map(lambda x: x.copy(), params)


# ---------------------------------------------------------------------------------------------
# Reward models: the training scorer and the judges.
# ---------------------------------------------------------------------------------------------


def needs_reward_model(cfg) -> str | None:
    """Why this config needs ``--reward_dir`` (None if it does not)."""
    algo = str(cfg.algo)
    if str(cfg.reward.model) == "oracle":
        return None
    if algo in ("dpo", "ipo", "ppo"):
        return f"algo={algo} trains on reward-model scores"
    if algo == "asft" and str(cfg.reward_source) == "reward_model":
        return "algo=asft with reward_source=reward_model"
    if algo == "asft" and str(cfg.baseline) == "value":
        return "algo=asft with baseline=value (E_{a~pi_ref}[RM(s,a)])"
    return None


def training_scorer(cfg, ensemble, data: PreparedData, table_size: int, mesh) -> pc.Scorer | None:
    """The reward function post-training optimises: ensemble member ``reward.train_member``, or
    the simulator's true rating with ``reward.model="oracle"``; None when unused."""
    kind = str(cfg.reward.model)
    if kind == "oracle":
        table = pc.true_rating_table(data, table_size)
        scorer = pc.table_scorer(table, name="oracle")
        return dataclasses.replace(scorer,
                                   params=jax.device_put(scorer.params, shd.replicated(mesh)))
    if kind != "ensemble":
        raise ValueError(f"reward.model must be 'ensemble' or 'oracle', got {kind!r}")
    if ensemble is None:
        return None
    return pc.ensemble_member_scorer(ensemble, int(cfg.reward.train_member))


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
# Evaluation.
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 3))
def _top_items(graphdef, params, batch, k: int):
    scores = next_item_scores(graphdef, params, batch)
    banned = exclusion_mask(batch["exclude"], scores.shape[1])
    return jax.lax.top_k(jnp.where(banned, -jnp.inf, scores), k)[1]


def true_reward_metrics(graphdef, params, data: PreparedData, *, batch_size: int = 256,
                        ks=(1, 10)) -> dict[str, float]:
    """On the simulator: the true expected rating ``r*`` of the policy's greedy recommendations.

    For each valid test user, the top-``k`` items by the policy's next-item scores after the
    test history, the user's whole history excluded (as the ranking metrics). Returns, for each
    ``k``: ``true_rating@k`` (mean ``r*`` of the top-k, averaged over users), ``best_rating@k``
    (mean ``r*`` of the ``k`` best *available* items — in the catalogue, not in the history),
    ``regret@k = best_rating@k − true_rating@k``; and ``true_rating_available`` (mean ``r*`` over
    the available items: a uniformly random recommender) and ``true_rating_logged`` (``r*`` of
    the logged test item). ``{}`` when the data are not simulated.
    """
    if data.simulator is None:
        return {}
    ks = tuple(int(k) for k in ks)
    kmax = max(ks)
    ds = data.dataset
    table = pc.true_rating_table(data, ds.num_items + 1)             # [U, I + 1]
    sums = {k: 0.0 for k in ks}
    best = {k: 0.0 for k in ks}
    avail_sum, logged_sum, count = 0.0, 0.0, 0
    for batch, n in padded_batches(data.test, batch_size):
        top = np.asarray(_top_items(graphdef, params, {k: jnp.asarray(v) for k, v in
                                                       batch.items()}, kmax))[:n]
        valid = np.asarray(batch["valid"][:n]) != 0
        u = np.asarray(batch["user"][:n], np.int64)
        truth = table[u]                                                  # [n, I + 1]
        banned = np.asarray(exclusion_mask(jnp.asarray(batch["exclude"][:n]), truth.shape[1]))
        avail = np.where(banned, -np.inf, truth)
        ideal = -np.sort(-avail, axis=1)[:, :kmax]
        got = np.take_along_axis(truth, np.clip(top, 0, truth.shape[1] - 1), axis=1)
        for k in ks:
            sums[k] += float(got[valid, :k].mean(axis=1).sum())
            best[k] += float(ideal[valid, :k].mean(axis=1).sum())
        free = ~banned[valid]
        avail_sum += float((np.where(free, truth[valid], 0.0).sum(1) / free.sum(1)).sum())
        logged = np.asarray(batch["target"][:n], np.int64)[valid]
        logged_sum += float(truth[valid][np.arange(len(logged)), logged].sum())
        count += int(valid.sum())
    out = {}
    for k in ks:
        out[f"true_rating@{k}"] = sums[k] / max(count, 1)
        out[f"best_rating@{k}"] = best[k] / max(count, 1)
        out[f"regret@{k}"] = out[f"best_rating@{k}"] - out[f"true_rating@{k}"]
    out["true_rating_available"] = avail_sum / max(count, 1)
    out["true_rating_logged"] = logged_sum / max(count, 1)
    return out


def evaluate_policy(graphdef, params, data: PreparedData, *, batch_size: int = 256, judge=None,
                    horizon: int = 3, gamma: float = 0.9) -> dict[str, Any]:
    """Test ranking metrics, the judge score (if ``judge``, a RewardEnsemble) and, on the
    simulator, :func:`true_reward_metrics` of one policy."""
    out = dict(evaluate_model(graphdef, params, data.test, batch_size=batch_size))
    if judge is not None:
        j = judge_rollout(model_score_fn(graphdef, params), judge.reward_fn, data.test,
                          horizon=int(horizon), gamma=float(gamma), batch_size=batch_size)
        out.update(judge_score=j["judge_score"], judge_std=j["judge_std"],
                   judge_rel_std=j["judge_rel_std"], judge_per_member=j["per_judge"])
    out.update(true_reward_metrics(graphdef, params, data, batch_size=batch_size))
    return out


def _delta(initial: dict, final: dict) -> dict:
    return {k: final[k] - initial[k] for k in final
            if isinstance(final.get(k), float) and isinstance(initial.get(k), float)}


# ---------------------------------------------------------------------------------------------
# The trainers.
# ---------------------------------------------------------------------------------------------


def post_dropout(cfg, pretrained_rate: float) -> float:
    """The dropout rate during post-training: ``cfg.dropout`` if ≥ 0; otherwise the pretrained
    rate for the offline algorithms and 0 for dpo / ipo / ppo."""
    if float(cfg.dropout) >= 0:
        return float(cfg.dropout)
    return ONLINE_DEFAULT_DROPOUT if str(cfg.algo) in ("dpo", "ipo", "ppo") else pretrained_rate


def _w_max(cfg):
    w = float(cfg.w_max)
    return None if not math.isfinite(w) or w <= 0 else w


def build_step(cfg, graphdef, optimizer, state, *, scorer=None, mesh=None,
               rating_scale=(1.0, 5.0)):
    """``(step_fn, extra frozen arguments after ref_params)`` for ``cfg.algo``."""
    algo = str(cfg.algo)
    impl, chunk = str(cfg.loss.impl), int(cfg.loss.chunk_size)
    kernel_mesh = mesh if impl == "sharded" else None
    log_kl = bool(cfg.log_kl)
    if algo in OFFLINE_ALGOS:
        loss_fn = make_offline_loss(
            algo, graphdef, impl=impl, chunk_size=chunk, mesh=kernel_mesh, lam=float(cfg.lam),
            w_max=_w_max(cfg), normalize_advantages=bool(cfg.normalize_advantages),
            batch_mean_baseline=str(cfg.baseline) == "batch_mean",
            rwbc_transform=str(cfg.rwbc_transform), rwbc_beta=float(cfg.rwbc_beta),
            rating_scale=rating_scale, alpha=float(cfg.alpha), gamma=float(cfg.gamma),
            log_kl=log_kl)
        return make_train_step(loss_fn, optimizer, state), ()
    if scorer is None:
        raise ValueError(f"algo={algo} needs a reward model: pass --reward_dir=RM_DIR (a workdir "
                         "of experiments.reward) or set reward.model=oracle on the simulator")
    if algo in PREFERENCE_ALGOS:
        loss_fn = make_preference_loss(
            algo, graphdef, scorer.last, beta=float(cfg.beta),
            label_smoothing=float(cfg.label_smoothing), num_candidates=int(cfg.num_candidates),
            pairs=str(cfg.pairs), states=str(cfg.states), impl=impl, chunk_size=chunk,
            mesh=kernel_mesh, log_kl=log_kl)
        return make_train_step(loss_fn, optimizer, state), (scorer.params,)
    if algo == "ppo":
        step = make_ppo_step(graphdef, optimizer, scorer.last, state,
                             clip_eps=float(cfg.clip_eps), kl_coef=float(cfg.kl_coef),
                             ppo_epochs=int(cfg.ppo_epochs),
                             normalize_advantages=bool(cfg.normalize_advantages),
                             states=str(cfg.states), chunk_size=chunk, log_kl=log_kl)
        return step, (scorer.params,)
    raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")


def train_arrays_for(cfg, data: PreparedData, *, scorer=None, graphdef=None, ref_params=None):
    """``data.train`` plus A-SFT's ``reward`` / ``baseline`` columns (for ``algo=asft``)."""
    arrays = dict(data.train)
    info = {}
    if str(cfg.algo) == "asft":
        if scorer is None and (str(cfg.reward_source) == "reward_model"
                               or str(cfg.baseline) == "value"):
            raise ValueError(f"{needs_reward_model(cfg)} needs a reward model: pass "
                             "--reward_dir=RM_DIR (a workdir of experiments.reward)")
        cols = asft_columns(data, reward_source=str(cfg.reward_source),
                            baseline=str(cfg.baseline), scorer=scorer, graphdef=graphdef,
                            ref_params=ref_params, value_samples=int(cfg.value_samples),
                            seed=int(cfg.seed))
        arrays.update(cols)
        mask = data.train["weights"] > 0
        adv = cols["reward"][mask] - cols["baseline"][mask]
        info = {"reward_mean": float(cols["reward"][mask].mean()),
                "baseline_mean": float(cols["baseline"][mask].mean()),
                "advantage_mean": float(adv.mean()), "advantage_std": float(adv.std())}
    return arrays, info


def _check_config(cfg) -> None:
    if str(cfg.algo) not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {cfg.algo!r}")
    if str(cfg.loss.impl) not in ("reference", "chunked", "sharded", "pallas"):
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
                                                dropout=dropout, init_cfg=init_cfg)
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

    initial = evaluate_policy(graphdef, ref_params, data, **eval_kw)
    arrays, column_info = train_arrays_for(cfg, data, scorer=scorer, graphdef=graphdef,
                                           ref_params=ref_params)
    optimizer = make_optimizer(cfg.optimizer)
    state = init_train_state(params, optimizer, int(cfg.seed), mesh)
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
    t_train = time.perf_counter()
    state, last, timing = loop.run(step_fn=step_fn, graphdef=graphdef, state=state,
                                   batch_at=batcher.batch_at, mesh=mesh, num_steps=num_steps,
                                   frozen=(ref_params, *extra), checkpointer=ckpt, writer=writer,
                                   log_every=int(cfg.log_every),
                                   meta={"dataset": str(cfg.dataset), "algo": str(cfg.algo)},
                                   verbose=verbose)
    train_seconds = time.perf_counter() - t_train
    final = evaluate_policy(graphdef, state["params"], data, **eval_kw)
    for prefix, block in (("test/initial/", initial), ("test/", final)):
        writer.write(num_steps, {k: v for k, v in block.items()
                                 if isinstance(v, float) and math.isfinite(v)}, prefix=prefix)
    writer.close()
    ckpt.close()
    metrics = {
        "algo": str(cfg.algo),
        "config": json.loads(cfg.to_json_best_effort()),
        "initial": initial,
        "final": final,
        "delta": _delta(initial, final),
        "train": {"steps": num_steps, "epochs": num_steps / batcher.batches_per_epoch,
                  "seconds": train_seconds,
                  "compile_seconds": timing["first_step_seconds"],
                  "last": {k: float(v) for k, v in jax.device_get(last).items()},
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
