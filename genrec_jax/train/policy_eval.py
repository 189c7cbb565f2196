"""Evaluation of a post-trained policy: test ranking metrics, the judge score and, on the
simulator, the truth of its recommendations (one-step true rating and multi-step true value)."""

from __future__ import annotations

from typing import Any

from genrec_jax.data.prepare import PreparedData
from genrec_jax.eval.judge import judge_rollout
from genrec_jax.eval.model_eval import evaluate_model, model_score_fn
from genrec_jax.eval.truth import SimIds, simulator_truth


def true_reward_metrics(graphdef, params, data: PreparedData, *, batch_size: int = 256,
                        ks=(1, 10), horizon: int = 3, gamma: float = 0.9) -> dict[str, float]:
    """On the simulator: the truth of the policy's recommendations,
    :func:`genrec_jax.eval.truth.simulator_truth` on the test users — ``true_rating@k`` (mean
    ``r*`` of the greedy top-k at each user's test state, history excluded), ``best_rating@k``
    (the k best available items), ``regret@k`` and ``true_value`` (discounted true return of the
    greedy ``horizon``-step rollout, the judge's H and γ). ``{}`` when the data are not
    simulated."""
    if data.simulator is None:
        return {}
    out = simulator_truth(data.simulator, data.test, model_score_fn(graphdef, params),
                          ids=SimIds.from_dataset(data.dataset), ks=ks, horizon=horizon,
                          gamma=gamma, batch_size=batch_size)
    out.pop("per_user")
    return out


def evaluate_policy(graphdef, params, data: PreparedData, *, batch_size: int = 256, judge=None,
                    horizon: int = 3, gamma: float = 0.9) -> dict[str, Any]:
    """Test ranking metrics, the judge score (if ``judge``, a RewardEnsemble) and, on the
    simulator, :func:`true_reward_metrics` of one policy."""
    out = dict(evaluate_model(graphdef, params, data.test, batch_size=batch_size))
    if judge is not None:
        j = judge_rollout(model_score_fn(graphdef, params), judge.reward_fn, data.test,
                          horizon=int(horizon), gamma=float(gamma), batch_size=batch_size)
        out.update(judge_score=j["judge_score"], judge_std=j["judge_std"],
                   judge_rel_std=j["judge_rel_std"], judge_per_member=j["per_judge"])
    out.update(true_reward_metrics(graphdef, params, data, batch_size=batch_size,
                                   horizon=int(horizon), gamma=float(gamma)))
    return out


def metric_delta(initial: dict, final: dict) -> dict:
    """``final − initial`` for every float metric present in both."""
    return {k: final[k] - initial[k] for k in final
            if isinstance(final.get(k), float) and isinstance(initial.get(k), float)}
