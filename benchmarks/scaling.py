"""Scaling benchmark: train steps/s of one fixed HSTU step on 1, 2, 4 and 8 devices and on
(data, model) mesh splits of 8 devices, plus the item-table bytes each device holds.

  python benchmarks/scaling.py --out=scaling.json           # the full table (~minutes on CPU)
  python benchmarks/scaling.py --out=scaling.json --quick   # smoke check: tiny model, 3 cases
                                                            # run at once (timings not meaningful)

Every case runs in its own subprocess with its own device count (on CPU:
``XLA_FLAGS=--xla_force_host_platform_device_count=N``; on GPU/TPU hosts the first N real
devices), the same model and the same global batch (so the per-device batch shrinks as devices
grow). Compilation is timed apart from the steps. Prints one figure: steps/s on 8 devices
relative to 1 (on the full run; in ``--quick``, the largest device count relative to 1).

On a CPU-only machine the "devices" are slices of the same cores, so this shows the overhead of
the sharded program, not a speed-up; run it on a multi-accelerator host for real scaling.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

# (devices, data, model): scaling the data axis, then the (data, model) splits of 8 devices.
FULL_CASES = [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 8, 1), (8, 4, 2), (8, 2, 4)]
QUICK_CASES = [(1, 1, 1), (2, 2, 1), (2, 1, 2)]
FULL_MODEL = dict(num_items=20000, max_len=50, dim=64, num_blocks=2, num_heads=1, qk_dim=64,
                  v_dim=64, dropout=0.2, batch_size=64, num_negatives=128, steps=12)
QUICK_MODEL = dict(num_items=2000, max_len=8, dim=16, num_blocks=1, num_heads=1, qk_dim=8,
                   v_dim=8, dropout=0.0, batch_size=16, num_negatives=16, steps=3)


# ----------------------------------------------------------------------------------------------
# Worker: one case in this process.
# ----------------------------------------------------------------------------------------------

def synthetic_batch(num_items: int, batch: int, length: int, seed: int = 0, lengths=None):
    """Right-padded training rows shaped like ``genrec_jax.data.sequences.train_arrays``;
    ``lengths [batch]`` (default: uniform in ``[length // 2, length]``)."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = rng.integers(length // 2, length + 1, size=batch)
    lengths = np.asarray(lengths)
    seq = rng.integers(1, num_items + 1, size=(batch, length + 1))
    ts = np.cumsum(rng.integers(0, 5000, size=(batch, length + 1)), axis=1) + 1_000_000_000
    ratings = rng.integers(1, 6, size=(batch, length + 1)).astype(np.float32)
    valid = np.arange(length)[None, :] < lengths[:, None]
    return {
        "inputs": np.where(valid, seq[:, :-1], 0).astype(np.int32),
        "targets": np.where(valid, seq[:, 1:], 0).astype(np.int32),
        "timestamps": np.where(valid, ts[:, :-1], 0).astype(np.int64),
        "query_timestamps": np.where(valid, ts[:, 1:], 0).astype(np.int64),
        "ratings": np.where(valid, ratings[:, :-1], 0).astype(np.float32),
        "target_ratings": np.where(valid, ratings[:, 1:], 0).astype(np.float32),
        "weights": valid.astype(np.float32),
        "lengths": lengths.astype(np.int32),
        "user": np.arange(1, batch + 1, dtype=np.int32),
    }


def worker(spec: dict) -> dict:
    import jax  # noqa: PLC0415
    import ml_collections  # noqa: PLC0415

    from genrec_jax import sharding as shd  # noqa: PLC0415
    from genrec_jax.models.hstu import HSTU, HSTUConfig  # noqa: PLC0415
    from genrec_jax.train.pretrain import next_item_loss_fn  # noqa: PLC0415
    from genrec_jax.train.state import (init_params, init_train_state,  # noqa: PLC0415
                                        make_optimizer)
    from genrec_jax.train.step import make_train_step  # noqa: PLC0415

    m = spec["model"]
    if jax.device_count() < spec["devices"]:
        return {"error": f"{jax.device_count()} devices, need {spec['devices']}"}
    mesh = shd.make_mesh(spec["data"], spec["model_axis"],
                         devices=jax.devices()[: spec["devices"]])
    cfg = HSTUConfig(num_items=m["num_items"], max_len=m["max_len"], dim=m["dim"],
                     num_blocks=m["num_blocks"], num_heads=m["num_heads"], qk_dim=m["qk_dim"],
                     v_dim=m["v_dim"], dropout=m["dropout"],
                     table_multiple=spec["model_axis"])
    t0 = time.perf_counter()
    graphdef, params = init_params(lambda rngs: HSTU(cfg, rngs=rngs), 0, mesh)
    optimizer = make_optimizer(ml_collections.ConfigDict(dict(learning_rate=1e-3)))
    state = init_train_state(params, optimizer, 0, mesh)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    loss_cfg = ml_collections.ConfigDict(dict(kind="sampled", num_negatives=m["num_negatives"],
                                              negatives_mode="auto", impl="chunked",
                                              chunk_size=4096))
    step = make_train_step(next_item_loss_fn(loss_cfg, mesh), optimizer, state)
    batches = [shd.shard_batch(synthetic_batch(m["num_items"], m["batch_size"], m["max_len"], s),
                               mesh) for s in range(2)]
    t0 = time.perf_counter()
    compiled = step.lower(graphdef, state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    # Warm-up (first execution), then the timed steps; the state is donated and fed back.
    state, metrics = compiled(state, batches[1])
    jax.block_until_ready(metrics)
    wall, cpu = [], []
    for i in range(m["steps"]):
        c0, t0 = time.process_time(), time.perf_counter()
        state, metrics = compiled(state, batches[i % 2])
        jax.block_until_ready(metrics)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    step_s = _common.median(wall)
    table = shd.table_bytes_per_device(state["params"])
    return {
        "devices": spec["devices"], "mesh": [spec["data"], spec["model_axis"]],
        "platform": jax.devices()[0].platform,
        "steps_per_s": 1.0 / step_s, "step_ms_median": 1e3 * step_s,
        "step_ms_min": 1e3 * min(wall), "cpu_ms_per_step": 1e3 * _common.median(cpu),
        "compile_s": compile_s, "init_s": init_s,
        "item_table_bytes_per_device": sum(table.values()),
        "item_table_bytes_total": int(state["params"]["item_emb"].size * 4),
        "per_device_batch": m["batch_size"] // spec["data"],
        "final_loss": float(metrics["loss"]),
    }


# ----------------------------------------------------------------------------------------------
# Parent: one subprocess per case.
# ----------------------------------------------------------------------------------------------

def case_env(devices: int) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    return env


def run(out: str, quick: bool, timeout: float) -> dict:
    cases = QUICK_CASES if quick else FULL_CASES
    model = QUICK_MODEL if quick else FULL_MODEL
    stages = _common.stages(len(cases), "scaling", stderr=True)

    def one(case):
        devices, data, model_axis = case
        spec = {"devices": devices, "data": data, "model_axis": model_axis, "model": model}
        if not quick:  # sequential: say what starts
            stages.begin(f"devices={devices} mesh=({data},{model_axis})")
        t0 = time.perf_counter()
        result = _common.run_worker(os.path.abspath(__file__), spec, timeout,
                                    env=case_env(devices))
        result.setdefault("devices", devices)
        result.setdefault("mesh", [data, model_axis])
        result["wall_s"] = time.perf_counter() - t0
        shown = (f"{result['steps_per_s']:.2f} steps/s, table "
                 f"{result['item_table_bytes_per_device'] / 1024:.0f} KiB/device"
                 if "error" not in result else result["error"])
        stages.done(f"devices={devices} mesh=({data},{model_axis})", result["wall_s"],
                    note=f"({shown})")
        return result

    if quick:
        # A check that the script works end to end, not a measurement: the cases run at once.
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
            results = list(pool.map(one, cases))
    else:
        results = [one(case) for case in cases]  # one at a time, so timings do not compete
    base = next((r for r in results if r["devices"] == 1 and "error" not in r), None)
    top = max((r for r in results if r.get("mesh", [0, 0])[1] == 1 and "error" not in r),
              key=lambda r: r["devices"], default=None)
    for r in results:
        if base is not None and "error" not in r:
            r["speedup_vs_1"] = r["steps_per_s"] / base["steps_per_s"]
    figure = (top["steps_per_s"] / base["steps_per_s"]) if base and top else float("nan")
    report = {
        "benchmark": "scaling",
        "quick": quick,
        "model": model,
        "global_batch": model["batch_size"],
        "figure": {"name": f"steps/s on {top['devices'] if top else '?'} devices relative to 1",
                   "value": figure},
        "results": results,
        "machine": _common.machine_info(),
        "note": ("CPU 'devices' forced with XLA_FLAGS share the same cores: the figures show "
                 "the sharded program's overhead, not a speed-up."),
    }
    _common.write_json(out, report)
    return report


def main(argv: list[str]) -> None:
    args = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else "") for a in argv[1:]}
    if "--worker" in args:
        print(json.dumps(worker(json.loads(args["--worker"]))), flush=True)
        return
    unknown = set(args) - {"--out", "--quick", "--timeout"}
    if unknown:
        raise SystemExit(f"unknown flags {sorted(unknown)}; usage: scaling.py --out=FILE.json "
                         "[--quick] [--timeout=SECONDS]")
    report = run(args.get("--out") or "scaling.json", "--quick" in args,
                 float(args.get("--timeout") or 600))
    print(f"{report['figure']['name']}: {report['figure']['value']:.3f}")


if __name__ == "__main__":
    main(sys.argv)
