"""Shared pieces of the experiment configs: the ``key=value,...`` argument and shared blocks.

``--config=experiments/configs/X.py:dataset=ml-100k,data_dir=/data,smoke=True`` passes the text
after ``:`` to ``get_config``. Keys may be dotted (``model.dim=64``); values are parsed as the
type of the field they replace. ``smoke=True`` is applied first, so explicit keys win over it.
"""

from __future__ import annotations

import ml_collections

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_arg(arg: str | None) -> dict[str, str]:
    out = {}
    for part in (arg or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"config argument {part!r} is not of the form key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _coerce(old, text: str, key: str):
    if isinstance(old, bool):
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise ValueError(f"config {key}: expected a boolean, got {text!r}")
    if isinstance(old, int):
        return int(text)
    if isinstance(old, float):
        return float(text)
    if isinstance(old, (tuple, list)):
        return tuple(type(old[0])(x) if old else x for x in text.split(":"))
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


def finalize(cfg: ml_collections.ConfigDict, arg: str | None, smoke_fn) -> ml_collections.ConfigDict:
    """Applies ``smoke`` (if asked) then the explicit overrides."""
    overrides = parse_arg(arg)
    smoke = overrides.pop("smoke", "false").lower() in TRUE
    cfg.smoke = smoke
    if smoke:
        smoke_fn(cfg)
    for key, value in overrides.items():
        set_path(cfg, key, value)
    return cfg


def simulator_block(**overrides) -> ml_collections.ConfigDict:
    """Knobs of the embedded simulator (genrec_jax.data.simulator.SimulatorConfig)."""
    block = dict(num_users=1000, num_items=600, dim=8, zipf_exponent=1.0,
                 events_per_user=(20, 80), rating_noise=0.5, policy_quality=0.5,
                 policy_temperature=1.0, seed=0)
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def data_block(**overrides) -> ml_collections.ConfigDict:
    # pack: several users per row for training (exactly the same computation, less padding).
    block = dict(max_len=200, min_events=3, validation=False, pack=True)
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def model_block(**overrides) -> ml_collections.ConfigDict:
    """HSTU, the public ML-1M configuration (output_slots: see genrec_jax.models.hstu)."""
    block = dict(dim=50, num_blocks=2, num_heads=1, qk_dim=50, v_dim=50, dropout=0.2,
                 temperature=0.05, num_time_buckets=128, output_slots=11)
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
    c.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
    c.eval = ml_collections.ConfigDict(dict(batch_size=256, exclude="history"))
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
