"""Training throughput of the jitted HSTU (or SASRec) train step: examples/s and model FLOP
utilisation (MFU) on one device, for two configurations:

* ``ml100k``: the ML-100K pretraining step as the real run takes it (``benchmarks/pretrain.py``):
  D = 50, 2 blocks, 1 head (q/k/v width 50), dropout 0.2, rows of width 200, 128 users per step
  packed first-fit-decreasing into 72 rows (``genrec_jax.data.packing``; the widest of the real
  run's row counts, which gives most batches 56 or 64 rows), 128 sampled negatives
  over 1682 items (table of 1683 rows). Ids and timestamps are synthetic; per-user event counts
  are log-normal with MovieLens 100K's log-mean 4.27 and log-sd 0.88 (at least 20 events), each
  user contributing ``min(events - 2, 200)`` positions, as in the training split. Users that do
  not fit into the 72 rows are dropped (the JSON records ``sequences_per_step``).
* ``large``: D = 256, 8 blocks, 8 heads of q/k/v width 32 (= D / heads, so the HSTU projection
  is D -> 4·D as in the single-head configuration), dropout 0.2, 3706 items (ML-1M's catalogue),
  128 sampled negatives, ``--large_batch`` unpacked rows of 200 events, every position a target.
  The batch defaults to 1024 on an accelerator and 64 on CPU (where 1024 would take minutes per
  step); the JSON states the batch used.

Both use the pretraining loss (sampled softmax, ``genrec_jax.train.next_item``), AdamW and
``genrec_jax.train.step.make_train_step``, built exactly as ``genrec_jax.train.pretrain`` builds
them, on a one-device mesh.

Measured per configuration: compile time (``lower(...).compile()``, apart), then the median
wall time of ``--steps`` steps after ``--warmup`` steps, each ended by ``jax.block_until_ready``
on the new state and the metrics; sequences/s, target tokens/s (positions with weight > 0) and
row tokens/s (rows x width, padding included).

Model FLOPs per step, two ways:

* ``flops_per_step_xla``: ``compiled.cost_analysis()["flops"]`` of the compiled step (all of
  XLA's operations, element-wise ones included, as XLA counts them on this backend);
* ``flops_per_step_analytic``: matmul FLOPs only, ``3 x forward`` (each forward matmul
  ``2·m·n·k`` has two backward matmuls of the same size, one per operand). With B rows of width
  L, T = B·L tokens (padding included: the computation is dense), H heads, R negatives:

      HSTU block    2·T·D·H·(2·dv + 2·dqk)   (u, v, q, k projection)
                  + 2·B·H·L²·dqk             (q kᵀ)
                  + 2·B·H·L²·dv              (A v)
                  + 2·T·H·dv·D               (output projection)
      SASRec block  2·T·D·3D + 2·B·L²·D + 2·B·L²·D + 2·(2·T·D²)   (qkv, q kᵀ, P v, 2-layer FFN)
      loss          2·T·D + 2·T·R·D           (target and gathered negative scores)

  (the loss term counts R negative scores per position: pretraining's per-position draws,
  ``loss.negatives_share=1``).

  Element-wise work (SiLU, layer norms, the relative bias, dropout, AdamW) is not counted.

MFU = FLOPs per step / median step time / device peak, reported with the analytic count
(``mfu``, the usual definition) and with XLA's (``mfu_xla``). Peaks: a small table of dense
datasheet figures by device kind (H200/H100: 989 TFLOP/s bf16, 67 TFLOP/s float32, 495 TFLOP/s
TF32, used for float32 unless ``JAX_DEFAULT_MATMUL_PRECISION=highest``, since XLA otherwise runs
float32 matmuls as TF32 on these cards); on CPU a measured figure: the best of ``--peak_reps``
jitted N x N matmuls (N = ``--peak_n``) in the run's dtype, a measurement, not a datasheet peak.

Usage::

    python benchmarks/hstu_throughput.py --out=hstu_throughput.json
    python benchmarks/hstu_throughput.py --precision=bf16 --kind=sasrec --out=sasrec_bf16.json
    python benchmarks/hstu_throughput.py --configs=ml100k --steps=5 --out=/tmp/t.json

Prints stage lines while it runs and, last, one figure: the ml100k configuration's sequences/s.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Dict, Mapping, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))

from absl import app, flags  # noqa: E402

import _common  # noqa: E402
from experiments import launch  # noqa: E402 (defines --retain_freed_memory)

KINDS = ("hstu", "sasrec")
PRECISIONS = ("float32", "bf16")

# MovieLens 100K per-user event counts: log-mean and log-sd (measured on u.data), minimum 20.
ML100K_LOG_MEAN, ML100K_LOG_SD, ML100K_MIN_EVENTS = 4.27, 0.88, 20

ML100K = dict(name="ml100k", num_items=1682, width=200, dim=50, num_blocks=2, num_heads=1,
              qk_dim=50, v_dim=50, dropout=0.2, num_negatives=128, packed=True, users=128,
              rows=72)
LARGE = dict(name="large", num_items=3706, width=200, dim=256, num_blocks=8, num_heads=8,
             qk_dim=32, v_dim=32, dropout=0.2, num_negatives=128, packed=False)
LARGE_BATCH = {"accelerator": 1024, "cpu": 64}

# Dense peak FLOP/s by device kind (substring of jax.Device.device_kind, lower case):
# {"bf16", "tf32", "float32"}; datasheet figures without sparsity.
PEAKS = {
    "h200": {"bf16": 989e12, "tf32": 495e12, "float32": 67e12},
    "h100": {"bf16": 989e12, "tf32": 495e12, "float32": 67e12},
    "a100": {"bf16": 312e12, "tf32": 156e12, "float32": 19.5e12},
}


# ----------------------------------------------------------------------------------------------
# Synthetic batches.
# ----------------------------------------------------------------------------------------------

def packed_batch(num_items: int, users: int, rows: int, width: int, seed: int = 0):
    """``users`` synthetic ML-100K-like training rows packed into ``rows`` rows of ``width``.

    Returns ``(batch, sequences)``: the packed dict of ``genrec_jax.data.packing.pack`` (token
    fields ``[rows, width]`` plus ``segment_ids``, ``positions``, ``token_user``, ``lengths``)
    and the number of users it holds (users that do not fit are dropped, longest kept).
    """
    import numpy as np  # noqa: PLC0415

    from genrec_jax.data.packing import first_fit_decreasing, pack  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    events = np.maximum(np.exp(rng.normal(ML100K_LOG_MEAN, ML100K_LOG_SD, users)),
                        ML100K_MIN_EVENTS).astype(np.int64)
    lengths = np.minimum(events - 2, width)
    lengths = lengths[np.argsort(-lengths, kind="stable")]
    while len(first_fit_decreasing(lengths, width)) > rows:
        lengths = lengths[:-1]
    batch = padded_batch(num_items, len(lengths), width, seed, lengths=lengths)
    return pack(batch, rows), len(lengths)


def padded_batch(num_items: int, rows: int, width: int, seed: int = 0, lengths=None):
    """Right-padded training rows ``[rows, width]`` (field names of
    ``genrec_jax.data.sequences.train_arrays``); every position valid unless ``lengths``."""
    import numpy as np  # noqa: PLC0415

    from scaling import synthetic_batch  # noqa: PLC0415

    full = np.full(rows, width) if lengths is None else lengths
    return synthetic_batch(num_items, rows, width, seed + 1, lengths=full)


def make_batch(spec: Mapping[str, Any], seed: int):
    """``(batch, sequences)`` for ``spec``: packed (``users`` into ``rows``) or full rows."""
    if spec["packed"]:
        return packed_batch(spec["num_items"], spec["users"], spec["rows"], spec["width"], seed)
    return padded_batch(spec["num_items"], spec["rows"], spec["width"], seed), spec["rows"]


# ----------------------------------------------------------------------------------------------
# FLOPs and peaks.
# ----------------------------------------------------------------------------------------------

def analytic_flops(kind: str, *, rows: int, width: int, dim: int, num_blocks: int,
                   num_heads: int, qk_dim: int, v_dim: int, num_negatives: int) -> Dict[str, int]:
    """Matmul FLOPs of one train step (see the module docstring for the formula).

    Returns ``{"block_forward", "loss_forward", "forward", "train_step"}`` with
    ``train_step = 3 · forward`` and ``forward = num_blocks · block_forward + loss_forward``.
    ``qk_dim`` / ``v_dim`` are ignored for SASRec (its heads split D).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    b, l, d, h = int(rows), int(width), int(dim), int(num_heads)
    t = b * l
    if kind == "hstu":
        block = (2 * t * d * h * (2 * v_dim + 2 * qk_dim) + 2 * b * h * l * l * qk_dim
                 + 2 * b * h * l * l * v_dim + 2 * t * h * v_dim * d)
    else:
        block = 2 * t * d * 3 * d + 2 * b * l * l * d + 2 * b * l * l * d + 2 * (2 * t * d * d)
    loss = 2 * t * d + 2 * t * int(num_negatives) * d
    forward = int(num_blocks) * block + loss
    return {"block_forward": block, "loss_forward": loss, "forward": forward,
            "train_step": 3 * forward}


def xla_flops(compiled) -> float:
    """``flops`` of ``compiled.cost_analysis()`` (a dict, or a list of one per module in older
    JAX); NaN when the backend gives none."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 (a backend without cost analysis)
        return math.nan
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    value = (cost or {}).get("flops")
    return float(value) if value is not None and value > 0 else math.nan


def cpu_matmul_peak(dtype_name: str, n: int = 1024, reps: int = 10) -> float:
    """Best FLOP/s of a jitted ``[n, n] @ [n, n]`` in ``dtype_name`` (float32 | bf16) over
    ``reps`` timed runs after one warm-up: ``2·n³ / min time``."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    dtype = jnp.bfloat16 if dtype_name == "bf16" else jnp.float32
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    best = math.inf
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def device_peak(precision: str, *, peak_n: int = 1024, peak_reps: int = 10) -> Dict[str, Any]:
    """``{"flops_per_s", "source", "device_kind", "platform"}``: the table's figure for the
    device kind (bf16; float32, or TF32 unless the default matmul precision is "highest"), or on
    CPU (or an unknown device) a measured matmul rate from :func:`cpu_matmul_peak`."""
    import jax  # noqa: PLC0415

    device = jax.devices()[0]
    kind = str(getattr(device, "device_kind", "")).lower()
    entry = next((v for k, v in PEAKS.items() if k in kind), None)
    if device.platform != "cpu" and entry is not None:
        matmul_precision = str(jax.config.jax_default_matmul_precision or "default").lower()
        key = "bf16" if precision == "bf16" else (
            "float32" if matmul_precision in ("highest", "float32") else "tf32")
        return {"flops_per_s": entry[key], "platform": device.platform,
                "device_kind": device.device_kind,
                "source": f"datasheet dense {key} peak of {device.device_kind} "
                          f"(default matmul precision {matmul_precision})"}
    rate = cpu_matmul_peak(precision, peak_n, peak_reps)
    return {"flops_per_s": rate, "platform": device.platform,
            "device_kind": getattr(device, "device_kind", device.platform),
            "source": f"measured: best of {peak_reps} jitted {peak_n}x{peak_n} {precision} "
                      f"matmuls on this {device.platform} (not a datasheet peak)"}


# ----------------------------------------------------------------------------------------------
# One configuration.
# ----------------------------------------------------------------------------------------------

def build_step(spec: Mapping[str, Any], kind: str, precision: str, seed: int = 0):
    """``(step, graphdef, state, mesh)`` on a one-device mesh, built like ``pretrain`` builds
    them (same encoder config path, loss function, AdamW and ``make_train_step``)."""
    import jax  # noqa: PLC0415

    from experiments.configs import pretrain as pretrain_config  # noqa: PLC0415
    from genrec_jax import sharding as shd  # noqa: PLC0415
    from genrec_jax.models.encoders import build_encoder, encoder_config  # noqa: PLC0415
    from genrec_jax.train.pretrain import next_item_loss_fn  # noqa: PLC0415
    from genrec_jax.train.state import (init_params, init_train_state,  # noqa: PLC0415
                                        make_optimizer)
    from genrec_jax.train.step import make_train_step  # noqa: PLC0415

    mesh = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    block = dict(kind=kind, dim=spec["dim"], num_blocks=spec["num_blocks"],
                 num_heads=spec["num_heads"], qk_dim=spec["qk_dim"], v_dim=spec["v_dim"],
                 dropout=spec["dropout"], temperature=0.05, num_time_buckets=128,
                 output_slots=11)
    mcfg = encoder_config(block, spec["num_items"], max_len=spec["width"], precision=precision)
    graphdef, params = init_params(lambda rngs: build_encoder(mcfg, rngs), seed, mesh)
    # The pretraining config's optimizer and loss (negatives as pretraining draws them), with
    # this spec's number of negatives.
    train_cfg = pretrain_config.get_config()
    optimizer = make_optimizer(train_cfg.optimizer)
    state = init_train_state(params, optimizer, seed, mesh)
    loss_cfg = train_cfg.loss
    loss_cfg.num_negatives = int(spec["num_negatives"])
    step = make_train_step(next_item_loss_fn(loss_cfg, mesh), optimizer, state)
    return step, graphdef, state, mesh


def measure(spec: Mapping[str, Any], *, kind: str = "hstu", precision: str = "float32",
            steps: int = 5, warmup: int = 2, peak_flops: float, log=None,
            compiler_options: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Compile time, median step time, examples/s, FLOPs per step and MFU of one config.

    ``spec``: the keys of :data:`ML100K` (packed: ``users`` into ``rows``) or :data:`LARGE`
    plus ``rows``. ``peak_flops``: the device peak (FLOP/s) MFU divides by. ``log``: an optional
    ``print``-like callable for a progress line after compilation. ``compiler_options``: XLA
    options for ``compile`` (None in the benchmark; the test lowers the optimisation level to
    compile faster, which leaves every consistency relation between the fields unchanged).
    """
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from genrec_jax import sharding as shd  # noqa: PLC0415

    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {KINDS}, got {kind!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    name = spec.get("name", "config")
    t0 = time.perf_counter()
    step, graphdef, state, mesh = build_step(spec, kind, precision)
    host = [make_batch(spec, seed) for seed in range(2)]
    batches = [shd.shard_batch(b, mesh) for b, _ in host]
    jax.block_until_ready((state, batches))
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lowered = step.lower(graphdef, state, batches[0])
    compiled = lowered.compile(dict(compiler_options) if compiler_options else None)
    compile_s = time.perf_counter() - t0
    if log is not None:
        log(f"  {name}: compiled in {compile_s:.1f} s; running {warmup} warm-up + {steps} timed "
            "steps")
    for i in range(warmup):
        state, metrics = compiled(state, batches[i % 2])
        jax.block_until_ready((state, metrics))
    wall, cpu = [], []
    for i in range(steps):
        c0, t1 = time.process_time(), time.perf_counter()
        state, metrics = compiled(state, batches[i % 2])
        jax.block_until_ready((state, metrics))
        wall.append(time.perf_counter() - t1)
        cpu.append(time.process_time() - c0)
    step_s = _common.median(wall)
    sequences = float(np.mean([s for _, s in host]))
    targets = float(np.mean([np.sum(b["weights"] > 0) for b, _ in host]))
    rows, width = host[0][0]["inputs"].shape
    flops = analytic_flops(kind, rows=rows, width=width, dim=spec["dim"],
                           num_blocks=spec["num_blocks"], num_heads=spec["num_heads"],
                           qk_dim=spec["qk_dim"], v_dim=spec["v_dim"],
                           num_negatives=spec["num_negatives"])
    flops_xla = xla_flops(compiled)
    return {
        "config": {k: v for k, v in spec.items() if k != "name"},
        "kind": kind, "precision": precision,
        "rows": int(rows), "width": int(width),
        "sequences_per_step": sequences, "target_tokens_per_step": targets,
        "compile_s": compile_s, "init_s": init_s,
        "step_ms_median": 1e3 * step_s, "step_ms_min": 1e3 * min(wall),
        "step_ms_max": 1e3 * max(wall), "cpu_ms_per_step_median": 1e3 * _common.median(cpu),
        "steps_timed": steps, "warmup_steps": warmup,
        "sequences_per_s": sequences / step_s,
        "target_tokens_per_s": targets / step_s,
        "row_tokens_per_s": rows * width / step_s,
        "flops_per_step_analytic": float(flops["train_step"]),
        "flops_forward_analytic": {k: float(v) for k, v in flops.items()},
        "flops_per_step_xla": flops_xla,
        "xla_over_analytic": flops_xla / flops["train_step"],
        "achieved_flops_per_s": flops["train_step"] / step_s,
        "peak_flops_per_s": float(peak_flops),
        "mfu": flops["train_step"] / step_s / peak_flops,
        "mfu_xla": flops_xla / step_s / peak_flops,
        "final_loss": float(metrics["loss"]),
    }


# ----------------------------------------------------------------------------------------------
# The benchmark.
# ----------------------------------------------------------------------------------------------

def run(specs: Mapping[str, Mapping[str, Any]], *, out: str, kind: str = "hstu",
        precision: str = "float32", steps: int = 5, warmup: int = 2,
        peak: Optional[Dict[str, Any]] = None, peak_n: int = 1024,
        peak_reps: int = 10, note: str = "",
        extra: Optional[Mapping[str, Any]] = None,
        compiler_options: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Measures every spec in ``specs`` (name -> spec), writes the JSON report to ``out`` and
    returns it. ``peak``: a :func:`device_peak` result (measured here when None); ``extra``:
    further top-level fields of the report; ``compiler_options``: see :func:`measure`."""
    stages = _common.stages(len(specs) + (peak is None), "hstu_throughput")
    if peak is None:
        t0 = time.perf_counter()
        stages.begin(f"device peak ({precision})")
        peak = device_peak(precision, peak_n=peak_n, peak_reps=peak_reps)
        stages.done("device peak", time.perf_counter() - t0,
                    note=f"({peak['flops_per_s'] / 1e12:.3f} TFLOP/s, {peak['source']})")
    results = {}
    for name, spec in specs.items():
        t0 = time.perf_counter()
        stages.begin(f"{name} ({kind}, {precision}, D={spec['dim']}, {spec['num_blocks']} blocks, "
                     f"{spec['rows']} rows x {spec['width']})")
        r = measure(dict(spec, name=name), kind=kind, precision=precision, steps=steps,
                    warmup=warmup, peak_flops=peak["flops_per_s"],
                    log=lambda text: print(text, flush=True), compiler_options=compiler_options)
        results[name] = r
        stages.done(name, time.perf_counter() - t0,
                    note=(f"({r['step_ms_median']:.1f} ms/step, {r['sequences_per_s']:.1f} seq/s,"
                          f" {r['target_tokens_per_s']:.0f} target tok/s, MFU {r['mfu']:.4f})"))
    first = next(iter(results.values()), None)
    report = {
        "benchmark": "hstu_throughput",
        "kind": kind, "precision": precision,
        **dict(extra or {}),
        "peak": peak,
        "figure": {"name": f"{next(iter(results), '?')} sequences/s",
                   "value": first["sequences_per_s"] if first else math.nan},
        "results": results,
        "machine": _common.machine_info(),
        "note": note,
    }
    _common.write_json(out, report)
    return report


_OUT = flags.DEFINE_string("out", "hstu_throughput.json", "Output JSON.")
_KIND = flags.DEFINE_enum("kind", "hstu", list(KINDS), "Encoder.")
_PRECISION = flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "Compute precision.")
_CONFIGS = flags.DEFINE_list("configs", ["ml100k", "large"], "Which of ml100k, large.")
_LARGE_BATCH = flags.DEFINE_integer(
    "large_batch", 0, "Rows of the large config (0: 1024 on an accelerator, 64 on CPU).")
_STEPS = flags.DEFINE_integer("steps", 0, "Timed steps (0: 20 on an accelerator, 5 on CPU).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_PEAK_N = flags.DEFINE_integer("peak_n", 1024, "CPU peak micro-benchmark matmul size.")
_PEAK_REPS = flags.DEFINE_integer("peak_reps", 10, "CPU peak micro-benchmark repetitions.")


def main(argv):
    del argv
    retained = launch.retain_memory_if_asked()  # before JAX computes anything
    import jax  # noqa: PLC0415

    cpu = jax.devices()[0].platform == "cpu"
    known = {"ml100k": ML100K, "large": LARGE}
    unknown = [c for c in _CONFIGS.value if c not in known]
    if unknown:
        raise app.UsageError(f"--configs: unknown {unknown}; known: {sorted(known)}")
    batch = _LARGE_BATCH.value or LARGE_BATCH["cpu" if cpu else "accelerator"]
    specs = {c: dict(known[c]) for c in _CONFIGS.value}
    if "large" in specs:
        specs["large"]["rows"] = batch
    steps = _STEPS.value or (5 if cpu else 20)
    note = ("large: batch " + str(batch)
            + (" (CPU default; 1024 on an accelerator)" if cpu and not _LARGE_BATCH.value else "")
            + ". Synthetic ids and timestamps; ml100k rows packed like the real run.")
    report = run(specs, out=_OUT.value, kind=_KIND.value, precision=_PRECISION.value,
                 steps=steps, warmup=_WARMUP.value, peak_n=_PEAK_N.value,
                 peak_reps=_PEAK_REPS.value, note=note,
                 extra={"retained_freed_memory": retained,
                        "large_batch": batch if "large" in specs else None,
                        "large_batch_source": "--large_batch" if _LARGE_BATCH.value else
                        ("CPU default" if cpu else "accelerator default")})
    print(f"{report['figure']['name']} {report['figure']['value']:.1f}")


if __name__ == "__main__":
    app.run(main)
