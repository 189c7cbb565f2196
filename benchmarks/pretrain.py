"""HSTU pretraining benchmark: quality and speed of the public ML-1M configuration.

  python benchmarks/pretrain.py --dataset=ml-100k --data_dir=../shared/data/ml-100k --out=FILE.json

Trains on all but each user's last event for a fixed number of epochs (no epoch picked on the
test set) and reports the final model's test metrics under two exclusion rules: the whole history
(ours) and only the input window (`peer_protocol`, the public reference's rule), the most-popular
baseline, seconds per epoch (steady state: the steps that compiled are excluded) and the compile
time (the first step of each packed batch shape, `compiled_shapes` of them). Freed host memory
is retained for reuse as the launchers do (``genrec_jax.host_allocator``;
``--noretain_freed_memory`` measures the C library's defaults).
While it runs it prints stage lines and the training loop's progress lines (loss, steps/s, ETA);
its last line is the one figure: seconds per epoch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks._common import config_arg  # noqa: E402
from experiments import launch  # noqa: E402
from experiments.configs import pretrain as pretrain_config  # noqa: E402
from genrec_jax.data.sequences import eval_arrays  # noqa: E402
from genrec_jax.eval.model_eval import evaluate_model  # noqa: E402
from genrec_jax.train.pretrain import pretrain  # noqa: E402
from genrec_jax.train.progress import Stages  # noqa: E402

_DATASET = flags.DEFINE_string("dataset", "ml-100k", "Dataset name (see genrec_jax.data).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Folder with the publisher's files.")
_OUT = flags.DEFINE_string("out", "pretrain_benchmark.json", "Output JSON.")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Training epochs (fixed; the final model is scored).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Run folder (default: a temporary one).")
_OVERRIDES = flags.DEFINE_string("overrides", "", "Extra config overrides, key=value,...")

PEER_KEYS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr")
HEADLINE = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr", "hr@200", "ndcg@200",
            "ndcg@10_liked", "hr@10_liked")


def main(argv):
    del argv
    retained = launch.retain_memory_if_asked()  # --noretain_freed_memory: glibc's defaults
    cfg = pretrain_config.get_config(config_arg(
        _DATASET.value, _DATA_DIR.value, _OVERRIDES.value, epochs=_EPOCHS.value,
        seed=_SEED.value))
    cfg.checkpoint_every = 10**9
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="genrec_bench_")
    stages = Stages(["pretrain + evaluate", "peer-protocol evaluation"], title="benchmark")
    with stages.stage(f"pretrain + evaluate ({_DATASET.value}, {_EPOCHS.value} epochs, "
                      f"seed {_SEED.value}) in {workdir}"):
        metrics, graphdef, params, data = pretrain(cfg, workdir, verbose=True)
    with stages.stage("peer-protocol evaluation (input window excluded)"):
        window = eval_arrays(data.split, int(cfg.data.max_len), which="test", exclude="window")
        peer = evaluate_model(graphdef, params, window, batch_size=int(cfg.eval.batch_size))
    pop = metrics["popularity"]
    result = {k: metrics[k] for k in HEADLINE}
    result.update(
        popularity={k: pop[k] for k in ("hr@10", "ndcg@10", "hr@50", "mrr")},
        peer_protocol={k: peer[k] for k in PEER_KEYS},
        seconds_per_epoch=metrics["seconds_per_epoch"],
        compile_seconds=metrics["compile_seconds"], compiled_shapes=metrics["compiled_shapes"],
        retained_freed_memory=retained, epochs=metrics["epochs"], steps=metrics["steps"],
        dataset=_DATASET.value,
        num_users=metrics["num_users"], num_items=metrics["num_items"],
        config="experiments/configs/pretrain.py (ML-1M HSTU: D=50, 2 blocks, 1 head, "
               "max_len 200, 128 negatives, tau 0.05, batch 128, dropout 0.2)")
    with open(_OUT.value, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"seconds_per_epoch {result['seconds_per_epoch']:.3f}")


if __name__ == "__main__":
    app.run(main)
