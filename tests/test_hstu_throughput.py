"""benchmarks/hstu_throughput.py: the analytic FLOP count against hand counts, the measured
report's fields (positive, finite, consistent: MFU = FLOPs / step time / peak) on a tiny
1-block HSTU, and the synthetic packed batch."""

import json
import math
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import hstu_throughput as ht  # noqa: E402

# B = 2 rows of L = 8, D = 8, H = 2 heads, dqk = 3, dv = 2, R = 5 negatives, 1 block.
TINY = dict(num_items=50, width=8, dim=8, num_blocks=1, num_heads=2, qk_dim=3, v_dim=2,
            dropout=0.0, num_negatives=5, packed=False, rows=2)
PEAK = 1e9


def test_hstu_analytic_flops_match_hand_count():
    t = 2 * 8  # tokens
    uvqk = 2 * t * 8 * 20  # D=8 -> H·(2·dv + 2·dqk) = 2·(4 + 6) = 20 columns: 5120
    scores = 2 * 2 * 2 * 8 * 8 * 3  # B·H·L²·dqk: 1536
    mix = 2 * 2 * 2 * 8 * 8 * 2  # B·H·L²·dv: 1024
    out = 2 * t * 4 * 8  # H·dv = 4 -> D = 8: 1024
    loss = 2 * t * 8 + 2 * t * 5 * 8  # target + 5 negatives: 256 + 1280
    assert (uvqk, scores, mix, out, loss) == (5120, 1536, 1024, 1024, 1536)
    got = ht.analytic_flops("hstu", rows=2, width=8, dim=8, num_blocks=1, num_heads=2,
                            qk_dim=3, v_dim=2, num_negatives=5)
    assert got == {"block_forward": 8704, "loss_forward": 1536, "forward": 10240,
                   "train_step": 30720}
    two = ht.analytic_flops("hstu", rows=2, width=8, dim=8, num_blocks=2, num_heads=2,
                            qk_dim=3, v_dim=2, num_negatives=5)
    assert two["train_step"] == 3 * (2 * 8704 + 1536)


def test_sasrec_analytic_flops_match_hand_count():
    # qkv 2·16·8·24 = 6144, q kᵀ and P v 2·2·64·8 = 2048 each, FFN 2·(2·16·8·8) = 4096.
    got = ht.analytic_flops("sasrec", rows=2, width=8, dim=8, num_blocks=1, num_heads=2,
                            qk_dim=0, v_dim=0, num_negatives=5)
    assert got["block_forward"] == 6144 + 2048 + 2048 + 4096
    assert got["train_step"] == 3 * (14336 + 1536)


def test_unknown_kind_and_precision_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        ht.analytic_flops("gru", rows=1, width=1, dim=1, num_blocks=1, num_heads=1, qk_dim=1,
                          v_dim=1, num_negatives=1)
    with pytest.raises(ValueError, match=r"--precision must be one of \('float32', 'bf16'\)"):
        ht.measure(TINY, precision="fp16", peak_flops=PEAK)


def test_packed_batch_keeps_every_kept_users_positions():
    batch, users = ht.packed_batch(50, users=12, rows=4, width=30, seed=3)
    assert batch["inputs"].shape == (4, 30) and 1 <= users <= 12
    rng = np.random.default_rng(3)  # the same draw as packed_batch: the longest `users` kept
    events = np.maximum(np.exp(rng.normal(ht.ML100K_LOG_MEAN, ht.ML100K_LOG_SD, 12)), 20)
    lengths = np.sort(np.minimum(events.astype(np.int64) - 2, 30))[::-1][:users]
    assert batch["weights"].sum() == lengths.sum()
    assert np.array_equal(batch["weights"] > 0, batch["segment_ids"] > 0)
    assert np.array_equal(batch["inputs"] > 0, batch["segment_ids"] > 0)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("hstu_throughput") / "t.json"
    peak = {"flops_per_s": PEAK, "source": "test"}
    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    result = ht.run({"tiny": TINY}, out=str(out), steps=2, warmup=1, peak=peak,
                    compiler_options=fast)
    return result, json.loads(out.read_text())


def test_report_fields_positive_finite_and_written(report):
    result, written = report
    assert written == result
    r = written["results"]["tiny"]
    for key in ("compile_s", "step_ms_median", "sequences_per_s", "target_tokens_per_s",
                "row_tokens_per_s", "flops_per_step_analytic", "flops_per_step_xla",
                "achieved_flops_per_s", "mfu", "mfu_xla", "final_loss"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert written["figure"] == {"name": "tiny sequences/s", "value": r["sequences_per_s"]}
    assert (r["rows"], r["width"], r["sequences_per_step"], r["target_tokens_per_step"]) \
        == (2, 8, 2.0, 16.0)


def test_report_mfu_is_flops_over_time_over_peak(report):
    r = report[1]["results"]["tiny"]
    step_s = r["step_ms_median"] / 1e3
    assert r["flops_per_step_analytic"] == 30720
    assert r["mfu"] == pytest.approx(30720 / step_s / PEAK, rel=1e-12)
    assert r["mfu_xla"] == pytest.approx(r["flops_per_step_xla"] / step_s / PEAK, rel=1e-12)
    assert r["sequences_per_s"] == pytest.approx(2 / step_s, rel=1e-12)
    assert r["target_tokens_per_s"] == pytest.approx(16 / step_s, rel=1e-12)
    # XLA counts every matmul at 2·m·n·k plus the element-wise work: at least the analytic count.
    assert r["flops_per_step_xla"] >= r["flops_per_step_analytic"]
