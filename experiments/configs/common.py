"""Shared pieces of the experiment configs: the ``key=value,...`` argument and shared blocks.

``--config=experiments/configs/X.py:dataset=ml-100k,data_dir=/data,smoke=True`` passes the text
after ``:`` to ``get_config``. Keys may be dotted (``model.dim=64``); values are parsed as the
type of the field they replace. ``smoke=True`` is applied first, so explicit keys win over it.

:func:`validate` checks types and ranges naming the key (``batch_size`` > 0, learning rate > 0,
``epochs`` >= 1, ...); ``finalize`` calls it, and the launchers call it again after absl applied
``--config.key=value`` overrides. ``smoke`` must be given in the config string
(``--config=...py:smoke=True``): ``--config.smoke=True`` would set the flag without the smoke
settings, so the launchers refuse it.
"""

from __future__ import annotations

import math

import ml_collections

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the key."""


def parse_arg(arg: str | None) -> dict[str, str]:
    out = {}
    for part in (arg or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"config argument {part!r} is not of the form key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _coerce(old, text: str, key: str):
    if isinstance(old, bool):
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise ConfigError(f"config key {key}: expected a boolean (true/false, 1/0, yes/no, "
                          f"on/off), got {text!r}")
    if isinstance(old, (tuple, list)):
        kind = type(old[0]) if old else str
        return tuple(_coerce(kind(), x, key) if kind in (bool, int, float) else x
                     for x in text.split(":"))
    try:
        if isinstance(old, int):
            return int(text)
        if isinstance(old, float):
            return float(text)
    except ValueError:
        kind = "an integer" if isinstance(old, int) else "a number"
        raise ConfigError(f"config key {key}: expected {kind}, got {text!r}") from None
    return text


def set_path(cfg: ml_collections.ConfigDict, key: str, text: str) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for name in parents:
        if name not in node:
            raise KeyError(f"unknown config key {key!r}")
        node = node[name]
    if leaf not in node:
        raise KeyError(f"unknown config key {key!r}; known: {sorted(node.keys())}")
    node[leaf] = _coerce(node[leaf], text, key)


def finalize(cfg: ml_collections.ConfigDict, arg: str | None,
             smoke_fn) -> ml_collections.ConfigDict:
    """Applies ``smoke`` (if asked) then the explicit overrides, then :func:`validate`."""
    overrides = parse_arg(arg)
    smoke = _coerce(False, overrides.pop("smoke", "false"), "smoke")
    cfg.smoke = smoke
    if smoke:
        smoke_fn(cfg)
    for key, value in overrides.items():
        set_path(cfg, key, value)
    return validate(cfg)


# ---------------------------------------------------------------------------------- validation

_MIN_INTS = {  # dotted key: smallest allowed value
    "batch_size": 1, "epochs": 1, "log_every": 1, "checkpoint_every": 1, "keep_checkpoints": 1,
    "eval.batch_size": 1, "data.max_len": 1, "loss.negatives_share": 1, "data.pack_shapes": 1,
}
_POSITIVE_FLOATS = ("optimizer.learning_rate",)
_INTS = ("seed", "num_steps")
_BOOLS = ("smoke", "download")


def _get(cfg, dotted: str):
    node = cfg
    for name in dotted.split("."):
        if not hasattr(node, "keys") or name not in node:
            return _ABSENT
        node = node[name]
    return node


_ABSENT = object()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def known_algorithms() -> tuple[str, ...]:
    """Post-training algorithm names: ``genrec_jax.train.algorithms.names()`` where that
    registry exists (and is filled), else ``genrec_jax.train.posttrain.ALGOS``."""
    try:
        from genrec_jax.train import algorithms

        names = tuple(algorithms.names())
        if names:
            return names
    except (ImportError, AttributeError):
        pass
    from genrec_jax.train.posttrain import ALGOS

    return tuple(ALGOS)


def known_datasets() -> tuple[str, ...]:
    from genrec_jax.data import DATASETS

    return tuple(DATASETS)


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks types and ranges of the keys a config has; raises :class:`ConfigError` naming the
    key (``batch_size must be an integer >= 1, got 0``). Returns ``cfg``."""
    for key in _BOOLS:
        value = _get(cfg, key)
        if value is not _ABSENT and not isinstance(value, bool):
            raise ConfigError(f"config key {key} must be a boolean (True/False), got {value!r}")
    for key in _INTS:
        value = _get(cfg, key)
        if value is not _ABSENT and not _is_int(value):
            raise ConfigError(f"config key {key} must be an integer, got {value!r}")
    for key, low in _MIN_INTS.items():
        value = _get(cfg, key)
        if value is not _ABSENT and not (_is_int(value) and value >= low):
            raise ConfigError(f"config key {key} must be an integer >= {low}, got {value!r}")
    for key in _POSITIVE_FLOATS:
        value = _get(cfg, key)
        if value is _ABSENT:
            continue
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and not math.isnan(value) and value > 0)
        if not ok:
            raise ConfigError(f"config key {key} must be a number > 0, got {value!r}")
    dataset = _get(cfg, "dataset")
    if dataset is not _ABSENT:
        known = known_datasets()
        if not isinstance(dataset, str) or not (dataset in known or dataset.startswith("tfds:")):
            raise ConfigError(f"config key dataset: unknown data set {dataset!r}; known: "
                              f"{', '.join(known)}, or tfds:movielens/<release>-ratings")
    for key in ("algo", "algos", "landscape_algos"):
        value = _get(cfg, key)
        if value is _ABSENT:
            continue
        names = known_algorithms()
        for name in (value,) if isinstance(value, str) else tuple(value):
            if name not in names:
                raise ConfigError(f"config key {key}: unknown algorithm {name!r}; known: "
                                  f"{', '.join(names)}")
    return cfg


def simulator_block(**overrides) -> ml_collections.ConfigDict:
    """Knobs of the embedded simulator: every field of
    genrec_jax.data.simulator.SimulatorConfig (its defaults and formulas are documented there,
    so ``simulator.series_bonus=...`` etc. work on the command line), with the default world's
    sizes: 1000 users, 600 items, 20–80 events per user, policy temperature 1.0."""
    import dataclasses

    from genrec_jax.data.simulator import SimulatorConfig

    block = {f.name: f.default for f in dataclasses.fields(SimulatorConfig)}
    block.update(num_users=1000, num_items=600, events_per_user=(20, 80),
                 policy_temperature=1.0, seed=0)
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def data_block(**overrides) -> ml_collections.ConfigDict:
    # pack: several users per row for training (exactly the same computation, less padding).
    # pack_shapes: at most this many packed-row counts (one compilation each), chosen to
    # minimise the rows of the run (genrec_jax.data.packing; 1 = every batch as wide as the
    # widest).
    # rating_scale (dataset=csv only): lo:hi accepts any rating in [lo, hi]; lo:hi:step also
    # requires lo + k·step (data.rating_scale=0.5:5:0.5 half stars, =1:10:1 a 1-10 scale).
    # holdout: events held out per user for test (and for validation): 1 = leave-last-out; k > 1
    # adds the graded multi-target metrics over the k held-out events (genrec_jax.eval.holdout).
    block = dict(max_len=200, min_events=3, validation=False, holdout=1, pack=True,
                 pack_shapes=4, rating_scale=(1.0, 5.0))
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def model_block(**overrides) -> ml_collections.ConfigDict:
    """The encoder (genrec_jax.models.encoders): ``kind`` "hstu" (default) or "sasrec".

    Defaults: HSTU's public ML-1M configuration (output_slots: see genrec_jax.models.hstu).
    SASRec reads ``dim``, ``num_blocks``, ``num_heads``, ``dropout`` and ``temperature`` only;
    their defaults (D = 50, 2 blocks, 1 head, dropout 0.2) are also SASRec's usual setting, so
    ``model.kind=sasrec`` alone gives the paper's configuration. ``qk_dim``, ``v_dim``,
    ``num_time_buckets`` and ``output_slots`` are HSTU-only.
    """
    block = dict(kind="hstu", dim=50, num_blocks=2, num_heads=1, qk_dim=50, v_dim=50,
                 dropout=0.2, temperature=0.05, num_time_buckets=128, output_slots=11)
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def eval_block(**overrides) -> ml_collections.ConfigDict:
    """Evaluation: ``batch_size``, ``exclude`` (history | window: the items banned from the
    ranking) and the periodic evaluation of a training run (genrec_jax.train.validation):
    ``every_epochs`` (0 = none; ``every_steps`` > 0 counts in optimizer steps instead),
    ``curve_split`` (validation | test; the curve is
    WORKDIR/eval_curve.jsonl), ``metric`` (maximised), ``patience`` (evaluations without
    improvement before an early stop; 0 = never) and ``keep_best`` (end with the best
    evaluation's state, saved in WORKDIR/best; downstream stages load that one). Selecting
    (patience, keep_best) needs ``curve_split=validation`` and ``data.validation=True``.
    ``final_test`` (post-training): score the test set at the end of the run; False leaves it
    to a later ``genrec_jax.train.posttrain.score_on_test`` (a validation grid scores only the
    configuration it selects)."""
    block = dict(batch_size=256, exclude="history", every_epochs=0.0, every_steps=0,
                 curve_split="validation", metric="ndcg@10", patience=0, keep_best=False,
                 final_test=True)
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def base_config() -> ml_collections.ConfigDict:
    """Fields every experiment has: data source, mesh, logging and checkpoints."""
    c = ml_collections.ConfigDict()
    c.dataset = "simulator"
    c.data_dir = ""
    c.download = False
    c.cache_dir = "~/.cache/genrec_jax"
    c.smoke = False
    c.seed = 0
    c.simulator = simulator_block()
    c.data = data_block()
    c.model = model_block()
    c.precision = "float32"
    c.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
    c.eval = eval_block()
    c.checkpoint_every = 200
    c.keep_checkpoints = 3
    c.log_every = 20
    return c


def smoke_base(c: ml_collections.ConfigDict) -> None:
    """A seconds-long run on a tiny simulator."""
    c.simulator.num_users = 64
    c.simulator.num_items = 80
    c.simulator.events_per_user = (8, 20)
    c.data.max_len = 16
    c.model.dim = 16
    c.model.qk_dim = 8
    c.model.v_dim = 8
    c.eval.batch_size = 64
    c.checkpoint_every = 10
    c.log_every = 5
