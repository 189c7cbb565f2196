"""Small helpers shared by the benchmark scripts.

* timing with compilation separated from the steady-state step time;
* resident-memory readings of the current process (VmRSS, peak VmHWM, peak reset);
* running one measurement in a fresh subprocess and reading back its JSON result;
* writing results as JSON;
* stage lines while a benchmark runs (:func:`stages`).

Nothing here imports JAX at module import time, so a parent process that only orchestrates
subprocesses stays small.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from genrec_jax.io import write_json as _write_json

GIB = 1024 ** 3
MIB = 1024 ** 2


# ----------------------------------------------------------------------------------------------
# Memory.
# ----------------------------------------------------------------------------------------------

def _proc_status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size of this process (bytes)."""
    kib = _proc_status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return peak_rss_bytes()  # no /proc: best available figure


def peak_rss_bytes() -> int:
    """Peak resident set size since start or since the last :func:`reset_peak_rss` (bytes)."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (Linux >= 4.0, ``/proc/self/clear_refs``).

    Returns False where unsupported; the peak then counts from process start.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Collects garbage and hands freed heap pages back to the OS (glibc ``malloc_trim``).

    Call before taking an RSS baseline, so that memory freed earlier (temporaries of input
    creation, the compiler's heap) neither inflates the baseline nor gets silently reused later.
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# ----------------------------------------------------------------------------------------------
# Timing.
# ----------------------------------------------------------------------------------------------

def compile_timed(jitted: Callable, *args) -> Tuple[Callable, float]:
    """Ahead-of-time lowers and compiles ``jitted`` for ``args``; returns (compiled, seconds)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_steps(fn: Callable, args: Sequence[Any], steps: int,
               warmup: int = 1) -> Tuple[List[float], List[float]]:
    """Runs ``fn(*args)`` ``warmup`` times, then ``steps`` timed times (blocking on results).

    Returns ``(wall_seconds, cpu_seconds)`` per step. CPU time (all threads of this process) is
    far less sensitive than wall time to other processes competing for the cores.
    """
    import jax  # noqa: PLC0415

    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------------------------
# Subprocesses and output.
# ----------------------------------------------------------------------------------------------

def run_worker(script: str, spec: Dict[str, Any], timeout: float,
               env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Runs ``python script --worker=<json spec>`` in a fresh process; returns its JSON result.

    The worker must print its result as one JSON object on the last line of stdout. Failures
    (non-zero exit, timeout, unparsable output) come back as ``{"error": ...}``.
    """
    cmd = [sys.executable, script, "--worker=" + json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": "unparsable worker output: " + lines[-1][:200]}


def config_arg(dataset: str, data_dir: str = "", overrides: str = "", **keys) -> str:
    """A config string ``dataset=...,k=v,...[,data_dir=...][,overrides]`` for a launcher
    config's ``get_config`` (the benchmarks' ``--dataset/--data_dir/--overrides`` flags)."""
    parts = [f"dataset={dataset}", *(f"{k}={v}" for k, v in keys.items())]
    if data_dir:
        parts.append(f"data_dir={data_dir}")
    if overrides:
        parts.append(overrides)
    return ",".join(parts)


def stages(total: int, title: str, *, stderr: bool = False):
    """A :class:`genrec_jax.train.progress.Stages` printing ``title: [k/N] name done in ... |
    elapsed ... | ETA ...`` lines (to stderr when stdout carries the result)."""
    from genrec_jax.train.progress import Stages  # noqa: PLC0415 (no JAX import: plain Python)

    return Stages(total, title, out=sys.stderr if stderr else None)


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


# Benchmark results keep their key order and are strict JSON (NaN/inf written as null).
write_json = functools.partial(_write_json, sort_keys=False, nonfinite_as_null=True)
