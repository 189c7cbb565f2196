"""Ours beside the public HSTU reference: per-epoch test curves, final-epoch table, plots.

Runs our pretraining (``experiments/configs/pretrain.py`` defaults = the public ML-1M HSTU
configuration; ``eval.exclude=window`` = the reference's exclusion rule; a test evaluation
after every epoch written to ``WORKDIR/eval_curve.jsonl``) once per seed, parses the logs of
the reference's runs, and writes ``OUT/parity.json`` (per-epoch curves of every run, the
final-epoch table with per-run values and means for both implementations, seconds per epoch,
and ``ours_minus_reference``: per metric the difference of the run means with a bootstrap
interval over runs and a permutation p-value, :mod:`genrec_jax.eval.run_stats`) and
``OUT/curves_<metric>.png`` (mean curve with a min–max band over runs, per implementation) for
HR@10, NDCG@10, HR@50 and MRR.

Compare over many runs where the outcome varies a lot from run to run: on the sparse catalogue
below a run ends in one of two states of the second block's attention (README, "Results"), and
3 runs a side once showed a 19% gap that 9 seeds against 7 runs did not confirm.

  python benchmarks/reference_parity.py --dataset=ml-100k --data_dir=../shared/data/ml-100k \
      --ref_logs=/work/ref/logs/ml-100k --seeds=0,1,2 --epochs=60 --out=/work/ref/parity/ml-100k
  python benchmarks/reference_parity.py --dataset=csv \
      --data_dir=/work/ref/data/sparse-sim/events.csv --ref_logs=/work/ref/logs/sparse \
      --seeds=0,1,2 --epochs=60 --out=/work/ref/parity/sparse

``--ours_only`` / ``--ref_only`` skip one side; a seed whose ``OUT/ours/seed<S>/result.json``
already exists is not run again (``--rerun`` forces it). ``--overrides`` adds config
overrides to our runs (e.g. to compare a variant).

The large sparse catalogue (10,004 items seen, 800 users, 98,745 events; 47% of the items have
fewer than 5 events, the top 1% of items hold 10% of the events) is made with our simulator::

  python -m genrec_jax.data.simulator --out=/work/ref/data/sparse-sim --seed=0 \
      --num_users=800 --num_items=12000 --events_per_user=40:210 --zipf_exponent=1.2 --dim=16

and written in the reference's format with ``benchmarks/reference_format.py``.

The reference's log lines (one per epoch; ``E`` counts from 0, so ``E + 1`` epochs trained)::

  rank 0: eval @ epoch E in 2.89s: NDCG@10 a, NDCG@50 b, HR@10 c, HR@50 d, MRR e

optionally preceded by an ``asctime`` stamp (``2026-11-29 21:03:05,123``); with stamps (or a
``<log>.times`` file of ``unix_time count`` lines) its seconds per epoch are the median gap
between consecutive epochs (training + evaluation).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
sys.path.insert(0, _REPO)

METRICS = ("hr@10", "ndcg@10", "hr@50", "mrr")
_LINE = re.compile(
    r"(?:(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}))?.*?"
    r"eval @ epoch (?P<epoch>\d+) in [\d.]+s: NDCG@10 (?P<ndcg10>[\d.]+), "
    r"NDCG@50 (?P<ndcg50>[\d.]+), HR@10 (?P<hr10>[\d.]+), HR@50 (?P<hr50>[\d.]+), "
    r"MRR (?P<mrr>[\d.]+)")


def parse_reference_log(text: str) -> List[Dict[str, float]]:
    """The per-epoch evaluations of one reference log, in order.

    Returns one dict per ``eval @ epoch`` line: ``epoch`` (epochs trained = logged index + 1),
    ``hr@10``, ``ndcg@10``, ``hr@50``, ``ndcg@50``, ``mrr`` and, when the line carries an
    ``asctime`` stamp, ``time`` (unix seconds, UTC). Raises ``ValueError`` when there is none.
    """
    rows = []
    for line in text.splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        row = {"epoch": int(m["epoch"]) + 1, "hr@10": float(m["hr10"]),
               "ndcg@10": float(m["ndcg10"]), "hr@50": float(m["hr50"]),
               "ndcg@50": float(m["ndcg50"]), "mrr": float(m["mrr"])}
        if m["stamp"]:
            t = datetime.datetime.strptime(m["stamp"], "%Y-%m-%d %H:%M:%S")
            row["time"] = t.replace(tzinfo=datetime.timezone.utc).timestamp() + int(m["ms"]) / 1e3
        rows.append(row)
    if not rows:
        raise ValueError("no 'eval @ epoch E in Xs: NDCG@10 ..., MRR ...' line in the log")
    return rows


def seconds_per_epoch(rows: Sequence[Dict[str, float]],
                      times: Optional[Sequence[tuple]] = None) -> Optional[float]:
    """Median wall seconds between consecutive epochs: from the rows' ``time`` stamps, else
    from ``times`` = ``[(unix_time, epochs_logged_so_far), ...]`` (a poller's samples: the
    first sample at which each count appears), else None."""
    stamps = [r["time"] for r in rows if "time" in r]
    if len(stamps) < 2 and times:
        first = {}
        for t, n in times:
            first.setdefault(int(n), float(t))
        stamps = [first[n] for n in sorted(first) if n > 0]
    if len(stamps) < 2:
        return None
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def read_reference_runs(folder: str) -> List[dict]:
    """Every ``run*.log`` in ``folder``: ``{"log", "curve", "seconds_per_epoch"}``."""
    runs = []
    for path in sorted(glob.glob(os.path.join(folder, "run*.log"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = parse_reference_log(f.read())
        times = None
        if os.path.exists(path + ".times"):
            with open(path + ".times", encoding="utf-8") as f:
                times = [tuple(map(float, line.split())) for line in f
                         if len(line.split()) == 2]
        runs.append({"log": path, "curve": rows, "seconds_per_epoch":
                     seconds_per_epoch(rows, times)})
    return runs


def read_our_curve(path: str) -> List[Dict[str, float]]:
    """``eval_curve.jsonl`` → rows with ``epoch`` (rounded to an integer) and the metrics."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                row = {"epoch": int(round(float(r["epoch"])))}
                row.update({k: float(r[k]) for k in (*METRICS, "ndcg@50") if k in r})
                rows.append(row)
    if not rows:
        raise ValueError(f"{path}: empty evaluation curve")
    return rows


def run_ours(args, seed: int) -> dict:
    """One run of ``benchmarks/pretrain.py`` with a per-epoch test curve (skipped when its
    result exists); returns ``{"seed", "curve", "seconds_per_epoch", "final"}``."""
    workdir = os.path.join(args.out, "ours", f"seed{seed}")
    result_path = os.path.join(workdir, "result.json")
    if args.rerun or not os.path.exists(result_path):
        os.makedirs(workdir, exist_ok=True)
        curve = os.path.join(workdir, "eval_curve.jsonl")
        if os.path.exists(curve):
            os.remove(curve)
        overrides = ",".join(filter(None, [
            "eval.exclude=window", "eval.every_epochs=1", "eval.curve_split=test",
            args.overrides]))
        cmd = [sys.executable, os.path.join(_HERE, "pretrain.py"), f"--dataset={args.dataset}",
               f"--epochs={args.epochs}", f"--seed={seed}", f"--out={result_path}",
               f"--workdir={workdir}", f"--overrides={overrides}"]
        if args.data_dir:
            cmd.append(f"--data_dir={args.data_dir}")
        t0 = time.time()
        with open(os.path.join(workdir, "stdout.log"), "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"ours seed {seed}: exit {proc.returncode}, see "
                               f"{workdir}/stdout.log")
        print(f"ours seed {seed}: {time.time() - t0:.0f} s", flush=True)
    with open(result_path, encoding="utf-8") as f:
        result = json.load(f)
    curve = read_our_curve(os.path.join(workdir, "eval_curve.jsonl"))
    return {"seed": seed, "curve": curve, "seconds_per_epoch": result["seconds_per_epoch"],
            "final": {k: result["peer_protocol"][k] for k in METRICS}}


def final_table(runs: Sequence[dict], epochs: int) -> dict:
    """Per-run values at epoch ``epochs`` (else the last logged epoch) and their mean."""
    per_run = []
    for r in runs:
        at = [row for row in r["curve"] if row["epoch"] == epochs] or [r["curve"][-1]]
        per_run.append({"epoch": at[-1]["epoch"], **{k: at[-1][k] for k in METRICS}})
    if not per_run:
        return {}
    return {"mean": {k: statistics.fmean(p[k] for p in per_run) for k in METRICS},
            "per_run": per_run}


def differences(ours_table: dict, ref_table: dict) -> dict:
    """Per metric, ours − reference over the final-epoch values of the runs
    (:func:`genrec_jax.eval.run_stats.two_sample_runs`: difference of means, bootstrap interval
    over runs, permutation p-value); empty unless each side has at least 2 runs."""
    from genrec_jax.eval.run_stats import two_sample_runs  # noqa: PLC0415

    if len(ours_table.get("per_run", [])) < 2 or len(ref_table.get("per_run", [])) < 2:
        return {}
    return {k: two_sample_runs([r[k] for r in ours_table["per_run"]],
                               [r[k] for r in ref_table["per_run"]]) for k in METRICS}


def mean_curve(runs: Sequence[dict], metric: str) -> Optional[dict]:
    """Mean and min–max of ``metric`` over runs at every epoch they all evaluated:
    ``{"epochs", "mean", "low", "high", "num_runs"}``, or None without a curve. Runs with a
    single evaluation (a reference run told to evaluate only after its last epoch) have no curve
    and are left out here (they still count in the tables)."""
    runs = [r for r in runs if len(r["curve"]) > 1]
    if not runs:
        return None
    epochs = sorted(set.intersection(*({row["epoch"] for row in r["curve"]} for r in runs)))
    values = [[{row["epoch"]: row[metric] for row in r["curve"]}[e] for r in runs]
              for e in epochs]
    return {"epochs": epochs, "mean": [statistics.fmean(v) for v in values],
            "low": [min(v) for v in values], "high": [max(v) for v in values],
            "num_runs": len(runs)}


def plot(curves: Dict[str, List[dict]], out: str, title: str) -> List[str]:
    """One PNG per metric: mean over runs with a min–max band, per implementation
    (:func:`mean_curve`)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    paths = []
    for metric in METRICS:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, runs in curves.items():
            band = mean_curve(runs, metric)
            if band is None:
                continue
            line, = ax.plot(band["epochs"], band["mean"],
                            label=f"{name} (mean of {band['num_runs']})")
            ax.fill_between(band["epochs"], band["low"], band["high"], color=line.get_color(),
                            alpha=0.25)
        ax.set_xlabel("epochs trained")
        ax.set_ylabel(f"test {metric.upper()}")
        ax.set_title(f"{title}\n{metric.upper()} (band: min–max over runs)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        path = os.path.join(out, f"curves_{metric.replace('@', '')}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_dir", default="")
    p.add_argument("--ref_logs", default="", help="folder holding the reference's run*.log")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--overrides", default="", help="extra config overrides for our runs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--label", default="", help="data set name in the plot titles")
    p.add_argument("--ours_only", action="store_true")
    p.add_argument("--ref_only", action="store_true")
    p.add_argument("--rerun", action="store_true", help="rerun our seeds that have results")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ours = [] if args.ref_only else [run_ours(args, s) for s in seeds]
    ref = [] if (args.ours_only or not args.ref_logs) else read_reference_runs(args.ref_logs)
    sides = {"ours": ours, "reference": ref}
    common = min([r["curve"][-1]["epoch"] for r in ours + ref] or [args.epochs])
    payload = {
        "dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
        "overrides": args.overrides,
        "final_epoch": {name: final_table(runs, args.epochs) for name, runs in sides.items()},
        # the last epoch every run reached (= epochs when all finished): a like-for-like table
        "common_epoch": common,
        "at_common_epoch": {name: final_table(runs, common) for name, runs in sides.items()},
        "seconds_per_epoch": {name: [r["seconds_per_epoch"] for r in runs]
                              for name, runs in sides.items()},
        "runs": {"ours": ours, "reference": ref},
    }
    payload["ours_minus_reference"] = differences(payload["final_epoch"]["ours"],
                                                  payload["final_epoch"]["reference"])
    payload["plots"] = plot(sides, args.out, args.label or args.dataset)
    with open(os.path.join(args.out, "parity.json"), "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
    print(f"tables at epoch {args.epochs} (final) and at epoch {common} (reached by every run)")
    for name, table in [*((f"{n} final", t) for n, t in payload["final_epoch"].items()),
                        *((f"{n} @{common}", t) for n, t in payload["at_common_epoch"].items())]:
        if table:
            print(f"{name}: " + ", ".join(f"{k} {table['mean'][k]:.4f}" for k in METRICS) +
                  " (" + "; ".join(" / ".join(f"{r[k]:.4f}" for r in table["per_run"])
                                   for k in METRICS) + ")")
    for k, d in payload["ours_minus_reference"].items():
        print(f"ours − reference {k}: {d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] "
              f"(run sd {d['sd_a']:.4f} / {d['sd_b']:.4f}, {d['n_a']} vs {d['n_b']} runs, "
              f"permutation p {d['p_value']:.3f})")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
