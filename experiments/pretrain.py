"""Pretrains HSTU on next-item prediction and writes DIR/metrics.json.

  python -m experiments.pretrain --config=experiments/configs/pretrain.py --workdir=DIR
"""

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from genrec_jax.train.pretrain import pretrain

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/pretrain.py",
                                          "Pretraining config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/pretrain", "Output folder.")


def main(argv):
    del argv
    launch.setup()
    launch.prepare(_CONFIG.value, _WORKDIR.value, "pretrain")
    metrics, *_ = pretrain(_CONFIG.value, _WORKDIR.value)
    launch.report(metrics, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
