"""Next-item pretraining (behaviour cloning) of HSTU or SASRec, end to end from a config.

``pretrain(cfg, workdir)`` prepares the data, initialises (or resumes) the model on the mesh,
trains with sampled or full softmax, evaluates on the leave-last-out test split and writes
``workdir/metrics.json``. Launchers, benchmarks and the comparison pipeline all call it.
"""

from __future__ import annotations

import math
import os

import jax

from genrec_jax import sharding as shd
from genrec_jax.data.prepare import PreparedData, prepare_data
from genrec_jax.eval.model_eval import evaluate_model, evaluate_popularity
from genrec_jax.io import write_json
from genrec_jax.models.encoders import EncoderConfig, build_encoder, encoder_config
from genrec_jax.train import loop
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.next_item import mean_over_targets, next_item_losses
from genrec_jax.train.state import init_params, init_train_state, make_optimizer
from genrec_jax.train.step import make_train_step
from genrec_jax.train.validation import monitor_from_config


def model_config(cfg, num_items: int, mesh) -> EncoderConfig:
    """The encoder config (HSTU or SASRec, by ``model.kind``) of an experiment config: the
    ``model`` block, ``data.max_len``, the ``model`` mesh size and the top-level ``precision``
    (configs saved before ``kind`` / ``precision`` existed mean HSTU in float32)."""
    return encoder_config(cfg.model, num_items, max_len=int(cfg.data.max_len),
                          table_multiple=int(mesh.shape[shd.MODEL]),
                          precision=str(cfg.get("precision", "float32")))


def next_item_loss_fn(loss_cfg, mesh=None):
    """``loss_fn(model, batch, key)`` for behaviour cloning with ``batch["weights"]``."""

    def loss_fn(model, batch, key):
        per_pos, _ = next_item_losses(
            model, batch, key, loss=loss_cfg.kind, num_negatives=int(loss_cfg.num_negatives),
            negatives_mode=loss_cfg.negatives_mode,
            negatives_share=int(loss_cfg.get("negatives_share", 1)), impl=loss_cfg.impl,
            chunk_size=int(loss_cfg.chunk_size), mesh=mesh)
        return mean_over_targets(per_pos, batch["targets"]), {}

    return loss_fn


def num_steps_for(cfg, steps_per_epoch: int) -> int:
    return int(cfg.num_steps) if int(cfg.num_steps) > 0 else int(cfg.epochs) * steps_per_epoch


def build_model(cfg, data: PreparedData, mesh):
    """``(encoder config, graphdef, params)`` of a freshly initialised encoder on ``mesh``."""
    mcfg = model_config(cfg, data.dataset.num_items, mesh)
    graphdef, params = init_params(lambda rngs: build_encoder(mcfg, rngs), int(cfg.seed), mesh)
    return mcfg, graphdef, params


def pretrain(cfg, workdir: str, *, data: PreparedData | None = None, verbose: bool = True):
    """Trains and evaluates; returns ``(metrics, graphdef, params, data)``."""
    os.makedirs(workdir, exist_ok=True)
    main_process = jax.process_index() == 0
    if main_process:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))
    mesh = shd.mesh_from_config(cfg.mesh)
    shd.divisible_batch(int(cfg.batch_size), mesh)
    data = data or prepare_data(cfg)
    _, graphdef, params = build_model(cfg, data, mesh)
    optimizer = make_optimizer(cfg.optimizer)
    state = init_train_state(params, optimizer, int(cfg.seed), mesh)
    steps_per_epoch = data.steps_per_epoch(int(cfg.batch_size))
    num_steps = num_steps_for(cfg, steps_per_epoch)
    batcher = data.train_batcher(
        int(cfg.batch_size), int(cfg.seed), pack=bool(cfg.data.pack), num_steps=num_steps,
        row_multiple=math.lcm(8, mesh.shape[shd.DATA]),
        max_shapes=int(cfg.data.get("pack_shapes", 1)))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), every=int(cfg.checkpoint_every),
                        keep=int(cfg.keep_checkpoints))
    state, _ = loop.resume(ckpt, state)
    writer = MetricWriter(workdir, enabled=main_process)
    eval_bs = int(cfg.eval.batch_size)

    def evaluate_on(split):
        arrays = data.valid if split == "validation" else data.test
        return lambda params: evaluate_model(graphdef, params, arrays, batch_size=eval_bs)

    monitor = monitor_from_config(cfg.eval, evaluate_on, workdir=workdir,
                                  steps_per_epoch=steps_per_epoch, writer=writer,
                                  start_step=int(jax.device_get(state["step"])),
                                  validation_available=data.valid is not None,
                                  enabled=main_process)
    step_fn = make_train_step(next_item_loss_fn(cfg.loss, mesh), optimizer, state)
    state, _, timing = loop.run(step_fn=step_fn, graphdef=graphdef, state=state,
                        batch_at=batcher.batch_at, mesh=mesh, num_steps=num_steps,
                        checkpointer=ckpt, writer=writer, log_every=int(cfg.log_every),
                        meta={"dataset": cfg.dataset}, verbose=verbose,
                        describe={"pretrain": str(cfg.get("model", {}).get("kind", "hstu")),
                                  "dataset": cfg.dataset, "users": data.dataset.num_users,
                                  "items": data.dataset.num_items,
                                  "steps/epoch": steps_per_epoch}, monitor=monitor)
    selection = {}
    if monitor is not None:
        selection = {"validation": monitor.summary(), "steps_done": timing["steps_done"]}
        if bool(cfg.eval.keep_best):
            state = monitor.restore_best(state)
        monitor.close()
    metrics = evaluate_model(graphdef, state["params"], data.test, batch_size=eval_bs)
    metrics["popularity"] = evaluate_popularity(data)
    done = int(timing["steps_done"])
    metrics.update(steps=done, epochs=done / steps_per_epoch,
                   compile_seconds=timing["compile_seconds"],
                   compiled_shapes=timing["compiled_shapes"],
                   seconds_per_epoch=timing["step_seconds"] * steps_per_epoch,
                   dataset=str(cfg.dataset),
                   num_users=int(data.dataset.num_users), num_items=int(data.dataset.num_items),
                   **selection)
    writer.write(done, {k: v for k, v in metrics.items()
                        if isinstance(v, float) and math.isfinite(v)},
                 prefix="test/")
    writer.close()
    ckpt.close()
    if main_process:
        write_json(os.path.join(workdir, "metrics.json"), metrics)
    return metrics, graphdef, state["params"], data
