"""Evaluation of models by the common protocol (full ranking, history excluded)."""

from __future__ import annotations

import functools

import jax

from genrec_jax.eval.popularity import popularity_score_fn
from genrec_jax.eval.ranking import evaluate
from genrec_jax.models.functional import bind


@functools.partial(jax.jit, static_argnums=0)
def next_item_scores(graphdef, params, batch):
    """[B, V_table] scores of the item after each row's history (non-items at −inf)."""
    return bind(graphdef, params).next_item_logits(batch)


def model_score_fn(graphdef, params):
    return lambda batch: next_item_scores(graphdef, params, batch)


def evaluate_model(graphdef, params, arrays, *, batch_size: int = 256, **kw) -> dict:
    """Test metrics (``hr@10``, ``ndcg@10``, ``mrr``, … and ``*_liked``) of a next-item model."""
    return evaluate(model_score_fn(graphdef, params), arrays, batch_size=batch_size, **kw)


def evaluate_popularity(data, *, batch_size: int = 256) -> dict:
    """The most-popular baseline (training-event counts) scored by the same code."""
    return evaluate(popularity_score_fn(data.popularity), data.test, batch_size=batch_size)
