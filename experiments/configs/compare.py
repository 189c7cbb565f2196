"""The article's comparison: pretrain → reward models → every registered post-training algorithm
(bc, rwbc, asft, dpo, ipo, ppo, cql, grpo) → evaluation, with reference policies on the simulator.

Main command (embedded simulator, no download; 2 seeds, each its own world; every method
selected on validation over 2 learning rates at equal budgets, ``select`` below):
  python -m experiments.compare --config=experiments/configs/compare.py --workdir=runs/compare

MovieLens 100K:
  python -m experiments.compare \
      --config=experiments/configs/compare.py:dataset=ml-100k,data_dir=../shared/data/ml-100k \
      --workdir=runs/compare-ml100k

Smoke run (about 2 minutes; bc, asft and dpo only): ``:smoke=True``. Stages finished in DIR are
reused, so a killed run continues. Whole protocol (5 seeds, each its own simulated world; grids of 4 points per method;
the landscape at 5 levels for every algorithm over 2 seeds): ``:full=True`` (given in the config
string, like ``smoke``, since it sets other fields; explicit keys still win).

Selection (``select``, on by default; :func:`select_block`): the data hold out a validation
event before each user's test event; pretraining is early-stopped at its validation optimum;
every row trains each point of its grid (``select.grids.<row>``, e.g.
``"optimizer.learning_rate=3e-4|1e-3;asft.lam=0.3|1.0"``, the same number of points for every
row) with at most ``select.max_updates`` optimizer updates, validation every
``select.every_updates`` updates, early stopping after ``select.patience`` evaluations, the same
dropout and clipping; the best point on validation ``select.metric`` is the only one scored on
the test set. results.json ``"selection"`` records each row's grid, validation scores, choice and
update / sample counts; the markdown shows them. ``select.enabled=False`` gives the older
fixed-hyper-parameter protocol (no validation).

Writes DIR/results.{md,csv,json} (one row per algorithm plus the pretrained model; NDCG@10,
HR@10, MRR, their ≥ 4 variants, judge score, and on the simulator the true expected rating of the
top-1/top-10 recommendations, the regret and the multi-step true value, plus the reference
rows most popular / top-rated / logging policy / r*-oracle; mean ± std over seeds), a second
table of paired differences to BC with 95% intervals (results.json ``"paired"``: every method and
metric against ``bc`` and ``asft``: mean difference, paired bootstrap interval over users and
seeds, Holm-corrected p-value; a main-table cell is bold only when its interval against BC
excludes 0 in the favourable direction), and the plots DIR/lambda_sweep.png,
DIR/judge_vs_truth.png and (simulator) DIR/landscape.png. Every evaluated run leaves its per-user
metrics in its stage folder (``per_user.npz``; :mod:`genrec_jax.eval.per_user`).

``variants``: extra rows, ``name = "algo:key=value,..."`` (``;`` also separates pairs, for the
command line): a registered algorithm run with other values of its post-training config, e.g.
``asft_rm = "asft:asft.reward_source=reward_model"``; rows are the algorithms, then the variants
(an empty value drops a variant: ``variants.rwbc_exp=``). ``world_seed``: the simulator world of
seed ``s`` (``simulator.seed``); −1 (default) = ``s``, so every training seed is also a new
world (and split); a value ≥ 0 keeps that one world for every seed. ``paired_resamples``:
bootstrap replicates of the paired intervals.

``*_args`` fields are ``key=value,...`` overrides handed to the stage configs
(experiments/configs/{pretrain,reward,posttrain}.py; algorithm knobs live in per-algorithm
blocks there, e.g. ``posttrain_args=asft.lam=0.3``); ``algo_args.X`` adds per-algorithm ones.
``algos`` defaults to every registered algorithm marked for the comparison
(``genrec_jax.train.algorithms.comparison_names()``). ``lambda_sweep``: the values of
``<lambda_sweep_algo>.lam`` for plot (a), with ``lambda_sweep_limit`` drawn as its λ → ∞ level.
Expected result: see README.md ("Results"), produced by these commands. The main command took
8 min 37 s on the quiet 2-core machine; on the simulator A-SFT's NDCG@10 and true value were
within the noise of BC (+0.0033 [−0.0055, +0.0119]; +0.022 [−0.038, +0.080]), its within-user
pairwise accuracy on the held-out block higher (+0.018 [+0.009, +0.027]), CQL had the highest
true value of the trained policies (+0.24 [+0.17, +0.32] over BC), and PPO / DPO / IPO / GRPO
the lowest. ``:full=True`` took 59 min 47 s on one core (5 worlds): A-SFT not best (RWBC above
it on HR@10), PPO / DPO / IPO above BC on the judges and below it on the true value, CQL the
highest true value, no landscape region for online RL or A-SFT.
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


# Extra rows: a registered algorithm with other block values (name -> "algo:key=value,...").
# Both A-SFT forms (observed-rating and reward-model advantages) and both RWBC forms (linear and
# exponential weights, β = 1 matching A-SFT's λ = 1) appear in every table.
VARIANTS = {
    "asft_rm": "asft:asft.reward_source=reward_model",
    "rwbc_exp": "rwbc:rwbc.transform=exp,rwbc.beta=1.0",
}


# Validation grids (``select.grids``): ``"key=v1|v2;key2=a|b"`` is the cartesian product of the
# values, in order; every row's grid has the same size (the same number of trials per method).
LR2 = "optimizer.learning_rate=3e-4|1e-3"
LR4 = "optimizer.learning_rate=1e-4|3e-4|1e-3|3e-3"
SMOKE_GRID = "optimizer.learning_rate=1e-3"
# The whole protocol: each method's learning rate × its own main knob (methods without a knob
# get four learning rates). RWBC-exp's β takes A-SFT's λ values (matched temperatures).
FULL_GRIDS = {
    "bc": LR4, "rwbc": LR4,
    "asft": f"{LR2};asft.lam=0.3|1.0", "asft_rm": f"{LR2};asft.lam=0.3|1.0",
    "rwbc_exp": f"{LR2};rwbc.beta=0.3|1.0",
    "dpo": f"{LR2};dpo.beta=0.1|0.5", "ipo": f"{LR2};ipo.beta=0.1|0.5",
    "ppo": f"{LR2};ppo.kl_coef=0.02|0.1", "grpo": f"{LR2};grpo.kl_coef=0.02|0.1",
    "cql": f"{LR2};cql.alpha=0.1|1.0",
}


def parse_grid(name: str, spec: str) -> list[str]:
    """The points of a grid ``"key=v1|v2;key2=a|b"`` as override strings ``"key=v1,key2=a"``
    (cartesian product, first key slowest); ``""`` is one point with no override. ConfigError
    naming ``select.grids.<name>`` for a malformed spec."""
    axes = []
    for part in (p.strip() for p in str(spec).split(";")):
        if not part:
            continue
        key, sep, values = part.partition("=")
        options = [v.strip() for v in values.split("|") if v.strip()]
        if not sep or not key.strip() or not options:
            raise common.ConfigError(f"config key select.grids.{name}: expected "
                                     f"'key=v1|v2;...', got {spec!r}")
        axes.append([f"{key.strip()}={v}" for v in options])
    points = [""]
    for axis in axes:
        points = [",".join(x for x in (p, v) if x) for p in points for v in axis]
    return points


def grids_of(c: ml_collections.ConfigDict, rows) -> dict[str, list[str]]:
    """``{row: [overrides of each grid point]}`` for the comparison's rows (``select.grids``,
    ``select.default_grid`` for rows it does not list); ConfigError when the sizes differ."""
    out = {row: parse_grid(row, c.select.grids.get(row, c.select.default_grid)) for row in rows}
    sizes = {row: len(points) for row, points in out.items()}
    if len(set(sizes.values())) > 1:
        raise common.ConfigError(
            "config key select.grids: every method needs a grid of the same size (the same "
            "number of trials), got " + ", ".join(f"{r}: {n}" for r, n in sizes.items()))
    return out


def select_block(**overrides) -> ml_collections.ConfigDict:
    """Validation-based selection at equal budgets (``select.enabled``): pretraining runs up to
    ``pretrain_max_epochs``, evaluated on validation every ``pretrain_every_epochs`` with early
    stopping after ``pretrain_patience`` evaluations, and keeps its best state; each row then
    trains every point of its grid for at most ``max_updates`` optimizer updates (on-policy
    methods: rollout steps × their update epochs), evaluated on validation every
    ``every_updates`` updates with early stopping after ``patience`` evaluations, all with
    ``dropout`` and gradient clipping at ``grad_clip_norm``; the point with the best ``metric``
    on validation is the row's configuration and only it is scored on the test set.
    ``landscape``: "reuse" (the landscape's runs use the configuration each method selected on
    the first main seed) or "select" (a grid at every level)."""
    block = dict(enabled=True, metric="ndcg@10", max_updates=120, every_updates=15,
                 patience=3, dropout=0.0, grad_clip_norm=20.0,
                 grids=ml_collections.ConfigDict({row: LR2 for row in FULL_GRIDS}),
                 default_grid=LR2, pretrain_grid="", pretrain_max_epochs=60,
                 pretrain_every_epochs=2.0, pretrain_patience=3, landscape="reuse")
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def _flag(arg: str | None, key: str) -> bool:
    """The boolean ``key=...`` of the config string (False when absent)."""
    text = common.parse_arg(arg).get(key, "false").lower()
    if text not in common.TRUE + common.FALSE:
        raise common.ConfigError(f"config key {key}: expected a boolean (true/false, 1/0, "
                                 f"yes/no, on/off), got {text!r}")
    return text in common.TRUE


def full(c: ml_collections.ConfigDict) -> None:
    """The whole protocol: 5 seeds (each its own world); grids of 4 points (learning rate × each
    method's own knob, :data:`FULL_GRIDS`) and 2 pretraining learning rates; the λ sweep at 5
    points; the landscape at 5 rating-noise levels for every algorithm over the first 2 seeds
    (its 0.5 level reuses the main runs)."""
    c.seeds = (0, 1, 2, 3, 4)
    c.lambda_sweep = (0.1, 0.3, 1.0, 3.0, 10.0)
    c.landscape_noise = (0.1, 0.25, 0.5, 1.0, 1.5)
    c.landscape_algos = ALGOS
    c.landscape_seeds = (0, 1)
    c.select.grids = ml_collections.ConfigDict(dict(FULL_GRIDS))
    c.select.default_grid = LR4
    c.select.pretrain_grid = "optimizer.learning_rate=1e-3|3e-3"


def parse_variant(name: str, spec: str) -> tuple[str, str]:
    """``(algo, "key=value,...")`` of a variant ``"algo:key=value,..."`` (``;`` may separate
    pairs); ValueError naming the variant for a malformed spec or an unknown algorithm."""
    algo, sep, rest = str(spec).partition(":")
    algo = algo.strip()
    if not sep or not algo:
        raise common.ConfigError(f"config key variants.{name}: expected 'algo:key=value,...', "
                                 f"got {spec!r}")
    if algo not in algorithms.names():
        raise common.ConfigError(f"config key variants.{name}: unknown algorithm {algo!r}; "
                                 f"known: {', '.join(algorithms.names())}")
    pairs = [p.strip() for p in rest.replace(";", ",").split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise common.ConfigError(f"config key variants.{name}: {bad[0]!r} is not key=value")
    return algo, ",".join(pairs)


def variants_of(c: ml_collections.ConfigDict) -> dict[str, tuple[str, str]]:
    """``{row name: (algo, overrides)}`` of the non-empty ``variants``, in config order; the
    names must differ from the algorithms'."""
    out = {}
    for name, spec in c.variants.items():
        if not str(spec).strip():
            continue
        if name in algorithms.names():
            raise common.ConfigError(f"config key variants.{name}: a variant cannot take the "
                                     f"name of a registered algorithm")
        out[name] = parse_variant(name, spec)
    return out


def smoke(c: ml_collections.ConfigDict) -> None:
    common.smoke_base(c)
    c.seeds = (0,)
    c.paired_resamples = 500
    c.pretrain_args = "epochs=3,batch_size=16,model.num_blocks=1"
    c.reward_args = ("reward.num_members=3,reward.num_seeds=1,reward.hidden_dim=16,"
                     "reward.max_len=16,epochs=2,batch_size=16,reward.judge_users=disjoint")
    # log_kl=False: the exact KL to π_ref is only logged; its extra forward pass costs a quarter
    # of each tiny train step's compile time.
    c.posttrain_args = ",".join(["epochs=1,batch_size=16,judge.horizon=2,log_kl=False",
                                 *smoke_overrides()])
    # Three algorithms (an offline one, A-SFT, a reward-model one), no variant rows; the λ sweep
    # and the landscape at the main runs' own point (their plots drawn from the main runs): a
    # check of a fresh install, not a comparison.
    c.algos = ("bc", "asft", "dpo")
    for name in c.variants:
        c.variants[name] = ""
    c.lambda_sweep = (1.0,)
    c.landscape_noise = (0.5,)
    c.landscape_algos = ("bc", "asft")
    # One grid point per row: selection, early stopping and the single test scoring still run.
    c.select.update(max_updates=6, every_updates=3, patience=2, pretrain_max_epochs=3,
                    pretrain_every_epochs=1.0, pretrain_patience=2, default_grid=SMOKE_GRID,
                    grids=ml_collections.ConfigDict({row: SMOKE_GRID for row in FULL_GRIDS}))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = common.base_config()
    c.simulator = common.simulator_block(num_users=400, num_items=300, events_per_user=(15, 40),
                                         policy_temperature=0.5)
    c.seeds = (0, 1)
    c.algos = ALGOS
    c.data.max_len = 50
    # One packed-row shape: the results in docs/results/simulator were computed so, and more
    # shapes would change the pretrained models by float reassociation (same expected result).
    c.data.pack_shapes = 1
    c.model.update(dim=32, qk_dim=32, v_dim=32)
    c.pretrain_args = "epochs=20,loss.kind=full,batch_size=64"
    # Independent judges: member 0 (the reward model dpo/ipo/ppo/grpo optimise) trains on one
    # half of the users, the judges (members 1..4) on the other half.
    c.reward_args = ("reward.num_members=5,reward.num_seeds=1,reward.max_len=50,epochs=10,"
                     "batch_size=64,reward.judge_users=disjoint")
    c.posttrain_args = "epochs=5,batch_size=64,optimizer.learning_rate=3e-4"
    c.algo_args = ml_collections.ConfigDict({a: "" for a in ALGOS})
    c.variants = ml_collections.ConfigDict(dict(VARIANTS))
    c.world_seed = -1
    c.paired_resamples = 2000
    c.select = select_block()
    c.data.validation = True
    # The last 5 events of each user are the test block, the 5 before the validation block (the
    # first of each is the next-item target; all 5 give the graded metrics).
    c.data.holdout = 5
    c.full = False
    # Plot (a): A-SFT at these λ (its block's ``lam``; seeds as above); BC is the λ → ∞ end.
    c.lambda_sweep = (0.3, 1.0, 3.0)
    c.lambda_sweep_algo = "asft"
    c.lambda_sweep_limit = "bc"
    # Plot (c), simulator only: rating noise levels (→ reward-model accuracy), one seed. The
    # simulator's own level (0.5) reuses the main runs.
    c.landscape_noise = (0.25, 0.5, 1.5)
    c.landscape_algos = ("bc", "asft", "ppo")
    c.landscape_seeds = (0,)
    c.full = _flag(arg, "full")
    if c.full:  # before finalize, so smoke and explicit keys still win
        full(c)
    c = common.finalize(c, arg, smoke)
    if int(c.world_seed) < -1:
        raise common.ConfigError(f"config key world_seed must be -1 (= the training seed) or "
                                 f">= 0, got {c.world_seed}")
    variants_of(c)
    if c.select.enabled:
        if not c.data.validation:
            raise common.ConfigError("select.enabled needs data.validation=True (the "
                                     "validation event each choice is made on)")
        if str(c.select.landscape) not in ("reuse", "select"):
            raise common.ConfigError(f"config key select.landscape must be 'reuse' or "
                                     f"'select', got {c.select.landscape!r}")
        grids_of(c, [*c.algos, *variants_of(c)])
        parse_grid("pretrain", c.select.pretrain_grid)
    return c
