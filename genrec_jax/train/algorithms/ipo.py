"""IPO on rejection-sampled pairs: ``(z − 1/(2β))²``.

Pairs, states and log-probs: :mod:`genrec_jax.train.preference_pairs`. Config block ``ipo``:
``beta``, ``pairs`` (best_worst | logged_worst), ``num_candidates``, ``states`` (random | last).
"""

from __future__ import annotations

from genrec_jax import losses
from genrec_jax.train.algorithms.registry import Algorithm, register
from genrec_jax.train.preference_pairs import (PAIR_DEFAULTS, PAIR_SMOKE, make_pair_loss,
                                               pair_step)

DEFAULTS = {"beta": 0.1, **PAIR_DEFAULTS}


def pair_loss(beta=0.1):
    """``(lp_c, lp_r, ref_c, ref_r, where) -> [B]`` IPO losses."""

    def fn(lp_c, lp_r, ref_c, ref_r, where):
        return losses.ipo(lp_c, lp_r, ref_c, ref_r, beta=beta, where=where)

    return fn


def make_loss(graphdef, scorer_fn, *, beta=0.1, **kw):
    """IPO's ``loss_fn(model, batch, key, ref_params, rm_params)``; ``kw`` as
    :func:`~genrec_jax.train.preference_pairs.make_pair_loss`."""
    return make_pair_loss(pair_loss(beta), graphdef, scorer_fn, beta=beta, **kw)


def build(block, ctx):
    return pair_step(pair_loss(float(block.beta)), "ipo", block, ctx)


register(Algorithm(
    name="ipo",
    summary="identity preference optimisation on reward-model-ranked pairs from the reference",
    defaults=DEFAULTS,
    build=build,
    reward_model=True,
    dropout=0.0,
    smoke=PAIR_SMOKE,
))
