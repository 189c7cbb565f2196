"""Does the simulated world carry sequential signal? Baselines, HSTU and truth per world seed.

  python benchmarks/simulator_signal.py --seeds=0,1,2 --out=FILE.json [--default_pretrain]

For each world seed (simulator sizes of experiments/configs/compare.py, ``data.max_len`` 50;
leave-last-out, full ranking, whole history excluded: genrec_jax.eval.ranking.evaluate):

* HR@10 / NDCG@10 and true rating@10 (genrec_jax.eval.truth.true_topk_rating) of most popular
  (training counts), first-order Markov on adjacent training pairs, the same Markov fitted on
  each user's training events in a shuffled order, the logging policy, the r*-greedy oracle, a
  shrunk top-rated list, and HSTU pretrained with the compare config's pretrain settings
  (experiments/configs/pretrain.py with ``epochs=20, loss.kind=full, batch_size=64``, dim 32,
  max_len 50); with ``--default_pretrain`` also HSTU of the default pretrain config on its own
  default world (its simulator block; seed = the world seed);
* the true discounted value of a 3-step greedy rollout (γ = 0.9, k = 1: the judge's semantics)
  of each policy (genrec_jax.eval.truth.true_rollout_value_arrays);
* the synthetic reward model's RMSE to r* on the held-out test pairs (user, last item) at the
  test state, for each noise level of ``--rm_noise``.

Prints one summary line (means over seeds of the done-criteria ratios); writes the JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from experiments.configs import compare as compare_config  # noqa: E402
from experiments.configs import pretrain as pretrain_config  # noqa: E402
from genrec_jax.data.prepare import prepare_data  # noqa: E402
from genrec_jax.data.simulator import SyntheticRewardModel  # noqa: E402
from genrec_jax.eval import reference_policies as rp  # noqa: E402
from genrec_jax.eval.ranking import evaluate  # noqa: E402
from genrec_jax.eval.truth import (SimIds, eval_histories, true_rollout_value_arrays,  # noqa: E402
                                   true_topk_rating)

_SEEDS = flags.DEFINE_string("seeds", "0,1,2", "World seeds, comma-separated.")
_OUT = flags.DEFINE_string("out", "simulator_signal.json", "Output JSON.")
_DEFAULT = flags.DEFINE_boolean("default_pretrain", False,
                                "Also pretrain the default pretrain config (its default world).")
_NO_HSTU = flags.DEFINE_boolean("skip_hstu", False, "Only the cheap proxies (seconds).")
_RM_NOISE = flags.DEFINE_string("rm_noise", "0.1,0.2,0.4,0.7,1.0,1.5",
                                "Synthetic reward-model noise levels.")
_SIM = flags.DEFINE_string("sim", "", "Extra simulator overrides, key=value,... (tuning).")

COMPARE_PRETRAIN = "epochs=20,loss.kind=full,batch_size=64"


def _world(cfg, sim_block, seed: int):
    """``cfg`` with the simulator block ``sim_block``, world seed and run seed ``seed``, and the
    ``--sim`` overrides (knobs may be absent from the block)."""
    cfg.simulator = ml_collections.ConfigDict(dict(sim_block))
    cfg.simulator.seed = seed
    cfg.seed = seed
    for kv in (x for x in _SIM.value.split(",") if x):
        key, text = kv.split("=", 1)
        cfg.simulator[key] = int(text) if text.lstrip("-").isdigit() else float(text)
    return cfg


def compare_pretrain_config(seed: int):
    """experiments/configs/pretrain.py with the compare config's pretrain settings and sizes."""
    cmp = compare_config.get_config()
    arg = (f"{COMPARE_PRETRAIN},data.max_len={int(cmp.data.max_len)},"
           f"model.dim={int(cmp.model.dim)},model.qk_dim={int(cmp.model.qk_dim)},"
           f"model.v_dim={int(cmp.model.v_dim)}")
    return _world(pretrain_config.get_config(arg), cmp.simulator, seed)


def default_pretrain_config(seed: int):
    """experiments/configs/pretrain.py as it is, on its own default world of seed ``seed``."""
    cfg = pretrain_config.get_config()
    return _world(cfg, cfg.simulator, seed)


def markov_counts(split, *, shuffle_seed: int | None = None) -> np.ndarray:
    """Transition counts of adjacent training events per user (optionally shuffled within
    each user first)."""
    ds = split.dataset
    rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
    src, dst = [], []
    for u in range(ds.num_users):
        n = int(split.train_len[u])
        seq = ds.items[ds.offsets[u]:ds.offsets[u] + n].astype(np.int64)
        if rng is not None:
            seq = rng.permutation(seq)
        src.append(seq[:-1])
        dst.append(seq[1:])
    return rp.transition_counts(np.concatenate(src), np.concatenate(dst), ds.num_items)


def score_policies(data, fns: dict) -> dict:
    sim, test = data.simulator, data.test
    ids = SimIds.from_dataset(data.dataset)
    out = {}
    for name, fn in fns.items():
        m = evaluate(fn, test, batch_size=256)
        t = true_topk_rating(sim, test, fn, ids=ids, ks=(1, 10))
        roll = true_rollout_value_arrays(sim, test, fn, ids=ids, horizon=3, gamma=0.9, k=1)
        out[name] = {"hr@10": m["hr@10"], "ndcg@10": m["ndcg@10"], "mrr": m["mrr"],
                     "true_rating@1": t["true_rating@1"], "true_rating@10": t["true_rating@10"],
                     "best_rating@10": t["best_rating@10"], "regret@10": t["regret@10"],
                     "true_value_h3": roll["true_value"]}
    return out


def reference_fns(data, seed: int) -> dict:
    sim = data.simulator
    ids = SimIds.from_dataset(data.dataset)
    items, ratings = rp.train_events(data.split)
    n = data.dataset.num_items
    return {
        "most_popular": rp.most_popular_score_fn(data.popularity),
        "markov": rp.markov_score_fn(markov_counts(data.split), data.popularity),
        "markov_shuffled": rp.markov_score_fn(markov_counts(data.split, shuffle_seed=seed),
                                              data.popularity),
        "top_rated": rp.top_rated_score_fn(rp.shrunk_item_means(items, ratings, n)),
        "logging_policy": rp.logging_policy_score_fn(sim, ids),
        "oracle_r_star": rp.oracle_score_fn(sim, ids),
    }


def reward_model_sweep(data, levels, seed: int) -> list:
    sim = data.simulator
    ids = SimIds.from_dataset(data.dataset)
    valid = np.asarray(data.test["valid"]) != 0
    users, hist = eval_histories(data.test, ids)
    users, hist = users[valid], hist[valid]
    items = ids.raw_items(np.asarray(data.test["target"])[valid])
    truth = sim.true_rating(users, items).astype(np.float64)
    out = []
    for level in levels:
        rm = SyntheticRewardModel(sim, noise=level, seed=seed)
        pred = rm.score(users, hist, items)
        out.append({"noise": level, "rmse_to_r_star": float(np.sqrt(np.mean((pred - truth) ** 2))),
                    "num_pairs": int(len(items))})
    return out


def hstu(cfg, data) -> tuple[dict, float]:
    from genrec_jax.eval.model_eval import model_score_fn
    from genrec_jax.train.pretrain import pretrain

    cfg.checkpoint_every = 10**9
    t0 = time.perf_counter()
    _, graphdef, params, _ = pretrain(cfg, tempfile.mkdtemp(prefix="simsignal_"), data=data,
                                      verbose=False)
    seconds = time.perf_counter() - t0
    return score_policies(data, {"hstu": model_score_fn(graphdef, params)})["hstu"], seconds


def world_summary(data) -> dict:
    ev_r = data.dataset.ratings
    return {"num_users": int(data.dataset.num_users), "num_items": int(data.dataset.num_items),
            "num_events": int(data.dataset.num_events), "mean_rating": float(ev_r.mean()),
            "rating_hist": np.bincount(ev_r.astype(np.int64), minlength=6)[1:].tolist()}


def main(argv):
    del argv
    seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
    levels = [float(x) for x in _RM_NOISE.value.split(",") if x.strip()]
    result = {"seeds": seeds, "per_seed": {}, "command": " ".join(sys.argv)}
    for seed in seeds:
        cfg = compare_pretrain_config(seed)
        t0 = time.perf_counter()
        data = prepare_data(cfg)
        gen = time.perf_counter() - t0
        row = {"world": world_summary(data), "generate_seconds": gen,
               "simulator": dict(cfg.simulator),
               "policies": score_policies(data, reference_fns(data, seed)),
               "reward_model": reward_model_sweep(data, levels, seed)}
        if not _NO_HSTU.value:
            row["policies"]["hstu_compare"], row["hstu_compare_seconds"] = hstu(cfg, data)
        if _DEFAULT.value:
            dcfg = default_pretrain_config(seed)
            ddata = prepare_data(dcfg)
            row["default_world"] = {"world": world_summary(ddata),
                                    "simulator": dict(dcfg.simulator),
                                    "policies": score_policies(ddata, reference_fns(ddata, seed))}
            if not _NO_HSTU.value:
                pol, sec = hstu(dcfg, ddata)
                row["default_world"]["policies"]["hstu_default"] = pol
                row["default_world"]["hstu_default_seconds"] = sec
        result["per_seed"][str(seed)] = row
        _write(result)          # after every seed, so a long run shows its progress
        p = row["policies"]
        print(f"seed {seed}: " + ", ".join(f"{k} {v['hr@10']:.3f}/{v['true_rating@10']:.2f}"
                                           for k, v in p.items()), flush=True)
    result["criteria"] = criteria(result)
    _write(result)
    c = result["criteria"]
    print("markov/shuffled HR@10 " + _fmt(c["markov_over_shuffled"])
          + " | hstu/pop HR@10 " + _fmt(c.get("hstu_compare_over_popular", []))
          + (" | default hstu/pop " + _fmt(c["hstu_default_over_popular"])
             if "hstu_default_over_popular" in c else "")
          + " | oracle-pop true@10 " + _fmt(c["oracle_minus_popular_true10"])
          + " | RM rmse " + "/".join(f"{v:.2f}" for v in c["rm_rmse_seed0"])
          + f" | monotone {c['rm_monotone']}")


def _write(result) -> None:
    with open(_OUT.value, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2,
                  default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def criteria(result) -> dict:
    rows = list(result["per_seed"].values())
    out = {
        "markov_over_shuffled": [r["policies"]["markov"]["hr@10"]
                                 / r["policies"]["markov_shuffled"]["hr@10"] for r in rows],
        "oracle_minus_popular_true10": [r["policies"]["oracle_r_star"]["true_rating@10"]
                                        - r["policies"]["most_popular"]["true_rating@10"]
                                        for r in rows],
        "rm_rmse_seed0": [x["rmse_to_r_star"] for x in rows[0]["reward_model"]],
        "rm_monotone": all(all(b["rmse_to_r_star"] > a["rmse_to_r_star"]
                               for a, b in zip(r["reward_model"], r["reward_model"][1:]))
                           for r in rows),
    }
    if all("hstu_compare" in r["policies"] for r in rows):
        out["hstu_compare_over_popular"] = [r["policies"]["hstu_compare"]["hr@10"]
                                            / r["policies"]["most_popular"]["hr@10"] for r in rows]
    if all("hstu_default" in r.get("default_world", {}).get("policies", {}) for r in rows):
        out["hstu_default_over_popular"] = [
            r["default_world"]["policies"]["hstu_default"]["hr@10"]
            / r["default_world"]["policies"]["most_popular"]["hr@10"] for r in rows]
    return out


if __name__ == "__main__":
    app.run(main)
