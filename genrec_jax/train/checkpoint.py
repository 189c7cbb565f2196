"""Orbax checkpoints of a train state: model, optimizer, step, rng and data position.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact. Restores land on the shardings of a
target pytree, which may come from a different mesh than the one that saved.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


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
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

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
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(dict(meta or {}, step=int(step))))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, target, step: int | None = None):
        """Restores ``(state, meta)`` onto the shapes/shardings of ``target`` (arrays or
        ShapeDtypeStructs). ``step`` defaults to the latest."""
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else
            jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
