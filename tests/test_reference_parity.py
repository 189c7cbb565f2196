"""benchmarks/reference_parity.py: the reference-log parser, seconds per epoch, final table."""

import json
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import reference_parity  # noqa: E402

LOG = """\
INFO:root:rank 0:  batch-stat (eval): iter 0 (epoch 0): NDCG@10 0.0034, HR@10 0.0078, HR@50 0.0078, MRR 0.0025 
INFO:root: rank: 0, batch-stat (train): step 0 (epoch 0 in 5.91s): 8.349230
2026-11-29 21:03:05,250 INFO:root:rank 0: eval @ epoch 0 in 2.89s: NDCG@10 0.0018, NDCG@50 0.0057, HR@10 0.0037, HR@50 0.0213, MRR 0.0033
2026-11-29 21:03:20,750 INFO:root:rank 0: eval @ epoch 1 in 2.70s: NDCG@10 0.0121, NDCG@50 0.0184, HR@10 0.0213, HR@50 0.0512, MRR 0.0120
2026-11-29 21:03:40,250 INFO:root:rank 0: eval @ epoch 2 in 2.35s: NDCG@10 0.0153, NDCG@50 0.0234, HR@10 0.0262, HR@50 0.0637, MRR 0.0154
"""


def test_parse_reference_log_numbers_and_stamps():
    rows = reference_parity.parse_reference_log(LOG)
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # logged index 0 = one epoch trained
    assert rows[1] == pytest.approx({"epoch": 2, "ndcg@10": 0.0121, "ndcg@50": 0.0184,
                                     "hr@10": 0.0213, "hr@50": 0.0512, "mrr": 0.0120,
                                     "time": rows[0]["time"] + 15.5})
    # stamps read as UTC: 2026-11-29 21:03:05.25.
    assert rows[0]["time"] == pytest.approx(1795986185.25)
    # median of the gaps 15.5 and 19.5.
    assert reference_parity.seconds_per_epoch(rows) == pytest.approx(17.5)


def test_unstamped_log_uses_poller_times():
    unstamped = "\n".join(line.split(" ", 2)[2] if line[:4].isdigit() else line
                          for line in LOG.splitlines())
    rows = reference_parity.parse_reference_log(unstamped)
    assert "time" not in rows[0] and rows[2]["mrr"] == 0.0154
    assert reference_parity.seconds_per_epoch(rows) is None
    # counts 0, 1, 1, 2, 3 first seen at t = 0, 10, 30, 50 -> gaps 20, 20.
    times = [(0, 0), (10, 1), (15, 1), (30, 2), (50, 3)]
    assert reference_parity.seconds_per_epoch(rows, times) == pytest.approx(20.0)


def test_parse_reference_log_without_eval_lines_is_an_error():
    with pytest.raises(ValueError, match="no 'eval @ epoch E in Xs: NDCG@10 ..., MRR ...' line"):
        reference_parity.parse_reference_log(LOG.splitlines()[1])


def test_our_curve_and_final_table(tmp_path):
    path = tmp_path / "eval_curve.jsonl"
    path.write_text("".join(json.dumps({"step": 8 * e, "epoch": e + 1e-9, "hr@10": 0.1 * e,
                                        "ndcg@10": 0.05 * e, "hr@50": 0.2 * e,
                                        "mrr": 0.01 * e}) + "\n" for e in (1, 2, 3)))
    curve = reference_parity.read_our_curve(str(path))
    assert [r["epoch"] for r in curve] == [1, 2, 3] and curve[2]["hr@50"] == pytest.approx(0.6)
    other = [dict(r, **{"hr@10": r["hr@10"] + 0.1}) for r in curve]
    table = reference_parity.final_table([{"curve": curve}, {"curve": other}], epochs=2)
    assert table["per_run"][1] == pytest.approx({"epoch": 2, "hr@10": 0.3, "ndcg@10": 0.1,
                                                 "hr@50": 0.4, "mrr": 0.02})
    assert table["mean"]["hr@10"] == pytest.approx(0.25)
    # an epoch count beyond the curve falls back to the last evaluation.
    assert reference_parity.final_table([{"curve": curve}], epochs=60)["per_run"][0]["epoch"] == 3


def _table(values):
    return {"per_run": [{"epoch": 60, "hr@10": v, "ndcg@10": v / 2, "hr@50": 2 * v, "mrr": v / 3}
                        for v in values]}


def test_differences_are_run_level_two_sample_comparisons():
    ours, ref = [0.0612, 0.0700, 0.0650], [0.0850, 0.0763, 0.0838, 0.0775]
    diff = reference_parity.differences(_table(ours), _table(ref))
    assert set(diff) == set(reference_parity.METRICS)
    assert diff["hr@10"]["diff"] == pytest.approx(sum(ours) / 3 - sum(ref) / 4)
    assert diff["ndcg@10"]["diff"] == pytest.approx(diff["hr@10"]["diff"] / 2)
    # every ours value is below every reference value: only the observed split of C(7, 3) = 35
    # reaches |diff| (the mirror split has fewer runs on each side's extreme).
    assert diff["hr@10"]["p_value"] == pytest.approx(1 / 35)
    assert (diff["hr@10"]["n_a"], diff["hr@10"]["n_b"]) == (3, 4)
    assert reference_parity.differences(_table(ours), _table([0.08])) == {}


def test_curves_leave_out_runs_without_a_curve(tmp_path):
    full = {"curve": [{"epoch": e, "hr@10": 0.01 * e, "ndcg@10": 0.005 * e, "hr@50": 0.02 * e,
                       "mrr": 0.003 * e} for e in (1, 2, 3)]}
    shifted = {"curve": [dict(r, **{"hr@10": r["hr@10"] + 0.02}) for r in full["curve"]]}
    last_only = {"curve": [dict(full["curve"][-1], **{"hr@10": 0.9})]}
    band = reference_parity.mean_curve([full, shifted, last_only], "hr@10")
    # the single-evaluation run would have cut the epochs to {3} and pulled the mean up
    assert band["epochs"] == [1, 2, 3] and band["num_runs"] == 2
    assert band["mean"] == pytest.approx([0.02, 0.03, 0.04])
    assert band["low"] == pytest.approx([0.01, 0.02, 0.03])
    assert band["high"] == pytest.approx([0.03, 0.04, 0.05])
    assert reference_parity.mean_curve([last_only], "hr@10") is None
    paths = reference_parity.plot({"ours": [full], "reference": [last_only]}, str(tmp_path), "t")
    assert len(paths) == 4 and all(pathlib.Path(p).stat().st_size > 0 for p in paths)
