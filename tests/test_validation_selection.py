"""Periodic validation during training: the early-stopping monitor, its resume, the training
loop's early stop, pretraining that keeps its validation optimum, and post-training scored on
the test set once, after the run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import posttrain as posttrain_config
from experiments.configs import pretrain as pretrain_config
from genrec_jax import sharding as shd
from genrec_jax.eval.model_eval import evaluate_model
from genrec_jax.train import loop
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.posttrain import posttrain, score_on_test
from genrec_jax.train.pretrain import pretrain
from genrec_jax.train.pretrained import checkpoint_dir, restore_pretrained
from genrec_jax.train.validation import (EvalMonitor, monitor_from_config, read_curve,
                                         steps_between_evals)


class Scripted:
    """``evaluate`` returning a fixed sequence of values (and counting calls)."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self, params):
        self.calls += 1
        return {"ndcg@10": self.values[self.calls - 1], "hr@10": 0.5}


def _state(step=0):
    return {"params": {"w": jnp.full((3,), float(step))}, "step": jnp.asarray(step, jnp.int32)}


def test_monitor_patience_best_and_resume(tmp_path):
    curve = str(tmp_path / "curve.jsonl")
    values = [0.1, 0.3, 0.2, 0.25, 0.05]
    mon = EvalMonitor(Scripted(values), every=2, metric="ndcg@10", patience=2,
                      curve_path=curve, steps_per_epoch=4)
    stops = [mon(step, _state(step), last_step=100) for step in range(1, 11)]
    # Evaluations at steps 2, 4, 6, 8: best 0.3 at step 4, then two without improvement.
    assert stops == [False] * 7 + [True, True, True]
    assert (mon.best_step, mon.best_value, mon.bad_evals) == (4, 0.3, 2)
    assert [r["step"] for r in read_curve(curve)] == [2, 4, 6, 8]
    assert read_curve(curve)[1]["epoch"] == 1.0
    # A run killed after step 6 and resumed there: the step-8 line is dropped, the count and the
    # best come back from the file, and the next evaluation decides.
    again = EvalMonitor(Scripted([0.05]), every=2, metric="ndcg@10", patience=2,
                        curve_path=curve, start_step=6)
    assert [r["step"] for r in read_curve(curve)] == [2, 4, 6]
    assert (again.best_step, again.bad_evals, again.stopped) == (4, 1, False)
    assert again(8, _state(8), last_step=100) is True
    # A stopped run resumed at its stop step is still stopped, without evaluating.
    done = EvalMonitor(Scripted([]), every=2, metric="ndcg@10", patience=2, curve_path=curve,
                       start_step=8)
    assert done.stopped and done.summary()["best_value"] == 0.3


def test_monitor_last_step_ties_and_errors(tmp_path):
    mon = EvalMonitor(Scripted([0.2, 0.2]), every=5, metric="ndcg@10")
    assert [mon(s, _state(s), last_step=7) for s in range(1, 8)] == [False] * 7
    assert [r["step"] for r in mon.curve] == [5, 7]  # the last step is always evaluated
    assert mon.best_step == 5  # ties keep the earlier evaluation
    with pytest.raises(KeyError, match="'mrr' is not among the evaluated ones: hr@10, ndcg@10"):
        EvalMonitor(Scripted([0.1]), every=1, metric="mrr")(1, _state(1), last_step=1)
    with pytest.raises(ValueError, match="patience must be >= 0"):
        EvalMonitor(Scripted([]), every=1, metric="ndcg@10", patience=-1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2: not JSON"):
        read_curve(bad)
    assert steps_between_evals(0.5, 7) == 4 and steps_between_evals(0, 7) == 0
    assert steps_between_evals(0.01, 7) == 1


def test_monitor_config_refuses_selection_on_test(tmp_path):
    cfg = pretrain_config.get_config("smoke=True,eval.every_epochs=1,eval.curve_split=test,"
                                     "eval.keep_best=True")
    with pytest.raises(ValueError, match="would select on the test set"):
        monitor_from_config(cfg.eval, lambda split: None, workdir=str(tmp_path),
                            steps_per_epoch=4, validation_available=True)
    cfg = pretrain_config.get_config("smoke=True,eval.every_epochs=1,eval.patience=2")
    with pytest.raises(ValueError, match="needs data.validation=True"):
        monitor_from_config(cfg.eval, lambda split: None, workdir=str(tmp_path),
                            steps_per_epoch=4, validation_available=False)
    cfg = pretrain_config.get_config("smoke=True,eval.patience=2")
    with pytest.raises(ValueError, match="set eval.every_epochs > 0"):
        monitor_from_config(cfg.eval, lambda split: None, workdir=str(tmp_path),
                            steps_per_epoch=4, validation_available=True)
    off = pretrain_config.get_config("smoke=True")
    assert monitor_from_config(off.eval, lambda split: None, workdir=str(tmp_path),
                               steps_per_epoch=4, validation_available=False) is None


def test_loop_stops_early_checkpoints_and_stays_stopped(tmp_path):
    """A counter 'trained' by the loop: the monitor stops it at step 6 (patience 2 after the
    best at step 2); the stop step is checkpointed, and a resumed run trains no further."""
    mesh = shd.mesh_from_config({"data": 1, "model": 1})

    def step_fn(graphdef, state, batch):
        new = {"params": {"w": state["params"]["w"] + 1.0}, "step": state["step"] + 1}
        return new, {"loss": jnp.float32(1.0)}

    def monitor():
        return EvalMonitor(Scripted([0.1, 0.5, 0.4, 0.3, 0.9]), every=1, metric="ndcg@10",
                           patience=2, curve_path=str(tmp_path / "c.jsonl"),
                           best_dir=str(tmp_path / "best"),
                           start_step=int(ckpt.latest_step or 0))

    ckpt = Checkpointer(str(tmp_path / "ckpt"), every=100, keep=2)
    state, _, timing = loop.run(step_fn=step_fn, graphdef=None, state=_state(0),
                                batch_at=lambda s: {"x": np.zeros((8, 1), np.float32)},
                                mesh=mesh, num_steps=20, checkpointer=ckpt, verbose=False,
                                monitor=(mon := monitor()))
    assert timing["steps_done"] == 4 and int(state["step"]) == 4
    assert ckpt.latest_step == 4 and mon.best_step == 2
    best = mon.restore_best(_state(0))
    np.testing.assert_array_equal(np.asarray(best["params"]["w"]), [2.0, 2.0, 2.0])
    mon.close()
    restored, _ = loop.resume(ckpt, _state(0), verbose=False)
    again = monitor()
    state2, _, timing2 = loop.run(step_fn=step_fn, graphdef=None, state=restored,
                                  batch_at=lambda s: {"x": np.zeros((8, 1), np.float32)},
                                  mesh=mesh, num_steps=20, checkpointer=ckpt, verbose=False,
                                  monitor=again)
    assert int(state2["step"]) == 4 and timing2["steps_done"] == 4
    again.close()
    ckpt.close()


def test_pretrain_keeps_its_validation_optimum(tmp_path):
    workdir = str(tmp_path / "pre")
    cfg = pretrain_config.get_config("smoke=True,epochs=4,data.validation=True,"
                                     "eval.every_epochs=1,eval.keep_best=True")
    metrics, graphdef, params, data = pretrain(cfg, workdir, verbose=False)
    curve = read_curve(os.path.join(workdir, "eval_curve.jsonl"))
    assert [r["epoch"] for r in curve] == [1.0, 2.0, 3.0, 4.0]
    best = max(curve, key=lambda r: r["ndcg@10"])
    assert metrics["validation"]["best_step"] == best["step"]
    assert metrics["validation"]["best_value"] == pytest.approx(best["ndcg@10"])
    # Downstream stages load the selected state, and the test metrics are that state's.
    assert checkpoint_dir(workdir).endswith("best")
    _, loaded, _ = restore_pretrained(workdir, data.dataset.num_items,
                                      shd.mesh_from_config(cfg.mesh))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    valid = evaluate_model(graphdef, loaded, data.valid, batch_size=int(cfg.eval.batch_size))
    assert valid["ndcg@10"] == pytest.approx(best["ndcg@10"], abs=1e-6)
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["ndcg@10"] == pytest.approx(metrics["ndcg@10"])


def test_posttrain_scored_later_equals_scored_at_the_end(tmp_path):
    """``eval.final_test=False`` + :func:`score_on_test` gives exactly the test metrics and
    per-user files of a run scored at its end."""
    pre = str(tmp_path / "pre")
    pretrain(pretrain_config.get_config("smoke=True,epochs=2,data.validation=True"), pre,
             verbose=False)
    common = ("smoke=True,algo=bc,num_steps=4,data.validation=True,eval.every_steps=2,"
              "eval.keep_best=True,judge.enabled=False")
    at_end = posttrain(posttrain_config.get_config(common), str(tmp_path / "a"), init_dir=pre,
                       verbose=False)
    later_dir = str(tmp_path / "b")
    trained = posttrain(posttrain_config.get_config(common + ",eval.final_test=False"),
                        later_dir, init_dir=pre, verbose=False)
    assert "final" not in trained and not os.path.exists(os.path.join(later_dir,
                                                                      "per_user.npz"))
    assert trained["train"]["updates"] == 4 and trained["train"]["samples"] == 4 * 16
    later = score_on_test(later_dir, init_dir=pre)
    for key in ("ndcg@10", "hr@10", "mrr", "true_rating@10"):
        assert later["final"][key] == pytest.approx(at_end["final"][key], abs=1e-7), key
        assert later["initial"][key] == pytest.approx(at_end["initial"][key], abs=1e-7), key
    a = np.load(os.path.join(tmp_path / "a", "per_user.npz"))
    b = np.load(os.path.join(later_dir, "per_user.npz"))
    np.testing.assert_allclose(a["ndcg@10"], b["ndcg@10"], atol=1e-7)
