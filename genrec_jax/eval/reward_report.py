"""The reward-model ablation report (docs/method.md §4.5): RM vs simple baselines on held-out
events.

    per_seed = [seed_results(seed, splits) for each seed]     # one training run per seed
    report = build_report(per_seed, info={...})
    write_report(workdir, report)      # workdir/reward_report.md and workdir/reward_report.json

A seed's ``splits`` maps a split name to ``{"true": [N], "users": [N], "predictions": {name: [N]},
"true_rating": [N] or None}``; :func:`seed_results` turns it into metrics per predictor with
:func:`genrec_jax.eval.rating_metrics.rating_metrics` (RMSE, MAE, Spearman, within-user pairwise
accuracy against the observed ratings) and, when the simulator's true expected ratings ``r*`` are
given, ``rmse_true`` = RMSE of the prediction against ``r*``. :func:`build_report` summarises every
metric as mean ± std over seeds (``summarize_runs``, sample std) and states, per split, whether the
ensemble mean beats the best baseline.

Predictor names: ``rm_ensemble`` (mean of the M members' predictions), ``rm_single`` (each metric
averaged over the M members, i.e. the typical single model), ``rm_member_<m>``, the baselines of
``genrec_jax.models.rating_baselines`` and, on the simulator, ``true_rating`` (predicting r* itself:
the floor any predictor of the noisy observed rating can reach).

NaN (a metric undefined on a split, e.g. within-user pairwise accuracy when each user has one
held-out event, or the std of a single seed) is written as ``null`` in the JSON and ``n/a`` in the
markdown, so both files hold only finite numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genrec_jax.eval.rating_metrics import rating_metrics, summarize_runs
from genrec_jax.io import write_json

METRICS = ("rmse", "mae", "spearman", "pairwise_accuracy")
LOWER_IS_BETTER = {"rmse": True, "mae": True, "spearman": False, "pairwise_accuracy": False,
                   "rmse_true": True}
METRIC_TITLES = {"rmse": "RMSE", "mae": "MAE", "spearman": "Spearman",
                 "pairwise_accuracy": "pairwise acc.", "rmse_true": "RMSE vs r*"}
SPLIT_TITLES = {
    "test_last": "(a) last event of each user (the leave-last-out test split)",
    "heldout_random": "(b) random events held out of training (scored teacher-forced)",
}
BASELINE_NAMES = ("global_mean", "user_mean", "item_mean", "user_item_bias")
RM_PREFIX = "rm_"


def _metrics(pred: np.ndarray, true: np.ndarray, users: np.ndarray,
             r_star: np.ndarray | None) -> dict[str, float]:
    m = rating_metrics(pred, true, users)
    out = {k: float(m[k]) for k in METRICS}
    out["num_events"] = int(m["num_events"])
    out["num_pairs"] = int(m["num_pairs"])
    if r_star is not None:
        out["rmse_true"] = float(np.sqrt(np.mean(np.square(
            np.asarray(pred, np.float64) - np.asarray(r_star, np.float64)))))
    return out


def seed_results(seed: int, splits: Mapping[str, Mapping[str, Any]],
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of every predictor on every split for one seed (see the module docstring).

    ``predictions`` may hold ``rm_members`` (``[M, N]``): it expands into ``rm_member_<m>``,
    ``rm_ensemble`` (their mean) and ``rm_single`` (the member metrics averaged)."""
    out: dict[str, Any] = {"seed": int(seed), "splits": {}, **dict(extra or {})}
    for split, data in splits.items():
        true = np.asarray(data["true"], np.float64)
        users = np.asarray(data["users"])
        r_star = data.get("true_rating")
        r_star = None if r_star is None else np.asarray(r_star, np.float64)
        results: dict[str, dict[str, float]] = {}
        preds = dict(data["predictions"])
        members = preds.pop("rm_members", None)
        if members is not None:
            members = np.asarray(members, np.float64)
            results["rm_ensemble"] = _metrics(members.mean(axis=0), true, users, r_star)
            each = [_metrics(p, true, users, r_star) for p in members]
            results["rm_single"] = {k: float(np.mean([e[k] for e in each])) for k in each[0]}
            for m, e in enumerate(each):
                results[f"rm_member_{m}"] = e
        for name, pred in preds.items():
            results[name] = _metrics(np.asarray(pred, np.float64), true, users, r_star)
        if r_star is not None:
            results["true_rating"] = _metrics(r_star, true, users, r_star)
        out["splits"][split] = results
    return out


def _summary_keys(runs: Sequence[Mapping[str, float]]) -> list[str]:
    keys = [k for k in (*METRICS, "rmse_true") if k in runs[0]]
    return keys + ["num_events", "num_pairs"]


def _verdict(table: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """Does the ensemble beat the best baseline, metric by metric (by the seed means)?"""
    out: dict[str, Any] = {}
    baselines = [b for b in BASELINE_NAMES if b in table]
    if "rm_ensemble" not in table or not baselines:
        return out
    for metric in (*METRICS, "rmse_true"):
        if metric not in table["rm_ensemble"]:
            continue
        lower = LOWER_IS_BETTER[metric]
        scored = [(table[b][metric]["mean"], b) for b in baselines
                  if math.isfinite(table[b][metric]["mean"])]
        rm = table["rm_ensemble"][metric]
        if not scored or not math.isfinite(rm["mean"]):
            continue
        best_value, best = (min if lower else max)(scored)
        diff = rm["mean"] - best_value
        improvement = -diff if lower else diff
        std = table[best][metric]["std"]
        noise = math.sqrt((rm["std"] if math.isfinite(rm["std"]) else 0.0) ** 2
                          + (std if math.isfinite(std) else 0.0) ** 2)
        out[metric] = {"best_baseline": best, "best_baseline_value": best_value,
                       "rm_ensemble": rm["mean"], "improvement": improvement,
                       "beats": improvement > 0, "beyond_seed_noise": improvement > 2 * noise}
    return out


def build_report(per_seed: Sequence[Mapping[str, Any]], *, info: Mapping[str, Any]) -> dict:
    """``{"info", "splits": {split: {"title", "predictors": {name: {metric: {mean, std}}},
    "verdict"}}, "per_seed"}``."""
    if not per_seed:
        raise ValueError("build_report needs the results of at least one seed")
    splits = {}
    for split in per_seed[0]["splits"]:
        names = list(per_seed[0]["splits"][split])
        table = {}
        for name in names:
            runs = [s["splits"][split][name] for s in per_seed]
            keys = _summary_keys(runs)
            table[name] = summarize_runs([{k: r[k] for k in keys} for r in runs])
        splits[split] = {"title": SPLIT_TITLES.get(split, split), "predictors": table,
                         "verdict": _verdict(table)}
    return {"info": dict(info), "num_seeds": len(per_seed), "splits": splits,
            "per_seed": list(per_seed)}


def _clean(obj):
    """NaN/inf → None and numpy scalars → Python, recursively (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj


def _fmt(stat: Mapping[str, float], digits: int = 4) -> str:
    mean, std = stat["mean"], stat["std"]
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_markdown(report: Mapping[str, Any]) -> str:
    info = report["info"]
    has_true = any("rmse_true" in t for block in report["splits"].values()
                   for t in block["predictors"].values())
    lines = [f"# Reward-model ablation: {info.get('dataset', '?')}", ""]
    described = ", ".join(f"{k}={v}" for k, v in info.items() if not isinstance(v, (dict, list)))
    lines += [f"Settings: {described}.", "",
              f"Mean ± sample std over {report['num_seeds']} seeds (one ensemble training run and "
              "one held-out draw per seed). Metrics against the observed ratings"
              + ("; RMSE vs r* against the simulator's true expected rating" if has_true else "")
              + ". `rm_single` = a member's metric "
              "averaged over the M members; `rm_ensemble` = the members' mean prediction. The "
              "baselines are fitted on all training events (for split (b) these include a user's "
              "events after the held-out one); the reward models see only the events before the "
              "scored one (causal).", ""]
    for split, block in report["splits"].items():
        table = block["predictors"]
        first = next(iter(table.values()))
        metrics = [m for m in (*METRICS, "rmse_true") if m in first]
        n = first["num_events"]["mean"]
        lines += [f"## {block['title']}", "", f"{n:.0f} events per seed.", ""]
        lines.append("| predictor | " + " | ".join(METRIC_TITLES[m] for m in metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for name, stats in table.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(stats[m]) for m in metrics) + " |")
        lines.append("")
        for metric, v in block["verdict"].items():
            head = (f"- {METRIC_TITLES[metric]}: rm_ensemble {v['rm_ensemble']:.4f} vs the best "
                    f"baseline {v['best_baseline']} {v['best_baseline_value']:.4f}: ")
            if v["beats"]:
                noise = "beyond" if v["beyond_seed_noise"] else "within"
                lines.append(head + f"better by {v['improvement']:.4f} ({noise} 2 seed-std).")
            else:
                lines.append(head + f"worse by {-v['improvement']:.4f}.")
        lines.append("")
    return "\n".join(lines)


def write_report(workdir: str | os.PathLike, report: Mapping[str, Any]) -> tuple[str, str]:
    """Writes ``reward_report.md`` and ``reward_report.json`` (strict JSON) atomically; returns
    their paths (markdown, JSON)."""
    os.makedirs(workdir, exist_ok=True)
    json_path = write_json(os.path.join(os.fspath(workdir), "reward_report.json"), _clean(report),
                           sort_keys=False)
    md_path = os.path.join(os.fspath(workdir), "reward_report.md")
    with open(md_path + ".tmp", "w", encoding="utf-8") as f:
        f.write(format_markdown(report) + "\n")
    os.replace(md_path + ".tmp", md_path)
    return md_path, json_path
