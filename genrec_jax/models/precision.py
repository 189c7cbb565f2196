"""Compute precision of the encoders: ``"float32"`` (default) or ``"bf16"`` (mixed precision).

Under ``"bf16"`` the parameters (and so the optimizer state) stay float32; the layers cast them
to bfloat16 for their matmuls (``nnx.Linear(dtype=bfloat16, param_dtype=float32)``) and the
activations between layers are bfloat16. Statistics that lose too much in 8 mantissa bits are
taken in float32 and cast back: layer-norm mean/variance and the attention softmax. The user
vectors leave ``encode`` as float32 and the item vectors are the float32 table, so logits,
losses, log-softmax and metrics are float32 in both modes.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["PRECISIONS", "check_precision", "compute_dtype"]

PRECISIONS = ("float32", "bf16")
_DTYPES = {"float32": jnp.float32, "bf16": jnp.bfloat16}


def check_precision(precision: str, where: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming ``where``."""
    if precision not in _DTYPES:
        raise ValueError(f"{where} must be one of {PRECISIONS}, got {precision!r}")
    return precision


def compute_dtype(precision: str):
    """The activation / matmul dtype of ``precision`` (float32 or bfloat16)."""
    return _DTYPES[check_precision(precision)]
