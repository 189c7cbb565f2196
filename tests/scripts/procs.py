"""Helpers for tests that run the launchers in subprocesses (multi-host, kill-and-resume).

Each subprocess gets its own CPU device count (``XLA_FLAGS`` replaced, not appended to the
8 devices that ``tests/conftest.py`` forces on the test process) and a hard timeout.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRETRAIN_CONFIG = "experiments/configs/pretrain.py"


def cpu_env(devices: int, **extra: str) -> dict[str, str]:
    """The test environment with ``devices`` forced CPU devices and gloo CPU collectives."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    # Cross-process collectives on CPU (the default in recent JAX; explicit for older ones).
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                        env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pretrain_cmd(overrides: str, workdir, *extra_flags: str) -> list[str]:
    """``python -m experiments.pretrain --config=...:<overrides> --workdir=W [flags]``."""
    return [sys.executable, "-m", "experiments.pretrain",
            f"--config={PRETRAIN_CONFIG}:{overrides}", f"--workdir={workdir}", *extra_flags]


def start(cmd: list[str], env: dict[str, str], log_path) -> subprocess.Popen:
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log_file = log  # closed by finish()
    proc.log_path = pathlib.Path(log_path)
    return proc


def finish(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Waits for every process; on timeout kills all of them and raises with their logs."""
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise AssertionError(f"subprocess timed out after {timeout} s:\n" + logs(procs))
    finally:
        for proc in procs:
            proc.log_file.close()
    return codes


def logs(procs, tail: int = 3000) -> str:
    out = []
    for proc in procs:
        text = proc.log_path.read_text(errors="replace")
        out.append(f"--- {proc.log_path.name} (exit {proc.poll()}) ---\n{text[-tail:]}")
    return "\n".join(out)


def read_metrics(workdir) -> list[dict]:
    """The lines of ``workdir/metrics.jsonl`` in order."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_losses(records: list[dict]) -> dict[int, float]:
    """``{step: train/loss}`` (the last record of each step wins)."""
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
