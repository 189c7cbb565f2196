"""Where a pretraining step spends its time: XLA ops grouped by the JAX operation they come from.

  python benchmarks/profile_step.py --dataset=ml-100k --data_dir=../shared/data/ml-100k \
      --out=FILE.json [--overrides=loss.negatives_scope=position] [--steps=4]

Builds the pretraining step of ``experiments/configs/pretrain.py`` (packed batches, as a real run
feeds them), compiles it, traces ``--steps`` steps with ``jax.profiler`` and reads the trace back
(``jax.profiler.ProfileData``). Each executed XLA op (a fusion, a dot, a scatter) is mapped to the
``op_name`` the compiler kept in its metadata (e.g. ``transpose(jvp())/scatter-add``: the
backward of a gather), and the time is summed per ``op_name`` over the threads. The JSON holds the
compile time, the traced wall time per step and the top operations with their share; the last
printed line is the one figure, milliseconds per traced step.

This is the tool that found the two costs removed in the CPU step (see README, "Speed"): the
``[B, L, R, D]`` gather of per-position negatives and the batch reduction of the relative
position bias's gradient.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks._common import config_arg, write_json  # noqa: E402



def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that tests can import the
    pure functions beside other benchmarks that define flags of the same names)."""
    flags.DEFINE_string("dataset", "ml-100k", "Dataset name (see genrec_jax.data).")
    flags.DEFINE_string("data_dir", "", "Folder with the publisher's files.")
    flags.DEFINE_string("out", "profile_step.json", "Output JSON.")
    flags.DEFINE_integer("steps", 4, "Traced steps (after one compiling step).")
    flags.DEFINE_integer("top", 25, "Operations listed.")
    flags.DEFINE_string("overrides", "", "Extra config overrides, key=value,...")


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?op_name=\"([^\"]+)\"", re.M)
# Trace events that are not XLA ops: executor bookkeeping and Python frames.
_NOT_OPS = ("ThunkExecutor", "$")


def op_names(hlo_text: str) -> dict[str, str]:
    """Instruction name → the JAX ``op_name`` of its metadata (the ``jit(f)/`` prefix dropped),
    from the text of a compiled HLO module."""
    out = {}
    for name, op in _INSTRUCTION.findall(hlo_text):
        out[name] = re.sub(r"^jit\([^)]*\)/", "", op)
    return out


def group_by_op(durations_ns: dict[str, float], names: dict[str, str], steps: int,
                top: int) -> tuple[float, list[dict]]:
    """``(total ms per step, rows)``: event durations summed per op name (an event without
    metadata keeps its own name in brackets), largest first, with their share of the total."""
    per_op: collections.Counter = collections.Counter()
    for event, ns in durations_ns.items():
        if event.startswith(_NOT_OPS) or "block_until_ready" in event:
            continue
        per_op[names.get(event, f"[{event}]")] += ns
    total = sum(per_op.values())
    rows = [{"op": op, "ms_per_step": ns / 1e6 / steps, "share": ns / total if total else 0.0}
            for op, ns in per_op.most_common(top)]
    return total / 1e6 / steps, rows


def trace_durations(fn, steps: int) -> tuple[dict[str, float], float]:
    """Runs ``fn()`` ``steps`` times under the profiler; ``(ns per event name, wall s/step)``."""
    import jax  # noqa: PLC0415

    folder = tempfile.mkdtemp(prefix="genrec_trace_")
    start = time.perf_counter()
    with jax.profiler.trace(folder):
        for _ in range(steps):
            jax.block_until_ready(fn())
    wall = (time.perf_counter() - start) / steps
    path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
    totals: collections.Counter = collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            for event in line.events:
                totals[event.name] += event.duration_ns
    return dict(totals), wall


def main(argv):
    del argv
    f = flags.FLAGS
    from genrec_jax.host_allocator import retain_freed_memory  # noqa: PLC0415

    retain_freed_memory()  # as the launchers and benchmarks/pretrain.py run
    import jax  # noqa: PLC0415

    from experiments.configs import pretrain as pretrain_config  # noqa: PLC0415
    from genrec_jax import sharding as shd  # noqa: PLC0415
    from genrec_jax.data.prepare import prepare_data  # noqa: PLC0415
    from genrec_jax.train import pretrain as pt  # noqa: PLC0415
    from genrec_jax.train.state import init_train_state, make_optimizer  # noqa: PLC0415
    from genrec_jax.train.step import make_train_step  # noqa: PLC0415

    cfg = pretrain_config.get_config(config_arg(f.dataset, f.data_dir,
                                                f.overrides))
    mesh = shd.mesh_from_config(cfg.mesh)
    data = prepare_data(cfg)
    _, graphdef, params = pt.build_model(cfg, data, mesh)
    optimizer = make_optimizer(cfg.optimizer)
    state = {"s": init_train_state(params, optimizer, int(cfg.seed), mesh)}
    batch_size = int(cfg.batch_size)
    batcher = data.train_batcher(batch_size, int(cfg.seed), pack=bool(cfg.data.pack),
                                 num_steps=data.steps_per_epoch(batch_size))
    batch = shd.shard_batch(batcher.batch_at(0), mesh)
    step = make_train_step(pt.next_item_loss_fn(cfg.loss, mesh), optimizer, state["s"])
    hlo = step.lower(graphdef, state["s"], batch).compile().as_text()

    def one_step():
        state["s"], metrics = step(graphdef, state["s"], batch)
        return metrics

    start = time.perf_counter()
    jax.block_until_ready(one_step())
    compile_s = time.perf_counter() - start
    durations, wall = trace_durations(one_step, int(f.steps))
    total_ms, rows = group_by_op(durations, op_names(hlo), int(f.steps), int(f.top))
    for row in rows:
        print(f"{row['ms_per_step']:9.1f} ms {100 * row['share']:5.1f}%  {row['op'][:110]}")
    write_json(f.out, {
        "dataset": f.dataset, "overrides": f.overrides,
        "batch_shape": list(batch["inputs"].shape), "compile_seconds": compile_s,
        "traced_seconds_per_step": wall, "op_ms_per_step_all_threads": total_ms,
        "top_ops": rows, "devices": [str(d) for d in jax.devices()]})
    print(f"traced_ms_per_step {1000 * wall:.1f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
