"""Multi-host: two processes on localhost (2 CPU devices each) train exactly like one process
with the same 4 global devices.

Both runs go through the real launcher (``python -m experiments.pretrain`` with
``--coordinator/--num_processes/--process_id``), so this covers ``jax.distributed`` start-up,
each process feeding its own rows of every global batch (``Batcher`` process shares assembled
by ``make_array_from_process_local_data``), cross-process gradient reduction (gloo on CPU),
metrics written by process 0 only, a multi-process Orbax checkpoint and the evaluation.
"""

import sys

import numpy as np
import pytest

from experiments.configs import pretrain as pretrain_config
from tests.scripts import procs

TIMEOUT_S = 240
STEPS = 4

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    sys.platform == "win32", reason="jax.distributed CPU collectives (gloo) need Linux/macOS")]


def _overrides(extra: str = "") -> str:
    # The default config packs sequences; the global batch is packed before it is split over
    # processes, so dropout masks and sampled negatives are the same for 1x4 and 2x2.
    text = f"smoke=True,num_steps={STEPS},log_every=1,checkpoint_every=1000"
    assert pretrain_config.get_config().data.pack
    return text + (f",{extra}" if extra else "")


def test_two_processes_equal_one_process_with_the_same_devices(tmp_path):
    overrides = _overrides()
    port = procs.free_port()
    multi = tmp_path / "two_processes"
    single = tmp_path / "one_process"
    runs = [procs.start(procs.pretrain_cmd(overrides, multi, f"--coordinator=127.0.0.1:{port}",
                                           "--num_processes=2", f"--process_id={i}"),
                        procs.cpu_env(2), tmp_path / f"process{i}.log") for i in range(2)]
    runs.append(procs.start(procs.pretrain_cmd(overrides, single), procs.cpu_env(4),
                            tmp_path / "single.log"))
    codes = procs.finish(runs, TIMEOUT_S)
    assert codes == [0, 0, 0], procs.logs(runs)

    # The two processes really formed one 4-device job.
    for i in range(2):
        assert f"process {i} of 2, 2 local / 4 global devices" in runs[i].log_path.read_text()

    got_records = procs.read_metrics(multi)
    want_records = procs.read_metrics(single)
    got, want = procs.train_losses(got_records), procs.train_losses(want_records)
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    # Only process 0 writes metrics: each step once.
    assert [r["step"] for r in got_records if "train/loss" in r] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(want)],
                               rtol=2e-6, atol=0)
    # Evaluation after training agrees too.
    test_got = next(r for r in got_records if "test/hr@10" in r)
    test_want = next(r for r in want_records if "test/hr@10" in r)
    for key in ("test/hr@10", "test/ndcg@10", "test/mrr"):
        np.testing.assert_allclose(test_got[key], test_want[key], rtol=1e-5, err_msg=key)
    # Both processes wrote their part of one final checkpoint.
    assert (multi / "checkpoints" / str(STEPS)).is_dir()
