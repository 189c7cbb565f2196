"""benchmarks/profile_step.py: op-name mapping from HLO text, grouping of trace events, and a
tiny traced run whose JSON names the ops of a real step."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.profile_step import group_by_op, op_names  # noqa: E402

HLO = """
  %gather_fusion = f32[4,8]{1,0} fusion(%a, %b), kind=kLoop, metadata={op_name="jit(step)/jvp()/gather" stack_frame_id=1}
  ROOT %scatter.3 = f32[9]{0} scatter(%c), metadata={op_name="jit(step)/transpose(jvp())/scatter-add"}
  %dot.1 = f32[2,2]{1,0} dot(%x, %y), metadata={op_name="jit(step)/jvp(bld,brd->blr)/dot_general"}
  %copy.7 = f32[2]{0} copy(%z)
"""


def test_op_names_read_metadata_and_drop_the_jit_prefix():
    assert op_names(HLO) == {"gather_fusion": "jvp()/gather",
                             "scatter.3": "transpose(jvp())/scatter-add",
                             "dot.1": "jvp(bld,brd->blr)/dot_general"}


def test_group_by_op_sums_per_op_skips_bookkeeping_and_keeps_unknown_names():
    names = op_names(HLO)
    events = {"gather_fusion": 6e6, "scatter.3": 2e6, "copy.7": 2e6,
              "ThunkExecutor::Execute": 9e9, "$api.py:1 block_until_ready": 9e9}
    total, rows = group_by_op(events, names, steps=2, top=10)
    assert total == 5.0  # (6 + 2 + 2) ms over 2 steps
    assert [r["op"] for r in rows] == ["jvp()/gather", "transpose(jvp())/scatter-add",
                                       "[copy.7]"]
    assert [r["ms_per_step"] for r in rows] == [3.0, 1.0, 1.0]
    assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-12
    _, top1 = group_by_op(events, names, steps=2, top=1)
    assert len(top1) == 1 and top1[0]["share"] == 0.6


def test_traced_simulator_step_names_real_ops(tmp_path):
    out = tmp_path / "p.json"
    overrides = ("simulator.num_users=40,simulator.num_items=30,simulator.events_per_user=10:20,"
                 "data.max_len=16,batch_size=16,model.dim=8,model.qk_dim=8,model.v_dim=8,"
                 "loss.num_negatives=4")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "profile_step.py"), "--dataset=simulator",
         f"--overrides={overrides}", "--steps=2", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("traced_ms_per_step ")
    result = json.loads(out.read_text())
    assert result["batch_shape"][1] == 16 and result["traced_seconds_per_step"] > 0
    ops = [r["op"] for r in result["top_ops"]]
    # The step's forward and backward both show up, by the names JAX gave them.
    assert any(op.startswith("jvp(") for op in ops) and any("transpose(" in op for op in ops)
    assert all(0.0 <= r["share"] <= 1.0 for r in result["top_ops"])
