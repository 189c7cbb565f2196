"""Runs the whole comparison and writes DIR/results.{md,csv,json} and plots.

  python -m experiments.compare --config=experiments/configs/compare.py --workdir=DIR

Stages (each in its own folder under DIR, skipped when its ``stage.json`` exists):
  seed{s}/pretrain → seed{s}/reference (simulator) → seed{s}/reward → seed{s}/{algo} for every
  algorithm → seed{s}/{variant} for every variant → seed{s}/asft_lam{λ} (plot a:
  ``<lambda_sweep_algo>.lam`` swept) → landscape/noise{x}/... (plot c, simulator only).
Every evaluated policy leaves ``per_user.npz`` (:mod:`genrec_jax.eval.per_user`) in its folder:
post-training writes the final policy's (and ``per_user_initial.npz``, the pretrained policy's,
which is copied to ``seed{s}/pretrain/per_user.npz``); the reference stage writes
``seed{s}/reference/{policy}/per_user.npz``. They give the paired differences to BC and A-SFT
(:func:`genrec_jax.eval.comparison.paired_differences`) in results.{md,json}.
On the simulator, seed ``s`` is also the world's seed (``simulator.seed``) unless
``world_seed >= 0`` fixes one world.
Points that equal a main run are not run twice: the λ sweep's point at A-SFT's own λ, and the
landscape's level at the simulator's own rating noise. The other landscape levels train only the
reward model that drives dpo/ipo/ppo and skip the judge (the plot shows the true reward).
The shared blocks of the compare config (dataset, data, simulator, model, mesh, eval) go to every
stage, so all stages see the same split.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from experiments import reward as reward_experiment
from experiments.configs import compare as compare_config
from experiments.configs import posttrain as posttrain_config
from experiments.configs import pretrain as pretrain_config
from experiments.configs import reward as reward_config
from genrec_jax.data.prepare import prepare_data
from genrec_jax.eval import comparison
from genrec_jax.eval.per_user import PER_USER_FILE, load_per_user, save_per_user
from genrec_jax.eval.rating_metrics import spearman
from genrec_jax.eval.reference_policies import REFERENCE_POLICIES, reference_score_fns
from genrec_jax.eval.verdicts import claim_verdicts, verdict_markdown
from genrec_jax.io import write_json
from genrec_jax.train.policy_eval import evaluate_scores
from genrec_jax.train import algorithms
from genrec_jax.train.posttrain import INITIAL_PER_USER_FILE, posttrain, score_on_test
from genrec_jax.train.pretrain import pretrain
from genrec_jax.train.progress import Stages

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/compare.py",
                                          "Comparison config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/compare", "Output folder.")

SHARED_BLOCKS = ("data", "simulator", "model", "mesh", "eval")

# Stage lines ("[i/n] stage ... done in ..., ETA") of the running comparison; set by compare().
_stages: Stages | None = None


def world_seed(cfg, seed: int) -> int:
    """The simulator world (``simulator.seed``) of training seed ``seed``: ``seed`` itself when
    ``cfg.world_seed`` is −1, else ``cfg.world_seed`` (one world for every seed)."""
    fixed = int(cfg.get("world_seed", -1))
    return int(seed) if fixed < 0 else fixed


def shared_args(cfg, **extra) -> str:
    """The compare config's shared fields as ``key=value`` overrides for a stage config; the
    simulator's seed is :func:`world_seed` of the stage's training seed."""
    seed = extra.pop("seed", cfg.seed)
    parts = [f"dataset={cfg.dataset}", f"seed={seed}", f"precision={cfg.precision}"]
    if cfg.data_dir:
        parts.append(f"data_dir={cfg.data_dir}")
    for block in SHARED_BLOCKS:
        for key, value in cfg[block].items():
            if block == "simulator" and key == "seed":
                value = world_seed(cfg, int(seed))
            if isinstance(value, (tuple, list)):
                value = ":".join(str(v) for v in value)
            parts.append(f"{block}.{key}={value}")
    parts += [f"{k}={v}" for k, v in extra.items()]
    return ",".join(parts)


def join(*args: str) -> str:
    return ",".join(a for a in args if a)


def run_stage(path: str, fn):
    """Runs ``fn()`` unless ``path/stage.json`` says it already finished; returns its result."""
    marker = os.path.join(path, "stage.json")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            result = json.load(f)["result"]
        if _stages is not None:
            _stages.done(path, note="(reused)")
        return result
    os.makedirs(path, exist_ok=True)
    if _stages is not None:
        _stages.begin(path)
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    write_json(marker, {"result": result, "seconds": seconds})
    if _stages is not None:
        _stages.done(path, seconds)
    return result


def _pretrain_stage(cfg, path, seed, noise=None) -> str:
    """Pretrains (with validation selection: every point of ``select.pretrain_grid`` in
    ``path/grid{i}``, each early-stopped at its validation optimum, the best kept); returns the
    folder of the pretrained model the later stages start from."""
    extra = {} if noise is None else {"simulator.rating_noise": noise}
    arg = join(shared_args(cfg, seed=seed, **extra), cfg.pretrain_args)

    def run(stage_path, args):
        return run_stage(stage_path, lambda: _jsonable(pretrain(
            pretrain_config.get_config(args), stage_path, verbose=False)[0]))

    if not cfg.select.enabled:
        run(path, arg)
        return path
    sel = cfg.select
    budget = (f"epochs={int(sel.pretrain_max_epochs)},"
              f"eval.every_epochs={sel.pretrain_every_epochs},"
              f"eval.patience={int(sel.pretrain_patience)},eval.keep_best=True,"
              f"eval.curve_split=validation,eval.metric={sel.metric}")
    points = compare_config.parse_grid("pretrain", sel.pretrain_grid)
    results = [run(os.path.join(path, f"grid{i}"), join(arg, budget, point))
               for i, point in enumerate(points)]
    best = best_point(results)
    write_json(os.path.join(path, "selection.json"),
               selection_record(points, results, best))
    return os.path.join(path, f"grid{best}")


def validation_score(metrics) -> float:
    """The best validation value a run reached (−inf when it has none)."""
    value = (metrics.get("validation") or {}).get("best_value")
    return float(value) if value is not None and math.isfinite(float(value)) else -math.inf


def best_point(results) -> int:
    """Index of the run with the highest validation score (the first on ties)."""
    scores = [validation_score(m) for m in results]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def selection_record(points, results, best: int) -> dict:
    """What ``results.json`` records of one selection: the grid, each point's validation score
    and stopping step, the selected point, and its update / sample counts."""
    train = results[best].get("train", {})
    return {"grid": list(points), "validation": [validation_score(m) for m in results],
            "best_step": [(m.get("validation") or {}).get("best_step") for m in results],
            "selected": best, "selected_overrides": points[best],
            "selected_validation": validation_score(results[best]),
            "updates": train.get("updates"), "samples": train.get("samples"),
            "steps": train.get("steps", results[best].get("steps"))}


def budget_args(cfg, algo: str, args: str) -> str:
    """The equal-budget overrides of one post-training run of ``algo`` with ``args``: at most
    ``select.max_updates`` optimizer updates (``num_steps`` = that / the algorithm's updates per
    step), validation every ``select.every_updates`` updates with early stopping, the best state
    kept, the shared dropout and clipping, and no test scoring (done once, after selection)."""
    sel = cfg.select
    pcfg = posttrain_config.get_config(join(cfg.posttrain_args, cfg.algo_args.get(algo, ""),
                                            args))
    per_step = algorithms.get(algo).updates_per_step(pcfg[algo])
    return (f"num_steps={max(1, int(sel.max_updates) // per_step)},"
            f"eval.every_steps={max(1, int(sel.every_updates) // per_step)},"
            f"eval.patience={int(sel.patience)},eval.keep_best=True,"
            f"eval.curve_split=validation,eval.metric={sel.metric},dropout={sel.dropout},"
            f"optimizer.grad_clip_norm={sel.grad_clip_norm}")


def _reward_stage(cfg, path, seed, noise=None, extra_args=""):
    extra = {} if noise is None else {"simulator.rating_noise": noise}
    arg = join(shared_args(cfg, seed=seed, **extra), cfg.reward_args, extra_args)
    return run_stage(path, lambda: _jsonable(reward_experiment.run(
        reward_config.get_config(arg), path, verbose=False)))


def _reference_stage(cfg, path, seed, noise=None):
    """Simulator only: the reference policies (most popular, top-rated, the logging policy, the
    r*-oracle) scored by the trained policies' evaluation
    (:func:`genrec_jax.train.policy_eval.evaluate_scores`, no judge) on the same split (the
    pretraining config's data); each policy's per-user metrics go to
    ``path/<policy>/per_user.npz``."""
    extra = {} if noise is None else {"simulator.rating_noise": noise}
    arg = join(shared_args(cfg, seed=seed, **extra), cfg.pretrain_args)
    judge = posttrain_config.get_config(join(shared_args(cfg, seed=seed), cfg.posttrain_args)).judge

    def run():
        data = prepare_data(pretrain_config.get_config(arg))
        out = {}
        for name, fn in reference_score_fns(data).items():
            m = evaluate_scores(fn, data, batch_size=int(cfg.eval.batch_size),
                                horizon=int(judge.horizon), gamma=float(judge.gamma))
            save_per_user(os.path.join(path, name, PER_USER_FILE), m.pop("per_user"))
            out[name] = _jsonable(m)
        return out

    return run_stage(path, run)


def _posttrain_stage(cfg, path, seed, algo, init_dir, reward_dir, extra_args="", noise=None):
    extra = {"algo": algo} if noise is None else {"algo": algo, "simulator.rating_noise": noise}
    arg = join(shared_args(cfg, seed=seed, **extra), cfg.posttrain_args,
               cfg.algo_args.get(algo, ""), extra_args)
    return run_stage(path, lambda: _jsonable(posttrain(
        posttrain_config.get_config(arg), path, init_dir=init_dir, reward_dir=reward_dir,
        verbose=False)))


def _row_stage(cfg, base, seed, row, algo, init_dir, reward_dir, extra_args="", noise=None,
               point=None, initial=True):
    """One table row. Without selection: one post-training run in ``base/row``. With it: every
    grid point in ``base/row/grid{i}`` (equal budgets, :func:`budget_args`), the best on
    validation scored once on the test set (its per-user files copied to ``base/row``), the
    choice in the result's ``selection``. ``point`` (an override string) runs that one
    configuration instead of the grid (the landscape's reuse of a selected configuration).
    ``initial=False``: the pretrained policy is not scored again (one row per seed does it)."""
    path = os.path.join(base, row)
    if not cfg.select.enabled:
        return _posttrain_stage(cfg, path, seed, algo, init_dir, reward_dir, extra_args, noise)
    points = [point] if point is not None else compare_config.parse_grid(
        row, cfg.select.grids.get(row, cfg.select.default_grid))

    def train(i, p):
        args = join(extra_args, p, budget_args(cfg, algo, join(extra_args, p)),
                    "eval.final_test=False")
        return _posttrain_stage(cfg, os.path.join(path, f"grid{i}"), seed, algo, init_dir,
                                reward_dir, args, noise)

    def run():
        results = [train(i, p) for i, p in enumerate(points)]
        best = best_point(results)
        chosen = os.path.join(path, f"grid{best}")
        m = score_on_test(chosen, init_dir=init_dir, reward_dir=reward_dir, initial=initial)
        for name in (PER_USER_FILE, INITIAL_PER_USER_FILE):  # the latter: first row only
            if os.path.exists(os.path.join(chosen, name)):
                shutil.copyfile(os.path.join(chosen, name), os.path.join(path, name))
        m = _jsonable(m)
        m.pop("curve", None)
        m["selection"] = selection_record(points, results, best)
        return m

    return run_stage(path, run)


def _copy_initial_per_user(post_dir: str, pre_dir: str) -> None:
    """The pretrained policy's per-user metrics, as evaluated by a post-training stage (the
    ``pretrained`` row), into the pretraining stage folder."""
    src, dst = os.path.join(post_dir, INITIAL_PER_USER_FILE), os.path.join(pre_dir, PER_USER_FILE)
    if os.path.exists(src) and not os.path.exists(dst):
        save_per_user(dst, load_per_user(src))


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda x: float(x) if hasattr(x, "__float__")
                                 else str(x)))


def run_seed(cfg, workdir: str, seed: int, algos, *, noise=None, lams=(), truth_only=False,
             variants=None, points=None):
    """Pretrain, reward models, every algorithm and every variant (``{row: (algo, overrides)}``)
    for one seed; returns ``({row: final metrics}, reward report, {row: selection})`` with the
    pretrained model's metrics under "pretrained" (its per-user metrics copied to
    ``pretrain/per_user.npz``).

    ``truth_only`` (the landscape): only the reward model that trains dpo/ipo/ppo (member 0) and
    no judge, since only the simulator's true reward is reported. ``points``: ``{row:
    overrides}`` runs those configurations instead of the rows' grids (with selection on)."""
    base = os.path.join(workdir, f"seed{seed}")
    pre_dir, rm_dir = os.path.join(base, "pretrain"), os.path.join(base, "reward")
    reward_extra, post_extra = (("reward.num_members=1,reward.judge_users=all",
                                 "judge.enabled=False,reward.train_member=0")
                                if truth_only else ("", ""))
    init_dir = _pretrain_stage(cfg, pre_dir, seed, noise)
    reference = (_reference_stage(cfg, os.path.join(base, "reference"), seed, noise)
                 if cfg.dataset == "simulator" and not truth_only else {})
    rm_report = _reward_stage(cfg, rm_dir, seed, noise, extra_args=reward_extra)
    out, initial, chosen = {}, None, {}
    rows = [(a, a, "") for a in algos] + [(name, algo, args) for name, (algo, args)
                                          in (variants or {}).items()]
    for name, algo, args in rows:
        m = _row_stage(cfg, base, seed, name, algo, init_dir, rm_dir,
                       extra_args=join(post_extra, args), noise=noise,
                       point=(points or {}).get(name), initial=initial is None)
        out[name] = m["final"]
        if "selection" in m:
            chosen[name] = m["selection"]
        if initial is None and "initial" in m:  # the first row scores the pretrained policy
            initial = m["initial"]
            _copy_initial_per_user(os.path.join(base, name), pre_dir)
    sweep = str(cfg.lambda_sweep_algo)
    main_lam = row_lambda(cfg, chosen.get(sweep)) if lams and sweep in out else None
    for lam in lams:
        name = f"{sweep}_lam{lam:g}"
        if lam == main_lam:  # the main run of the swept algorithm is this point
            out[name] = out[sweep]
            continue
        # The swept algorithm's own configuration (its selected one) with λ replaced.
        point = join((chosen.get(sweep) or {}).get("selected_overrides", ""),
                     f"{sweep}.lam={lam}")
        m = _row_stage(cfg, base, seed, name, sweep, init_dir, rm_dir, extra_args=point,
                       noise=noise, point="", initial=False)
        out[name] = m["final"]
    return ({"pretrained": initial, **out, **{f"ref:{k}": v for k, v in reference.items()}},
            rm_report, chosen)


def row_lambda(cfg, selection=None) -> float:
    """λ of the swept algorithm's main run: its selected value (``selection``), else the
    posttrain default with this config's overrides (:func:`sweep_lambda`)."""
    sweep = str(cfg.lambda_sweep_algo)
    for pair in (selection or {}).get("selected_overrides", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == f"{sweep}.lam":
            return float(value)
    return sweep_lambda(cfg)


def sweep_lambda(cfg) -> float:
    """λ (``<lambda_sweep_algo>.lam``) of the swept algorithm's main runs (posttrain defaults
    with this config's overrides)."""
    sweep = str(cfg.lambda_sweep_algo)
    arg = join(cfg.posttrain_args, cfg.algo_args.get(sweep, ""))
    return float(posttrain_config.get_config(arg)[sweep].lam)


def rm_true_rmse(report, member: int = 0) -> float:
    """RMSE against the true r* (simulator) of the reward model that trains dpo/ipo/ppo
    (ensemble member ``member``) on the held-out random 10% of events, from the RM report."""
    try:
        stat = report["splits"]["heldout_random"]["predictors"][f"rm_member_{member}"]
        return float(stat["rmse_true"]["mean"])
    except (KeyError, TypeError):
        return float("nan")


def count_stages(cfg) -> int:
    """How many stages :func:`compare` runs (or reuses), for the ETA of the stage lines."""
    simulator = cfg.dataset == "simulator"
    lams = {float(x) for x in cfg.lambda_sweep}
    select = bool(cfg.select.enabled)
    grid = len(compare_config.parse_grid("", cfg.select.default_grid)) if select else 0
    # A row: its grid points and the scoring stage (one stage without selection).
    row, point = (grid + 1, 2) if select else (1, 1)
    pre = len(compare_config.parse_grid("", cfg.select.pretrain_grid)) if select else 1
    rows = len(cfg.algos) + len(compare_config.variants_of(cfg))
    per_seed = pre + 1 + int(simulator) + rows * row + point * len(lams - {sweep_lambda(cfg)})
    total = len(cfg.seeds) * per_seed
    if simulator and len(cfg.landscape_noise):
        base = float(cfg.simulator.rating_noise)
        seeds = [int(x) for x in cfg.seeds]
        reuse = select and str(cfg.select.landscape) == "reuse"
        for noise in (float(x) for x in cfg.landscape_noise):
            for s in cfg.landscape_seeds:
                if noise == base and int(s) in seeds:  # reused: reference stage too
                    total += pre + 2 + len(cfg.landscape_algos) * row
                else:
                    total += pre + 1 + len(cfg.landscape_algos) * (point if reuse else row)
    return total


# Rows every other row is compared with, user by user (those present in the run).
PAIRED_BASELINES = ("bc", "asft")


def stage_dir(workdir: str, seed: int, row: str) -> str:
    """The stage folder of a table row: ``seed{s}/pretrain`` for "pretrained",
    ``seed{s}/reference/<policy>`` for ``ref:<policy>``, else ``seed{s}/<row>``."""
    base = os.path.join(workdir, f"seed{seed}")
    if row == "pretrained":
        return os.path.join(base, "pretrain")
    if row.startswith("ref:"):
        return os.path.join(base, "reference", row[4:])
    return os.path.join(base, row)


def collect_per_user(workdir: str, rows, seeds) -> dict:
    """``{row: {seed: {metric: [U]}}}`` from every row's ``per_user.npz``; ValueError when two
    rows of one seed list different users (they must pair user by user)."""
    out = {row: {} for row in rows}
    for seed in seeds:
        users = None
        for row in rows:
            path = os.path.join(stage_dir(workdir, seed, row), PER_USER_FILE)
            arrays = load_per_user(path)
            if users is None:
                users = (path, arrays["user"])
            elif not np.array_equal(users[1], arrays["user"]):
                raise ValueError(f"{path} and {users[0]} list different users: the runs of one "
                                 "seed must be evaluated on the same test split")
            out[row][seed] = {k: v for k, v in arrays.items() if k != "user"}
    return out


def compare(cfg, workdir: str) -> dict:
    global _stages
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))
    t0 = time.perf_counter()
    _stages = Stages(count_stages(cfg), title="compare")
    lams = tuple(float(x) for x in cfg.lambda_sweep)
    variants = compare_config.variants_of(cfg)
    per_seed, selection = [], {}
    for s in cfg.seeds:
        rows, _, chosen = run_seed(cfg, workdir, int(s), tuple(cfg.algos), lams=lams,
                                   variants=variants)
        per_seed.append(rows)
        for row, record in chosen.items():
            selection.setdefault(row, {})[str(s)] = record
    main_rows = ("pretrained", *cfg.algos, *variants)
    table = comparison.aggregate({a: [r[a] for r in per_seed] for a in main_rows})
    # In REFERENCE_POLICIES order (a reused stage.json lists them sorted).
    ref_rows = [f"ref:{k}" for k in REFERENCE_POLICIES if f"ref:{k}" in per_seed[0]]
    reference = comparison.aggregate({k[4:]: [r[k] for r in per_seed] for k in ref_rows})
    simulator = cfg.dataset == "simulator"
    seeds = [int(s) for s in cfg.seeds]
    worlds = sorted({world_seed(cfg, s) for s in seeds})
    notes = [f"dataset: {cfg.dataset}; seeds: {seeds}"
             + (f" (simulator worlds: {worlds})" if simulator else "")
             + "; reward-model ensemble member 0 trains dpo/ipo/ppo/grpo, the other members are "
             "the judges" + (" (trained on the other half of the users: independent of member 0)"
                             if judge_users(cfg) == "disjoint" else "") + "."]
    notes += [f"{name} = {algo} with {args}" for name, (algo, args) in variants.items()]
    if cfg.select.enabled:
        sel = cfg.select
        notes.append(
            f"Every row: its grid trained at equal budgets (≤ {sel.max_updates} optimizer "
            f"updates, validation every {sel.every_updates} updates, early stop after "
            f"{sel.patience} evaluations without improvement, dropout {sel.dropout}, gradient "
            f"clipping at norm {sel.grad_clip_norm}); the point with the best validation "
            f"{sel.metric} (each user's event before the test event) is the only one scored on "
            f"the test set. Pretraining: up to {sel.pretrain_max_epochs} epochs, early-stopped "
            f"at its validation optimum.")
    judge_truth = judge_truth_agreement(per_seed, main_rows) if simulator else None
    if judge_truth is not None and math.isfinite(judge_truth["mean"]):
        notes.append(f"Judge vs truth: Spearman correlation across the rows between the judge "
                     f"score and the multi-step true value = {judge_truth['mean']:+.2f} (per "
                     f"seed: {', '.join(f'{x:+.2f}' for x in judge_truth['per_seed'])}).")
    per_user = collect_per_user(workdir, main_rows, seeds)
    paired = comparison.paired_differences(per_user, baselines=PAIRED_BASELINES,
                                           num_resamples=int(cfg.paired_resamples))
    paired_info = {"baselines": [b for b in PAIRED_BASELINES if b in main_rows],
                   "alpha": 0.05, "num_resamples": int(cfg.paired_resamples), "seeds": seeds,
                   "interval": "percentile, seed-stratified paired bootstrap over users",
                   "holm_family": "per baseline: every other row x metric"}
    landscape = None
    if simulator and len(cfg.landscape_noise):
        landscape = run_landscape(cfg, workdir, selection)
    judge_gaps = comparison.seed_paired_gaps(per_seed, main_rows, "judge_score", "bc")
    claims = claim_verdicts(table, paired, simulator=simulator, landscape=landscape,
                            judge_gaps=judge_gaps)
    comparison.write_tables(workdir, table, title=f"Post-training comparison ({cfg.dataset})",
                            notes=notes, reference=reference, paired=paired,
                            paired_info=paired_info, selection=selection,
                            extra={"judge_vs_truth": judge_truth, "verdicts": claims,
                                   "judge_vs_bc_by_seed": judge_gaps,
                                   "landscape": landscape},
                            sections=verdict_markdown(claims))
    if lams:
        sweep = str(cfg.lambda_sweep_algo)
        lam_table = comparison.aggregate({f"{lam:g}": [r[f"{sweep}_lam{lam:g}"] for r in per_seed]
                                          for lam in lams})
        cols = ["ndcg@10", "true_rating@10"] if simulator else ["ndcg@10", "judge_score"]
        comparison.plot_lambda(
            os.path.join(workdir, "lambda_sweep.png"), lams,
            {c: [lam_table[f"{lam:g}"].get(c, comparison.mean_std([])) for lam in lams]
             for c in cols}, table.get(str(cfg.lambda_sweep_limit)),
            label=sweep, limit_label=str(cfg.lambda_sweep_limit))
    comparison.plot_judge_vs(os.path.join(workdir, "judge_vs_truth.png"), table,
                             ["ndcg@10", "true_rating@10"] if simulator else ["ndcg@10", "mrr"])
    summary = {"table": table, "reference": reference, "paired": paired, "landscape": landscape,
               "selection": selection, "judge_vs_truth": judge_truth, "verdicts": claims,
               "seconds": time.perf_counter() - t0}
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def landscape_points(cfg, selection) -> dict[str, str] | None:
    """With ``select.landscape="reuse"``: ``{algo: overrides}`` each landscape algorithm selected
    on the first main seed; None otherwise (every level runs the grids)."""
    if not cfg.select.enabled or str(cfg.select.landscape) != "reuse":
        return None
    first = str(cfg.seeds[0])
    return {a: selection[a][first]["selected_overrides"] for a in cfg.landscape_algos
            if a in selection and first in selection[a]}


def judge_users(cfg) -> str:
    """``reward.judge_users`` of the comparison's reward stages."""
    return str(reward_config.get_config(join(shared_args(cfg), cfg.reward_args)).reward
               .judge_users)


def judge_truth_agreement(per_seed, rows) -> dict:
    """How well the judges rank the methods (simulator): per seed, the Spearman correlation
    across ``rows`` between the judge score and the multi-step true value; their mean."""
    values = []
    for runs in per_seed:
        pairs = [(runs[r].get("judge_score"), runs[r].get("true_value")) for r in rows]
        pairs = [(j, t) for j, t in pairs if j is not None and t is not None]
        if len(pairs) >= 3:
            j, t = np.asarray(pairs, dtype=np.float64).T
            values.append(spearman(j, t))
    return {"rows": list(rows), "per_seed": values,
            "mean": float(np.mean(values)) if values else float("nan")}


def run_landscape(cfg, workdir: str, selection=None) -> dict:
    """Sweeps the simulator's rating noise; plots each algorithm's true reward against the
    training reward model's error (RMSE against r*)."""
    points = landscape_points(cfg, selection or {})
    noises = [float(x) for x in cfg.landscape_noise]
    algos = tuple(cfg.landscape_algos)
    rmse, series, per_user = [], {a: [] for a in algos}, []
    base_noise = float(cfg.simulator.rating_noise)
    for noise in noises:
        runs, reports, level = [], [], {a: {} for a in algos}
        for s in cfg.landscape_seeds:
            if noise == base_noise and int(s) in [int(x) for x in cfg.seeds]:
                # The main runs are this point: their finished stages are reused.
                where = workdir
                rows, report, _ = run_seed(cfg, workdir, int(s), algos)
            else:
                where = os.path.join(workdir, "landscape", f"noise{noise:g}")
                rows, report, _ = run_seed(cfg, where, int(s), algos, noise=noise,
                                           truth_only=True, points=points)
            runs.append(rows)
            reports.append(report)
            for a, by_seed in collect_per_user(where, algos, [int(s)]).items():
                level[a].update(by_seed)
        per_user.append(level)
        rmse.append(float(sum(rm_true_rmse(r) for r in reports) / len(reports)))
        for a in algos:
            series[a].append(comparison.mean_std([r[a].get("true_rating@10") for r in runs]))
    xs = rmse if all(math.isfinite(x) for x in rmse) else noises
    label = ("training reward model RMSE vs true rating" if xs is rmse
             else "simulator rating noise (std)")
    # Winners paired user by user (the same test users of each world) on the plotted metric.
    wins = comparison.landscape_winners(series, per_user, metric="true_rating@10",
                                        num_resamples=int(cfg.paired_resamples))
    comparison.plot_landscape(os.path.join(workdir, "landscape.png"), xs, series, xlabel=label,
                              ylabel="true expected rating of top-10", wins=wins)
    return {"noise": noises, "rm_rmse": rmse, "series": series,
            "winner": [w["best"] for w in wins], "regions": wins}


def main(argv):
    del argv
    launch.setup()
    launch.prepare(_CONFIG.value, _WORKDIR.value, "compare")
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(os.path.abspath(_WORKDIR.value), ".jax_cache"))
    summary = compare(_CONFIG.value, _WORKDIR.value)
    with open(os.path.join(_WORKDIR.value, "results.md"), encoding="utf-8") as f:
        print(f.read())
    print(f"wall time {summary['seconds']:.1f} s; wrote {_WORKDIR.value}/results.*", flush=True)


if __name__ == "__main__":
    app.run(main)
