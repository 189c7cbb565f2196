"""Metrics sinks of a run: JSONL, TensorBoard event files and a progress line."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping

_log = logging.getLogger("genrec_jax")


def _scalar(value) -> float:
    return float(value.item() if hasattr(value, "item") else value)


class MetricWriter:
    """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl`` and writes the same
    scalars as TensorBoard events under ``workdir/tb``. Only process 0 writes."""

    def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True,
                 enabled: bool = True):
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # local import: optional at import time

            self._tb = SummaryWriter(os.path.join(workdir, "tb"), flush_secs=10)

    def write(self, step: int, metrics: Mapping[str, object], prefix: str = "") -> None:
        if not self.enabled:
            return
        scalars = {f"{prefix}{k}": _scalar(v) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key.replace("@", "_at_"), value, int(step))

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


class Progress:
    """Formats ``step 40/480 loss 5.1234 steps/s 12.3 ETA 0:00:36`` lines."""

    def __init__(self, total_steps: int, start_step: int = 0):
        self.total = total_steps
        self._t0 = time.perf_counter()
        self._s0 = start_step

    def line(self, step: int, loss: float) -> str:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = (step - self._s0) / elapsed
        remaining = (self.total - step) / rate if rate > 0 else math.inf
        eta = "?" if not math.isfinite(remaining) else time.strftime(
            "%H:%M:%S", time.gmtime(remaining))
        return f"step {step}/{self.total} loss {loss:.4f} steps/s {rate:.2f} ETA {eta}"

    def log(self, step: int, loss: float) -> str:
        text = self.line(step, loss)
        _log.info(text)
        print(text, flush=True)
        return text
