"""What every launcher does before and after its job.

    launch.setup()                                  # allocator, logging, jax.distributed, errors
    launch.prepare(cfg, workdir, "pretrain")        # before anything is written to workdir

:func:`prepare` refuses ``--config.smoke=...`` / ``--config.full=...``, re-validates the config after absl's
``--config.key=value`` overrides (``experiments.configs.common.validate``) and checks the
workdir (:mod:`genrec_jax.train.workdir`: same config → resume, another config → refuse unless
``--overwrite``). Its refusals end the program with exit status 1 and one ``error: ...`` line;
after :func:`setup`, a run that fails with a :class:`~genrec_jax.train.checkpoint.CheckpointError`
(or another error listed in ``ONE_LINE_ERRORS``) also ends with one such line, not a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import flags

from experiments.configs.common import ConfigError, validate
from genrec_jax import sharding
from genrec_jax.host_allocator import retain_freed_memory
from genrec_jax.train import workdir as workdir_lib
from genrec_jax.train.checkpoint import CheckpointError

_COORD = flags.DEFINE_string("coordinator", None,
                             "host:port of process 0 for multi-host runs (jax.distributed); "
                             "'auto' on TPU pod slices / SLURM / Open MPI, where JAX finds the "
                             "coordinator, process count and id itself.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.")
_PID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
_NO_DIST = flags.DEFINE_bool("skip_distributed", False, "Never call jax.distributed.initialize.")
#: Also read by the CPU benchmarks (benchmarks/pretrain.py, hstu_throughput.py): one definition.
RETAIN_FREED_MEMORY = flags.DEFINE_bool("retain_freed_memory", True,
                                        "Keep freed host memory for reuse instead of "
                                        "unmapping it (genrec_jax.host_allocator: no page "
                                        "faults on XLA:CPU's per-step buffers; glibc only). "
                                        "--noretain_freed_memory keeps the C library's "
                                        "defaults.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Delete what --workdir holds (checkpoints, metrics) and start the "
                               "run again. Without it, a workdir of the same config resumes and "
                               "one of another config is refused.")

#: Errors reported as one ``error: <message>`` line (exit status 1) instead of a traceback.
ONE_LINE_ERRORS = (CheckpointError, ConfigError, workdir_lib.WorkdirMismatchError)

HEADLINE = ("hr@10", "ndcg@10", "hr@50", "mrr", "ndcg@10_liked", "judge_score")


def setup() -> None:
    from absl import logging as absl_logging

    retain_memory_if_asked()

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("genrec_jax").setLevel(logging.INFO)
    _install_error_hook()
    sharding.initialize_distributed(coordinator_address=_COORD.value,
                                    num_processes=_NPROC.value, process_id=_PID.value,
                                    skip=_NO_DIST.value)


def retain_memory_if_asked() -> bool:
    """:func:`genrec_jax.host_allocator.retain_freed_memory` unless ``--noretain_freed_memory``;
    call before JAX computes anything. True when applied."""
    return bool(RETAIN_FREED_MEMORY.value) and retain_freed_memory()


def _install_error_hook() -> None:
    """Uncaught ``ONE_LINE_ERRORS`` print ``error: <message>`` (exit status 1, no traceback)."""
    previous = sys.excepthook
    if getattr(previous, "_genrec_one_line", False):
        return

    def hook(kind, value, tb):
        if isinstance(value, ONE_LINE_ERRORS):
            print(f"error: {value}", file=sys.stderr, flush=True)
            return
        previous(kind, value, tb)

    hook._genrec_one_line = True
    sys.excepthook = hook


# Config-string flags that select other settings, so ``--config.X=...`` (which only sets X)
# would silently run without them: X -> what they select.
PRESET_FLAGS = {"smoke": "the smoke settings (tiny data and model), so it would start a "
                         "full-size run",
                "full": "the whole protocol's settings (seeds, landscape)"}


def preset_override_error() -> str | None:
    """The message refusing ``--config.smoke=...`` or ``--config.full=...`` (None when neither
    was given): setting such a flag that way skips what it selects (:data:`PRESET_FLAGS`)."""
    if "config" not in flags.FLAGS:
        return None
    from ml_collections import config_flags

    flag = flags.FLAGS["config"]
    try:
        overrides = config_flags.get_override_values(flag)
    except TypeError:  # not a config flag
        return None
    name = next((key for key in PRESET_FLAGS if key in overrides), None)
    if name is None:
        return None
    path = (getattr(flag, "config_filename", None) or "experiments/configs/X.py").split(":")[0]
    return (f"--config.{name}=... sets the flag without {PRESET_FLAGS[name]}; put it in the "
            f"config string instead: --config={path}:{name}=True")


def prepare(cfg, workdir: str, kind: str, *, extra: dict | None = None) -> str:
    """Checks the config and the workdir before the launcher writes anything (see the module
    docstring); returns ``"new"``, ``"resume"`` or ``"overwritten"``. Exits with status 1 and
    one ``error: ...`` line on a refusal."""
    import jax

    try:
        message = preset_override_error()
        if message:
            raise ConfigError(message)
        validate(cfg)
        status = workdir_lib.prepare(workdir, cfg, kind, overwrite=_OVERWRITE.value,
                                     extra=extra, write=jax.process_index() == 0)
    except (ConfigError, workdir_lib.WorkdirMismatchError) as err:
        sys.exit(f"error: {err}")
    if jax.process_count() > 1:  # nobody reads the workdir before process 0 has prepared it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"prepare {os.path.abspath(workdir)}")
    if status == "overwritten" and jax.process_index() == 0:
        print(f"--overwrite: deleted the previous run in {workdir}", flush=True)
    return status


def report(metrics: dict, workdir: str) -> None:
    shown = " ".join(f"{k}={metrics[k]:.4f}" for k in HEADLINE if k in metrics)
    print(f"{shown}\nwrote {workdir}/metrics.json", flush=True)
