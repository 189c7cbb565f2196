"""Orbax checkpoints of a train state: model, optimizer, step, rng and data position.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact. Restores land on the shardings of a
target pytree, which may come from a different mesh than the one that saved.

A checkpoint damaged later (a truncated or deleted file inside ``checkpoints/<step>/``) is
reported in one warning line and skipped: :meth:`Checkpointer.restore` falls back to the newest
readable step; when the resumed run saves such a step again, the unreadable folder is first
moved to ``checkpoints.unreadable/<step>`` (never deleted). When no step is readable it raises
:class:`CheckpointError`, naming the folder to remove.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp

_log = logging.getLogger("genrec_jax")


class CheckpointError(RuntimeError):
    """No checkpoint of a folder can be restored (its message says which folder to remove)."""


def _silence_closed_loop_callbacks() -> None:
    """When a restore fails, the other reads of that restore are left behind, and Python
    reports each of them with a traceback (dozens of them) after the failure itself was
    reported by :meth:`Checkpointer.restore`:

    - reads still in flight finish on TensorStore threads and try to post their results to
      Orbax's already closed asyncio loop: an "unraisable" ``RuntimeError('Event loop is
      closed')``;
    - reads that failed too but whose task nobody awaited any more are logged by asyncio, when
      the task is garbage-collected, as "Task exception was never retrieved".

    Both are harmless, so this installs (once per process) an unraisable hook that drops exactly
    the first and passes every other unraisable on, and a filter on the ``asyncio`` logger that
    drops exactly the second for Orbax's deserialisation tasks."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._drops_closed_loop = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_drop_orphaned_orbax_reads)


def _drop_orphaned_orbax_reads(record: logging.LogRecord) -> bool:
    """False (drop) for asyncio's report of a never-awaited Orbax deserialisation task."""
    message = record.getMessage()
    return not (message.startswith("Task exception was never retrieved")
                and "orbax/checkpoint" in message and "async_deserialize" in message)


def _reason(err: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, at most ``limit`` characters."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[:limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def abstract_like(state, shardings=None):
    """ShapeDtypeStructs of ``state`` carrying ``shardings`` (default: the arrays' own)."""
    if shardings is None:
        shardings = jax.tree.map(lambda x: x.sharding, state)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)


class Checkpointer:
    """Saves every ``every`` steps (and on demand), keeps the last ``keep``."""

    def __init__(self, directory: str | os.PathLike, *, every: int = 1000, keep: int = 3):
        if every < 1 or keep < 1:
            raise ValueError(f"checkpoint every={every} and keep={keep} must be >= 1")
        self.every = every
        self.keep = keep
        self._unreadable: set[int] = set()  # steps restore() found unreadable
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = self._open()

    def _open(self):
        options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True)
        return ocp.CheckpointManager(self.directory, options=options)

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict[str, Any] | None = None, *,
             force: bool = False) -> bool:
        """Saves when ``step`` is a multiple of ``every`` or ``force``; returns whether it did."""
        if not force and step % self.every:
            return False
        if step in self._manager.all_steps():
            if step not in self._unreadable:
                return False
            self._set_aside([step])
            self._unreadable.discard(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(dict(meta or {}, step=int(step))))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def _restore_step(self, abstract, step: int):
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def restore(self, target, step: int | None = None):
        """Restores ``(state, meta)`` onto the shapes/shardings of ``target`` (arrays or
        ShapeDtypeStructs).

        ``step=None``: the newest *readable* checkpoint; newer unreadable ones are reported in
        one warning line (steps, reasons), left in place (never deleted) and moved to
        ``<directory>.unreadable/<step>`` when :meth:`save` writes that step again.
        Raises ``FileNotFoundError`` when there is no checkpoint, :class:`CheckpointError` when
        none (or the given ``step``) can be read.
        """
        abstract = jax.tree.map(
            lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else
            jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        _silence_closed_loop_callbacks()  # before the first read: its failure is reported here
        if step is not None:
            try:
                return self._restore_step(abstract, step)
            except Exception as err:  # noqa: BLE001 (any Orbax/TensorStore failure)
                raise CheckpointError(
                    f"checkpoint step {step} in {self.directory} is unreadable "
                    f"({_reason(err)})") from None
        failed = {}
        for candidate in steps:
            try:
                restored = self._restore_step(abstract, candidate)
            except Exception as err:  # noqa: BLE001 (any Orbax/TensorStore failure)
                failed[candidate] = _reason(err)
                continue
            if failed:
                self._unreadable.update(failed)
                which = ", ".join(map(str, failed))
                why = "; ".join(f"{s}: {r}" for s, r in failed.items())
                _log.warning("unreadable checkpoint step%s %s in %s (%s); restored step %d "
                             "instead", "s" if len(failed) > 1 else "", which, self.directory,
                             why, candidate)
            return restored
        why = "; ".join(f"step {s}: {r}" for s, r in failed.items())
        raise CheckpointError(
            f"no readable checkpoint in {self.directory} ({why}). Remove {self.directory} (or "
            "pass --overwrite to the launcher) to start the run again.")

    def _set_aside(self, steps: list[int]) -> str:
        """Moves unreadable step folders to ``<directory>.unreadable/`` (process 0) and reopens
        the manager, so the resumed run can save those steps afresh. Returns that folder."""
        dest = self.directory.rstrip(os.sep) + ".unreadable"
        if jax.process_index() == 0:
            self._manager.close()
            for step in steps:
                src = os.path.join(self.directory, str(step))
                if os.path.exists(src):
                    os.makedirs(dest, exist_ok=True)
                    target = os.path.join(dest, str(step))
                    if os.path.exists(target):
                        shutil.rmtree(target)
                    shutil.move(src, target)
        self._manager = self._open()
        return dest

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
