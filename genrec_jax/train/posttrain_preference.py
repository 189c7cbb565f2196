"""DPO and IPO on rejection-sampled pairs (DESIGN.md §2).

Per training row and step:

1. a state ``s`` (:func:`~genrec_jax.train.posttrain_common.select_states`: a random position
   with a target by default, or the row's last one);
2. ``K`` distinct candidates from the frozen reference ``π_ref(·|s)`` with the state's history
   excluded (Gumbel-top-k over the reference logits, i.e. sampling without replacement);
3. the training reward model scores them: ``r̂(s, c_k)``;
4. pairs (:func:`build_pairs`): ``pairs="best_worst"``: chosen = best, rejected = worst
   candidate (pairs whose two scores tie are dropped); ``"logged_worst"``: chosen = the logged
   next item, rejected = the worst candidate (dropped if it is the logged item);
5. ``z = (log π_θ(y_w) − log π_θ(y_l)) − (log π_ref(y_w) − log π_ref(y_l))`` with every log-prob
   ``= logit − lse`` from the fused kernel; ``dpo`` / ``ipo`` losses, averaged over valid pairs.

The reference parameters and the reward model's parameters are explicit (frozen, never donated)
arguments of the jitted step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genrec_jax import losses
from genrec_jax.train import posttrain_common as pc
from genrec_jax.train.state import bind

PAIR_MODES = ("best_worst", "logged_worst")
PREFERENCE_ALGOS = ("dpo", "ipo")


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


def make_preference_loss(algo: str, graphdef, scorer_fn, *, beta: float = 0.1,
                         label_smoothing: float = 0.0, num_candidates: int = 8,
                         pairs: str = "best_worst", states: str = "random",
                         impl: str = "chunked", chunk_size: int = 4096, mesh=None,
                         log_kl: bool = True):
    """``loss_fn(model, batch, key, ref_params, rm_params) -> (loss, aux)`` for
    :func:`~genrec_jax.train.step.make_train_step` (``scorer_fn = Scorer.last``).

    Logged: ``margin`` (mean ``β·z``), ``accuracy`` (``z > 0``), ``reward_chosen`` /
    ``reward_rejected`` (RM scores of the pair; for ``logged_worst`` the chosen column is the
    best candidate's score), ``frac_pairs`` (rows with a usable pair) and ``kl_ref``.
    """
    if algo not in PREFERENCE_ALGOS:
        raise ValueError(f"preference algo must be one of {PREFERENCE_ALGOS}, got {algo!r}")
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}, got {pairs!r}")
    if int(num_candidates) < 2:
        raise ValueError(f"num_candidates must be >= 2, got {num_candidates}")

    def logps_of(m, h, chosen, rejected, where):
        acts = jnp.stack([chosen, rejected], axis=1)                        # [B, 2]
        hh = jnp.broadcast_to(h[:, None, :], (h.shape[0], 2, h.shape[1]))
        logp, _ = pc.kernel_logps(hh, m.item_vectors(), acts,
                                  temperature=m.config.temperature,
                                  valid_range=pc.item_range(m), impl=impl,
                                  chunk_size=chunk_size, mesh=mesh,
                                  where=jnp.broadcast_to(where[:, None], acts.shape))
        return logp[:, 0], logp[:, 1]

    def loss_fn(model, batch, key, ref_params, rm_params):
        k_state, k_sample, k_drop = jax.random.split(key, 3)
        sb, logged, valid = pc.select_states(batch, k_state, states)
        ref = bind(graphdef, ref_params)
        h_ref, ref_vecs = pc.state_vectors(ref, sb)
        logits = pc.history_excluded_logits(ref, h_ref, sb["inputs"])
        cands, cand_ok = pc.sample_without_replacement(k_sample, logits, int(num_candidates))
        cand_ok = cand_ok & valid[:, None]
        scores = jax.lax.stop_gradient(scorer_fn(rm_params, sb, cands))
        chosen, rejected, s_cho, s_rej, ok = build_pairs(cands, scores, cand_ok, logged,
                                                         mode=pairs)
        ok = ok & valid
        h, vecs = pc.state_vectors(model, sb, dropout_key=k_drop)
        lp_c, lp_r = logps_of(model, h, chosen, rejected, ok)
        ref_c, ref_r = logps_of(ref, jax.lax.stop_gradient(h_ref), chosen, rejected, ok)
        ref_c, ref_r = jax.lax.stop_gradient(ref_c), jax.lax.stop_gradient(ref_r)
        if algo == "dpo":
            per = losses.dpo(lp_c, lp_r, ref_c, ref_r, beta=beta,
                             label_smoothing=label_smoothing, where=ok)
        else:
            per = losses.ipo(lp_c, lp_r, ref_c, ref_r, beta=beta, where=ok)
        count = jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
        z = losses.dpo_margin(lp_c, lp_r, ref_c, ref_r, where=ok)
        aux = {
            "margin": jnp.sum(beta * z) / count,
            "accuracy": pc.masked_mean((z > 0).astype(jnp.float32), ok),
            "reward_chosen": pc.masked_mean(s_cho, ok),
            "reward_rejected": pc.masked_mean(s_rej, ok),
            "frac_pairs": pc.masked_mean(ok.astype(jnp.float32), valid),
        }
        if log_kl:
            aux["kl_ref"] = pc.last_position_kl(model, jax.lax.stop_gradient(vecs), ref,
                                                ref_vecs, sb["lengths"], chunk_size=chunk_size)
        return jnp.sum(per) / count, aux

    return loss_fn
