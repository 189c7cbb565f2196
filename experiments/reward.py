"""Trains reward-model ensembles and the rating baselines; writes DIR/reward_report.{md,json}.

  python -m experiments.reward --config=experiments/configs/reward.py --workdir=DIR

See experiments/configs/reward.py for the commands and the expected result. ``run(cfg, workdir)``
does the work (tests call it in-process).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from genrec_jax import sharding as shd
from genrec_jax.data.prepare import PreparedData, prepare_data
from genrec_jax.eval.reward_report import build_report, seed_results, write_report
from genrec_jax.models.rating_baselines import BASELINES, make_baseline
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.reward import (TrainedEnsemble, check_num_members, predict_rows,
                                     score_rows, train_reward_ensemble)


def _baseline_kwargs(name: str, cfg, scale) -> dict:
    kw = {"clip": tuple(scale)}
    if name == "user_item_bias":
        kw.update(reg_user=float(cfg.baselines.reg_user), reg_item=float(cfg.baselines.reg_item),
                  iterations=int(cfg.baselines.iterations))
    return kw


def prediction_splits(trained: TrainedEnsemble, data: PreparedData, cfg) -> dict:
    """Per split, the observed ratings and every predictor's predictions (the input of
    ``seed_results``): (a) ``test_last``, each user's last event; (b) ``heldout_random``, the
    training events held out (teacher-forced), when there are any. Predictors: the M members
    (``rm_members``, ``[M, N]``) and the baselines fitted on the training events not held out;
    on the simulator also the true expected rating r*."""
    rows, ds = trained.rows, data.dataset
    bs = int(cfg.eval.batch_size)
    test_pred = score_rows(trained.ensemble, rows.test, batch_size=bs)
    splits = {
        "test_last": {"true": rows.test["target_rating"],
                      "users": rows.test["user"].astype(np.int64),
                      "items": rows.test["target"].astype(np.int64),
                      "predictions": {"rm_members": test_pred}},
    }
    if len(rows.heldout_ratings):
        heldout_pred = predict_rows(trained.ensemble, rows.train, batch_size=bs)[:, rows.heldout]
        splits["heldout_random"] = {
            "true": rows.heldout_ratings, "users": rows.heldout_users,
            "items": rows.heldout_items, "predictions": {"rm_members": heldout_pred}}
    scale = tuple(float(v) for v in ds.rating_scale)
    for name in BASELINES:
        model = make_baseline(name, **_baseline_kwargs(name, cfg, scale))
        model.fit(rows.fit_users, rows.fit_items, rows.fit_ratings)
        for split in splits.values():
            split["predictions"][name] = model.predict(split["users"], split["items"])
    if data.simulator is not None:
        for split in splits.values():
            # r* of each logged event at the user state it was chosen in.
            split["true_rating"] = data.simulator.event_true_rating(
                ds.user_keys[split["users"]], ds.item_keys[split["items"]])
    return splits


def run(cfg, workdir: str, *, verbose: bool = True) -> dict:
    """Trains ``reward.num_seeds`` ensembles of ``reward.num_members`` RMs and the baselines,
    evaluates them on the two held-out splits and writes the report; returns it. The first
    seed's ensemble is saved in ``workdir/reward_ensemble``."""
    num_members = check_num_members(cfg.reward.num_members)
    num_seeds = int(cfg.reward.num_seeds)
    if num_seeds < 1:
        raise ValueError(f"reward.num_seeds must be >= 1, got {num_seeds}")
    os.makedirs(workdir, exist_ok=True)
    main_process = jax.process_index() == 0
    if main_process:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))
    t_start = time.perf_counter()
    mesh = shd.mesh_from_config(cfg.mesh)
    shd.divisible_batch(int(cfg.batch_size), mesh)
    data = prepare_data(cfg)
    ds = data.dataset
    writer = MetricWriter(workdir, tensorboard=False, enabled=main_process)
    per_seed = []
    for s in range(num_seeds):
        trained = train_reward_ensemble(cfg, workdir if s == 0 else None, data=data,
                                        seed=int(cfg.seed) + s, mesh=mesh, verbose=verbose)
        result = seed_results(trained.seed, prediction_splits(trained, data, cfg), extra={
            "train_steps": trained.num_steps, "train_seconds": trained.train_seconds,
            "final_train_loss": trained.final_loss,
            "num_heldout": int(len(trained.rows.heldout_ratings))})
        per_seed.append(result)
        writer.write(s, {f"{split}/{name}/rmse": v["rmse"]
                         for split, t in result["splits"].items()
                         for name, v in t.items() if not name.startswith("rm_member")},
                     prefix="reward/")
        if verbose:
            ens = result["splits"]
            line = " ".join(f"{k}: rm_ensemble rmse={v['rm_ensemble']['rmse']:.4f} "
                            f"user_item_bias rmse={v['user_item_bias']['rmse']:.4f}"
                            for k, v in ens.items())
            print(f"seed {trained.seed}: {line} ({trained.train_seconds:.0f}s training)",
                  flush=True)
    writer.close()
    rcfg = trained.ensemble.config
    info = {"dataset": str(cfg.dataset), "num_users": int(ds.num_users),
            "num_items": int(ds.num_items), "num_events": int(ds.num_events),
            "rating_scale": [float(v) for v in ds.rating_scale], "num_members": num_members,
            "num_seeds": num_seeds, "head": rcfg.head, "bootstrap": bool(cfg.reward.bootstrap),
            "judge_users": str(cfg.reward.get("judge_users", "all")),
            "holdout_fraction": float(cfg.reward.holdout_fraction),
            "chunked": bool(cfg.reward.chunked),
            "train_rows": int(len(trained.rows.train["user"])),
            "encoder": rcfg.kind, "precision": rcfg.encoder.precision,
            "max_len": rcfg.max_len, "dim": rcfg.encoder.dim,
            "num_blocks": rcfg.encoder.num_blocks,
            "epochs": int(cfg.epochs), "batch_size": int(cfg.batch_size),
            "learning_rate": float(cfg.optimizer.learning_rate),
            "steps_per_seed": per_seed[0]["train_steps"],
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "smoke": bool(cfg.smoke)}
    report = build_report(per_seed, info=info)
    if main_process:
        write_report(workdir, report)
    return report


def _define_flags():
    """Flags are defined only when this module is the program, so importing ``run`` (tests,
    pipelines) never clashes with another launcher's ``--config``."""
    from experiments import launch  # noqa: F401 (defines --overwrite, --coordinator, ...)

    config = config_flags.DEFINE_config_file("config", "experiments/configs/reward.py",
                                             "Reward ablation config file.")
    workdir = flags.DEFINE_string("workdir", "runs/reward", "Output folder.")
    return config, workdir


def main(argv, config_flag, workdir_flag):
    del argv
    from experiments import launch

    launch.setup()
    workdir = workdir_flag.value
    launch.prepare(config_flag.value, workdir, "reward")
    report = run(config_flag.value, workdir)
    for split, block in report["splits"].items():
        v = block["verdict"].get("rmse")
        if v:
            print(f"{split}: rm_ensemble RMSE {v['rm_ensemble']:.4f} vs best baseline "
                  f"{v['best_baseline']} {v['best_baseline_value']:.4f}", flush=True)
    print(f"wrote {workdir}/reward_report.md and {workdir}/reward_report.json "
          f"({report['info']['total_seconds']:.0f}s)", flush=True)


if __name__ == "__main__":
    _config, _workdir = _define_flags()
    app.run(lambda argv: main(argv, _config, _workdir))
