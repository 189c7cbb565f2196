"""The pair-preference scaffold of DPO and IPO: rejection-sampled pairs from the reference.

Per training row and step:

1. a state ``s`` (:func:`~genrec_jax.train.state_selection.select_states`: a random position
   with a target by default, or the row's last one);
2. ``K`` distinct candidates from the frozen reference ``π_ref(·|s)`` with the state's history
   excluded (Gumbel-top-k over the reference logits, i.e. sampling without replacement);
3. the training reward model scores them: ``r̂(s, c_k)``;
4. pairs (:func:`build_pairs`): ``pairs="best_worst"``: chosen = best, rejected = worst
   candidate (pairs whose two scores tie are dropped); ``"logged_worst"``: chosen = the logged
   next item, rejected = the worst candidate (dropped if it is the logged item);
5. ``z = (log π_θ(y_w) − log π_θ(y_l)) − (log π_ref(y_w) − log π_ref(y_l))`` with every log-prob
   ``= logit − lse`` from the fused kernel; the algorithm's pair loss, averaged over valid pairs.

The reference parameters and the reward model's parameters are explicit (frozen, never donated)
arguments of the jitted step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from genrec_jax import losses
from genrec_jax.train import policy_ops, state_selection
from genrec_jax.train.policy_ops import masked_mean
from genrec_jax.train.state import bind
from genrec_jax.train.step import make_train_step

PAIR_MODES = ("best_worst", "logged_worst")
# The knobs of a pair-preference algorithm's config block (DPO, IPO).
PAIR_DEFAULTS = {"pairs": "best_worst", "num_candidates": 8, "states": "random"}
PAIR_SMOKE = {"num_candidates": 4}

PairLoss = Callable[..., jax.Array]


def build_pairs(candidates, scores, valid, logged=None, *, mode: str = "best_worst"):
    """Chosen / rejected items from scored candidates.

    Args:
      candidates: ``[B, K]`` item ids; scores: ``[B, K]`` reward-model scores;
      valid: ``[B, K]`` bool, candidates that exist; logged: ``[B]`` logged items (for
        ``"logged_worst"``).
      mode: ``"best_worst"`` or ``"logged_worst"``.

    Returns ``(chosen [B], rejected [B], chosen_score [B], rejected_score [B], ok [B])``;
    ``ok`` is False where no usable pair exists (fewer than two valid candidates or tied
    scores for ``best_worst``; the worst candidate equal to the logged item for
    ``logged_worst``; ``chosen_score`` is then the best candidate's score, for logging).
    """
    if mode not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}, got {mode!r}")
    scores = scores.astype(jnp.float32)
    best = jnp.argmax(jnp.where(valid, scores, -jnp.inf), axis=1)
    worst = jnp.argmin(jnp.where(valid, scores, jnp.inf), axis=1)
    take = lambda x, i: jnp.take_along_axis(x, i[:, None], axis=1)[:, 0]  # noqa: E731
    rejected, s_rej = take(candidates, worst), take(scores, worst)
    any_valid = jnp.any(valid, axis=1)
    if mode == "best_worst":
        chosen, s_cho = take(candidates, best), take(scores, best)
        ok = any_valid & (s_cho > s_rej) & (chosen != rejected)
    else:
        if logged is None:
            raise ValueError('pairs="logged_worst" needs the logged items')
        chosen, s_cho = logged.astype(candidates.dtype), take(scores, best)
        ok = any_valid & (chosen != rejected) & (chosen > 0)
    return chosen, rejected, s_cho, s_rej, ok


def make_pair_loss(pair_loss: PairLoss, graphdef, scorer_fn, *, beta: float = 0.1,
                   num_candidates: int = 8, pairs: str = "best_worst", states: str = "random",
                   impl: str = "chunked", chunk_size: int = 4096, mesh=None, log_kl: bool = True):
    """``loss_fn(model, batch, key, ref_params, rm_params) -> (loss, aux)`` for
    :func:`~genrec_jax.train.step.make_train_step` (``scorer_fn = Scorer.last``).

    ``pair_loss(lp_c, lp_r, ref_c, ref_r, where) -> [B]`` is the algorithm's per-pair loss of
    the chosen / rejected log-probs under ``π_θ`` and ``π_ref``. Logged: ``margin`` (mean
    ``β·z``), ``accuracy`` (``z > 0``), ``reward_chosen`` / ``reward_rejected`` (RM scores of
    the pair; for ``logged_worst`` the chosen column is the best candidate's score),
    ``frac_pairs`` (rows with a usable pair) and ``kl_ref``.
    """
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}, got {pairs!r}")
    if int(num_candidates) < 2:
        raise ValueError(f"num_candidates must be >= 2, got {num_candidates}")

    def logps_of(m, h, chosen, rejected, where):
        acts = jnp.stack([chosen, rejected], axis=1)                        # [B, 2]
        hh = jnp.broadcast_to(h[:, None, :], (h.shape[0], 2, h.shape[1]))
        logp, _ = policy_ops.kernel_logps(hh, m.item_vectors(), acts,
                                          temperature=m.config.temperature,
                                          valid_range=policy_ops.item_range(m), impl=impl,
                                          chunk_size=chunk_size, mesh=mesh,
                                          where=jnp.broadcast_to(where[:, None], acts.shape))
        return logp[:, 0], logp[:, 1]

    def loss_fn(model, batch, key, ref_params, rm_params):
        k_state, k_sample, k_drop = jax.random.split(key, 3)
        sb, logged, valid = state_selection.select_states(batch, k_state, states)
        ref = bind(graphdef, ref_params)
        h_ref, ref_vecs = state_selection.state_vectors(ref, sb)
        logits = state_selection.history_excluded_logits(ref, h_ref, sb["inputs"])
        cands, cand_ok = state_selection.sample_without_replacement(k_sample, logits,
                                                                    int(num_candidates))
        cand_ok = cand_ok & valid[:, None]
        scores = jax.lax.stop_gradient(scorer_fn(rm_params, sb, cands))
        chosen, rejected, s_cho, s_rej, ok = build_pairs(cands, scores, cand_ok, logged,
                                                         mode=pairs)
        ok = ok & valid
        h, vecs = state_selection.state_vectors(model, sb, dropout_key=k_drop)
        lp_c, lp_r = logps_of(model, h, chosen, rejected, ok)
        ref_c, ref_r = logps_of(ref, jax.lax.stop_gradient(h_ref), chosen, rejected, ok)
        ref_c, ref_r = jax.lax.stop_gradient(ref_c), jax.lax.stop_gradient(ref_r)
        per = pair_loss(lp_c, lp_r, ref_c, ref_r, ok)
        count = jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
        z = losses.dpo_margin(lp_c, lp_r, ref_c, ref_r, where=ok)
        aux = {
            "margin": jnp.sum(beta * z) / count,
            "accuracy": masked_mean((z > 0).astype(jnp.float32), ok),
            "reward_chosen": masked_mean(s_cho, ok),
            "reward_rejected": masked_mean(s_rej, ok),
            "frac_pairs": masked_mean(ok.astype(jnp.float32), valid),
        }
        if log_kl:
            aux["kl_ref"] = policy_ops.last_position_kl(model, jax.lax.stop_gradient(vecs), ref,
                                                        ref_vecs, sb["lengths"],
                                                        chunk_size=chunk_size)
        return jnp.sum(per) / count, aux

    return loss_fn


def pair_step(pair_loss: PairLoss, algo: str, block, ctx):
    """``(step_fn, (rm_params,))``: :func:`make_pair_loss` with the block's ``beta``, ``pairs``,
    ``num_candidates`` and ``states`` as a jitted train step for a ``BuildContext``."""
    scorer = ctx.require_scorer(algo)
    loss_fn = make_pair_loss(pair_loss, ctx.graphdef, scorer.last, beta=float(block.beta),
                             num_candidates=int(block.num_candidates), pairs=str(block.pairs),
                             states=str(block.states), impl=ctx.impl, chunk_size=ctx.chunk_size,
                             mesh=ctx.kernel_mesh, log_kl=ctx.log_kl)
    return make_train_step(loss_fn, ctx.optimizer, ctx.state), (scorer.params,)
