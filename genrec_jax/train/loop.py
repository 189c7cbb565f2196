"""The training loop shared by pretraining and post-training.

It feeds the batch of each global step (so a resumed run continues at the same data position),
stops on a non-finite loss naming the step (before any checkpoint of the bad state is written, so
the last good checkpoint survives), checkpoints every N steps and logs metrics and progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import jax

from genrec_jax import sharding as shd
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.metrics_writer import MetricWriter, Progress


class NonFiniteLossError(FloatingPointError):
    """Raised when a step produces a NaN or infinite loss."""


def resume(checkpointer: Checkpointer | None, state):
    """Restores the latest checkpoint onto ``state``'s shardings, or returns ``state``."""
    if checkpointer is None or checkpointer.latest_step is None:
        return state, {}
    return checkpointer.restore(state)


def run(*, step_fn: Callable, graphdef, state, batch_at: Callable[[int], dict], mesh,
        num_steps: int, frozen: Sequence = (), checkpointer: Checkpointer | None = None,
        writer: MetricWriter | None = None, log_every: int = 50, meta: dict | None = None,
        verbose: bool = True):
    """Runs steps ``state["step"] .. num_steps − 1``; returns ``(state, last_metrics, timing)``.

    ``timing``: ``first_step_seconds`` (includes compilation) and ``step_seconds`` (mean wall
    time of the later steps, including batch preparation and the per-step loss check).
    """
    start = int(jax.device_get(state["step"]))
    progress = Progress(num_steps, start)
    metrics = {}
    t_start = time.perf_counter()
    t_first = None
    for step in range(start, num_steps):
        batch = shd.shard_batch(batch_at(step), mesh)
        state, metrics = step_fn(graphdef, state, batch, *frozen)
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss {loss} at step {step + 1}; the run stopped and the last good "
                f"checkpoint (step {checkpointer.latest_step if checkpointer else None}) is kept")
        done = step + 1
        if t_first is None:
            t_first = time.perf_counter()
        if checkpointer is not None:
            checkpointer.save(done, state, dict(meta or {}, data_step=done),
                              force=done == num_steps)
        if done % log_every == 0 or done == num_steps:
            if writer is not None:
                writer.write(done, jax.device_get(metrics), prefix="train/")
            if verbose:
                progress.log(done, loss)
    t_end = time.perf_counter()
    later = num_steps - start - 1
    timing = {"first_step_seconds": (t_first - t_start) if t_first else 0.0,
              "step_seconds": (t_end - t_first) / later if later > 0 else float("nan")}
    return state, metrics, timing
