"""Post-training of a pretrained HSTU with a registered algorithm (bc | rwbc | asft | dpo | ipo |
ppo | cql | ...: ``genrec_jax.train.algorithms``).

Needs a pretraining workdir (``--init``, from ``experiments.pretrain``) and, for dpo / ipo / ppo,
A-SFT with ``asft.reward_source=reward_model`` or ``asft.baseline=value``, and for the judge
score, a reward-model workdir (``--reward_dir``, from ``experiments.reward``). Ensemble member
``reward.train_member`` (0) is the training reward model, the other members are the judges.

Smoke run (seconds-to-a-minute on a CPU; pretrains a tiny model and a tiny 2-member reward
ensemble in DIR/pretrain and DIR/reward first when --init / --reward_dir are absent):
  python -m experiments.posttrain --config=experiments/configs/posttrain.py:algo=asft,smoke=True \\
      --workdir=runs/posttrain-smoke

Simulator (the embedded default; no download):
  python -m experiments.pretrain --config=experiments/configs/pretrain.py --workdir=runs/pretrain
  python -m experiments.reward --config=experiments/configs/reward.py:reward.max_len=200 \\
      --workdir=runs/reward
  python -m experiments.posttrain --config=experiments/configs/posttrain.py:algo=asft \\
      --init=runs/pretrain --reward_dir=runs/reward --workdir=runs/posttrain-asft

MovieLens 100K:
  python -m experiments.posttrain \\
      --config=experiments/configs/posttrain.py:algo=asft,dataset=ml-100k,data_dir=PATH \\
      --init=PRETRAIN_DIR --reward_dir=RM_DIR --workdir=DIR

Keys (``key=value`` after the ``:``; dotted keys reach sub-blocks):

* ``algo``: a registered algorithm (``genrec_jax.train.algorithms.names()``: bc | rwbc | asft |
  dpo | ipo | ppo | cql | ...). Each algorithm has its own block ``<algo>.*``, generated from the
  ``DEFAULTS`` of its module ``genrec_jax/train/algorithms/<algo>.py``:
* ``asft.lam`` (λ; ``inf`` = BC), ``asft.w_max`` (weight clip; ``inf`` or ≤ 0 = none),
  ``asft.baseline`` (user_mean | item_mean | batch_mean | value | none), ``asft.reward_source``
  (rating | reward_model), ``asft.normalize_advantages`` (AWR: mean 0, std 1 per batch),
  ``asft.value_samples`` (K samples of ``π_ref`` for ``baseline=value``; 0 = exact over the
  catalogue, small catalogues only).
* ``rwbc.transform`` (linear | minmax | exp), ``rwbc.beta``.
* ``dpo.beta``, ``dpo.label_smoothing``, ``ipo.beta``; both with ``pairs`` (best_worst |
  logged_worst), ``num_candidates`` (K items sampled from ``π_ref`` per state), ``states``
  (random | last: a random training position of each row, or its last one).
* ``ppo.clip_eps``, ``ppo.kl_coef``, ``ppo.epochs`` (updates per rollout batch),
  ``ppo.normalize_advantages``, ``ppo.states``, ``ppo.baseline`` (user_mean | value |
  batch_mean: the advantage's per-state baseline), ``ppo.value_samples`` (K samples of
  ``π_ref`` for ``baseline=value``; 0 = exact).
* ``cql.alpha``, ``cql.gamma`` (0: ``y = rating``; > 0 adds ``γ E_π Q`` of the next position),
  ``cql.q_head`` (affine: ``Q = a·logits + b`` with a, b trained beside the policy | logits).
* ``grpo.group_size`` (G items sampled from the current policy per state), ``grpo.clip_eps``,
  ``grpo.kl_coef`` (k3 estimator of the KL to the reference), ``grpo.epochs``, ``grpo.states``.
* ``dropout``: rate during post-training; −1 = auto (the algorithm's default: the pretrained
  rate for the offline algorithms, 0 for the reward-model-driven ones).
* ``optimizer.learning_rate`` (1e-4, 10× below pretraining), ``batch_size``, ``epochs`` (passes
  over the users' training rows; PPO: rollout batches), ``num_steps`` (> 0 overrides epochs).
* ``loss.impl`` (chunked | reference | sharded | pallas) and ``loss.chunk_size``: the fused
  full-catalogue softmax kernel.
* ``reward.model`` (ensemble | oracle: the simulator's true rating as the training reward),
  ``reward.train_member``; ``judge.enabled`` / ``horizon`` / ``gamma``.
* The ``model`` block is used only when smoke mode pretrains its own model; otherwise the
  architecture is read from ``--init``, whose ``model.kind`` must equal this config's (pass
  ``model.kind=sasrec`` to post-train a SASRec run). The data keys must match the pretraining
  run's.

Output: ``DIR/metrics.json`` = ``{"initial": {...}, "final": {...}, "delta": {...}, "algo",
"config", "train", ...}`` with hr@K / ndcg@K / mrr (+ ``_liked``), ``judge_score`` (with a
reward dir) and, on the simulator, ``true_rating@1`` / ``@10`` and ``regret@1`` / ``@10`` of the
greedy recommendations (history excluded) and ``true_value`` (the discounted true return of a
greedy rollout with the judge's horizon and γ).

Expected result: the comparison (``experiments.compare``, README "Results") runs exactly these
post-training jobs on the simulator and on MovieLens 100K and reports their measured table
with seeds and reference policies; a single smoke run prints finite metrics and writes
``DIR/metrics.json`` in well under a minute. (The per-algorithm table that stood here was
measured on the earlier, non-sequential simulator world and no longer applies.)
"""

import ml_collections

from experiments.configs import common
from genrec_jax.train import algorithms


def smoke(c: ml_collections.ConfigDict) -> None:
    common.smoke_base(c)
    c.model.num_blocks = 1
    c.epochs = 2
    c.batch_size = 16
    for name, block in algorithms.config_blocks(smoke=True).items():
        c[name] = block  # each algorithm's smoke overrides (fewer candidates, epochs, samples)
    c.judge.horizon = 2
    c.smoke_pretrain_epochs = 3
    c.smoke_reward_epochs = 2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = common.base_config()
    c.algo = "asft"
    # One block per registered algorithm, from its module's defaults (asft.lam, ppo.epochs, ...).
    for name, block in algorithms.config_blocks().items():
        c[name] = block
    # Training.
    c.dropout = -1.0
    c.log_kl = True
    c.loss = ml_collections.ConfigDict(dict(impl="chunked", chunk_size=4096))
    c.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.0, warmup_steps=0,
        grad_clip_norm=1.0))
    c.batch_size = 128
    c.epochs = 10
    c.num_steps = -1
    c.reward = ml_collections.ConfigDict(dict(model="ensemble", train_member=0))
    c.judge = ml_collections.ConfigDict(dict(enabled=True, horizon=3, gamma=0.9))
    # Smoke mode only: pretraining / reward-model epochs when --init / --reward_dir are absent.
    c.smoke_pretrain_epochs = 3
    c.smoke_reward_epochs = 2
    return common.finalize(c, arg, smoke)
