"""Benchmark: full-catalogue weighted softmax cross-entropy, reference vs fused paths.

Measures forward+backward (``jax.value_and_grad`` w.r.t. ``h`` and ``items``) of
``genrec_jax.kernels.weighted_softmax_xent`` for V in {10k, 100k, 1M}, N in {1024, 4096}, D=64,
float32 (``--dtypes=float32,bfloat16`` for both), L2-normalised vectors, temperature 0.05, row 0
excluded (``valid_range=(1, V)``):

* step time: median of ``--steps`` steps after one warm-up step; compile time reported apart (and
  for the Pallas path the autotune time apart from both: tiles are chosen before compiling);
* added memory: every variant runs in its own subprocess, which records its RSS after creating
  the inputs and its peak RSS while running (the peak mark is reset after compilation where the
  kernel allows it); ``added_bytes = peak - rss_after_inputs``;
* throughput, per path: FLOPs executed (forward 2NVD, backward 4NVD, plus what the path
  recomputes: chunked 2NVD, Pallas 4NVD; the Pallas count is an upper bound since it skips
  gradient tiles of negligible softmax mass) and bytes moved (``h`` and ``items`` read once per
  pass: 2 passes for reference and chunked, 3 for Pallas, plus the gradients written once; the
  reference also writes and reads its ``[N, V]`` float32 logits, counted as 6 passes over them),
  as TFLOP/s and GB/s and as fractions of the device's peaks. Peaks come from a table by device
  kind (H200: 4.8 TB/s; dense 989 TFLOP/s bf16, 495 TF32, 67 float32) or, elsewhere (CPU), from
  a matmul / copy micro-benchmark run in the first worker. float32 matmuls count against the TF32
  peak on GPU unless ``jax_default_matmul_precision`` is ``highest``/``float32``.

Variants are run interleaved (reference, chunk 4096, chunk 8192, pallas, then again) for
``--rounds`` rounds, since this machine's speed drifts; each variant's time is the best of its
per-round medians. The reference is skipped, and said so in the JSON, where its estimated
footprint (3 x N x V x 4 bytes: logits, softmax, logit gradient) exceeds ``--memory-budget-gib``.
The chunked figure reported is the faster of the chunk sizes tried (all are recorded).

Usage::

    python benchmarks/fused_loss.py --out=/tmp/fused_loss.json           # full run, minutes
    python benchmarks/fused_loss.py --quick --out=/tmp/fused_quick.json  # smoke run, seconds

Prints one headline figure: at V=100k, N=4096 (float32) the pallas/reference (with ``--pallas``;
else chunked/reference) ratios of step time and added memory. On an accelerator, memory is read
from the device allocator's counters (``bytes_in_use`` after the inputs, ``peak_bytes_in_use``)
instead of the process RSS, and each worker also returns fixed random projections of its
gradients, so the JSON's ``parity_vs_reference`` shows how closely each path agrees with the
reference.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))

import _common  # noqa: E402

FULL_VS = (10_000, 100_000, 1_000_000)
FULL_NS = (1024, 4096)
QUICK_VS = (10_000,)
QUICK_NS = (128,)
CHUNKS = (4096, 8192)
HEADLINE = (100_000, 4096)


# ----------------------------------------------------------------------------------------------
# Worker: one variant, one process.
# ----------------------------------------------------------------------------------------------

# Device peaks by device kind (lower-case prefix): memory bytes/s and dense matmul FLOP/s.
# Public spec sheets (SXM parts, dense, no sparsity); other devices are measured.
PEAKS = {
    "nvidia h200": {"bandwidth": 4.8e12,
                    "matmul": {"bfloat16": 989e12, "tf32": 494.7e12, "float32": 66.9e12}},
    "nvidia h100 80gb hbm3": {"bandwidth": 3.35e12,
                              "matmul": {"bfloat16": 989e12, "tf32": 494.7e12,
                                         "float32": 66.9e12}},
    "nvidia a100-sxm4-80gb": {"bandwidth": 2.039e12,
                              "matmul": {"bfloat16": 312e12, "tf32": 156e12, "float32": 19.5e12}},
}


def device_peaks(quick=False):
    """``{"device_kind", "source", "bandwidth", "matmul": {kind: FLOP/s}}`` for device 0.

    From :data:`PEAKS` when the kind is listed, else measured: best of a few runs of a square
    matmul (float32 and bfloat16) and of ``y = 2 * x`` over a large float32 array (bytes read +
    written).
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    for prefix, peaks in PEAKS.items():
        if kind.lower().startswith(prefix):
            return {"device_kind": kind, "source": "table", **peaks}
    on_cpu = dev.platform == "cpu"

    def best_time(f, *args, reps=3):
        jax.block_until_ready(f(*args))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times.append(time.perf_counter() - t0)
        return min(times)

    matmul = {}
    mm = jax.jit(lambda a, b: a @ b)
    for name, size in (("float32", 512 if quick else 1024), ("bfloat16", 512)):
        size = size if on_cpu else 8192
        a = jnp.ones((size, size), name)
        matmul[name] = 2 * size ** 3 / best_time(mm, a, a)
    matmul["tf32"] = matmul["float32"]
    elems = (8 if quick else 32) * 2 ** 20 if on_cpu else 2 ** 28
    x = jnp.ones((elems,), jnp.float32)
    bandwidth = 2 * x.nbytes / best_time(jax.jit(lambda x: 2.0 * x), x, reps=5)
    return {"device_kind": kind, "source": "measured", "bandwidth": bandwidth, "matmul": matmul}


def matmul_kind(dtype, backend):
    """Which matmul peak a path's FLOPs count against."""
    import jax  # noqa: PLC0415

    if dtype == "bfloat16":
        return "bfloat16"
    precision = str(jax.config.jax_default_matmul_precision or "default").lower()
    if backend != "cpu" and precision not in ("highest", "float32", "f32"):
        return "tf32"
    return "float32"


def worker(spec):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from genrec_jax.kernels import weighted_softmax_xent  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    n, v, d = spec["N"], spec["V"], spec["D"]
    dtype = jnp.dtype(spec.get("dtype", "float32"))
    rng = np.random.default_rng(spec.get("seed", 0))
    device_memory = jax.default_backend() != "cpu"
    peaks = device_peaks(quick=spec.get("quick", False)) if spec.get("measure_peaks") else None

    # Pallas: tiles chosen (autotuned on GPU, cached in this process) before the inputs exist, so
    # neither the baseline nor the compile time includes the tuning runs.
    tuning = None
    if spec["impl"] == "pallas":
        from genrec_jax.kernels import pallas_xent  # noqa: PLC0415

        t0 = time.perf_counter()
        res = pallas_xent.select_tiles(n, v, d, dtype, valid_range=(1, v))
        tuning = {"autotune_s": time.perf_counter() - t0, "source": res.source,
                  "tiles": dataclasses.asdict(res.tiles),
                  "candidates": [{"tiles": dataclasses.asdict(t), "time_s": sec}
                                 for t, sec in res.timings_s]}

    def unit_rows(rows):
        x = rng.standard_normal((rows, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return jnp.asarray(x, dtype)

    # Inputs built in numpy (no device-side temporaries left behind), then freed memory released,
    # so the RSS baseline holds the inputs and nothing else.
    h, items = unit_rows(n), unit_rows(v)
    targets = jnp.asarray(rng.integers(1, v, size=n, dtype=np.int32))
    weights = jnp.asarray(rng.uniform(0.0, 2.0, size=n).astype(np.float32))
    jax.block_until_ready((h, items, targets, weights))
    if device_memory:  # accelerator: the allocator's own counters (this process is fresh)
        def in_use():
            return jax.devices()[0].memory_stats()["bytes_in_use"]

        def peak_bytes():
            return jax.devices()[0].memory_stats()["peak_bytes_in_use"]
    else:
        in_use, peak_bytes = _common.rss_bytes, _common.peak_rss_bytes
        _common.release_free_memory()
    rss_inputs = in_use()

    kw = dict(temperature=0.05, valid_range=(1, v), impl=spec["impl"])
    if spec.get("chunk"):
        kw["chunk_size"] = spec["chunk"]

    def loss_fn(h, items, targets, weights):
        loss, _ = weighted_softmax_xent(h, items, targets, weights, **kw)
        return jnp.mean(loss)

    step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
    args = (h, items, targets, weights)
    compiled, compile_s = _common.compile_timed(step, *args)
    if not device_memory:
        _common.release_free_memory()
    rss_compiled = in_use()
    reset = False if device_memory else _common.reset_peak_rss()
    times, cpu_times = _common.time_steps(compiled, args, steps=spec["steps"],
                                          warmup=spec.get("warmup", 1))
    peak = peak_bytes()
    value, (dh, ditems) = compiled(*args)
    finite = bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(dh))) and bool(
        jnp.all(jnp.isfinite(ditems)))
    # Fixed random projections of the gradients: equal across implementations (up to rounding)
    # when they compute the same gradients, so runs in separate processes can be compared.
    probe = np.random.default_rng(123)
    projections = [float(jnp.vdot(g.astype(jnp.float32),
                                  jnp.asarray(probe.standard_normal(g.shape, np.float32))))
                   for g in (dh, ditems)]
    return {
        "impl": spec["impl"], "chunk": spec.get("chunk"), "V": v, "N": n, "D": d,
        "dtype": dtype.name,
        "compile_s": compile_s, "step_times_s": times, "median_s": _common.median(times),
        "step_cpu_times_s": cpu_times, "median_cpu_s": _common.median(cpu_times),
        "rss_after_inputs_bytes": rss_inputs, "rss_after_compile_bytes": rss_compiled,
        "peak_rss_bytes": peak, "peak_reset": reset,
        "added_bytes": peak - rss_inputs, "added_after_compile_bytes": peak - rss_compiled,
        "loss": float(value), "finite": finite, "grad_projections": projections,
        "jax_version": jax.__version__, "backend": jax.default_backend(),
        "matmul_kind": matmul_kind(dtype.name, jax.default_backend()),
        "memory": "device allocator" if device_memory else "process RSS",
        "pallas_tuning": tuning, "peaks": peaks,
    }


# ----------------------------------------------------------------------------------------------
# Throughput accounting.
# ----------------------------------------------------------------------------------------------

# Matmul FLOPs per N*V*D (forward 2, backward 4, plus recomputation) and passes over h and items.
FLOPS_PER_NVD = {"reference": 6, "chunked": 8, "pallas": 10}
INPUT_PASSES = {"reference": 2, "chunked": 2, "pallas": 3}
REFERENCE_LOGIT_PASSES = 6  # logits written + read (forward), softmax grad written + read twice


def work_counts(path, n, v, d, itemsize):
    """``(flops_executed, flops_model, bytes_moved)`` of one forward + backward step."""
    nvd = n * v * d
    io = (n + v) * d * itemsize
    moved = INPUT_PASSES[path] * io + io  # inputs read per pass, gradients written once
    if path == "reference":
        moved += REFERENCE_LOGIT_PASSES * n * v * 4
    return FLOPS_PER_NVD[path] * nvd, 6 * nvd, moved


def throughput(path, n, v, d, itemsize, time_s, peaks, kind):
    flops, model_flops, moved = work_counts(path, n, v, d, itemsize)
    out = {"flops_executed": flops, "flops_model": model_flops, "bytes_moved": moved,
           "tflops_executed": flops / time_s / 1e12, "tflops_model": model_flops / time_s / 1e12,
           "gbytes_per_s": moved / time_s / 1e9, "matmul_peak_kind": kind}
    if peaks:
        peak_mm = peaks["matmul"][kind]
        out.update(matmul_peak_tflops=peak_mm / 1e12, bandwidth_peak_gbps=peaks["bandwidth"] / 1e9,
                   fraction_of_matmul_peak=flops / time_s / peak_mm,
                   model_flops_utilisation=model_flops / time_s / peak_mm,
                   fraction_of_bandwidth=moved / time_s / peaks["bandwidth"],
                   peaks_source=peaks["source"])
    return out


# ----------------------------------------------------------------------------------------------
# Orchestration.
# ----------------------------------------------------------------------------------------------

def reference_estimate_bytes(n, v):
    """Rough reference footprint: logits, softmax and logit-gradient arrays, float32."""
    return 3 * n * v * 4


def _summarise(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error", "no run"), "runs": runs}
    best = min(ok, key=lambda r: r["median_s"])
    out = {
        "time_s": best["median_s"],
        "cpu_time_s": min(r["median_cpu_s"] for r in ok),
        "compile_s": min(r["compile_s"] for r in ok),
        "added_bytes": max(r["added_bytes"] for r in ok),
        "added_after_compile_bytes": max(r["added_after_compile_bytes"] for r in ok),
        "finite": all(r["finite"] for r in ok),
        "loss": best["loss"],
        "grad_projections": best.get("grad_projections"),
        "matmul_kind": best.get("matmul_kind"),
        "runs": runs,
    }
    if best.get("pallas_tuning"):
        out["autotune_s"] = best["pallas_tuning"]["autotune_s"]
        out["tiles"] = best["pallas_tuning"]["tiles"]
    return out


def _add_throughput(section, path, v, n, d, itemsize, peaks):
    if "time_s" in section:
        section["throughput"] = throughput(path, n, v, d, itemsize, section["time_s"], peaks,
                                           section.get("matmul_kind") or "float32")


def run_config(v, n, dtype, args, peaks):
    """All variants at one (V, N, dtype). ``peaks``: a dict filled by the first worker."""
    d = args.d
    itemsize = 2 if dtype == "bfloat16" else 4
    flops = 8 * n * v * d  # ~4 matmuls of 2*N*V*D for forward + backward
    heavy = flops > 1e12
    steps = min(args.steps, 2) if heavy else args.steps
    rounds = 1 if heavy else args.rounds
    budget = args.memory_budget_gib * _common.GIB
    est = reference_estimate_bytes(n, v)
    variants = []
    if est <= budget:
        variants.append(("reference", None))
    variants += [("chunked", c) for c in args.chunks]
    if args.pallas:
        variants.append(("pallas", None))
    runs = {var: [] for var in variants}
    timeout = max(600.0, flops / 2e9)
    for r in range(rounds):
        for impl, chunk in variants:
            spec = {"impl": impl, "chunk": chunk, "V": v, "N": n, "D": d, "dtype": dtype,
                    "steps": steps, "warmup": 1, "seed": 0, "quick": args.quick,
                    "measure_peaks": not peaks}
            t0 = time.time()
            res = _common.run_worker(os.path.abspath(__file__), spec, timeout=timeout)
            label = impl if chunk is None else f"{impl}[{chunk}]"
            if "error" in res:
                print(f"  V={v} N={n} {dtype} {label} round {r}: ERROR {res['error']}", flush=True)
            else:
                if res.get("peaks") and not peaks:
                    peaks.update(res["peaks"])
                tune = res.get("pallas_tuning") or {}
                extra = (f" autotune {tune['autotune_s']:.1f} s ({tune['source']})"
                         if tune else "")
                print(f"  V={v} N={n} {dtype} {label:16s} round {r}: step {res['median_s']:.4f} s "
                      f"compile {res['compile_s']:.2f} s{extra} "
                      f"added {res['added_bytes'] / _common.MIB:.0f} MiB "
                      f"({time.time() - t0:.0f} s wall)", flush=True)
            runs[(impl, chunk)].append(res)
    out = {"V": v, "N": n, "D": d, "dtype": dtype, "steps": steps, "rounds": rounds,
           "reference_estimated_bytes": est}
    if ("reference", None) in runs:
        out["reference"] = _summarise(runs[("reference", None)])
        _add_throughput(out["reference"], "reference", v, n, d, itemsize, peaks)
    else:
        out["reference"] = {"skipped": True,
                            "reason": f"estimated {est / _common.GIB:.1f} GiB > memory budget "
                                      f"{args.memory_budget_gib:g} GiB"}
    per_chunk = {str(c): _summarise(runs[("chunked", c)]) for c in args.chunks}
    for summary in per_chunk.values():
        _add_throughput(summary, "chunked", v, n, d, itemsize, peaks)
    good = {c: s for c, s in per_chunk.items() if "error" not in s}
    chunked = {"per_chunk": per_chunk}
    if good:
        best_c = min(good, key=lambda c: good[c]["time_s"])
        chunked.update(best_chunk=int(best_c), time_s=good[best_c]["time_s"],
                       cpu_time_s=good[best_c]["cpu_time_s"],
                       compile_s=good[best_c]["compile_s"], added_bytes=good[best_c]["added_bytes"],
                       added_after_compile_bytes=good[best_c]["added_after_compile_bytes"],
                       finite=good[best_c]["finite"], throughput=good[best_c].get("throughput"))
    out["chunked"] = chunked
    if args.pallas:
        out["pallas"] = _summarise(runs[("pallas", None)])
        _add_throughput(out["pallas"], "pallas", v, n, d, itemsize, peaks)
    ref = out["reference"]
    if "loss" in ref:  # agreement with the reference, in relative terms
        out["parity_vs_reference"] = {
            name: _parity(ref, summary) for name, summary in
            [(f"chunked[{c}]", per_chunk[str(c)]) for c in args.chunks]
            + ([("pallas", out["pallas"])] if args.pallas else []) if "loss" in summary}
    if "time_s" in ref and "time_s" in out.get("pallas", {}):
        pal = out["pallas"]
        out["ratios_pallas_over_reference"] = {
            "time": pal["time_s"] / ref["time_s"],
            "added_memory": pal["added_bytes"] / max(ref["added_bytes"], 1)}
    if "time_s" in ref and "time_s" in chunked:
        out["ratios_chunked_over_reference"] = {
            "time": chunked["time_s"] / ref["time_s"],
            "cpu_time": chunked["cpu_time_s"] / ref["cpu_time_s"],
            "added_memory": chunked["added_bytes"] / max(ref["added_bytes"], 1),
            "added_memory_after_compile": chunked["added_after_compile_bytes"] / max(
                ref["added_after_compile_bytes"], 1),
        }
        # Both figures for every chunk size, so a reader can see the trade-off.
        for c, s in good.items():
            s["ratios_over_reference"] = {"time": s["time_s"] / ref["time_s"],
                                          "cpu_time": s["cpu_time_s"] / ref["cpu_time_s"],
                                          "added_memory": s["added_bytes"] / max(
                                              ref["added_bytes"], 1)}
    return out


def _parity(ref, other):
    def rel(a, b):
        return abs(a - b) / max(abs(a), 1e-30)

    out = {"loss_rel_diff": rel(ref["loss"], other["loss"])}
    if ref.get("grad_projections") and other.get("grad_projections"):
        out["dh_projection_rel_diff"], out["ditems_projection_rel_diff"] = (
            rel(a, b) for a, b in zip(ref["grad_projections"], other["grad_projections"]))
    return out


def _path_rows(res):
    """One line per path: time, added memory, throughput and fractions of the peaks."""
    rows = []
    sections = [("reference", res["reference"]), ("chunked", res["chunked"])]
    if "pallas" in res:
        sections.append(("pallas", res["pallas"]))
    for name, sec in sections:
        head = f"{res['V']:>9d} {res['N']:>6d} {res['dtype']:>8s} {name:>9s}"
        if "time_s" not in sec:
            rows.append(f"{head} | {'skipped' if sec.get('skipped') else 'error'}")
            continue
        tp = sec.get("throughput") or {}
        frac_mm = tp.get("fraction_of_matmul_peak")
        frac_bw = tp.get("fraction_of_bandwidth")
        rows.append(
            f"{head} | {sec['time_s'] * 1e3:9.2f} {sec['added_bytes'] / _common.MIB:9.0f} "
            f"{sec['compile_s']:7.2f} | {tp.get('tflops_executed', float('nan')):8.3g} "
            f"{'-' if frac_mm is None else f'{100 * frac_mm:.1f}%':>7s} "
            f"{tp.get('gbytes_per_s', float('nan')):8.1f} "
            f"{'-' if frac_bw is None else f'{100 * frac_bw:.1f}%':>7s}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=False, help="JSON file to write")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run (small V, N)")
    p.add_argument("--memory-budget-gib", type=float, default=8.0,
                   help="skip the reference where its estimated footprint exceeds this")
    p.add_argument("--steps", type=int, default=5, help="timed steps per run (after 1 warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions per variant")
    p.add_argument("--vs", type=str, default=None, help="comma-separated V values (override)")
    p.add_argument("--ns", type=str, default=None, help="comma-separated N values (override)")
    p.add_argument("--chunks", type=str, default=None, help="comma-separated chunk sizes")
    p.add_argument("--dtypes", type=str, default="float32",
                   help="comma-separated input dtypes: float32, bfloat16")
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--pallas", action="store_true",
                   help="also run the Pallas kernel (compiled on GPU, interpreted on CPU: slow)")
    p.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if not args.out:
        p.error("--out is required")

    vs = QUICK_VS if args.quick else FULL_VS
    ns = QUICK_NS if args.quick else FULL_NS
    if args.quick:
        args.steps, args.rounds = min(args.steps, 2), 1
    if args.vs:
        vs = tuple(int(x) for x in args.vs.split(","))
    if args.ns:
        ns = tuple(int(x) for x in args.ns.split(","))
    args.chunks = tuple(int(x) for x in args.chunks.split(",")) if args.chunks else CHUNKS
    dtypes = tuple(x.strip() for x in args.dtypes.split(",") if x.strip())
    bad = [x for x in dtypes if x not in ("float32", "bfloat16")]
    if bad or not dtypes:
        p.error(f"--dtypes must list float32 and/or bfloat16, got {args.dtypes!r}")

    t_start = time.time()
    results = []
    peaks = {}
    stages = _common.stages(len(vs) * len(ns) * len(dtypes), "fused_loss")
    for dtype in dtypes:
        for v in vs:
            for n in ns:
                with stages.stage(f"V={v} N={n} D={args.d} {dtype}"):
                    results.append(run_config(v, n, dtype, args, peaks))

    kind = peaks.get("device_kind", "?")
    print(f"\n        V      N    dtype      path |   ms/step added MiB compile |"
          f"   TFLOP/s  %peak     GB/s  %peak   ({kind}, peaks {peaks.get('source', '-')})")
    for res in results:
        for row in _path_rows(res):
            print(row)

    def pick(key):
        cands = [r for r in results if key in r]
        head = [r for r in cands if (r["V"], r["N"]) == HEADLINE and r["dtype"] == "float32"]
        if head:
            return head[0]
        return max(cands, key=lambda r: r["V"] * r["N"]) if cands else None

    head_cfg = pick("ratios_chunked_over_reference")
    headline = None
    if head_cfg is not None:
        ratios = head_cfg["ratios_chunked_over_reference"]
        headline = {"V": head_cfg["V"], "N": head_cfg["N"], "dtype": head_cfg["dtype"],
                    "added_memory_ratio": ratios["added_memory"], "time_ratio": ratios["time"],
                    "cpu_time_ratio": ratios["cpu_time"],
                    "chunk": head_cfg["chunked"].get("best_chunk"),
                    "targets": {"added_memory_ratio_max": 0.1, "time_ratio_max": 1.1}}
        figure = (f"chunked/reference time {ratios['time']:.2f}x, added memory "
                  f"{ratios['added_memory']:.3f}x (chunk {headline['chunk']})")
        pal_cfg = pick("ratios_pallas_over_reference")
        if pal_cfg is not None:
            pallas = pal_cfg["ratios_pallas_over_reference"]
            headline.update(pallas_time_ratio=pallas["time"],
                            pallas_added_memory_ratio=pallas["added_memory"],
                            pallas_V=pal_cfg["V"], pallas_N=pal_cfg["N"],
                            pallas_targets={"time_ratio_max": 1.0, "added_memory_ratio_max": 0.05})
            head_cfg = pal_cfg
            figure = (f"pallas/reference time {pallas['time']:.2f}x, added memory "
                      f"{pallas['added_memory']:.3f}x")
        print(f"\nHEADLINE V={head_cfg['V']} N={head_cfg['N']} {head_cfg['dtype']}: {figure}")
    payload = {
        "benchmark": "fused_loss",
        "description": "weighted_softmax_xent forward+backward, reference vs chunked vs pallas",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "quick": args.quick,
        "settings": {"D": args.d, "dtypes": list(dtypes), "temperature": 0.05,
                     "valid_range": "(1, V)", "steps": args.steps, "rounds": args.rounds,
                     "chunks": list(args.chunks), "memory_budget_gib": args.memory_budget_gib,
                     "pallas": args.pallas},
        "counting": {"flops_per_nvd": FLOPS_PER_NVD, "input_passes": INPUT_PASSES,
                     "reference_logit_passes": REFERENCE_LOGIT_PASSES,
                     "model_flops_per_nvd": 6},
        "peaks": peaks or None,
        "machine": _common.machine_info(),
        "wall_s": time.time() - t_start,
        "headline": headline,
        "results": results,
    }
    _common.write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
