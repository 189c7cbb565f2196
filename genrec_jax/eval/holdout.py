"""Per-user metrics over each user's held-out block and, on the simulator, NDCG with true gains.

    per_user = block_per_user(score_fn, data.test, num_columns=V, gains_fn=oracle)
    per_user["graded_ndcg@10"]     # [N] float64, NaN where undefined

With ``data.holdout = k > 1`` the evaluation rows carry the user's ``k`` held-out events
(``block_items``, ``block_ratings``, ``block_valid``; :func:`genrec_jax.data.sequences.eval_arrays`)
and the policy's scores at the state before them are judged against all of them
(:func:`genrec_jax.eval.multi_target.multi_target_metrics`, formulas there):

* ``graded_ndcg@10``: NDCG@10 with gain = the held-out event's rating (ranking well-rated items
  above badly rated ones pays);
* ``pairwise_acc``: within the user's held-out events, the fraction of pairs with different
  ratings that the scores order like the ratings;
* ``block_hr@10`` / ``block_ndcg@10``: hit rate and NDCG@10 with gain 1 for every held-out event.

``gains_fn(batch) -> [B, V]`` (on the simulator: the true expected rating ``r*`` at each row's
state, :func:`genrec_jax.eval.reference_policies.oracle_score_fn`) adds ``true_ndcg@10``:
NDCG@10 of the top 10 non-history items with gain ``r*`` (1 = the policy's top 10 are the 10
truly best items in the best order). Columns ``>= num_columns`` (padding of a sharded item
table) and column 0 are never ranked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from genrec_jax.eval.multi_target import gain_ndcg, multi_target_metrics
from genrec_jax.eval.ranking import exclusion_mask, padded_batches

__all__ = ["BLOCK_METRICS", "block_per_user"]

# Names this module reports (K = 10), in table order.
BLOCK_METRICS = ("graded_ndcg@10", "pairwise_acc", "block_hr@10", "block_ndcg@10",
                 "true_ndcg@10")


def block_per_user(score_fn: Callable[[Mapping[str, Any]], Any], arrays: Mapping[str, Any], *,
                   num_columns: int, batch_size: int = 256, k: int = 10,
                   gains_fn: Callable[[Mapping[str, Any]], Any] | None = None
                   ) -> dict[str, np.ndarray]:
    """``{name: float64 [N]}`` for the rows of ``arrays`` (NaN on rows with ``valid = 0`` and
    where a metric is undefined): the block metrics when ``arrays`` has ``block_items``, and
    ``true_ndcg@k`` when ``gains_fn`` is given; ``{}`` when neither applies."""
    blocks = "block_items" in arrays
    if not blocks and gains_fn is None:
        return {}
    n = len(np.asarray(arrays["user"]))
    names = ([f"graded_ndcg@{k}", "pairwise_acc", f"block_hr@{k}", f"block_ndcg@{k}"]
             if blocks else []) + ([f"true_ndcg@{k}"] if gains_fn is not None else [])
    out = {name: np.full(n, np.nan) for name in names}
    start = 0
    for batch, num_real in padded_batches(arrays, batch_size):
        scores = np.asarray(score_fn(batch), np.float64)[:, :num_columns]
        exclude = np.asarray(exclusion_mask(batch["exclude"], scores.shape[1]))
        valid = np.asarray(batch["valid"])[:num_real] != 0
        rows = slice(start, start + num_real)
        gains = None
        if gains_fn is not None:
            gains = np.asarray(gains_fn(batch), np.float64)[:, :num_columns]
            out[f"true_ndcg@{k}"][rows] = np.where(
                valid, gain_ndcg(scores, gains, exclude, k=k)[:num_real], np.nan)
        if blocks:
            m = multi_target_metrics(scores, exclude, batch["block_items"],
                                     batch["block_ratings"], batch["block_valid"] != 0, k=k)
            per = m["per_user"]
            for name, key in ((f"graded_ndcg@{k}", f"graded_ndcg@{k}"),
                              ("pairwise_acc", "pairwise_acc"), (f"block_hr@{k}", f"hr@{k}"),
                              (f"block_ndcg@{k}", f"ndcg@{k}")):
                out[name][rows] = np.where(valid, per[key][:num_real], np.nan)
        start += num_real
    return out
