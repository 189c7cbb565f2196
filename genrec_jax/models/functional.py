"""Models as pure functions of their parameters.

A model is split once into a static graph definition and a pytree of parameters
(``graphdef, params = nnx.split(model)``, parameters as a pure dict); jitted code re-binds them
with :func:`bind`, so a training step or an evaluation is a pure function of
``(graphdef, params, batch)``. Evaluation and training both use it; it lives with the models so
that evaluation never depends on the trainer.
"""

from __future__ import annotations

from flax import nnx

__all__ = ["bind"]


def bind(graphdef, params) -> nnx.Module:
    """The module for ``params`` (inside jit this only re-links arrays, no copy)."""
    return nnx.merge(graphdef, params)
