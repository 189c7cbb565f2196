"""Tables and plots of a post-training comparison (results.{md,csv,json} and PNGs).

Input: per seed, per algorithm, the ``metrics.json`` block of a post-training run
(``{"initial": {...}, "final": {...}}``). Rows are algorithms (plus ``pretrained``); every
column is a mean ± std over seeds.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

COLUMNS = ("ndcg@10", "hr@10", "mrr", "ndcg@10_liked", "hr@10_liked", "mrr_liked",
           "judge_score", "judge_std", "true_rating@1", "true_rating@10", "regret@1",
           "regret@10", "true_value")


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample std (ddof=1; 0 for one value) of the finite values, NaN when none."""
    vals = _finite(values)
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}


def aggregate(runs: Mapping[str, Sequence[Mapping[str, float]]],
              columns: Sequence[str] = COLUMNS) -> dict[str, dict[str, dict[str, float]]]:
    """``{algo: [metrics per seed]}`` → ``{algo: {column: {mean, std, n}}}`` (present columns)."""
    table = {}
    for algo, per_seed in runs.items():
        row = {}
        for col in columns:
            values = [m.get(col) for m in per_seed if col in m]
            if values:
                row[col] = mean_std(values)
        table[algo] = row
    return table


def present_columns(table) -> list[str]:
    return [c for c in COLUMNS if any(c in row for row in table.values())]


def _cell(stat: Mapping[str, float] | None) -> str:
    if not stat or not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def winners(table, columns: Sequence[str]) -> dict[str, str]:
    """Best algorithm per column (lower is better for regret and judge_std)."""
    out = {}
    for col in columns:
        scored = [(row[col]["mean"], algo) for algo, row in table.items()
                  if col in row and math.isfinite(row[col]["mean"])]
        if scored:
            low = col.startswith("regret") or col == "judge_std"
            out[col] = (min if low else max)(scored)[1]
    return out


def write_tables(workdir: str, table, *, title: str, notes: Sequence[str] = (),
                 reference=None) -> None:
    """results.md (markdown, winners in bold), results.csv (mean/std columns), results.json.

    ``reference`` (optional, same form as ``table``): rows of reference policies (most popular,
    the logging policy, the oracle, ...) shown below the algorithms in italics, never bold, and
    stored under ``"reference"`` in results.json (in results.csv with a ``ref:`` prefix)."""
    reference = dict(reference or {})
    cols = present_columns({**table, **reference})
    best = winners(table, cols)
    lines = [f"# {title}", "", "| algorithm | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for algo, row in table.items():
        cells = []
        for col in cols:
            text = _cell(row.get(col))
            cells.append(f"**{text}**" if best.get(col) == algo else text)
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    for name, row in reference.items():
        lines.append(f"| *{name}* (reference) | " + " | ".join(_cell(row.get(c)) for c in cols)
                     + " |")
    lines += ["", "Mean ± std over seeds; bold = best algorithm per column (lowest for "
              "regret/judge_std); reference rows are never bold.", *notes, ""]
    with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(os.path.join(workdir, "results.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["algorithm"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
        rows = [(a, r) for a, r in table.items()] + [(f"ref:{a}", r) for a, r in reference.items()]
        for algo, row in rows:
            writer.writerow([algo] + [row.get(c, {}).get(s, float("nan"))
                                      for c in cols for s in ("mean", "std")])
    with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"table": table, "reference": reference, "winners": best, "title": title,
                   "notes": list(notes)}, f, indent=2)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lambda(path: str, lams: Sequence[float], stats: Mapping[str, Sequence[dict]],
                limit: Mapping[str, dict] | None = None, *, label: str = "A-SFT",
                limit_label: str = "BC") -> None:
    """The swept algorithm's (``label``) metric(s) against λ (log axis); ``limit`` (a table row,
    ``limit_label``) drawn as the λ → ∞ level."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(stats), figsize=(5 * len(stats), 3.6), squeeze=False)
    for ax, (name, series) in zip(axes[0], stats.items()):
        means = [s["mean"] for s in series]
        stds = [s["std"] for s in series]
        ax.errorbar(lams, means, yerr=stds, marker="o", capsize=3, label=label)
        if limit and name in limit:
            ax.axhline(limit[name]["mean"], color="gray", ls="--", label=f"{limit_label} (λ → ∞)")
        ax.set_xscale("log")
        ax.set_xlabel("λ (policy-deviation knob)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_judge_vs(path: str, table, x_cols: Sequence[str]) -> None:
    """Judge score against ranking quality / true reward, one point per algorithm."""
    plt = _plt()
    cols = [c for c in x_cols if any(c in row for row in table.values())]
    fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 3.8), squeeze=False)
    for ax, col in zip(axes[0], cols):
        for algo, row in table.items():
            if col in row and "judge_score" in row:
                x, y = row[col], row["judge_score"]
                ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt="o",
                            capsize=2)
                ax.annotate(algo, (x["mean"], y["mean"]), fontsize=8,
                            textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(col)
        ax.set_ylabel("judge score (reward-model ensemble)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_landscape(path: str, xs: Sequence[float], series: Mapping[str, Sequence[dict]], *,
                   xlabel: str, ylabel: str) -> None:
    """One line (mean ± std) per algorithm against a swept knob (e.g. reward-model RMSE)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, stats in series.items():
        ax.errorbar(xs, [s["mean"] for s in stats], yerr=[s["std"] for s in stats], marker="o",
                    capsize=3, label=algo)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
