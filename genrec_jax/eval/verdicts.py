"""Verdicts on the article's claims, read off a comparison's paired intervals.

    rows = claim_verdicts(table, paired, simulator=True, landscape=land)
    lines = verdict_markdown(rows)

Each claim gets ``holds``, ``does not hold`` or ``inconclusive`` with the intervals behind it.
``paired[row][metric][baseline]`` is :func:`genrec_jax.eval.comparison.paired_differences`
(``row − baseline`` on the same users: ``mean_diff``, 95% ``ci_low`` / ``ci_high``); an interval
that excludes 0 is a difference, one that contains 0 is inside the noise. The truth metric is
the simulator's multi-step true value (``true_value``) there and the held-out NDCG@10 on real
data.

1. *A-SFT is best on NDCG@10, HR@10 and MRR*: holds when every other post-training row is below
   A-SFT with an interval under 0 on all three; does not hold when some row is above A-SFT with
   an interval over 0 on one of them; inconclusive otherwise.
2. *PPO / DPO / IPO score high on the judge but over-fit the reward model*: holds when each of
   them has a higher judge score than BC (the difference, paired by seed, beyond two standard
   errors over seeds) and a lower truth metric than BC (interval under 0); does not hold when one of them
   is above BC on the truth metric (interval over 0) or clearly below it on the judge;
   inconclusive otherwise.
3. *CQL is robust but under-uses the reward*: holds when CQL is not below BC on the truth metric
   (its interval is not under 0) and is below A-SFT (interval under 0); does not hold when it is
   below BC or above A-SFT (intervals excluding 0); inconclusive otherwise.
4. *Landscape: accurate reward model → online RL, moderate → A-SFT, none → BC* (simulator):
   from the landscape's winner regions (:func:`genrec_jax.eval.comparison.landscape_winners`,
   true rating@10 along the reward-model error): holds when the most accurate level is won
   clearly by an online RL method (PPO / GRPO), some middle level clearly by A-SFT and the least
   accurate clearly by BC; does not hold when a level is won clearly by a method the claim does
   not give it; inconclusive when there are no clear wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["claim_verdicts", "verdict_markdown"]

HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive"
RANKING = ("ndcg@10", "hr@10", "mrr")
ONLINE_RL = ("ppo", "grpo")
OVERFIT_ROWS = ("ppo", "dpo", "ipo")


def _interval(paired, row: str, metric: str, baseline: str):
    st = paired.get(row, {}).get(metric, {}).get(baseline)
    if not st or not math.isfinite(float(st.get("mean_diff", math.nan))):
        return None
    return float(st["mean_diff"]), float(st["ci_low"]), float(st["ci_high"])


def _text(row: str, metric: str, baseline: str, iv) -> str:
    d, lo, hi = iv
    return f"{row} − {baseline} {metric} {d:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def _asft_best(paired, rows) -> dict:
    others = [r for r in rows if r not in ("asft", "pretrained") and not r.startswith("asft")]
    above, unclear, evidence = [], [], []
    for metric in RANKING:
        ivs = {r: _interval(paired, r, metric, "asft") for r in others}
        ivs = {r: iv for r, iv in ivs.items() if iv is not None}
        if not ivs:
            continue
        top = max(ivs, key=lambda r: ivs[r][0])
        evidence.append(f"{metric}: closest/best other: {_text(top, metric, 'asft', ivs[top])}")
        above += [(r, metric) for r, iv in ivs.items() if iv[1] > 0]
        unclear += [(r, metric) for r, iv in ivs.items() if iv[1] <= 0 <= iv[2]]
    if not evidence:
        verdict = OPEN
    elif above:
        verdict = FAILS
        evidence.insert(0, "above A-SFT: " + ", ".join(f"{r} ({m})" for r, m in above))
    elif unclear:
        verdict = OPEN
        evidence.insert(0, "inside the noise of A-SFT: " + ", ".join(
            f"{r} ({m})" for r, m in unclear))
    else:
        verdict = HOLDS
    return {"claim": "A-SFT is best on NDCG@10, HR@10 and MRR", "verdict": verdict,
            "evidence": evidence}


def _judge_gap(table, row: str, baseline: str, judge_gaps=None):
    """``(row − baseline judge score, its standard error)``: paired by seed when
    ``judge_gaps`` (:func:`genrec_jax.eval.comparison.seed_paired_gaps`) has the row, else
    from the table's means and stds over seeds (unpaired, conservative); None when missing."""
    if judge_gaps and row in judge_gaps:
        g = judge_gaps[row]
        return g["mean_diff"], g["se"]  # se NaN with one seed
    a, b = table.get(row, {}).get("judge_score"), table.get(baseline, {}).get("judge_score")
    if not a or not b or not (math.isfinite(a["mean"]) and math.isfinite(b["mean"])):
        return None
    se = math.sqrt(a["std"] ** 2 / max(a.get("n", 1), 1) + b["std"] ** 2 / max(b.get("n", 1), 1))
    return a["mean"] - b["mean"], se


def _overfit(table, paired, rows, truth: str, judge_gaps=None) -> dict:
    present = [r for r in OVERFIT_ROWS if r in rows]
    verdicts, evidence = [], []
    for r in present:
        gap = _judge_gap(table, r, "bc", judge_gaps)
        iv = _interval(paired, r, truth, "bc")
        if gap is None or iv is None:
            verdicts.append(OPEN)
            continue
        se = f"se {gap[1]:.3f}" if math.isfinite(gap[1]) else "one seed: no se"
        evidence.append(f"{r}: judge − bc {gap[0]:+.3f} ({se}); " + _text(r, truth, "bc", iv))
        # With one seed there is no standard error (NaN): the judge gap is then never clear.
        clear = math.isfinite(gap[1]) and gap[1] > 0
        high_judge = clear and gap[0] > 2 * gap[1]
        low_judge = clear and gap[0] < -2 * gap[1]
        if iv[1] > 0 or low_judge:
            verdicts.append(FAILS)
        elif high_judge and iv[2] < 0:
            verdicts.append(HOLDS)
        else:
            verdicts.append(OPEN)
    verdict = (OPEN if not verdicts else FAILS if FAILS in verdicts
               else HOLDS if all(v == HOLDS for v in verdicts) else OPEN)
    return {"claim": "PPO / DPO / IPO score high on the judge but over-fit the reward model",
            "verdict": verdict, "evidence": evidence}


def _cql(paired, rows, truth: str) -> dict:
    claim = "CQL is robust but under-uses the reward"
    vs_bc, vs_asft = _interval(paired, "cql", truth, "bc"), _interval(paired, "cql", truth,
                                                                      "asft")
    if "cql" not in rows or vs_bc is None or vs_asft is None:
        return {"claim": claim, "verdict": OPEN, "evidence": ["no CQL row"]}
    evidence = [_text("cql", truth, "bc", vs_bc), _text("cql", truth, "asft", vs_asft)]
    if vs_bc[2] < 0 or vs_asft[1] > 0:
        verdict = FAILS
    elif vs_asft[2] < 0:
        verdict = HOLDS
    else:
        verdict = OPEN
    return {"claim": claim, "verdict": verdict, "evidence": evidence}


def _landscape(landscape) -> dict:
    claim = ("Landscape: accurate reward model → online RL, moderate → A-SFT, none → BC "
             "(true rating@10)")
    if not landscape or not landscape.get("regions"):
        return {"claim": claim, "verdict": OPEN, "evidence": ["no landscape"]}
    xs = landscape.get("rm_rmse") or landscape["noise"]
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    regions = [landscape["regions"][i] for i in order]
    expected = [set(ONLINE_RL)] + [{"asft"}] * (len(regions) - 2) + [{"bc"}]
    evidence = [f"RM error {xs[i]:.3f}: best {r['best']} over {r.get('runner_up')} (margin "
                f"{r['margin']:+.3f}" + (f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
                                         if "ci_low" in r else f", se {r['se']:.3f}")
                + f"{', clear' if r['clear'] else ''})"
                for i, r in zip(order, regions)]
    clear = [(r, e) for r, e in zip(regions, expected) if r["clear"]]
    if not clear:
        return {"claim": claim, "verdict": OPEN, "evidence": evidence}
    if any(r["best"] not in e for r, e in clear):
        return {"claim": claim, "verdict": FAILS, "evidence": evidence}
    needed = (regions[0]["clear"] and regions[-1]["clear"]
              and any(r["clear"] and r["best"] == "asft" for r in regions[1:-1]))
    return {"claim": claim, "verdict": HOLDS if needed else OPEN, "evidence": evidence}


def claim_verdicts(table: Mapping, paired: Mapping, *, simulator: bool,
                   landscape: Mapping | None = None, judge_gaps: Mapping | None = None
                   ) -> list[dict]:
    """``[{"claim", "verdict", "evidence": [str]}]`` for the four claims (the landscape only on
    the simulator); see the module docstring for the rules. ``judge_gaps``: the judge score's
    differences to BC paired by seed (:func:`genrec_jax.eval.comparison.seed_paired_gaps`)."""
    rows: Sequence[str] = list(table)
    truth = "true_value" if simulator else "ndcg@10"
    out = [_asft_best(paired, rows), _overfit(table, paired, rows, truth, judge_gaps),
           _cql(paired, rows, truth)]
    if simulator:
        out.append(_landscape(landscape))
    return out


def verdict_markdown(verdicts: Sequence[Mapping]) -> list[str]:
    """A markdown table: claim | verdict | the intervals behind it."""
    lines = ["## The article's claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v['claim']} | **{v['verdict']}** | " + "; ".join(v["evidence"]) + " |")
    lines += ["", "Intervals: 95% paired bootstrap over users and seeds (row − baseline); "
              "rules in genrec_jax/eval/verdicts.py."]
    return lines
