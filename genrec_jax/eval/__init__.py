"""Evaluation: full-catalogue ranking metrics, the most-popular baseline, reward models as judges."""

from genrec_jax.eval.judge import append_item, greedy_pick, judge_rollout
from genrec_jax.eval.popularity import item_counts, popularity_score_fn, popularity_scores
from genrec_jax.eval.ranking import (
    DEFAULT_KS,
    DEFAULT_NDCG_KS,
    evaluate,
    exclusion_mask,
    metrics_from_ranks,
    padded_batches,
    ranks,
    target_ranks,
)

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_NDCG_KS",
    "append_item",
    "evaluate",
    "exclusion_mask",
    "greedy_pick",
    "item_counts",
    "judge_rollout",
    "metrics_from_ranks",
    "padded_batches",
    "popularity_score_fn",
    "popularity_scores",
    "ranks",
    "target_ranks",
]
