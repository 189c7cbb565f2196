"""The article's comparison: pretrain → reward models → every registered post-training algorithm
(bc, rwbc, asft, dpo, ipo, ppo, cql, grpo) → evaluation, with reference policies on the simulator.

Main command (embedded simulator, no download; 3 seeds):
  python -m experiments.compare --config=experiments/configs/compare.py --workdir=runs/compare

MovieLens 100K:
  python -m experiments.compare \
      --config=experiments/configs/compare.py:dataset=ml-100k,data_dir=../shared/data/ml-100k \
      --workdir=runs/compare-ml100k

Smoke run (seconds): ``:smoke=True``. Stages finished in DIR are reused, so a killed run continues.

Writes DIR/results.{md,csv,json} (one row per algorithm plus the pretrained model; NDCG@10,
HR@10, MRR, their ≥ 4 variants, judge score, and on the simulator the true expected rating of the
top-1/top-10 recommendations, the regret and the multi-step true value, plus the reference
rows most popular / top-rated / logging policy / r*-oracle; mean ± std over seeds) and the plots
DIR/lambda_sweep.png, DIR/judge_vs_truth.png and (simulator) DIR/landscape.png.

``*_args`` fields are ``key=value,...`` overrides handed to the stage configs
(experiments/configs/{pretrain,reward,posttrain}.py; algorithm knobs live in per-algorithm
blocks there, e.g. ``posttrain_args=asft.lam=0.3``); ``algo_args.X`` adds per-algorithm ones.
``algos`` defaults to every registered algorithm marked for the comparison
(``genrec_jax.train.algorithms.comparison_names()``). ``lambda_sweep``: the values of
``<lambda_sweep_algo>.lam`` for plot (a), with ``lambda_sweep_limit`` drawn as its λ → ∞ level.
Expected result: see README.md ("Results"), produced by these commands. The main command took
7 min 40 s on 2 idle CPU cores; on the simulator A-SFT has the best mean NDCG@10 (0.329) and true
rating@10 (4.15), within about one seed std of BC and RWBC, and GRPO / DPO / PPO / IPO have the
highest judge scores and the lowest true ratings.
"""

import ml_collections

from experiments.configs import common
from genrec_jax.train import algorithms

# The registered algorithms the comparison runs, in registration order (its row order).
ALGOS = algorithms.comparison_names()


def smoke_overrides() -> list[str]:
    """Every algorithm's smoke-mode block overrides as ``algo.key=value`` (e.g.
    ``dpo.num_candidates=4``), for the post-training stages (which run without ``smoke``)."""
    return [f"{name}.{key}={value}" for name in algorithms.names()
            for key, value in algorithms.get(name).smoke.items()]


def smoke(c: ml_collections.ConfigDict) -> None:
    common.smoke_base(c)
    c.seeds = (0,)
    c.pretrain_args = "epochs=3,batch_size=16,model.num_blocks=1"
    c.reward_args = ("reward.num_members=3,reward.num_seeds=1,reward.hidden_dim=16,"
                     "reward.max_len=16,epochs=2,batch_size=16")
    c.posttrain_args = ",".join(["epochs=1,batch_size=16,judge.horizon=2", *smoke_overrides()])
    c.lambda_sweep = (0.3,)
    c.landscape_noise = (0.25, 1.5)
    c.landscape_algos = ("bc", "asft")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = common.base_config()
    c.simulator = common.simulator_block(num_users=400, num_items=300, events_per_user=(15, 40),
                                         policy_temperature=0.5)
    c.seeds = (0, 1, 2)
    c.algos = ALGOS
    c.data.max_len = 50
    c.model.update(dim=32, qk_dim=32, v_dim=32)
    c.pretrain_args = "epochs=20,loss.kind=full,batch_size=64"
    c.reward_args = ("reward.num_members=5,reward.num_seeds=1,reward.max_len=50,epochs=10,"
                     "batch_size=64")
    c.posttrain_args = "epochs=5,batch_size=64,optimizer.learning_rate=3e-4"
    c.algo_args = ml_collections.ConfigDict({a: "" for a in ALGOS})
    # Plot (a): A-SFT at these λ (its block's ``lam``; seeds as above); BC is the λ → ∞ end.
    c.lambda_sweep = (0.1, 0.3, 1.0, 3.0, 10.0)
    c.lambda_sweep_algo = "asft"
    c.lambda_sweep_limit = "bc"
    # Plot (c), simulator only: rating noise levels (→ reward-model accuracy), one seed. The
    # simulator's own level (0.5) reuses the main runs.
    c.landscape_noise = (0.25, 0.5, 1.5)
    c.landscape_algos = ("bc", "rwbc", "asft", "dpo", "ppo")
    c.landscape_seeds = (0,)
    return common.finalize(c, arg, smoke)
