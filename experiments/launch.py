"""What every launcher does before and after its job."""

from __future__ import annotations

import logging

from absl import flags

from genrec_jax import sharding

_COORD = flags.DEFINE_string("coordinator", None,
                             "host:port of process 0 for multi-host runs (jax.distributed); "
                             "'auto' on TPU pod slices / SLURM / Open MPI, where JAX finds the "
                             "coordinator, process count and id itself.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.")
_PID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
_NO_DIST = flags.DEFINE_bool("skip_distributed", False, "Never call jax.distributed.initialize.")

HEADLINE = ("hr@10", "ndcg@10", "hr@50", "mrr", "ndcg@10_liked", "judge_score")


def setup() -> None:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("genrec_jax").setLevel(logging.INFO)
    sharding.initialize_distributed(coordinator_address=_COORD.value,
                                    num_processes=_NPROC.value, process_id=_PID.value,
                                    skip=_NO_DIST.value)


def report(metrics: dict, workdir: str) -> None:
    shown = " ".join(f"{k}={metrics[k]:.4f}" for k in HEADLINE if k in metrics)
    print(f"{shown}\nwrote {workdir}/metrics.json", flush=True)
