"""Kill -9 a pretraining run after its first checkpoint, restart it, and get bit-identical
losses to an uninterrupted run.

The launcher restores model, optimizer, step and rng from the latest Orbax checkpoint, and the
data position follows from the step (``batch_at(step)`` is a pure function of the step), so
every logged step after the restore point must reproduce the uninterrupted run exactly.
"""

import os
import signal
import sys
import time

import pytest

from tests.scripts import procs

STEPS = 48
EVERY = 4
DEVICES = 2
TIMEOUT_S = 180

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")]


def _overrides():
    return (f"smoke=True,num_steps={STEPS},log_every=1,checkpoint_every={EVERY},"
            "keep_checkpoints=2")


def _finished_checkpoints(workdir):
    """Steps of complete checkpoints (Orbax renames a finished save to its step number)."""
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def test_sigkill_then_restart_reproduces_the_uninterrupted_run(tmp_path):
    env = procs.cpu_env(DEVICES)
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = procs.start(procs.pretrain_cmd(_overrides(), ref_dir), env,
                            tmp_path / "reference.log")
    victim = procs.start(procs.pretrain_cmd(_overrides(), run_dir), env,
                         tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not _finished_checkpoints(run_dir):
            assert victim.poll() is None, "the run ended before its first checkpoint:\n" + \
                procs.logs([victim])
            assert time.monotonic() < deadline, "no checkpoint within the timeout"
            time.sleep(0.02)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
        victim.log_file.close()
    assert victim.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), (
        "the run had finished before the kill; raise STEPS")
    killed_at = _finished_checkpoints(run_dir)
    assert killed_at and killed_at[-1] < STEPS
    first_part = procs.read_metrics(run_dir)

    restart = procs.start(procs.pretrain_cmd(_overrides(), run_dir), env,
                          tmp_path / "restart.log")
    assert procs.finish([restart, reference], TIMEOUT_S) == [0, 0], \
        procs.logs([restart, reference])

    ref_records = procs.read_metrics(ref_dir)
    want = procs.train_losses(ref_records)
    want_norm = {r["step"]: r["train/grad_norm"] for r in ref_records if "train/loss" in r}
    assert sorted(want) == list(range(1, STEPS + 1))
    records = procs.read_metrics(run_dir)
    second_part = records[len(first_part):]
    resumed = [r["step"] for r in second_part if "train/loss" in r]
    # The restart continued after the latest complete checkpoint, not from scratch, and
    # logged every later step once.
    restore_step = resumed[0] - 1
    assert restore_step == killed_at[-1] and restore_step % EVERY == 0 and restore_step > 0
    assert resumed == list(range(restore_step + 1, STEPS + 1))
    # The restart said where it resumed, and printed each progress line once (not also via
    # absl logging).
    restart_log = restart.log_path.read_text()
    assert f"resuming from step {restore_step} (checkpoint in " in restart_log
    assert restart_log.count(f"step {STEPS}/{STEPS} loss ") == 1, restart_log[-2000:]
    # Every loss logged by either part equals the uninterrupted run's, bit for bit.
    for r in records:
        if "train/loss" in r:
            assert r["train/loss"] == want[r["step"]], (r["step"], r["train/loss"],
                                                        want[r["step"]])
            assert r["train/grad_norm"] == want_norm[r["step"]], r["step"]
    ref_test = next(r for r in ref_records if "test/hr@10" in r)
    got_test = next(r for r in second_part if "test/hr@10" in r)
    for key in ("test/hr@10", "test/ndcg@10", "test/mrr"):
        assert got_test[key] == ref_test[key], key
    assert _finished_checkpoints(run_dir)[-1] == STEPS
