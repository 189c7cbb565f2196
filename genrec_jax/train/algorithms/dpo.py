"""DPO on rejection-sampled pairs: ``−(1−ε)·log σ(βz) − ε·log σ(−βz)``.

Pairs, states and log-probs: :mod:`genrec_jax.train.preference_pairs`. Config block ``dpo``:
``beta``, ``label_smoothing`` (ε), ``pairs`` (best_worst | logged_worst), ``num_candidates``
(K items sampled from ``π_ref`` per state), ``states`` (random | last).
"""

from __future__ import annotations

from genrec_jax import losses
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.preference_pairs import (PAIR_DEFAULTS, PAIR_SMOKE, make_pair_loss,
                                               pair_step)

DEFAULTS = {"beta": 0.1, "label_smoothing": 0.0, **PAIR_DEFAULTS}


def pair_loss(beta=0.1, label_smoothing=0.0):
    """``(lp_c, lp_r, ref_c, ref_r, where) -> [B]`` DPO losses."""

    def fn(lp_c, lp_r, ref_c, ref_r, where):
        return losses.dpo(lp_c, lp_r, ref_c, ref_r, beta=beta, label_smoothing=label_smoothing,
                          where=where)

    return fn


def make_loss(graphdef, scorer_fn, *, beta=0.1, label_smoothing=0.0, **kw):
    """DPO's ``loss_fn(model, batch, key, ref_params, rm_params)``; ``kw`` as
    :func:`~genrec_jax.train.preference_pairs.make_pair_loss`."""
    return make_pair_loss(pair_loss(beta, label_smoothing), graphdef, scorer_fn, beta=beta, **kw)


def build(block, ctx):
    fn = pair_loss(float(block.beta), float(block.label_smoothing))
    return pair_step(fn, "dpo", block, ctx)


register(Algorithm(
    name="dpo",
    summary="direct preference optimisation on reward-model-ranked pairs from the reference",
    defaults=DEFAULTS,
    build=build,
    reward_model=True,
    dropout=0.0,   # as TRL's default for preference training
    smoke=PAIR_SMOKE,
))
