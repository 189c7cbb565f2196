"""Progress lines: the training loop's per-interval line and a stage counter for pipelines.

* :class:`Progress`: ``step 40/480 loss 5.1234 steps/s 12.3 ETA 0:00:36``. The rate is measured
  from the end of the first step of this process (which includes compilation) to now,

      rate = (step − s₁) / (t − t₁),    ETA = (total − step) / rate,

  where ``s₁`` is the first step finished by this process and ``t₁`` the time it finished, so
  neither the first compilation nor a resumed run's earlier steps distort it (the compilations
  of later batch shapes, see ``genrec_jax.data.packing``, are in the rate); until a second step
  has finished there is no rate (``?``).
* :class:`Stages`: ``[2/5] seed 1 done in 0:00:31 | elapsed 0:01:02 | ETA 0:01:33`` for
  multi-stage scripts (benchmarks, the comparison pipeline); ETA = elapsed / finished ×
  remaining, which is right for sequential stages and for stages run in parallel.

Every line is printed once, to stdout (flushed), by process 0 only (``enabled``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping


def format_seconds(seconds: float) -> str:
    """``H:MM:SS`` (hours unbounded); ``?`` for an unknown (non-finite) duration."""
    if not math.isfinite(seconds):
        return "?"
    total = int(round(max(seconds, 0.0)))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _emit(text: str, out) -> None:
    print(text, file=out or sys.stdout, flush=True)


class Progress:
    """The per-interval training line; see the module docstring for the rate and ETA."""

    def __init__(self, total_steps: int, start_step: int = 0, *, enabled: bool = True,
                 clock: Callable[[], float] = time.perf_counter, out=None):
        self.total = int(total_steps)
        self.start = int(start_step)
        self.enabled = enabled
        self._clock = clock
        self._out = out
        self._first: tuple[int, float] | None = None  # (s₁, t₁)

    def step_done(self, step: int) -> None:
        """Records that ``step`` (1-based count of finished steps) has just finished."""
        if self._first is None:
            self._first = (int(step), self._clock())

    def rate(self, step: int) -> float:
        """Steps per second after the first step (NaN before a second step finished)."""
        if self._first is None or step <= self._first[0]:
            return math.nan
        s1, t1 = self._first
        return (step - s1) / max(self._clock() - t1, 1e-9)

    def line(self, step: int, loss: float) -> str:
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else math.nan
        shown = f"{rate:.2f}" if math.isfinite(rate) else "?"
        return (f"step {step}/{self.total} loss {loss:.4f} steps/s {shown} "
                f"ETA {format_seconds(eta)}")

    def log(self, step: int, loss: float) -> str:
        text = self.line(step, loss)
        if self.enabled:
            _emit(text, self._out)
        return text


def start_line(*, start: int, total: int, batch: Mapping | None = None, mesh=None,
               describe: Mapping | str | None = None) -> str:
    """``train: dataset=simulator algo=asft | steps 0→480 | batch inputs 128×16 | 8 cpu
    devices (mesh data=8 model=1)``: what runs, the data per step and the devices."""
    parts = []
    if isinstance(describe, Mapping):
        text = " ".join(f"{k}={v}" for k, v in describe.items() if v is not None)
        if text:
            parts.append(text)
    elif describe:
        parts.append(str(describe))
    parts.append(f"steps {start}→{total}" + (f" (resumed at {start})" if start else ""))
    if batch:
        key = "inputs" if "inputs" in batch else next(iter(batch))
        shape = "×".join(str(d) for d in getattr(batch[key], "shape", ()))
        parts.append(f"batch {key} {shape}")
    if mesh is not None:
        devices = mesh.devices.flatten()
        axes = " ".join(f"{k}={v}" for k, v in dict(mesh.shape).items())
        plural = "s" if len(devices) > 1 else ""
        parts.append(f"{len(devices)} {devices[0].platform} device{plural} (mesh {axes})")
    return "train: " + " | ".join(parts)


class Stages:
    """Counts finished stages of a pipeline and prints a line per stage start and end.

        stages = Stages(["pretrain", "reward", "asft"], title="compare")
        with stages.stage("pretrain"):
            ...                       # prints "[1/3] pretrain ..." then "... done in ..."

    For stages run in parallel, call :meth:`done` when each finishes instead.
    """

    def __init__(self, total: int | list[str] | tuple[str, ...], title: str = "", *,
                 enabled: bool = True, clock: Callable[[], float] = time.perf_counter,
                 out=None):
        self.total = total if isinstance(total, int) else len(total)
        if self.total < 0:
            raise ValueError(f"Stages: total must be >= 0, got {self.total}")
        self.title = f"{title}: " if title else ""
        self.enabled = enabled
        self.finished = 0
        self._clock = clock
        self._out = out
        self._t0 = clock()
        self._lock = threading.Lock()  # done() may be called from worker threads

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def eta(self) -> float:
        """Seconds left: elapsed / finished × remaining (NaN before the first finish)."""
        if self.finished == 0:
            return math.nan
        return self.elapsed() / self.finished * max(self.total - self.finished, 0)

    def _print(self, text: str) -> str:
        if self.enabled:
            _emit(text, self._out)
        return text

    def begin(self, name: str) -> str:
        index = min(self.finished + 1, self.total) if self.total else self.finished + 1
        return self._print(f"{self.title}[{index}/{self.total}] {name} ... "
                           f"(elapsed {format_seconds(self.elapsed())}, "
                           f"ETA {format_seconds(self.eta())})")

    def done(self, name: str, seconds: float | None = None, note: str = "") -> str:
        """Marks one stage finished (``seconds``: its own duration, if known)."""
        took = f" in {format_seconds(seconds)}" if seconds is not None else ""
        extra = f" {note}" if note else ""
        with self._lock:
            self.finished += 1
            return self._print(f"{self.title}[{self.finished}/{self.total}] {name} done{took}"
                               f"{extra} | elapsed {format_seconds(self.elapsed())} | "
                               f"ETA {format_seconds(self.eta())}")

    @contextlib.contextmanager
    def stage(self, name: str):
        self.begin(name)
        t0 = self._clock()
        yield
        self.done(name, self._clock() - t0)
