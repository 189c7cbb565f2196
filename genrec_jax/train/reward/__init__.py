"""Reward-model ensembles: rows, training, the judge, storage.

    trained = train_reward_ensemble(cfg, workdir, data=data)   # training.py: the one pipeline
    judge = load_ensemble(workdir)                              # storage.py: RewardEnsemble
    judge.reward_fn(batch, items)                               # [M, B]  (genrec_jax.eval.judge)

Modules, by job:

- ``config``: ensemble size and member seeds, rating step / class prior of the training
  ratings, the :class:`~genrec_jax.models.reward.RewardConfig` of an experiment config.
- ``rows``: training windows with held-out events, and test rows (:func:`reward_rows`).
- ``members``: M members with stacked parameters, initialised like M single models, and the
  vmapped jitted step (:func:`make_ensemble_step`).
- ``ensemble``: :class:`RewardEnsemble`, the trained members as a judge, and batched scoring
  of rows (:func:`predict_rows`, :func:`score_rows`).
- ``storage``: :func:`save_ensemble` / :func:`load_ensemble` (JSON config + Orbax parameters).
- ``training``: :func:`train_reward_ensemble`, used by ``experiments.reward`` and the
  post-training smoke run.

Everything is re-exported here, so ``from genrec_jax.train.reward import load_ensemble`` works.
"""

from genrec_jax.train.reward.config import (check_num_members, member_seeds, rating_prior_of,
                                            rating_step_of, reward_config)
from genrec_jax.train.reward.ensemble import (RewardEnsemble, fit_window, predict_rows,
                                              score_rows)
from genrec_jax.train.reward.members import (bootstrap_masks, init_ensemble, init_ensemble_state,
                                             make_ensemble_step, reward_loss_fn)
from genrec_jax.train.reward.rows import MODEL_KEYS, TRAIN_KEYS, RewardRows, reward_rows
from genrec_jax.train.reward.storage import CONFIG_FILE, ENSEMBLE_DIR, load_ensemble, save_ensemble
from genrec_jax.train.reward.training import (TrainedEnsemble, optimizer_and_step,
                                              train_reward_ensemble)

__all__ = [
    "CONFIG_FILE",
    "ENSEMBLE_DIR",
    "MODEL_KEYS",
    "TRAIN_KEYS",
    "RewardEnsemble",
    "RewardRows",
    "TrainedEnsemble",
    "bootstrap_masks",
    "check_num_members",
    "fit_window",
    "init_ensemble",
    "init_ensemble_state",
    "load_ensemble",
    "make_ensemble_step",
    "member_seeds",
    "optimizer_and_step",
    "predict_rows",
    "rating_prior_of",
    "rating_step_of",
    "reward_config",
    "reward_loss_fn",
    "reward_rows",
    "save_ensemble",
    "score_rows",
    "train_reward_ensemble",
]
