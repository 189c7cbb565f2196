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
from genrec_jax.data.batching import Batcher
from genrec_jax.data.prepare import prepare_data
from genrec_jax.eval.reward_report import build_report, seed_results, write_report
from genrec_jax.models.rating_baselines import BASELINES, make_baseline
from genrec_jax.train import loop
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.reward import (RewardEnsemble, bootstrap_masks, check_num_members,
                                     init_ensemble, init_ensemble_state, make_ensemble_step,
                                     member_seeds, predict_rows, rating_prior_of,
                                     rating_step_of, reward_config,
                                     reward_rows, save_ensemble, score_rows)
from genrec_jax.train.state import make_optimizer


def _baseline_kwargs(name: str, cfg, scale) -> dict:
    kw = {"clip": tuple(scale)}
    if name == "user_item_bias":
        kw.update(reg_user=float(cfg.baselines.reg_user), reg_item=float(cfg.baselines.reg_item),
                  iterations=int(cfg.baselines.iterations))
    return kw


def run(cfg, workdir: str, *, verbose: bool = True) -> dict:
    """Trains ``reward.num_seeds`` ensembles of ``reward.num_members`` RMs and the baselines,
    evaluates them on the two held-out splits and writes the report; returns it."""
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
    scale = tuple(float(v) for v in ds.rating_scale)
    rating_step = rating_step_of(ds.ratings)
    # The output-bias prior: rating class frequencies of all training events (not test events).
    train_ratings = np.delete(ds.ratings, data.split.test_pos)
    prior = rating_prior_of(train_ratings, scale, rating_step)
    rcfg = reward_config(cfg, num_items=ds.num_items, rating_scale=scale,
                         rating_step=rating_step, mesh=mesh, rating_prior=prior)
    optimizer = make_optimizer(cfg.optimizer)
    step_fn = make_ensemble_step(optimizer)          # one compile shared by all seeds
    writer = MetricWriter(workdir, tensorboard=False, enabled=main_process)
    sim = data.simulator
    per_seed = []
    for s in range(num_seeds):
        run_seed = int(cfg.seed) + s
        rows = reward_rows(ds, max_len=rcfg.max_len, seed=run_seed,
                           holdout_fraction=float(cfg.reward.holdout_fraction),
                           chunked=bool(cfg.reward.chunked))
        seeds = member_seeds(run_seed, num_members)
        graphdef, params = init_ensemble(rcfg, seeds, mesh)
        masks = bootstrap_masks(ds.num_users, num_members, run_seed,
                                enabled=bool(cfg.reward.bootstrap))
        state = init_ensemble_state(params, optimizer, seeds, mesh, masks)
        batcher = Batcher(rows.train, batch_size=int(cfg.batch_size), seed=run_seed,
                          shuffle=True, process_index=jax.process_index(),
                          process_count=jax.process_count())
        num_steps = (int(cfg.num_steps) if int(cfg.num_steps) > 0
                     else int(cfg.epochs) * batcher.batches_per_epoch)
        t0 = time.perf_counter()
        out = loop.run(step_fn=step_fn, graphdef=graphdef, state=state,
                       batch_at=batcher.batch_at, mesh=mesh, num_steps=num_steps, writer=None,
                       log_every=int(cfg.log_every), verbose=verbose)
        state, metrics = out[0], out[1]          # (state, metrics[, timing])
        train_seconds = time.perf_counter() - t0
        ensemble = RewardEnsemble(rcfg, graphdef, state["params"])
        bs = int(cfg.eval.batch_size)

        # (b) held-out random events, teacher-forced; (a) each user's last event.
        heldout_pred = predict_rows(ensemble, rows.train, batch_size=bs)[:, rows.heldout]
        test_pred = score_rows(ensemble, rows.test, batch_size=bs)
        test_users = rows.test["user"].astype(np.int64)
        test_items = rows.test["target"].astype(np.int64)
        splits = {
            "test_last": {"true": rows.test["target_rating"], "users": test_users,
                          "items": test_items, "predictions": {"rm_members": test_pred}},
        }
        if len(rows.heldout_ratings):
            splits["heldout_random"] = {
                "true": rows.heldout_ratings, "users": rows.heldout_users,
                "items": rows.heldout_items, "predictions": {"rm_members": heldout_pred}}
        for name in BASELINES:
            model = make_baseline(name, **_baseline_kwargs(name, cfg, scale))
            model.fit(rows.fit_users, rows.fit_items, rows.fit_ratings)
            for split in splits.values():
                split["predictions"][name] = model.predict(split["users"], split["items"])
        if sim is not None:
            for split in splits.values():
                split["true_rating"] = sim.true_rating(ds.user_keys[split["users"]],
                                                       ds.item_keys[split["items"]])
        result = seed_results(run_seed, splits, extra={
            "train_steps": num_steps, "train_seconds": train_seconds,
            "final_train_loss": float(metrics["loss"]),
            "num_heldout": int(len(rows.heldout_ratings))})
        per_seed.append(result)
        writer.write(s, {f"{split}/{name}/rmse": v["rmse"]
                         for split, t in result["splits"].items()
                         for name, v in t.items() if not name.startswith("rm_member")},
                     prefix="reward/")
        if s == 0:
            save_ensemble(workdir, rcfg, state["params"], meta={
                "dataset": str(cfg.dataset), "seed": run_seed, "member_seeds": seeds,
                "holdout_fraction": float(cfg.reward.holdout_fraction),
                "train_steps": num_steps})
        if verbose:
            ens = result["splits"]
            line = " ".join(f"{k}: rm_ensemble rmse={v['rm_ensemble']['rmse']:.4f} "
                            f"user_item_bias rmse={v['user_item_bias']['rmse']:.4f}"
                            for k, v in ens.items())
            print(f"seed {run_seed}: {line} ({train_seconds:.0f}s training)", flush=True)
    writer.close()
    info = {"dataset": str(cfg.dataset), "num_users": int(ds.num_users),
            "num_items": int(ds.num_items), "num_events": int(ds.num_events),
            "rating_scale": list(scale), "num_members": num_members, "num_seeds": num_seeds,
            "head": rcfg.head, "bootstrap": bool(cfg.reward.bootstrap),
            "holdout_fraction": float(cfg.reward.holdout_fraction),
            "chunked": bool(cfg.reward.chunked), "train_rows": int(len(rows.train["user"])),
            "max_len": rcfg.max_len, "dim": rcfg.dim, "num_blocks": rcfg.num_blocks,
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
    config = config_flags.DEFINE_config_file("config", "experiments/configs/reward.py",
                                             "Reward ablation config file.")
    workdir = flags.DEFINE_string("workdir", "runs/reward", "Output folder.")
    return config, workdir


def main(argv, config_flag, workdir_flag):
    del argv
    from experiments import launch

    launch.setup()
    workdir = workdir_flag.value
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
