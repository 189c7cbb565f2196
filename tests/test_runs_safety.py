"""Runs never mislabel or lose results: workdir fingerprints, checkpoint fallback, config
validation, progress lines and TensorBoard files.

Library-level tests come first (seconds in all); the launcher tests at the end run
``python -m experiments.<launcher>`` in subprocesses with smoke configs and check the exit status
and the exact message a user sees.
"""

import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import common
from experiments.configs import compare as compare_config
from experiments.configs import posttrain as posttrain_config
from experiments.configs import pretrain as pretrain_config
from experiments.configs import reward as reward_config
from genrec_jax import sharding as shd
from genrec_jax.train import loop
from genrec_jax.train import workdir as wd
from genrec_jax.train.checkpoint import Checkpointer, CheckpointError
from genrec_jax.train.metrics_writer import MetricWriter
from genrec_jax.train.progress import Progress, Stages, format_seconds
from tests.scripts import procs

REFUSAL_TAIL = ("; refusing to resume it. Pass --overwrite to delete that run and start again, "
                "or use another --workdir.")


# ------------------------------------------------------------------------- workdir fingerprint


def test_fingerprint_ignores_volatile_keys_only():
    cfg = pretrain_config.get_config("smoke=True")
    base = wd.fingerprint(wd.identity(cfg, "pretrain"))
    for key, value in (("log_every", 7), ("checkpoint_every", 3), ("keep_checkpoints", 9)):
        other = pretrain_config.get_config(f"smoke=True,{key}={value}")
        assert wd.fingerprint(wd.identity(other, "pretrain")) == base, key
    for arg in ("eval.batch_size=32", "data.pack_shapes=1"):
        other = pretrain_config.get_config(f"smoke=True,{arg}")
        assert wd.fingerprint(wd.identity(other, "pretrain")) == base, arg
    for arg in ("seed=1", "epochs=4", "optimizer.learning_rate=0.002", "model.dim=8"):
        other = pretrain_config.get_config(f"smoke=True,{arg}")
        assert wd.fingerprint(wd.identity(other, "pretrain")) != base, arg
    assert wd.fingerprint(wd.identity(cfg, "reward")) != base
    assert wd.fingerprint(wd.identity(cfg, "pretrain", {"init": "/a"})) != base
    # Stable: a 16-digit hex SHA-256 prefix of the canonical JSON, equal across calls.
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert wd.fingerprint(wd.identity(pretrain_config.get_config("smoke=True"), "pretrain")) == base


def _snapshot(folder):
    """{relative path: bytes} of every file below ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def test_prepare_new_then_resume_then_refuse_then_overwrite(tmp_path):
    cfg = posttrain_config.get_config("algo=asft,smoke=True")
    run = tmp_path / "run"
    assert wd.prepare(run, cfg, "posttrain") == "new"
    record = json.loads((run / "run.json").read_text())
    assert record["fingerprint"] == wd.fingerprint(wd.identity(cfg, "posttrain"))
    assert record["identity"]["config"]["algo"] == "asft"
    # Same config (a volatile key changed): resume.
    assert wd.prepare(run, posttrain_config.get_config("algo=asft,smoke=True,log_every=1"),
                      "posttrain") == "resume"
    # Results of the first run exist; another algorithm / seed is refused and writes nothing.
    (run / "config.json").write_text('{"algo": "asft"}')
    (run / "checkpoints").mkdir()
    (run / "metrics.json").write_text('{"asft": 1}')
    before = _snapshot(run)
    bc = posttrain_config.get_config("algo=bc,smoke=True,seed=1")
    with pytest.raises(wd.WorkdirMismatchError) as err:
        wd.prepare(run, bc, "posttrain")
    assert str(err.value) == (f"workdir {run} holds a different run (algo: 'asft' → 'bc'; "
                              f"seed: 0 → 1)" + REFUSAL_TAIL)
    assert _snapshot(run) == before
    # Another launcher on the same config is refused too.
    with pytest.raises(wd.WorkdirMismatchError, match="launcher: 'posttrain' → 'pretrain'"):
        wd.prepare(run, cfg, "pretrain")
    # --overwrite: the old contents go, a new record is written.
    assert wd.prepare(run, bc, "posttrain", overwrite=True) == "overwritten"
    assert sorted(os.listdir(run)) == ["run.json"]
    assert json.loads((run / "run.json").read_text())["identity"]["config"]["algo"] == "bc"


def test_prepare_on_other_processes_only_reads(tmp_path):
    cfg = pretrain_config.get_config("smoke=True")
    assert wd.prepare(tmp_path / "a", cfg, "pretrain", write=False) == "new"
    assert not (tmp_path / "a").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    cfg = pretrain_config.get_config("smoke=True")
    with pytest.raises(wd.WorkdirMismatchError) as err:
        wd.prepare(tmp_path, cfg, "pretrain", overwrite=True)
    assert str(err.value) == (f"--overwrite: {tmp_path} is not empty and is not a run folder "
                              "(no run.json, config.json or checkpoints/); refusing to delete "
                              "it. Use another --workdir.")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # Without --overwrite such a folder is simply used.
    assert wd.prepare(tmp_path, cfg, "pretrain") == "new"


def test_folder_from_before_run_json_is_judged_by_its_config_json(tmp_path):
    old = pretrain_config.get_config("smoke=True")
    (tmp_path / "config.json").write_text(old.to_json_best_effort(indent=2, sort_keys=True))
    assert wd.prepare(tmp_path, pretrain_config.get_config("smoke=True,log_every=2"),
                      "pretrain") == "resume"
    (tmp_path / "run.json").unlink()
    with pytest.raises(wd.WorkdirMismatchError, match=r"\(seed: 0 → 3\)"):
        wd.prepare(tmp_path, pretrain_config.get_config("smoke=True,seed=3"), "pretrain")


def test_checkpoints_of_an_unknown_run_are_not_resumed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(wd.WorkdirMismatchError, match="holds checkpoints of an unknown run"):
        wd.prepare(tmp_path, pretrain_config.get_config("smoke=True"), "pretrain")


# ------------------------------------------------------------------------- checkpoint fallback


def _state(value: float, step: int):
    return {"w": jnp.full((3, 2), value, jnp.float32), "step": jnp.asarray(step, jnp.int32)}


def _saved(folder, steps=(4, 8, 12), keep=3):
    ckpt = Checkpointer(folder, every=4, keep=keep)
    for s in steps:
        assert ckpt.save(s, _state(float(s) / 4, s))
    ckpt.close()


def _damage(folder, step, how="truncate"):
    """Makes ``folder/<step>`` unreadable: array data truncated, or the state metadata gone."""
    root = os.path.join(folder, str(step))
    if how == "delete":
        os.remove(os.path.join(root, "state", "manifest.ocdbt"))
        return
    hit = 0
    for dirpath, _, files in os.walk(os.path.join(root, "state")):
        if os.path.basename(dirpath) == "d":
            for name in files:
                with open(os.path.join(dirpath, name), "r+b") as f:
                    f.truncate(5)
                hit += 1
    assert hit, "no array data files found to truncate"


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_restore_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog, how):
    folder = tmp_path / "checkpoints"
    _saved(folder)
    _damage(folder, 12, how)
    ckpt = Checkpointer(folder, every=4, keep=3)
    with caplog.at_level(logging.WARNING, logger="genrec_jax"):
        state, meta = ckpt.restore(_state(0.0, 0))
    # Step 8, not 12 (damaged) and not 4 (older): step and values both say so.
    assert int(state["step"]) == 8 and meta["step"] == 8
    np.testing.assert_array_equal(np.asarray(state["w"]), np.full((3, 2), 2.0))
    ours = [r for r in caplog.records if r.name == "genrec_jax"]
    assert len(ours) == 1 and ours[0].levelno == logging.WARNING
    text = ours[0].getMessage()
    assert "\n" not in text
    assert text.startswith(f"unreadable checkpoint step 12 in {folder} (12: ")
    assert text.endswith("); restored step 8 instead")
    # The resumed run saves step 12 again: the damaged folder is moved aside, not deleted.
    assert ckpt.save(12, _state(9.0, 12))
    assert sorted(os.listdir(tmp_path / "checkpoints.unreadable")) == ["12"]
    again, _ = ckpt.restore(_state(0.0, 0))
    assert int(again["step"]) == 12 and float(again["w"][0, 0]) == 9.0
    ckpt.close()


def test_restore_skips_several_damaged_checkpoints(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    _saved(folder)
    _damage(folder, 12)
    _damage(folder, 8, "delete")
    ckpt = Checkpointer(folder, every=4, keep=3)
    with caplog.at_level(logging.WARNING, logger="genrec_jax"):
        state, _ = ckpt.restore(_state(0.0, 0))
    assert int(state["step"]) == 4
    np.testing.assert_array_equal(np.asarray(state["w"]), np.full((3, 2), 1.0))
    ours = [r.getMessage() for r in caplog.records if r.name == "genrec_jax"]
    assert len(ours) == 1
    assert ours[0].startswith(f"unreadable checkpoint steps 12, 8 in {folder} (12: ")
    assert "; 8: " in ours[0] and ours[0].endswith("); restored step 4 instead")
    ckpt.close()


def test_no_readable_checkpoint_is_one_clear_error(tmp_path):
    folder = tmp_path / "checkpoints"
    _saved(folder, steps=(4, 8))
    _damage(folder, 8)
    _damage(folder, 4, "delete")
    ckpt = Checkpointer(folder, every=4, keep=3)
    with pytest.raises(CheckpointError) as err:
        ckpt.restore(_state(0.0, 0))
    message = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert message.startswith(f"no readable checkpoint in {folder} (step 8: ")
    assert "; step 4: " in message
    assert message.endswith(f"). Remove {folder} (or pass --overwrite to the launcher) to start "
                            "the run again.")
    ckpt.close()


def test_failed_restore_silences_only_orphaned_orbax_reads(tmp_path):
    # After a failed restore, asyncio reports the sibling reads nobody awaited when their tasks
    # are collected, at a time that depends on thread timing; the filter installed by restore()
    # drops exactly those records on the asyncio logger.
    folder = tmp_path / "checkpoints"
    _saved(folder, steps=(4,))
    _damage(folder, 4)
    ckpt = Checkpointer(folder, every=4, keep=3)
    with pytest.raises(CheckpointError):
        ckpt.restore(_state(0.0, 0))
    ckpt.close()
    log = logging.getLogger("asyncio")

    def record(message):
        return log.makeRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    orphan = ("Task exception was never retrieved\nfuture: <Task finished name='Task-160' "
              "coro=<async_deserialize() done, defined at /site-packages/orbax/checkpoint/_src/"
              "serialization/serialization.py:394> exception=ValueError('OUT_OF_RANGE')>")
    assert not log.filter(record(orphan))
    assert log.filter(record(orphan.replace("async_deserialize", "fetch_rows")))
    assert log.filter(record(orphan.replace("orbax/checkpoint", "myapp")))
    assert log.filter(record("Executing <Task pending> took 0.2 seconds"))


# ------------------------------------------------------------------------- config validation

BAD_VALUES = [
    (pretrain_config, "batch_size=0", "config key batch_size must be an integer >= 1, got 0"),
    (pretrain_config, "log_every=0", "config key log_every must be an integer >= 1, got 0"),
    (pretrain_config, "checkpoint_every=0",
     "config key checkpoint_every must be an integer >= 1, got 0"),
    (pretrain_config, "epochs=0", "config key epochs must be an integer >= 1, got 0"),
    (pretrain_config, "epochs=abc", "config key epochs: expected an integer, got 'abc'"),
    (pretrain_config, "optimizer.learning_rate=-0.001",
     "config key optimizer.learning_rate must be a number > 0, got -0.001"),
    (pretrain_config, "optimizer.learning_rate=nan",
     "config key optimizer.learning_rate must be a number > 0, got nan"),
    (pretrain_config, "smoke=maybe", "config key smoke: expected a boolean (true/false, 1/0, "
                                     "yes/no, on/off), got 'maybe'"),
    (reward_config, "batch_size=-4", "config key batch_size must be an integer >= 1, got -4"),
    (posttrain_config, "epochs=0", "config key epochs must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("module,arg,message", BAD_VALUES,
                         ids=[f"{m.__name__.split('.')[-1]}:{a}" for m, a, _ in BAD_VALUES])
def test_bad_values_are_refused_naming_the_key(module, arg, message):
    with pytest.raises(common.ConfigError) as err:
        module.get_config(f"smoke=True,{arg}" if not arg.startswith("smoke") else arg)
    assert str(err.value) == message


def test_unknown_dataset_and_algorithm_are_refused():
    with pytest.raises(common.ConfigError, match=r"^config key dataset: unknown data set 'ml-2k'"):
        pretrain_config.get_config("dataset=ml-2k")
    names = common.known_algorithms()
    assert {"bc", "asft", "ppo"} <= set(names)
    with pytest.raises(common.ConfigError) as err:
        posttrain_config.get_config("algo=sft")
    assert str(err.value) == f"config key algo: unknown algorithm 'sft'; known: {', '.join(names)}"
    with pytest.raises(common.ConfigError, match="config key algos: unknown algorithm 'xx'"):
        compare_config.get_config("smoke=True,algos=bc:xx")


def test_validate_catches_values_set_after_finalize():
    """What absl's ``--config.key=value`` does: set the field after get_config."""
    cfg = pretrain_config.get_config("smoke=True")
    cfg.batch_size = 0
    with pytest.raises(common.ConfigError, match="^config key batch_size must be an integer"):
        common.validate(cfg)
    # ConfigDict keeps field types (smoke = 1 is a TypeError); a hand-made config is checked.
    hand_made = ml_collections.ConfigDict({"smoke": "maybe", "batch_size": 4})
    with pytest.raises(common.ConfigError) as err:
        common.validate(hand_made)
    assert str(err.value) == "config key smoke must be a boolean (True/False), got 'maybe'"
    for module in (pretrain_config, reward_config, posttrain_config, compare_config):
        assert common.validate(module.get_config()) is not None
        assert common.validate(module.get_config("smoke=True")).smoke is True


def test_smoke_accepts_the_usual_spellings():
    assert pretrain_config.get_config("smoke=yes").epochs == 3
    assert pretrain_config.get_config("smoke=0").epochs == 60


# ------------------------------------------------------------------------- progress


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_progress_eta_excludes_compilation():
    clock = FakeClock()
    progress = Progress(110, 0, clock=clock, enabled=False)
    clock.now += 100.0                   # step 1: compilation
    progress.step_done(1)
    assert progress.line(1, 2.0) == "step 1/110 loss 2.0000 steps/s ? ETA ?"
    for step in range(2, 11):            # 9 more steps, 0.5 s each
        clock.now += 0.5
        progress.step_done(step)
    # rate = (10 − 1) / 4.5 s = 2 steps/s; ETA = 100 steps / 2 = 50 s (a naive rate over the
    # compile would say 10 / 104.5 s ≈ 0.1 steps/s and an ETA of ~17 minutes).
    assert progress.line(10, 1.23456) == "step 10/110 loss 1.2346 steps/s 2.00 ETA 0:00:50"


def test_progress_of_a_resumed_run_counts_from_its_own_first_step():
    clock = FakeClock()
    progress = Progress(1000, 500, clock=clock, enabled=False)
    clock.now += 30.0
    progress.step_done(501)
    clock.now += 10.0
    assert progress.rate(601) == pytest.approx(10.0)
    assert progress.line(601, 0.5).endswith("steps/s 10.00 ETA 0:00:40")


def test_stages_lines_and_eta(capsys):
    clock = FakeClock()
    stages = Stages(["a", "b", "c", "d"], title="bench", clock=clock)
    with stages.stage("a"):
        clock.now += 30.0
    stages.begin("b")
    clock.now += 90.0
    stages.done("b", 90.0, note="(hr@10 0.2)")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "bench: [1/4] a ... (elapsed 0:00:00, ETA ?)",
        "bench: [1/4] a done in 0:00:30 | elapsed 0:00:30 | ETA 0:01:30",
        "bench: [2/4] b ... (elapsed 0:00:30, ETA 0:01:30)",
        "bench: [2/4] b done in 0:01:30 (hr@10 0.2) | elapsed 0:02:00 | ETA 0:02:00",
    ]
    assert format_seconds(3 * 3600 + 61) == "3:01:01" and format_seconds(float("nan")) == "?"


def _toy_run(tmp_path, num_steps, log_every, checkpointer=None, state=None):
    """``loop.run`` on a 1-device mesh with a trivial jitted step (w += mean(inputs))."""
    mesh = shd.make_mesh(1, 1, devices=jax.devices()[:1])

    @jax.jit
    def step_fn(graphdef, state, batch):
        w = state["w"] + jnp.mean(batch["inputs"].astype(jnp.float32))
        return {"w": w, "step": state["step"] + 1}, {"loss": jnp.sum(w)}

    def batch_at(step):
        return {"inputs": np.full((8, 4), step, np.int32)}

    state = state or jax.device_put(_state(0.0, 0), shd.replicated(mesh))
    return loop.run(step_fn=step_fn, graphdef=None, state=state, batch_at=batch_at, mesh=mesh,
                    num_steps=num_steps, log_every=log_every, checkpointer=checkpointer,
                    meta={"dataset": "toy"})


def test_loop_times_each_batch_shape_first_call_as_compilation():
    """Two batch shapes: the first step of each is compilation time (here a long fake step),
    the mean step time is over the other steps only."""
    mesh = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    shapes_seen = set()

    def step_fn(graphdef, state, batch):
        shape = batch["inputs"].shape
        time.sleep(0.3 if shape not in shapes_seen else 0.01)  # "compiles" once per shape
        shapes_seen.add(shape)
        return {"step": state["step"] + 1}, {"loss": jnp.float32(1.0)}

    def batch_at(step):
        return {"inputs": np.zeros((8 if step % 3 else 4, 4), np.int32)}

    _, _, timing = loop.run(step_fn=step_fn, graphdef=None, state={"step": jnp.int32(0)},
                            batch_at=batch_at, mesh=mesh, num_steps=9, log_every=100,
                            verbose=False)
    assert timing["compiled_shapes"] == 2 and timing["steps_done"] == 9
    assert 0.6 <= timing["compile_seconds"] < 1.5
    assert 0.01 <= timing["step_seconds"] < 0.2  # the 7 other steps, not the compiling ones
    # What compiles is each leaf's path, shape and dtype, nested batches included.
    sig = loop.batch_signature
    a = {"x": np.zeros((2, 3), np.int32), "y": {"z": np.float32(1.0)}}
    assert sig(a) == sig({"x": np.ones((2, 3), np.int32), "y": {"z": np.float32(2.0)}})
    assert sig(a) != sig({"x": np.zeros((2, 3), np.int64), "y": {"z": np.float32(1.0)}})
    assert sig(a) != sig({"x": np.zeros((3, 3), np.int32), "y": {"z": np.float32(1.0)}})


def test_loop_prints_start_line_progress_once_and_resuming(tmp_path, capsys, caplog):
    ckpt = Checkpointer(tmp_path / "checkpoints", every=3, keep=2)
    with caplog.at_level(logging.INFO):
        _toy_run(tmp_path, 6, 3, ckpt)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("train: dataset=toy | steps 0→6 | batch inputs 8×4 | 1 cpu device "
                        "(mesh data=1 model=1)")
    assert [ln.split(" loss")[0] for ln in lines[1:]] == ["step 3/6", "step 6/6"]
    assert not [r for r in caplog.records if "step 3/6" in r.getMessage()]  # not logged twice
    mesh = shd.make_mesh(1, 1, devices=jax.devices()[:1])
    fresh = jax.device_put(_state(0.0, 0), shd.replicated(mesh))
    restored, _ = loop.resume(ckpt, fresh)
    assert capsys.readouterr().out == (f"resuming from step 6 (checkpoint in "
                                       f"{tmp_path / 'checkpoints'})\n")
    # w after 6 steps = 0 + 1 + 2 + 3 + 4 + 5 = 15 per entry.
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.full((3, 2), 15.0))
    ckpt.close()


def test_loop_refuses_log_every_zero(tmp_path):
    with pytest.raises(ValueError, match="^log_every must be >= 1, got 0$"):
        _toy_run(tmp_path, 2, 0)


# ------------------------------------------------------------------------- TensorBoard files


def _read_tfrecords(path):
    """Records of a TFRecord file: [u64 length][u32 crc][data][u32 crc] each."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        out.append(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
    return out


def test_metric_writer_event_files_hold_the_scalars(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write(5, {"loss": np.float32(1.5), "hr@10": 0.25}, prefix="train/")
    writer.write(10, {"loss": 0.75}, prefix="train/")
    writer.close()
    (event_file,) = os.listdir(tmp_path / "tb")
    assert event_file.startswith("events.out.tfevents.")
    from tensorboardX.proto import event_pb2

    got = {}
    for record in _read_tfrecords(tmp_path / "tb" / event_file):
        event = event_pb2.Event.FromString(record)
        for value in event.summary.value:
            got[(value.tag, event.step)] = value.simple_value
    assert got == {("train/loss", 5): 1.5, ("train/hr_at_10", 5): 0.25, ("train/loss", 10): 0.75}
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 5, "train/loss": 1.5, "train/hr@10": 0.25},
                     {"step": 10, "train/loss": 0.75}]


def test_tensorboard_reads_the_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="optional extra: pip install -e .[viz]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = MetricWriter(tmp_path)
    for step, loss in ((1, 3.0), (2, 2.5), (3, 2.0)):
        writer.write(step, {"loss": loss}, prefix="train/")
    writer.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["train/loss"]
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 3.0), (2, 2.5),
                                                                       (3, 2.0)]


# ------------------------------------------------------------------------- launchers end to end

TIMEOUT_S = 300


def _launch(module, config_path, overrides, workdir, *flags, devices=2):
    """Runs ``python -m experiments.<module>``; returns (exit status, output)."""
    cmd = [sys.executable, "-m", f"experiments.{module}",
           f"--config={config_path}" + (f":{overrides}" if overrides else ""),
           f"--workdir={workdir}", *flags]
    proc = subprocess.run(cmd, cwd=procs.ROOT, env=procs.cpu_env(devices), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


def _pretrain(overrides, workdir, *flags):
    return _launch("pretrain", procs.PRETRAIN_CONFIG, overrides, workdir, *flags)


def _error_lines(output):
    return [ln for ln in output.splitlines() if ln.startswith("error: ")]


SMOKE = "smoke=True,num_steps=12,checkpoint_every=4,keep_checkpoints=3,log_every=4"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished 12-step smoke pretraining run (checkpoints at 4, 8, 12) and its output."""
    folder = tmp_path_factory.mktemp("pretrain") / "run"
    code, out = _pretrain(SMOKE, folder)
    assert code == 0, out[-3000:]
    return folder, out


def _copy(folder, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(folder, dest)
    return dest


@pytest.mark.slow
def test_first_run_prints_start_line_and_each_progress_line_once(pretrained):
    folder, out = pretrained
    assert re.search(r"^train: pretrain=hstu dataset=simulator users=\d+ items=\d+ steps/epoch=\d+ "
                     r"\| steps 0→12 \| batch inputs \d+×16 \| 2 cpu "
                     r"devices \(mesh data=2 model=1\)$", out, re.M), out[-2000:]
    for step in (4, 8, 12):
        assert len(re.findall(rf"^step {step}/12 loss ", out, re.M)) == 1, out[-2000:]
    assert "resuming" not in out
    record = json.loads((folder / "run.json").read_text())
    assert record["identity"]["kind"] == "pretrain"


@pytest.mark.slow
def test_same_config_resumes_and_says_so(pretrained, tmp_path):
    run = _copy(pretrained[0], tmp_path)
    # log_every does not change results: still the same run.
    code, out = _pretrain(SMOKE.replace("log_every=4", "log_every=2"), run)
    assert code == 0, out[-3000:]
    assert f"resuming from step 12 (checkpoint in {run / 'checkpoints'})" in out
    assert "step 4/12" not in out  # nothing retrained


@pytest.mark.slow
def test_changed_seed_is_refused_before_anything_is_written(pretrained, tmp_path):
    run = _copy(pretrained[0], tmp_path)
    before = _snapshot(run)
    code, out = _pretrain(SMOKE + ",seed=1", run)
    assert code == 1
    assert _error_lines(out) == [f"error: workdir {run} holds a different run (seed: 0 → 1)"
                                 + REFUSAL_TAIL]
    assert _snapshot(run) == before  # config.json, run.json, metrics: untouched


@pytest.mark.slow
def test_overwrite_restarts_from_scratch(pretrained, tmp_path):
    run = _copy(pretrained[0], tmp_path)
    code, out = _pretrain(SMOKE + ",seed=1", run, "--overwrite")
    assert code == 0, out[-3000:]
    assert f"--overwrite: deleted the previous run in {run}" in out
    assert "resuming" not in out
    steps = [r["step"] for r in procs.read_metrics(run) if "train/loss" in r]
    assert steps == [4, 8, 12]  # the old run's records are gone, the new one logged once
    assert json.loads((run / "run.json").read_text())["identity"]["config"]["seed"] == 1
    assert json.loads((run / "config.json").read_text())["seed"] == 1


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_with_one_warning(pretrained, tmp_path):
    run = _copy(pretrained[0], tmp_path)
    _damage(run / "checkpoints", 12)
    code, out = _pretrain(SMOKE, run)
    assert code == 0, out[-3000:]
    warnings = [ln for ln in out.splitlines() if "unreadable checkpoint" in ln]
    assert len(warnings) == 1, out[-3000:]
    assert f"unreadable checkpoint step 12 in {run / 'checkpoints'} (12: " in warnings[0]
    assert warnings[0].endswith("restored step 8 instead")
    assert f"resuming from step 8 (checkpoint in {run / 'checkpoints'})" in out
    assert "Traceback" not in out
    # Steps 9..12 were trained again and step 12 saved afresh (the damaged one set aside).
    assert re.search(r"^step 12/12 loss ", out, re.M)
    assert os.listdir(run / "checkpoints.unreadable") == ["12"]
    assert Checkpointer(run / "checkpoints").all_steps() == [4, 8, 12]


@pytest.mark.slow
def test_no_readable_checkpoint_exits_with_one_line(pretrained, tmp_path):
    run = _copy(pretrained[0], tmp_path)
    for step in (4, 8, 12):
        _damage(run / "checkpoints", step)
    code, out = _pretrain(SMOKE, run)
    assert code == 1
    (line,) = _error_lines(out)
    folder = run / "checkpoints"
    assert line.startswith(f"error: no readable checkpoint in {folder} (step 12: ")
    assert line.endswith(f"Remove {folder} (or pass --overwrite to the launcher) to start the "
                         "run again.")
    assert "Traceback" not in out


def _prepare_as(module_config, arg, kind, folder, extra=None):
    """A workdir as the launcher ``kind`` would have recorded it for config ``arg``."""
    wd.prepare(folder, module_config.get_config(arg), kind, extra=extra)
    (folder / "config.json").write_text('{"marker": "first run"}')


@pytest.mark.parametrize("module,config_mod,first,second,diff", [
    ("posttrain", posttrain_config, "algo=asft,smoke=True", "algo=bc,smoke=True",
     "algo: 'asft' → 'bc'"),
    ("reward", reward_config, "smoke=True", "smoke=True,seed=1", "seed: 0 → 1"),
    ("compare", compare_config, "smoke=True", "smoke=True,seeds=0:1", "seeds: [0] → [0, 1]"),
])
def test_every_launcher_refuses_another_run(tmp_path, module, config_mod, first, second, diff):
    """e.g. ``posttrain algo=bc`` into an A-SFT workdir: refused, nothing trained or written."""
    run = tmp_path / "run"
    extra = {"init": None, "reward_dir": None} if module == "posttrain" else None
    _prepare_as(config_mod, first, module, run, extra)
    before = _snapshot(run)
    code, out = _launch(module, f"experiments/configs/{module}.py", second, run)
    assert code == 1, out[-3000:]
    assert _error_lines(out) == [f"error: workdir {run} holds a different run ({diff})"
                                 + REFUSAL_TAIL]
    assert _snapshot(run) == before
    # Every launcher knows --overwrite; the config is validated before anything is deleted.
    code, out = _launch(module, f"experiments/configs/{module}.py", second, run, "--overwrite",
                        "--config.log_every=0")
    assert code == 1, out[-3000:]
    assert _error_lines(out) == ["error: config key log_every must be an integer >= 1, got 0"]
    assert _snapshot(run) == before


@pytest.mark.parametrize("flag,message", [
    ("--config.smoke=True", "error: --config.smoke=... sets the flag without the smoke settings "
                            "(tiny data and model), so it would start a full-size run; put it "
                            "in the config string instead: "
                            "--config=experiments/configs/pretrain.py:smoke=True"),
    ("--config.batch_size=0", "error: config key batch_size must be an integer >= 1, got 0"),
    ("--config.log_every=0", "error: config key log_every must be an integer >= 1, got 0"),
    ("--config.epochs=0", "error: config key epochs must be an integer >= 1, got 0"),
    ("--config.optimizer.learning_rate=-0.1",
     "error: config key optimizer.learning_rate must be a number > 0, got -0.1"),
])
def test_absl_overrides_are_validated(tmp_path, flag, message):
    code, out = _pretrain("smoke=True", tmp_path / "run", flag)
    assert code == 1, out[-3000:]
    assert _error_lines(out) == [message]
    assert not (tmp_path / "run").exists()


def test_compare_refuses_full_as_an_absl_override(tmp_path):
    code, out = _launch("compare", "experiments/configs/compare.py", "smoke=True",
                        tmp_path / "run", "--config.full=True")
    assert code == 1, out[-3000:]
    assert _error_lines(out) == [
        "error: --config.full=... sets the flag without the whole protocol's settings (seeds, "
        "landscape); put it in the config string instead: "
        "--config=experiments/configs/compare.py:full=True"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides,message", [
    ("smoke=maybe", "config key smoke: expected a boolean (true/false, 1/0, yes/no, on/off), "
                    "got 'maybe'"),
    ("smoke=True,epochs=abc", "config key epochs: expected an integer, got 'abc'"),
    ("smoke=True,epochs=0", "config key epochs must be an integer >= 1, got 0"),
    ("smoke=True,optimizer.learning_rate=-1e-3",
     "config key optimizer.learning_rate must be a number > 0, got -0.001"),
])
def test_config_string_values_are_validated(tmp_path, overrides, message):
    """Errors in the config string surface through absl's flag parser (exit 1); its report
    ends with our message."""
    code, out = _pretrain(overrides, tmp_path / "run")
    assert code == 1, out[-3000:]
    assert f"ConfigError: {message}" in out, out[-3000:]
    assert not (tmp_path / "run").exists()
