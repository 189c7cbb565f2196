"""The pretrained policy that post-training starts from: its config, compatibility with the
post-training data, and its parameters restored onto the current mesh."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from genrec_jax import sharding as shd
from genrec_jax.models.encoders import build_encoder
from genrec_jax.train import algorithms
from genrec_jax.train.algorithms.heads import HEAD_KEY, policy_params
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.pretrain import model_config
from genrec_jax.train.state import make_optimizer
from genrec_jax.train.validation import BEST_DIR


def load_init_config(init_dir: str) -> ml_collections.ConfigDict:
    """The config a pretraining workdir was trained with (``init_dir/config.json``)."""
    path = os.path.join(os.fspath(init_dir), "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init={init_dir} is not a pretraining workdir: {path} is "
                                "missing (run experiments.pretrain first)")
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def saved_head_names(init_cfg) -> tuple[str, ...]:
    """The head scalars (``params["algo_head"]``) a saved run's checkpoints hold: those of its
    post-training algorithm and block (``()`` for pretraining runs and head-less algorithms)."""
    name = init_cfg.get("algo")
    if not name or name not in algorithms.names() or name not in init_cfg:
        return ()
    return algorithms.get(name).head_names(init_cfg[name])


def _plain(x):
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (ml_collections.ConfigDict, dict)):
        return {k: _plain(v) for k, v in dict(x).items()}
    return x


def check_compatible(cfg, init_cfg) -> None:
    """Raises ValueError unless ``cfg`` describes the data the pretrained model was trained on
    (dataset, simulator knobs, ``data.max_len`` / ``min_events`` / ``validation`` / ``holdout``)
    with the same encoder (``model.kind``; configs without it mean HSTU)."""
    kind, init_kind = (str(c.get("model", {}).get("kind", "hstu")) for c in (cfg, init_cfg))
    if kind != init_kind:
        raise ValueError(f"model.kind={kind} in this config but the pretrained run (--init "
                         f"config.json) is model.kind={init_kind}: pass model.kind={init_kind} "
                         f"(or pretrain with model.kind={kind})")
    diffs = []
    if str(cfg.dataset) != str(init_cfg.dataset):
        diffs.append(f"dataset: {cfg.dataset} vs {init_cfg.dataset}")
    if str(cfg.dataset) == "simulator":
        a, b = _plain(cfg.simulator), _plain(init_cfg.simulator)
        diffs += [f"simulator.{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b))
                  if a.get(k) != b.get(k)]
    defaults = {"holdout": 1}  # configs saved before a key existed
    for key in ("max_len", "min_events", "validation", "holdout"):
        a, b = (_plain(c.data.get(key, defaults.get(key))) for c in (cfg, init_cfg))
        if a != b:
            diffs.append(f"data.{key}: {a} vs {b}")
    if diffs:
        raise ValueError("the post-training data differ from the pretraining run's (this config "
                         "vs --init config.json): " + "; ".join(diffs))


def _with_table(params, table_size: int):
    item_emb = params["item_emb"]
    rows = item_emb.shape[0]
    if rows == table_size:
        return params
    fixed = (item_emb[:table_size] if rows > table_size
             else np.pad(np.asarray(item_emb), ((0, table_size - rows), (0, 0))))
    return dict(params, item_emb=fixed)


def checkpoint_dir(init_dir: str, step: int | None = None) -> str:
    """The checkpoint folder a run is loaded from: ``best/`` (the state its validation
    selected, ``eval.keep_best``) when it holds one and no ``step`` is asked for, else
    ``checkpoints/``."""
    best = os.path.join(os.fspath(init_dir), BEST_DIR)
    if step is None and os.path.isdir(best) and any(n.isdigit() for n in os.listdir(best)):
        return best
    return os.path.join(os.fspath(init_dir), "checkpoints")


def restore_pretrained(init_dir: str, num_items: int, mesh, *, dropout: float | None = None,
                       precision: str | None = None, init_cfg=None, step: int | None = None):
    """``(graphdef, params, encoder_config)`` from the selected (:func:`checkpoint_dir`: the best
    on validation when the run kept it, else the latest) or ``step``-th checkpoint of a
    pretraining workdir, restored onto ``mesh`` (item table row-sharded over ``model``).

    The architecture comes from ``init_dir/config.json``; ``dropout`` (if given) replaces the
    model's dropout rate for post-training and ``precision`` (if given) its compute precision
    (the parameters depend on neither). The encoder kind (HSTU / SASRec) is ``model.kind`` of
    that config (HSTU when absent). A checkpoint
    saved with another ``model`` mesh size (a differently padded item table) is re-padded.
    """
    init_cfg = init_cfg if init_cfg is not None else load_init_config(init_dir)
    hcfg = model_config(init_cfg, num_items, mesh)
    if dropout is not None:
        hcfg = dataclasses.replace(hcfg, dropout=float(dropout))
    if precision is not None:
        hcfg = dataclasses.replace(hcfg, precision=str(precision))
    saved_multiple = int(init_cfg.mesh.get("model", 1)) if "mesh" in init_cfg else 1
    saved_cfg = dataclasses.replace(hcfg, table_multiple=max(saved_multiple, 1))
    _, abstract = nnx.split(nnx.eval_shape(lambda: build_encoder(saved_cfg, nnx.Rngs(0))))
    abstract = abstract.to_pure_dict()
    rep = shd.replicated(mesh)
    divisible = saved_cfg.table_size % mesh.shape[shd.MODEL] == 0

    def shardings_of(tree):
        if divisible:
            return shd.param_shardings(tree, mesh)
        return jax.tree.map(lambda _: rep, tree)

    def sds(tree):
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            tree, shardings_of(tree))

    params_t = sds(abstract)
    head = saved_head_names(init_cfg)
    if head:  # a post-training run whose algorithm trained a head beside the policy
        params_t = {**params_t, HEAD_KEY: {k: jax.ShapeDtypeStruct((), jnp.float32, sharding=rep)
                                           for k in head}}
    opt_t = sds(jax.eval_shape(make_optimizer(init_cfg.optimizer).init, params_t))
    key_t = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    target = {"params": params_t, "opt_state": opt_t,
              "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
              "rng": jax.ShapeDtypeStruct(key_t.shape, key_t.dtype, sharding=rep)}
    ckpt = Checkpointer(checkpoint_dir(init_dir, step))
    try:
        if ckpt.latest_step is None:
            raise FileNotFoundError(f"--init={init_dir}: no checkpoint in {ckpt.directory}")
        state, _ = ckpt.restore(target, step)
    finally:
        ckpt.close()
    params = policy_params(state["params"])
    if saved_cfg.table_size != hcfg.table_size or not divisible:
        host = _with_table(jax.device_get(params), hcfg.table_size)
        params = jax.device_put(host, shd.param_shardings(host, mesh))
    graphdef = nnx.split(nnx.eval_shape(lambda: build_encoder(hcfg, nnx.Rngs(0))))[0]
    return graphdef, params, hcfg


def copy_params(params):
    """A copy with its own buffers (so donating the train state never frees the reference)."""
    return jax.tree.map(lambda x: x.copy(), params)
