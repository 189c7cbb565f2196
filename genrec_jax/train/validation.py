"""Periodic evaluation during training: a learning curve, early stopping and the best state.

    monitor = EvalMonitor(evaluate, every=8, metric="ndcg@10", patience=3, curve_path=P,
                          best_dir=D)
    state, ... = loop.run(..., monitor=monitor)     # evaluates every 8 steps, may stop early
    monitor.best_step, monitor.best_value           # the selected evaluation

``evaluate(params) -> {metric: float}`` runs every ``every`` optimizer steps (and after the last
step). Each evaluation appends one line ``{"step", "epoch", **metrics}`` to ``curve_path`` (JSONL)
and is written to the run's :class:`~genrec_jax.train.metrics_writer.MetricWriter` under
``prefix``. The *best* evaluation is the one with the highest ``metric`` (the earliest on ties);
with ``best_dir`` the whole train state of that evaluation is saved there (an Orbax checkpoint,
atomic, one kept), so the selected model survives the end of training and a killed run.
``patience = P > 0`` stops training after P evaluations in a row without a strict improvement
of the best value (early stopping); ``P = 0`` never stops early.

Resuming: a monitor built for a run that resumes at step ``s`` reads its curve back, drops the
lines after ``s`` (training is deterministic in the step, so they are recomputed) and restores
the best value and the patience count from the rest; :attr:`stopped` is then already True when
the run had stopped early, and :func:`genrec_jax.train.loop.run` trains no further.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping

from genrec_jax.train.checkpoint import Checkpointer

__all__ = ["BEST_DIR", "CURVE_FILE", "EvalMonitor", "monitor_from_config", "read_curve",
           "steps_between_evals"]


def steps_between_evals(every_epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps between evaluations for ``every_epochs`` (a fraction of an epoch is fine;
    at least 1 step); 0 when ``every_epochs <= 0`` (no periodic evaluation)."""
    if float(every_epochs) <= 0:
        return 0
    return max(1, round(float(every_epochs) * int(steps_per_epoch)))


def read_curve(path: str | os.PathLike) -> list[dict]:
    """The evaluations of a curve file (``[]`` when it does not exist); ValueError naming the
    file and line for a line that is not a JSON object with a ``step``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
            if not isinstance(record, dict) or "step" not in record:
                raise ValueError(f"{path}, line {number}: expected an object with a 'step'")
            out.append(record)
    return out


class EvalMonitor:
    """Evaluates every ``every`` steps, keeps the curve and the best state, stops early.

    Args:
      evaluate: ``params -> {name: float}``; must return ``metric``.
      every: steps between evaluations (≥ 1).
      metric: the key of ``evaluate``'s result that is maximised.
      patience: evaluations without improvement before stopping (0 = never stop early).
      curve_path: JSONL file of the curve (None: kept in memory only).
      best_dir: folder for the best train state (None: not saved).
      steps_per_epoch: for the ``epoch`` column.
      writer, prefix: metric sink and key prefix (e.g. ``"valid/"``).
      start_step: the step the run starts (or resumes) at.
      enabled: whether this process writes files (process 0).
    """

    def __init__(self, evaluate: Callable[[object], Mapping[str, float]], *, every: int,
                 metric: str, patience: int = 0, curve_path: str | None = None,
                 best_dir: str | None = None, steps_per_epoch: int = 1, writer=None,
                 prefix: str = "valid/", start_step: int = 0, enabled: bool = True):
        if int(every) < 1:
            raise ValueError(f"evaluation interval must be >= 1 step, got {every}")
        if int(patience) < 0:
            raise ValueError(f"patience must be >= 0 evaluations, got {patience}")
        self.evaluate = evaluate
        self.every = int(every)
        self.metric = str(metric)
        self.patience = int(patience)
        self.curve_path = curve_path
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.writer = writer
        self.prefix = prefix
        self.enabled = enabled
        self._best_ckpt = (Checkpointer(best_dir, every=1, keep=1)
                           if best_dir is not None else None)
        self.curve: list[dict] = []
        self.best_value = -math.inf
        self.best_step: int | None = None
        self.bad_evals = 0
        if curve_path is not None:
            kept = [r for r in read_curve(curve_path) if int(r["step"]) <= int(start_step)]
            if enabled:
                self._rewrite(kept)
            for record in kept:
                self._account(record)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _rewrite(self, records: list[dict]) -> None:
        folder = os.path.dirname(os.path.abspath(self.curve_path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{self.curve_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.curve_path)

    def _account(self, record: dict) -> bool:
        """Adds ``record`` to the curve; True when it is a new best."""
        self.curve.append(record)
        value = record.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            value = -math.inf
        if float(value) > self.best_value or self.best_step is None:
            improved = float(value) > self.best_value
            self.best_value = float(value)
            self.best_step = int(record["step"])
            self.bad_evals = 0 if improved else self.bad_evals + 1
            return True
        self.bad_evals += 1
        return False

    @property
    def stopped(self) -> bool:
        """Whether the patience is used up (training should stop)."""
        return self.patience > 0 and self.bad_evals >= self.patience

    def due(self, step: int, last_step: int) -> bool:
        """Whether step ``step`` (1-based count of steps done) is evaluated."""
        return step % self.every == 0 or step == last_step

    # -- the hook ----------------------------------------------------------------------------

    def __call__(self, step: int, state, *, last_step: int) -> bool:
        """Evaluates after step ``step`` when due (never once stopped); returns whether
        training should stop."""
        if (self.stopped or not self.due(step, last_step)
                or any(int(r["step"]) == step for r in self.curve)):
            return self.stopped
        if self.metric not in (values := self.evaluate(state["params"])):
            raise KeyError(f"the validation metric {self.metric!r} is not among the evaluated "
                           f"ones: {', '.join(sorted(values))}")
        record = {"step": int(step), "epoch": step / self.steps_per_epoch,
                  **{k: float(v) for k, v in values.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        if self.enabled and self.curve_path is not None:
            with open(self.curve_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            self.writer.write(step, {k: v for k, v in record.items()
                                     if k not in ("step", "epoch") and math.isfinite(v)},
                              prefix=self.prefix)
        if self._account(record) and self._best_ckpt is not None:
            self._best_ckpt.save(step, state, {"metric": self.metric, "value": self.best_value},
                                 force=True)
        return self.stopped

    def summary(self) -> dict:
        """``{"metric", "best_step", "best_value", "evaluations", "stopped_early"}``."""
        return {"metric": self.metric, "best_step": self.best_step,
                "best_value": self.best_value if self.best_step is not None else None,
                "evaluations": len(self.curve), "stopped_early": self.stopped}

    def restore_best(self, target):
        """The saved best train state, restored onto ``target``'s shapes and shardings."""
        if self._best_ckpt is None or self._best_ckpt.latest_step is None:
            raise FileNotFoundError("no best state was saved (best_dir unset or nothing "
                                    "evaluated)")
        state, _ = self._best_ckpt.restore(target, self.best_step)
        return state

    def close(self) -> None:
        if self._best_ckpt is not None:
            self._best_ckpt.close()



CURVE_FILE = "eval_curve.jsonl"
BEST_DIR = "best"
SPLITS = ("validation", "test")


def monitor_from_config(eval_cfg, evaluate_on: Callable[[str], Callable], *, workdir: str,
                        steps_per_epoch: int, writer=None, start_step: int = 0,
                        validation_available: bool, enabled: bool = True):
    """The :class:`EvalMonitor` an experiment's ``eval`` block asks for, or None.

    ``eval`` keys: ``every_epochs`` (0 = no periodic evaluation) or ``every_steps`` (> 0: in
    optimizer steps, taking precedence), ``curve_split``
    (``"validation"`` or ``"test"``: the split of the curve), ``metric`` (maximised),
    ``patience`` (evaluations; 0 = never stop early) and ``keep_best`` (finish with the state of
    the best evaluation, saved in ``workdir/best``). Early stopping and ``keep_best`` select on
    the curve, so they need ``curve_split="validation"`` (never select on the test set).
    ``evaluate_on(split)`` returns the ``params -> metrics`` function of that split. The curve is
    ``workdir/eval_curve.jsonl``.
    """
    every = (int(eval_cfg.get("every_steps", 0)) or
             steps_between_evals(float(eval_cfg.get("every_epochs", 0.0)), steps_per_epoch))
    patience = int(eval_cfg.get("patience", 0))
    keep_best = bool(eval_cfg.get("keep_best", False))
    split = str(eval_cfg.get("curve_split", "validation"))
    if split not in SPLITS:
        raise ValueError(f"eval.curve_split must be one of {SPLITS}, got {split!r}")
    if not every:
        if patience or keep_best:
            raise ValueError("eval.patience / eval.keep_best need periodic evaluation: set "
                             "eval.every_epochs > 0")
        return None
    if split == "test" and (patience or keep_best):
        raise ValueError("eval.patience / eval.keep_best select a model on the curve; with "
                         "eval.curve_split=test that would select on the test set. Use "
                         "curve_split=validation (and data.validation=True)")
    if split == "validation" and not validation_available:
        raise ValueError("eval.curve_split=validation needs data.validation=True (a validation "
                         "event held out before each user's test event)")
    return EvalMonitor(evaluate_on(split), every=every, metric=str(eval_cfg.get("metric",
                                                                                 "ndcg@10")),
                       patience=patience, curve_path=os.path.join(workdir, CURVE_FILE),
                       best_dir=os.path.join(workdir, BEST_DIR) if keep_best else None,
                       steps_per_epoch=steps_per_epoch, writer=writer,
                       prefix=f"{split}/", start_step=start_step, enabled=enabled)
