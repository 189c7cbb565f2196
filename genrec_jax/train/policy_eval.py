"""Evaluation of a policy: test ranking metrics, the judge score and, on the simulator, the truth
of its recommendations (one-step true rating and multi-step true value), per user and as means.

    out = evaluate_scores(score_fn, data, judge=judges, horizon=3, gamma=0.9)
    out["ndcg@10"]              # mean over the valid test users
    out["per_user"]["ndcg@10"]  # [N] float64 per test row (NaN where it does not count)

One code path gives both: every metric that has a per-user value (HR/NDCG/MRR and ``_liked``,
``true_rating@k``, ``best_rating@k``, ``regret@k``, ``true_value``) is reported as
:func:`genrec_jax.eval.ranking.nan_means` of its per-user array, so the mean in ``metrics.json``
equals ``np.nanmean`` of the array saved in ``per_user.npz``. The judge score has no per-user
value (it is a mean over judges of per-judge means).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genrec_jax.data.prepare import PreparedData
from genrec_jax.eval.holdout import block_per_user
from genrec_jax.eval.judge import judge_rollout
from genrec_jax.eval.model_eval import model_score_fn
from genrec_jax.eval.ranking import evaluate, nan_means
from genrec_jax.eval.reference_policies import oracle_score_fn
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


def _truth_per_user(data: PreparedData, score_fn, *, batch_size: int, ks, horizon: int,
                    gamma: float) -> dict[str, np.ndarray]:
    """Per test row: ``true_rating@k``, ``best_rating@k``, ``regret@k = best − true`` and
    ``true_value`` (float64 ``[N]``, NaN on invalid rows)."""
    truth = simulator_truth(data.simulator, data.test, score_fn,
                            ids=SimIds.from_dataset(data.dataset), ks=ks, horizon=horizon,
                            gamma=gamma, batch_size=batch_size)["per_user"]
    out = {}
    for k in ks:
        out[f"true_rating@{k}"] = truth[f"true_rating@{k}"]
        out[f"best_rating@{k}"] = truth[f"best_rating@{k}"]
        out[f"regret@{k}"] = truth[f"best_rating@{k}"] - truth[f"true_rating@{k}"]
    out["true_value"] = truth["true_value"]
    return out


def evaluate_scores(score_fn, data: PreparedData, *, batch_size: int = 256, judge=None,
                    horizon: int = 3, gamma: float = 0.9, ks=(1, 10), truth: bool = True
                    ) -> dict[str, Any]:
    """Every evaluation figure of one next-item scorer ``score_fn(batch) -> [B, V]`` on
    ``data.test``: the ranking metrics of :func:`~genrec_jax.eval.ranking.evaluate`, the judge
    score (if ``judge``, a RewardEnsemble) and on the simulator the truth of the greedy
    recommendations (top-``ks`` true rating, regret, ``true_value`` over ``horizon`` steps with
    discount ``gamma``, ``true_ndcg@10``), and with a held-out block per user (``data.holdout``
    > 1) the block metrics of :mod:`genrec_jax.eval.holdout`. ``per_user``: ``{"user": [N]
    dense user index, metric: [N] float64}`` for every metric with a per-user value; each of
    those means is their nan-mean.
    ``truth=False`` skips the simulator's truth (ranking metrics and judge only)."""
    ranking = dict(evaluate(score_fn, data.test, batch_size=batch_size, return_per_user=True))
    per_user: dict[str, np.ndarray] = dict(ranking.pop("per_user"))
    out: dict[str, Any] = ranking
    if judge is not None:
        j = judge_rollout(score_fn, judge.reward_fn, data.test, horizon=int(horizon),
                          gamma=float(gamma), batch_size=batch_size)
        out.update(judge_score=j["judge_score"], judge_std=j["judge_std"],
                   judge_rel_std=j["judge_rel_std"], judge_per_member=j["per_judge"])
    gains_fn = (oracle_score_fn(data.simulator, SimIds.from_dataset(data.dataset))
                if data.simulator is not None and truth else None)
    per_user.update(block_per_user(score_fn, data.test, num_columns=data.dataset.num_items + 1,
                                   batch_size=batch_size, gains_fn=gains_fn))
    if data.simulator is not None and truth:
        per_user.update(_truth_per_user(data, score_fn, batch_size=batch_size, ks=ks,
                                        horizon=int(horizon), gamma=float(gamma)))
    out.update(nan_means(per_user))
    user = np.asarray(data.test["user"]) if "user" in data.test else \
        np.arange(len(np.asarray(data.test["target"])))
    out["per_user"] = {"user": user.astype(np.int64), **per_user}
    return out


def evaluate_policy(graphdef, params, data: PreparedData, *, batch_size: int = 256, judge=None,
                    horizon: int = 3, gamma: float = 0.9, per_user: bool = False,
                    truth: bool = True) -> dict[str, Any]:
    """:func:`evaluate_scores` of a next-item model; ``per_user=False`` drops the per-user
    arrays (the means are the same either way)."""
    out = evaluate_scores(model_score_fn(graphdef, params), data, batch_size=batch_size,
                          judge=judge, horizon=horizon, gamma=gamma, truth=truth)
    if not per_user:
        out.pop("per_user")
    return out


def metric_delta(initial: dict, final: dict) -> dict:
    """``final − initial`` for every float metric present in both."""
    return {k: final[k] - initial[k] for k in final
            if isinstance(final.get(k), float) and isinstance(initial.get(k), float)}
