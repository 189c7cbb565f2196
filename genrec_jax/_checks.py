"""Input checks shared by the rating baselines (models) and the rating metrics (eval).

They sit below both layers so that a model never imports evaluation code. Messages name the
argument: ``as_finite_1d("ratings", x)`` raises ``ValueError("ratings must be finite (found NaN or
inf)")``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_finite_1d", "check_same_length"]


def as_finite_1d(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D float64 array; ValueError naming ``name`` when it is not 1-D, not
    numeric (bool counts as numeric) or holds NaN / inf."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


def check_same_length(**arrays: np.ndarray) -> None:
    """ValueError listing every ``name (length)`` when the arrays' lengths differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{name} ({n})" for name, n in lengths.items())
        raise ValueError(f"length mismatch: {desc} must all have the same length")
