"""Benchmark: full-catalogue weighted softmax cross-entropy, reference vs chunked (fused) path.

Measures forward+backward (``jax.value_and_grad`` w.r.t. ``h`` and ``items``) of
``genrec_jax.kernels.weighted_softmax_xent`` for V in {10k, 100k, 1M}, N in {1024, 4096}, D=64,
float32, L2-normalised vectors, temperature 0.05, row 0 excluded (``valid_range=(1, V)``):

* step time: median of ``--steps`` steps after one warm-up step; compile time reported apart;
* added memory: every variant runs in its own subprocess, which records its RSS after creating
  the inputs and its peak RSS while running (the peak mark is reset after compilation where the
  kernel allows it); ``added_bytes = peak - rss_after_inputs``.

Variants are run interleaved (reference, chunk 4096, chunk 8192, then again) for ``--rounds``
rounds, since this machine's speed drifts; each variant's time is the best of its per-round
medians. The reference is skipped, and said so in the JSON, where its estimated footprint
(3 x N x V x 4 bytes: logits, softmax, logit gradient) exceeds ``--memory-budget-gib``. The chunked
figure reported is the faster of the chunk sizes tried (all are recorded).

Usage::

    python benchmarks/fused_loss.py --out=/tmp/fused_loss.json           # full run, minutes
    python benchmarks/fused_loss.py --quick --out=/tmp/fused_quick.json  # smoke run, seconds

Prints one headline figure: at V=100k, N=4096 the chunked/reference ratios of added memory and
step time (and pallas/reference with ``--pallas``). On an accelerator, memory is read from the
device allocator's counters (``bytes_in_use`` after the inputs, ``peak_bytes_in_use``) instead of
the process RSS, and each worker also returns fixed random projections of its gradients, so the
JSON's ``parity_vs_reference`` shows how closely each path agrees with the reference.
"""
from __future__ import annotations

import argparse
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

def worker(spec):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from genrec_jax.kernels import weighted_softmax_xent  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    n, v, d = spec["N"], spec["V"], spec["D"]
    rng = np.random.default_rng(spec.get("seed", 0))

    def unit_rows(rows):
        x = rng.standard_normal((rows, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return jnp.asarray(x)

    # Inputs built in numpy (no device-side temporaries left behind), then freed memory released,
    # so the RSS baseline holds the inputs and nothing else.
    h, items = unit_rows(n), unit_rows(v)
    targets = jnp.asarray(rng.integers(1, v, size=n, dtype=np.int32))
    weights = jnp.asarray(rng.uniform(0.0, 2.0, size=n).astype(np.float32))
    jax.block_until_ready((h, items, targets, weights))
    device_memory = jax.default_backend() != "cpu"
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
    projections = [float(jnp.vdot(g, jnp.asarray(probe.standard_normal(g.shape, np.float32))))
                   for g in (dh, ditems)]
    return {
        "impl": spec["impl"], "chunk": spec.get("chunk"), "V": v, "N": n, "D": d,
        "compile_s": compile_s, "step_times_s": times, "median_s": _common.median(times),
        "step_cpu_times_s": cpu_times, "median_cpu_s": _common.median(cpu_times),
        "rss_after_inputs_bytes": rss_inputs, "rss_after_compile_bytes": rss_compiled,
        "peak_rss_bytes": peak, "peak_reset": reset,
        "added_bytes": peak - rss_inputs, "added_after_compile_bytes": peak - rss_compiled,
        "loss": float(value), "finite": finite, "grad_projections": projections,
        "jax_version": jax.__version__, "backend": jax.default_backend(),
        "memory": "device allocator" if device_memory else "process RSS",
    }


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
    return {
        "time_s": best["median_s"],
        "cpu_time_s": min(r["median_cpu_s"] for r in ok),
        "compile_s": min(r["compile_s"] for r in ok),
        "added_bytes": max(r["added_bytes"] for r in ok),
        "added_after_compile_bytes": max(r["added_after_compile_bytes"] for r in ok),
        "finite": all(r["finite"] for r in ok),
        "loss": best["loss"],
        "grad_projections": best.get("grad_projections"),
        "runs": runs,
    }


def run_config(v, n, args):
    d = args.d
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
            spec = {"impl": impl, "chunk": chunk, "V": v, "N": n, "D": d, "steps": steps,
                    "warmup": 1, "seed": 0}
            t0 = time.time()
            res = _common.run_worker(os.path.abspath(__file__), spec, timeout=timeout)
            label = impl if chunk is None else f"{impl}[{chunk}]"
            if "error" in res:
                print(f"  V={v} N={n} {label} round {r}: ERROR {res['error']}", flush=True)
            else:
                print(f"  V={v} N={n} {label:16s} round {r}: step {res['median_s']:.3f} s "
                      f"compile {res['compile_s']:.2f} s "
                      f"added {res['added_bytes'] / _common.MIB:.0f} MiB "
                      f"({time.time() - t0:.0f} s wall)", flush=True)
            runs[(impl, chunk)].append(res)
    out = {"V": v, "N": n, "D": d, "dtype": "float32", "steps": steps, "rounds": rounds,
           "reference_estimated_bytes": est}
    if ("reference", None) in runs:
        out["reference"] = _summarise(runs[("reference", None)])
    else:
        out["reference"] = {"skipped": True,
                            "reason": f"estimated {est / _common.GIB:.1f} GiB > memory budget "
                                      f"{args.memory_budget_gib:g} GiB"}
    per_chunk = {str(c): _summarise(runs[("chunked", c)]) for c in args.chunks}
    good = {c: s for c, s in per_chunk.items() if "error" not in s}
    chunked = {"per_chunk": per_chunk}
    if good:
        best_c = min(good, key=lambda c: good[c]["time_s"])
        chunked.update(best_chunk=int(best_c), time_s=good[best_c]["time_s"],
                       cpu_time_s=good[best_c]["cpu_time_s"],
                       compile_s=good[best_c]["compile_s"], added_bytes=good[best_c]["added_bytes"],
                       added_after_compile_bytes=good[best_c]["added_after_compile_bytes"],
                       finite=good[best_c]["finite"])
    out["chunked"] = chunked
    if args.pallas:
        out["pallas"] = _summarise(runs[("pallas", None)])
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


def _fmt_row(res):
    ref, ch = res["reference"], res["chunked"]
    mib = _common.MIB
    ref_t = f"{ref['time_s']:.3f}" if "time_s" in ref else "skip"
    ref_m = f"{ref['added_bytes'] / mib:.0f}" if "added_bytes" in ref else "skip"
    ch_t = f"{ch['time_s']:.3f}" if "time_s" in ch else "err"
    ch_m = f"{ch['added_bytes'] / mib:.0f}" if "added_bytes" in ch else "err"
    ratios = res.get("ratios_chunked_over_reference")
    rt = f"{ratios['time']:.2f}" if ratios else "-"
    rc = f"{ratios['cpu_time']:.2f}" if ratios else "-"
    rm = f"{ratios['added_memory']:.3f}" if ratios else "-"
    row = (f"{res['V']:>9d} {res['N']:>6d} | {ref_t:>9s} {ref_m:>8s} | {ch_t:>9s} {ch_m:>8s} "
           f"{str(ch.get('best_chunk', '-')):>6s} | {rt:>6s} {rc:>6s} {rm:>7s}")
    pal = res.get("pallas")
    if pal is not None:
        pal_t = f"{pal['time_s']:.4f}" if "time_s" in pal else "err"
        pal_m = f"{pal['added_bytes'] / mib:.0f}" if "added_bytes" in pal else "err"
        row += f" | pallas {pal_t} s {pal_m} MiB"
    return row


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

    t_start = time.time()
    results = []
    stages = _common.stages(len(vs) * len(ns), "fused_loss")
    for v in vs:
        for n in ns:
            with stages.stage(f"V={v} N={n} D={args.d}"):
                results.append(run_config(v, n, args))

    print("\n        V      N | ref s/step  ref MiB | chk s/step  chk MiB  chunk |"
          " time    cpu     mem")
    print("                  |    (wall)    added |     (wall)    added        |"
          " (chunked / reference)")
    for res in results:
        print(_fmt_row(res))

    head_cfg = next((r for r in results if (r["V"], r["N"]) == HEADLINE
                     and "ratios_chunked_over_reference" in r), None)
    if head_cfg is None:  # e.g. --quick: the largest configuration with both paths
        both = [r for r in results if "ratios_chunked_over_reference" in r]
        head_cfg = max(both, key=lambda r: r["V"] * r["N"]) if both else None
    headline = None
    if head_cfg is not None:
        ratios = head_cfg["ratios_chunked_over_reference"]
        headline = {"V": head_cfg["V"], "N": head_cfg["N"],
                    "added_memory_ratio": ratios["added_memory"], "time_ratio": ratios["time"],
                    "cpu_time_ratio": ratios["cpu_time"],
                    "chunk": head_cfg["chunked"].get("best_chunk"),
                    "targets": {"added_memory_ratio_max": 0.1, "time_ratio_max": 1.1}}
        print(f"\nHEADLINE V={headline['V']} N={headline['N']}: chunked/reference added memory "
              f"{headline['added_memory_ratio']:.3f}x, time {headline['time_ratio']:.2f}x "
              f"(CPU time {headline['cpu_time_ratio']:.2f}x, chunk {headline['chunk']})")
        pallas = head_cfg.get("ratios_pallas_over_reference")
        if pallas:
            headline["pallas_time_ratio"] = pallas["time"]
            headline["pallas_added_memory_ratio"] = pallas["added_memory"]
            print(f"HEADLINE pallas/reference: added memory {pallas['added_memory']:.3f}x, "
                  f"time {pallas['time']:.2f}x")
    payload = {
        "benchmark": "fused_loss",
        "description": "weighted_softmax_xent forward+backward, reference vs chunked",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "quick": args.quick,
        "settings": {"D": args.d, "dtype": "float32", "temperature": 0.05,
                     "valid_range": "(1, V)", "steps": args.steps, "rounds": args.rounds,
                     "chunks": list(args.chunks), "memory_budget_gib": args.memory_budget_gib,
                     "pallas": args.pallas},
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
