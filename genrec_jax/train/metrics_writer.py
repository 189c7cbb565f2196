"""Metrics sinks of a run: JSONL and TensorBoard event files.

``workdir/metrics.jsonl``: one JSON object per write, ``{"step": s, "train/loss": ...}``.
``workdir/tb/events.out.tfevents.*``: the same scalars as TensorBoard summaries (tensorboardX
writes the standard ``Event`` protocol buffer records, which TensorBoard reads):

    pip install -e .[viz] && tensorboard --logdir runs/

(the progress line lives in :mod:`genrec_jax.train.progress`; ``Progress`` is re-exported here
for older imports).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from genrec_jax.train.progress import Progress  # noqa: F401 (re-export)


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
