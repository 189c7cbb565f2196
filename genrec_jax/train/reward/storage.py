"""Saving and loading a reward ensemble: ``DIR/reward_ensemble/{reward_config.json,
checkpoints/}`` (the config as JSON, the member-stacked parameters with Orbax)."""

from __future__ import annotations

import json
import os
import shutil

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genrec_jax import sharding as shd
from genrec_jax.io import write_json
from genrec_jax.models.reward import RewardConfig, RewardModel
from genrec_jax.train.checkpoint import Checkpointer
from genrec_jax.train.reward.config import check_num_members
from genrec_jax.train.reward.ensemble import RewardEnsemble

ENSEMBLE_DIR = "reward_ensemble"
CONFIG_FILE = "reward_config.json"


def _ensemble_dir(path: str | os.PathLike) -> str:
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(os.path.join(path, CONFIG_FILE)):
        return path
    return os.path.join(path, ENSEMBLE_DIR)


def save_ensemble(directory: str | os.PathLike, config: RewardConfig, params,
                  meta: dict | None = None) -> str:
    """Writes ``directory/reward_ensemble/{reward_config.json, checkpoints/}`` (Orbax), replacing
    an earlier ensemble there. Returns the ensemble folder."""
    folder = os.path.join(os.path.abspath(os.fspath(directory)), ENSEMBLE_DIR)
    num_members = check_num_members(jax.tree.leaves(params)[0].shape[0])
    if jax.process_index() == 0 and os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    info = {"config": config.to_dict(), "num_members": num_members, "meta": dict(meta or {})}
    ckpt = Checkpointer(os.path.join(folder, "checkpoints"), every=1, keep=1)
    ckpt.save(0, {"params": params}, {"num_members": num_members}, force=True)
    ckpt.close()
    if jax.process_index() == 0:
        write_json(os.path.join(folder, CONFIG_FILE), info)
    return folder


def load_ensemble(directory: str | os.PathLike, mesh: Mesh | None = None) -> RewardEnsemble:
    """The :class:`RewardEnsemble` saved by :func:`save_ensemble` in ``directory`` (the workdir
    or the ``reward_ensemble`` folder itself); parameters land replicated on ``mesh`` (default:
    the first device)."""
    folder = _ensemble_dir(directory)
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"no reward ensemble in {directory} (missing {config_path})")
    with open(config_path, encoding="utf-8") as f:
        info = json.load(f)
    config = RewardConfig.from_dict(info["config"])
    num_members = check_num_members(info["num_members"])
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: RewardModel(config, rngs=nnx.Rngs(0))))
    if mesh is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target_sharding = lambda path, leaf: sharding  # noqa: E731
    else:
        target_sharding = lambda path, leaf: NamedSharding(  # noqa: E731
            mesh, P(None, *shd.param_spec(path, leaf)))
    target = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.ShapeDtypeStruct((num_members, *leaf.shape), leaf.dtype,
                                                sharding=target_sharding(path, leaf)),
        nnx.to_pure_dict(abstract))
    ckpt = Checkpointer(os.path.join(folder, "checkpoints"), every=1, keep=1)
    state, _ = ckpt.restore({"params": target})
    ckpt.close()
    return RewardEnsemble(config, graphdef, state["params"], info.get("meta"))
