"""Post-trains a pretrained HSTU (any registered algorithm); writes DIR/metrics.json.

  python -m experiments.posttrain --config=experiments/configs/posttrain.py:algo=asft \\
      --init=PRETRAIN_DIR --reward_dir=RM_DIR --workdir=DIR

See experiments/configs/posttrain.py for the commands, keys and the expected result.
``run(cfg, workdir, init_dir=..., reward_dir=...)`` does the work (tests call it in-process); in
smoke mode without ``--init`` it first pretrains a tiny model in ``DIR/pretrain`` and, without
``--reward_dir``, trains a tiny 2-member reward ensemble in ``DIR/reward``.
"""

from __future__ import annotations

import os

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from genrec_jax.data.prepare import prepare_data
from genrec_jax.train.posttrain import posttrain

_SHARED_KEYS = ("dataset", "data_dir", "download", "cache_dir", "seed", "precision")
_SHARED_BLOCKS = ("simulator", "data", "model", "mesh", "eval")


def _copy_shared(src, dst) -> None:
    for key in _SHARED_KEYS:
        dst[key] = src[key]
    for key in _SHARED_BLOCKS:
        dst[key] = ml_collections.ConfigDict(src[key].to_dict())


def smoke_pretrain(cfg, workdir: str, data=None, verbose: bool = False) -> str:
    """Pretrains the config's (tiny) model in ``workdir/pretrain``; returns that folder."""
    from experiments.configs import pretrain as pretrain_configs
    from genrec_jax.train.pretrain import pretrain

    pcfg = pretrain_configs.get_config("smoke=True")
    _copy_shared(cfg, pcfg)
    pcfg.epochs = int(cfg.smoke_pretrain_epochs)
    pcfg.batch_size = int(cfg.batch_size)
    folder = os.path.join(workdir, "pretrain")
    pretrain(pcfg, folder, data=data, verbose=verbose)
    return folder


def smoke_reward(cfg, workdir: str, data, num_members: int = 2) -> str | None:
    """Trains a tiny reward ensemble (``num_members``, window = the policy's ``max_len``, no
    held-out events, all training events as targets, ``smoke_reward_epochs`` epochs) in
    ``workdir/reward`` with :func:`genrec_jax.train.reward.train_reward_ensemble`; returns that
    folder, or None when the reward-model code is missing."""
    try:
        from experiments.configs import reward as reward_configs
        from genrec_jax.train.reward import train_reward_ensemble
    except ImportError:
        return None
    rcfg = reward_configs.get_config("smoke=True")
    _copy_shared(cfg, rcfg)
    rcfg.batch_size = int(cfg.batch_size)
    rcfg.reward.max_len = int(cfg.data.max_len)
    rcfg.reward.holdout_fraction = 0.0
    rcfg.reward.chunked = True
    rcfg.reward.bootstrap = False
    folder = os.path.join(workdir, "reward")
    # epochs 0: an untrained ensemble (only the plumbing is exercised).
    train_reward_ensemble(rcfg, folder, data=data, num_members=int(num_members),
                          epochs=int(cfg.smoke_reward_epochs))
    return folder


def run(cfg, workdir: str, *, init_dir: str | None = None, reward_dir: str | None = None,
        verbose: bool = True) -> dict:
    """Post-trains as configured; in smoke mode fills in a missing ``init_dir`` / ``reward_dir``
    with tiny freshly trained ones. Returns the metrics written to ``workdir/metrics.json``."""
    data = None
    if init_dir is None or reward_dir is None:
        if not cfg.smoke:
            if init_dir is None:
                raise ValueError("--init=PRETRAIN_DIR is required (a workdir of "
                                 "experiments.pretrain), except with smoke=True")
        else:
            data = prepare_data(cfg)
            if init_dir is None:
                init_dir = smoke_pretrain(cfg, workdir, data=data)
            if reward_dir is None:
                reward_dir = smoke_reward(cfg, workdir, data)
    return posttrain(cfg, workdir, init_dir=init_dir, reward_dir=reward_dir, data=data,
                     verbose=verbose)


HEADLINE = ("ndcg@10", "hr@10", "mrr", "ndcg@10_liked", "judge_score", "true_rating@1",
            "true_rating@10", "regret@10")


def summary(metrics: dict) -> str:
    """One line per headline metric: initial -> final (the validation selection instead when
    the run was not scored on the test set, ``eval.final_test=False``)."""
    if "final" not in metrics:
        v = metrics.get("validation") or {}
        return (f"not scored on the test set (eval.final_test=False); best validation "
                f"{v.get('metric')} {v.get('best_value')} at step {v.get('best_step')}")
    lines = []
    for key in HEADLINE:
        a, b = metrics["initial"].get(key), metrics["final"].get(key)
        if isinstance(a, float) and isinstance(b, float):
            lines.append(f"{key:>16}: {a:.4f} -> {b:.4f}")
    return "\n".join(lines)


def _define_flags():
    """Flags are defined only when this module is the program, so importing ``run`` never
    clashes with another launcher's ``--config``."""
    from experiments import launch  # noqa: F401 (defines --overwrite, --coordinator, ...)

    config = config_flags.DEFINE_config_file("config", "experiments/configs/posttrain.py",
                                             "Post-training config file.")
    workdir = flags.DEFINE_string("workdir", "runs/posttrain", "Output folder.")
    init = flags.DEFINE_string("init", None, "Pretraining workdir (experiments.pretrain).")
    reward_dir = flags.DEFINE_string("reward_dir", None,
                                     "Reward-model workdir (experiments.reward): needed for "
                                     "dpo / ipo / ppo, asft.reward_source=reward_model, "
                                     "asft.baseline=value and the judge score.")
    return config, workdir, init, reward_dir


def main(argv, config_flag, workdir_flag, init_flag, reward_flag):
    del argv
    from experiments import launch

    launch.setup()
    workdir = workdir_flag.value
    launch.prepare(config_flag.value, workdir, "posttrain", extra={
        "init": init_flag.value and os.path.abspath(init_flag.value),
        "reward_dir": reward_flag.value and os.path.abspath(reward_flag.value)})
    metrics = run(config_flag.value, workdir, init_dir=init_flag.value,
                  reward_dir=reward_flag.value)
    print(f"{metrics['algo']} ({metrics['train']['steps']} steps, "
          f"{metrics['train']['seconds']:.0f}s): initial -> final\n{summary(metrics)}\n"
          f"wrote {workdir}/metrics.json", flush=True)


if __name__ == "__main__":
    _flags = _define_flags()
    app.run(lambda argv: main(argv, *_flags))
