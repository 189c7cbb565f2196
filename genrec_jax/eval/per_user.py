"""Per-user metric files: ``per_user.npz`` of every evaluated run, the input of paired tests.

    save_per_user(os.path.join(stage_dir, "per_user.npz"), metrics["per_user"])
    arrays = load_per_user(os.path.join(stage_dir, "per_user.npz"))
    arrays["user"]      # [N] int dense user index of each evaluation row
    arrays["ndcg@10"]   # [N] float64, NaN where the row does not count

One file per evaluated policy: the keys are ``user`` plus one float64 ``[N]`` array per metric
(``hr@K``, ``ndcg@K``, ``mrr``, their ``_liked`` forms, NaN where the target is not liked; on the
simulator ``true_rating@k``, ``best_rating@k``, ``regret@k``, ``true_value``). Row ``u`` of every
array is the same user, so two files of one seed (one world and split) pair user by user; the
reported mean of a metric is ``np.nanmean`` of its array
(:func:`genrec_jax.eval.ranking.nan_means`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

__all__ = ["save_per_user", "load_per_user", "PER_USER_FILE"]

PER_USER_FILE = "per_user.npz"


def save_per_user(path: str, per_user: Mapping[str, Any]) -> None:
    """Writes ``per_user`` (``user`` + equal-length 1-D metric arrays) to ``path`` (.npz)."""
    if "user" not in per_user:
        raise ValueError(f"per-user metrics for {path} need a 'user' array; got keys "
                         f"{sorted(per_user)}")
    arrays = {k: np.asarray(v) for k, v in per_user.items()}
    n = arrays["user"].shape
    bad = {k: v.shape for k, v in arrays.items() if v.ndim != 1 or v.shape != n}
    if bad:
        raise ValueError(f"per-user arrays for {path} must all have the shape of 'user' {n}; "
                         f"got {bad}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_per_user(path: str) -> dict[str, np.ndarray]:
    """``{key: array}`` of a file written by :func:`save_per_user`; a clear error when absent."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: per-user metrics are written by post-training and by "
            "experiments.compare's stages; a stage finished by an older version lacks them "
            "(delete its stage.json to run it again)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
