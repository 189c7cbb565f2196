"""Tables and plots of a post-training comparison (results.{md,csv,json} and PNGs).

Input: per seed, per algorithm, the ``metrics.json`` block of a post-training run
(``{"initial": {...}, "final": {...}}``). Rows are algorithms (plus ``pretrained``); every
column is a mean ± std over seeds.

Paired differences (:func:`paired_differences`): from the per-user metrics of every row and seed
(``{row: {seed: {metric: [U_seed]}}}``, :mod:`genrec_jax.eval.per_user`), each row's difference
to a baseline row (``bc``, ``asft``) on the same users,
:func:`genrec_jax.eval.paired_stats.paired_table`: the mean over seeds of the per-seed mean
difference, its 95% seed-stratified paired bootstrap interval over users, and Holm-corrected
p-values (one family per baseline: every other row × metric). A main-table cell is bold only
when its interval against BC excludes 0 in the favourable direction (:func:`favourable`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from genrec_jax.eval.paired_stats import paired_table

COLUMNS = ("ndcg@10", "hr@10", "mrr", "ndcg@10_liked", "hr@10_liked", "mrr_liked",
           "graded_ndcg@10", "pairwise_acc", "block_hr@10", "block_ndcg@10",
           "judge_score", "judge_std", "true_ndcg@10", "true_rating@1", "true_rating@10",
           "regret@1", "regret@10", "true_value")


# Per-user metrics compared pairwise (those a run has; the truth ones on the simulator only).
PAIRED_METRICS = ("ndcg@10", "hr@10", "mrr", "ndcg@10_liked", "hr@10_liked", "mrr_liked",
                  "graded_ndcg@10", "pairwise_acc", "block_hr@10", "block_ndcg@10",
                  "true_ndcg@10", "true_rating@1", "true_rating@10", "regret@1", "regret@10",
                  "true_value")
# Columns where lower is better.
LOWER_IS_BETTER = ("regret@1", "regret@10", "judge_std")


def lower_is_better(column: str) -> bool:
    return column.startswith("regret") or column in LOWER_IS_BETTER


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
            out[col] = (min if lower_is_better(col) else max)(scored)[1]
    return out


def paired_differences(per_user: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], *,
                       baselines: Sequence[str] = ("bc", "asft"),
                       metrics: Sequence[str] = PAIRED_METRICS, num_resamples: int = 2000,
                       alpha: float = 0.05, seed: int = 0) -> dict:
    """``{row: {metric: {baseline: stats}}}``: every row's paired difference to each baseline.

    ``per_user``: ``{row: {seed: {metric: [U_seed] float}}}``, the same users in the same order
    for every row of one seed. ``stats`` (:func:`~genrec_jax.eval.paired_stats.paired_table`):
    ``mean_diff`` = ``(1/S) Σ_s mean_u (row − baseline)``, ``ci_low`` / ``ci_high`` its
    ``1 − alpha`` seed-stratified bootstrap interval over users, ``p_value``, ``p_holm``
    (Holm over the family of one baseline: every other row × metric), ``mean_method``,
    ``mean_baseline``, ``num_users``, ``num_seeds``, ``num_dropped`` (NaN pairs, e.g. a target
    that is not liked). A baseline's row against itself is computed too (difference exactly 0,
    p = 1) and kept out of the Holm family. Baselines absent from ``per_user`` are skipped;
    metrics are those every row has."""
    rows = list(per_user)
    present = [m for m in metrics
               if all(m in arrays for r in rows for arrays in per_user[r].values())]
    out: dict = {r: {m: {} for m in present} for r in rows}
    for base in baselines:
        if base not in per_user or not present:
            continue
        kw = dict(baseline=base, metrics=present, num_resamples=num_resamples, seed=seed,
                  alpha=alpha)
        others = [r for r in rows if r != base]
        found = (paired_table(per_user, methods=others, **kw) if others else []) + \
            paired_table(per_user, methods=[base], **kw)
        for res in found:
            out[res["method"]][res["metric"]][base] = {
                k: v for k, v in res.items() if k not in ("method", "metric", "baseline")}
    return out


def favourable(stats: Mapping[str, float] | None, column: str) -> bool:
    """Whether a paired interval excludes 0 on the good side: ``ci_low > 0``, or
    ``ci_high < 0`` for lower-is-better columns (regret)."""
    if not stats:
        return False
    low, high = float(stats["ci_low"]), float(stats["ci_high"])
    if not (math.isfinite(low) and math.isfinite(high)):
        return False
    return high < 0 if lower_is_better(column) else low > 0


def _signed(x: float, digits: int = 4) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.{digits}f}".replace("-", "−")


def paired_markdown(paired: Mapping, baseline: str = "bc", *, alpha: float = 0.05) -> list[str]:
    """Markdown lines of the table "paired difference to ``baseline``": one row per other row,
    one column per metric, cells ``Δ [low, high]`` (``*`` when the Holm p-value < alpha)."""
    rows = [r for r in paired if r != baseline
            and any(baseline in stats for stats in paired[r].values())]
    if not rows:
        return []
    cols = [m for m in PAIRED_METRICS if any(baseline in paired[r].get(m, {}) for r in rows)]
    level = round(100 * (1 - alpha))
    lines = [f"## Paired difference to {baseline.upper()}, {level}% CI", "",
             "| algorithm | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for col in cols:
            st = paired[r].get(col, {}).get(baseline)
            if not st or not math.isfinite(st["mean_diff"]):
                cells.append("–")
                continue
            star = "*" if st.get("p_holm", 1.0) < alpha else ""
            cells.append(f"{_signed(st['mean_diff'])}{star} "
                         f"[{_signed(st['ci_low'])}, {_signed(st['ci_high'])}]")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += ["", f"Row minus {baseline.upper()} on the same test users: mean over seeds of the "
              f"per-seed mean difference, [{level}% paired bootstrap interval over users, "
              "stratified by seed]; * = Holm-corrected p < "
              f"{alpha:g} over this table's family (every row × metric). Lower regret is "
              "better."]
    return lines


def _count_cell(stat: Mapping[str, float]) -> str:
    if not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.0f} ± {stat['std']:.0f}"


def seed_paired_gaps(per_seed: Sequence[Mapping[str, Mapping[str, float]]], rows: Sequence[str],
                     column: str, baseline: str) -> dict[str, dict[str, float]]:
    """``{row: {"mean_diff", "se", "n"}}``: a column without per-user values (the judge score)
    compared with ``baseline`` seed by seed (same world, same users): the mean over seeds of
    ``row − baseline`` and its standard error (std over seeds / √n; NaN with one seed)."""
    out = {}
    for row in rows:
        diffs = [float(r[row][column]) - float(r[baseline][column]) for r in per_seed
                 if column in r.get(row, {}) and column in r.get(baseline, {})]
        diffs = [d for d in diffs if math.isfinite(d)]
        if not diffs:
            continue
        se = (float(np.std(diffs, ddof=1)) / math.sqrt(len(diffs)) if len(diffs) > 1
              else float("nan"))
        out[row] = {"mean_diff": float(np.mean(diffs)), "se": se, "n": len(diffs)}
    return out


def selection_markdown(selection: Mapping[str, Mapping]) -> list[str]:
    """Markdown lines of the validation selection: per row, the grid size, the configuration
    selected on each seed, the mean validation score of the selected points and the mean
    optimizer updates / training rows they used."""
    lines = ["## Selected on validation", "",
             "| algorithm | grid | selected (per seed) | validation | updates | samples |",
             "|---|---|---|---|---|---|"]
    for row, seeds in selection.items():
        records = [seeds[s] for s in sorted(seeds, key=int)]
        if not records:
            continue
        picks = "; ".join(f"s{s}: {seeds[s]['selected_overrides'] or '(defaults)'}"
                          for s in sorted(seeds, key=int))
        val = _cell(mean_std([r["selected_validation"] for r in records]))
        upd = _count_cell(mean_std([r.get("updates") or float("nan") for r in records]))
        smp = _count_cell(mean_std([r.get("samples") or float("nan") for r in records]))
        lines.append(f"| {row} | {len(records[0]['grid'])} | {picks} | {val} | {upd} | {smp} |")
    return lines


def write_tables(workdir: str, table, *, title: str, notes: Sequence[str] = (),
                 reference=None, paired=None, paired_info=None, baseline: str = "bc",
                 selection=None, extra=None, sections: Sequence[str] = ()) -> None:
    """results.md (markdown), results.csv (mean/std columns), results.json.

    ``reference`` (optional, same form as ``table``): rows of reference policies (most popular,
    the logging policy, the oracle, ...) shown below the algorithms in italics, never bold, and
    stored under ``"reference"`` in results.json (in results.csv with a ``ref:`` prefix).
    ``paired`` (optional, :func:`paired_differences`): stored under ``"paired"`` in
    results.json (with ``paired_info``), drawn as a second table (difference to ``baseline``);
    a main-table cell is bold only when the row's paired interval against ``baseline``
    excludes 0 in the favourable direction (:func:`favourable`), so without ``paired`` nothing
    is bold. ``"winners"`` in results.json still names the best mean per column.
    ``selection`` (optional): ``{row: {seed: record}}`` of the validation selection (each record:
    ``grid``, ``validation`` per point, ``selected_overrides``, ``selected_validation``,
    ``updates``, ``samples``), stored under ``"selection"`` and drawn as a third table
    (:func:`selection_markdown`). ``extra``: more top-level entries of results.json;
    ``sections``: more markdown lines, appended."""
    reference = dict(reference or {})
    paired = dict(paired or {})
    cols = present_columns({**table, **reference})
    best = winners(table, cols)
    lines = [f"# {title}", "", "| algorithm | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for algo, row in table.items():
        cells = []
        for col in cols:
            text = _cell(row.get(col))
            bold = algo != baseline and favourable(
                paired.get(algo, {}).get(col, {}).get(baseline), col)
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    for name, row in reference.items():
        lines.append(f"| *{name}* (reference) | " + " | ".join(_cell(row.get(c)) for c in cols)
                     + " |")
    lines += ["", f"Mean ± std over seeds. Bold: the row's 95% paired interval of the difference "
              f"to {baseline.upper()} (same users, bootstrap over users within each seed) "
              "excludes 0 in the favourable direction (above 0; below 0 for regret); columns "
              "without per-user values (judge score) and reference rows are never bold.",
              *notes, ""]
    lines += paired_markdown(paired, baseline) + [""] if paired else []
    lines += selection_markdown(selection) + [""] if selection else []
    lines += list(sections) + [""] if sections else []
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
                   "notes": list(notes), "paired": paired, "paired_info": dict(paired_info or {}),
                   "selection": dict(selection or {}), **dict(extra or {})},
                  f, indent=2)


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


def landscape_winners(series: Mapping[str, Sequence[dict]],
                      per_user: Sequence[Mapping] | None = None, *,
                      metric: str = "true_rating@10", num_resamples: int = 2000) -> list[dict]:
    """Per level: ``{"best", "runner_up", "margin", "se", "clear"}``: the algorithm with the
    highest mean, the second, the difference of their means and whether the best wins clearly.

    With ``per_user`` (per level, ``{algo: {seed: {metric: [U]}}}`` as
    :func:`paired_differences` takes it), the two are paired user by user: ``se``, ``ci_low`` and
    ``ci_high`` are the seed-stratified paired bootstrap's of ``best − runner_up`` on ``metric``
    and ``clear`` means the interval excludes 0 — the main table's rule. Without it, ``se`` is
    ``sqrt(s1²/n1 + s2²/n2)`` over seeds (NaN with one seed) and ``clear`` means the margin
    exceeds twice that. A region is only a winner's when ``clear``; otherwise the top two tie."""
    algos = list(series)
    levels = len(next(iter(series.values()))) if series else 0
    out = []
    for i in range(levels):
        ranked = sorted(algos, key=lambda a: -series[a][i]["mean"]
                        if math.isfinite(series[a][i]["mean"]) else math.inf)
        best = series[ranked[0]][i]
        if len(ranked) < 2:
            out.append({"best": ranked[0], "runner_up": None, "margin": float("nan"),
                        "se": float("nan"), "clear": False})
            continue
        second = series[ranked[1]][i]
        margin = best["mean"] - second["mean"]
        level = per_user[i] if per_user is not None else {}
        if ranked[0] in level and ranked[1] in level:
            stats = paired_table({a: level[a] for a in ranked[:2]}, baseline=ranked[1],
                                 methods=[ranked[0]], metrics=[metric],
                                 num_resamples=num_resamples)[0]
            out.append({"best": ranked[0], "runner_up": ranked[1], "margin": margin,
                        "se": float(stats["se"]), "ci_low": float(stats["ci_low"]),
                        "ci_high": float(stats["ci_high"]),
                        "clear": bool(stats["ci_low"] > 0)})
            continue
        n1, n2 = best.get("n", 1), second.get("n", 1)
        se = (math.sqrt(best["std"] ** 2 / n1 + second["std"] ** 2 / n2)
              if min(n1, n2) > 1 else float("nan"))
        out.append({"best": ranked[0], "runner_up": ranked[1], "margin": margin, "se": se,
                    "clear": bool(math.isfinite(se) and margin > 2 * se)})
    return out


def plot_landscape(path: str, xs: Sequence[float], series: Mapping[str, Sequence[dict]], *,
                   xlabel: str, ylabel: str, wins: Sequence[dict] | None = None) -> None:
    """One line (mean ± std) per algorithm against a swept knob (e.g. reward-model RMSE), the
    x-range of each level shaded in its winner's colour where the win is clear (``wins``,
    default :func:`landscape_winners` of ``series``) and hatched grey where the top two tie."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {}
    for algo, stats in series.items():
        line = ax.errorbar(xs, [s["mean"] for s in stats], yerr=[s["std"] for s in stats],
                           marker="o", capsize=3, label=algo)
        colours[algo] = line[0].get_color()
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    sx = [float(xs[i]) for i in order]
    edges = ([sx[0] - 0.5 * (sx[1] - sx[0])] if len(sx) > 1 else [sx[0] - 0.5]) + \
        [0.5 * (a + b) for a, b in zip(sx, sx[1:])] + \
        ([sx[-1] + 0.5 * (sx[-1] - sx[-2])] if len(sx) > 1 else [sx[0] + 0.5])
    wins = landscape_winners(series) if wins is None else wins
    for k, i in enumerate(order):
        w = wins[i]
        if w["clear"]:
            ax.axvspan(edges[k], edges[k + 1], color=colours[w["best"]], alpha=0.12, lw=0)
        else:
            ax.axvspan(edges[k], edges[k + 1], facecolor="none", edgecolor="0.7", hatch="//",
                       lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
