"""benchmarks/pretrain_seeds.py: argument parsing, the mean ± std summary, and one tiny run."""

import json
import os
import subprocess
import sys
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import pretrain_seeds  # noqa: E402


def _run(seed, hr10, mrr, variant="a"):
    peer = {"hr@10": hr10, "ndcg@10": hr10 / 2, "hr@50": 0.5, "mrr": mrr}
    return {"variant": variant, "seed": seed, "peer_protocol": peer, "hr@10": hr10 + 0.01,
            "ndcg@10": 0.1, "hr@50": 0.5, "mrr": mrr, "seconds_per_epoch": 2.0}


def test_parse_variants_and_bar():
    assert pretrain_seeds.parse_variants("base:;ref:model.dim=8,epochs=2") == [
        ("base", ""), ("ref", "model.dim=8,epochs=2")]
    with pytest.raises(ValueError, match="distinct"):
        pretrain_seeds.parse_variants("a:;a:x=1")
    with pytest.raises(ValueError, match="no name"):
        pretrain_seeds.parse_variants(":x=1")
    assert pretrain_seeds.parse_bar("hr@10=0.19,mrr=0.09") == {"hr@10": 0.19, "mrr": 0.09}
    with pytest.raises(ValueError, match="metric=value"):
        pretrain_seeds.parse_bar("recall=0.3")


def test_summary_mean_std_and_bar_against_hand_values():
    runs = [_run(0, 0.20, 0.10), _run(1, 0.18, 0.08), _run(2, 0.22, 0.09),
            {"variant": "a", "seed": 3, "error": "exit 1"}]
    s = pretrain_seeds.summarise(runs, {"hr@10": 0.19, "mrr": 0.085})
    assert s["peer_protocol"]["hr@10"]["mean"] == pytest.approx(0.20)
    assert s["peer_protocol"]["hr@10"]["std"] == pytest.approx(0.02)  # sample std of .18 .20 .22
    assert s["peer_protocol"]["mrr"]["mean"] == pytest.approx(0.09)
    assert s["history_excluded"]["hr@10"]["mean"] == pytest.approx(0.21)
    assert s["failed_runs"] == 1
    assert s["seeds_meeting_bar"] == "2/3"  # seed 1 misses both thresholds
    assert s["mean_meets_bar"] is True
    assert pretrain_seeds.summarise([{"variant": "a", "seed": 0, "error": "x"}], {}) == {
        "error": "every run failed"}


def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "seeds.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pretrain_seeds.py"), "--dataset=simulator",
         "--epochs=1", "--seeds=0", "--variants=smoke:smoke=True", f"--out={out}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    (run,) = data["runs"]
    summary = data["summary"]["smoke"]
    assert summary["peer_protocol"]["mrr"]["mean"] == pytest.approx(run["peer_protocol"]["mrr"])
    assert 0.0 < run["peer_protocol"]["mrr"] <= 1.0
    assert f"peer_hr@10_mean {run['peer_protocol']['hr@10']:.4f}" in proc.stdout
