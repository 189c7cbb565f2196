"""The training loop shared by pretraining and post-training.

It feeds the batch of each global step (so a resumed run continues at the same data position;
the host prepares the next batch while the device runs the current step), stops on a non-finite
loss naming the step (before any checkpoint of the bad state is written, so the last good
checkpoint survives), checkpoints every N steps and logs metrics and progress.

Printed (process 0, ``verbose``): ``resuming from step N`` when a checkpoint is restored, one
start line (what runs, the batch shape, the devices), then one progress line every ``log_every``
steps with the loss, steps/s and an ETA measured after compilation
(:mod:`genrec_jax.train.progress`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from genrec_jax import sharding as shd
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.progress import Progress, start_line


class NonFiniteLossError(FloatingPointError):
    """Raised when a step produces a NaN or infinite loss."""


def resume(checkpointer: Checkpointer | None, state, *, verbose: bool = True):
    """Restores the newest readable checkpoint onto ``state``'s shardings (printing
    ``resuming from step N``), or returns ``state`` when there is none."""
    if checkpointer is None or checkpointer.latest_step is None:
        return state, {}
    state, meta = checkpointer.restore(state)
    if verbose and jax.process_index() == 0:
        step = int(jax.device_get(state["step"])) if "step" in state else meta.get("step")
        print(f"resuming from step {step} (checkpoint in {checkpointer.directory})", flush=True)
    return state, meta


def batch_signature(batch) -> tuple:
    """What a jitted step compiles for: every leaf's path, shape and dtype."""
    return tuple((jax.tree_util.keystr(path), np.shape(leaf), str(np.result_type(leaf)))
                 for path, leaf in jax.tree_util.tree_leaves_with_path(batch))


def run(*, step_fn: Callable, graphdef, state, batch_at: Callable[[int], dict], mesh,
        num_steps: int, frozen: Sequence = (), checkpointer: Checkpointer | None = None,
        writer: MetricWriter | None = None, log_every: int = 50, meta: dict | None = None,
        verbose: bool = True, describe=None, monitor=None):
    """Runs steps ``state["step"] .. num_steps − 1``; returns ``(state, last_metrics, timing)``.

    ``monitor`` (a :class:`genrec_jax.train.validation.EvalMonitor`) evaluates after the steps it
    is due at and may stop the run early; a stopped run is checkpointed at the step it stopped
    and trains no further when resumed. Its evaluation time is not part of ``step_seconds``.

    ``timing``: ``compile_seconds`` (the wall time of the steps that compiled: the first step
    of each batch shape, see ``genrec_jax.data.packing``), ``compiled_shapes`` (how many) and
    ``step_seconds`` (mean wall time of the other steps, including batch preparation, the
    per-step loss check and checkpoint writes). ``describe`` (a mapping or text) heads the
    start line; default: ``meta``.
    """
    if int(log_every) < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    start = int(jax.device_get(state["step"]))
    talk = verbose and jax.process_index() == 0
    progress = Progress(num_steps, start, enabled=talk)
    metrics = {}
    shapes = set()  # batch signatures seen: a new one means this step compiled
    ahead = None  # this step's host batch, prepared while the previous step ran
    compile_s = steady_s = 0.0
    steady_n = 0
    last = start
    for step in range(start, num_steps):
        if monitor is not None and monitor.stopped:
            break
        t_step = time.perf_counter()
        host_batch = ahead if ahead is not None else batch_at(step)
        if talk and step == start:
            print(start_line(start=start, total=num_steps, batch=host_batch, mesh=mesh,
                             describe=describe if describe is not None else meta), flush=True)
        signature = batch_signature(host_batch)
        batch = shd.shard_batch(host_batch, mesh)
        state, metrics = step_fn(graphdef, state, batch, *frozen)
        # The step runs asynchronously: prepare the next host batch while it does.
        ahead = batch_at(step + 1) if step + 1 < num_steps else None
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss {loss} at step {step + 1}; the run stopped and the last good "
                f"checkpoint (step {checkpointer.latest_step if checkpointer else None}) is kept")
        done = step + 1
        progress.step_done(done)
        last = done
        stop = False
        t_eval = 0.0
        if monitor is not None:
            t0 = time.perf_counter()
            stop = monitor(done, state, last_step=num_steps)
            t_eval = time.perf_counter() - t0
        if checkpointer is not None:
            checkpointer.save(done, state, dict(meta or {}, data_step=done),
                              force=done == num_steps or stop)
        if done % log_every == 0 or done == num_steps:
            if writer is not None:
                writer.write(done, jax.device_get(metrics), prefix="train/")
            progress.log(done, loss)
        seconds = time.perf_counter() - t_step - t_eval
        if signature in shapes:
            steady_s, steady_n = steady_s + seconds, steady_n + 1
        else:
            shapes.add(signature)
            compile_s += seconds
        if stop:
            if talk:
                print(f"early stop at step {done}: no better {monitor.metric} for "
                      f"{monitor.patience} evaluations (best at step {monitor.best_step})",
                      flush=True)
            break
    timing = {"compile_seconds": compile_s, "compiled_shapes": len(shapes),
              "step_seconds": steady_s / steady_n if steady_n else float("nan"),
              "steps_done": last}
    return state, metrics, timing
