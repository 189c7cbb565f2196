"""Off-policy evaluation scored against the truth of the simulated world.

  python benchmarks/ope.py --out=FILE.json [--seeds=0] [--qualities=0.2,0.5,0.8] [--smoke]
                           [--compare_dir=DIR]

World: the simulator block of experiments/configs/compare.py (400 users, 300 items, 15–40 events
per user, policy temperature 0.5) with ``policy_quality = q`` for each ``--qualities`` value and
world seed ``--seeds`` (``--smoke``: 1000 users, 40 items, 4–8 events, a 1-epoch HSTU; seconds).

Logged data (one context per user, genrec_jax.eval.ope's notation): the user's test event,
state ``s_n`` = the test state (the state after every event before the test item, at the test
time), logged action ``a_n`` = the test item, logged reward ``r_n`` = its observed rating.

Target policies: ``π_f(a|s) = softmax_a(z_s(f(s, ·)) / T)`` over the allowed items (released by
the test time, not in the history), ``z_s`` the scores standardised over the allowed items and
``T = --temperature``, for the score functions ``f`` of most popular (training counts),
top-rated (shrunk item means), first-order Markov, the r*-oracle, the pretrained HSTU (the
compare config's pretrain settings) and, with ``--compare_dir``, every post-trained policy of a
finished ``experiments.compare`` run; plus the logging policy itself, taken as it is (its
first-pick distribution ``π(a|s, τ)``, :meth:`Simulator.policy_probs`, no re-temperature).
True value ``V(π) = mean_n Σ_a π(a|s_n) r*(s_n, a)``; ``truth_observed`` uses the expected
observed rating ``E[clip(round(r* + N(0, σ²)), 1, 5)]`` instead of ``r*`` (what the logged
rewards are unbiased for).

Propensities ``μ(a_n|s_n)``: ``true`` = :meth:`Simulator.choice_propensities` (the logged-choice
distribution, slate and choice model marginalised; conditional Monte Carlo with
``--num_samples`` races per context, its relative standard error reported); ``popularity`` =
:func:`genrec_jax.eval.ope.popularity_propensities` of the training events (smoothing 1);
``bc`` = the pretrained HSTU's softmax over the items not in the history (a behaviour-cloning
model of the logger).

Estimators (genrec_jax.eval.ope): ``dm`` with the synthetic reward model
(:class:`SyntheticRewardModel`, noise ``--rm_noise``) and ``dm_r_star`` with r* itself (exact by
construction, a reference); ``ips``, ``clipped_ips`` (``--max_weight``), ``snips``, ``dr``
(synthetic reward model) and ``dr_r_star``, for each propensity source. Metrics per estimator ×
propensity source × quality, over the target policies (and seeds): ``bias`` = mean(estimate −
truth), ``rmse``, ``spearman`` (rank correlation of estimate and truth across policies, mean
over seeds).

Per world the JSON also holds, per policy, ``mass_above_max_weight`` (target mass on items
whose true weight ``π/μ`` exceeds ``--max_weight``: where IPS lives on rare, huge weights) and
``mass_without_support`` (0: the logger's exploration covers every released item); the Monte
Carlo error of the true propensities; and the propensities at the logged actions. The synthetic
reward model's noise is independent per (user, item), so it averages out over a spread-out
policy and DM is nearly exact here: a best case for DM, not a property of learned models.

Prints stage lines and one summary line; writes the JSON and ``ope.png`` next to it.
"""

from __future__ import annotations

import glob
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks._common import machine_info, stages, write_json  # noqa: E402

_OUT = flags.DEFINE_string("out", "ope.json", "Output JSON (ope.png goes next to it).")
_SEEDS = flags.DEFINE_string("seeds", "0", "World seeds, comma-separated.")
_QUALITIES = flags.DEFINE_string("qualities", "0.2,0.5,0.8",
                                 "Logging-policy qualities (simulator.policy_quality).")
_SMOKE = flags.DEFINE_boolean("smoke", False, "A tiny world and a 1-epoch HSTU (seconds).")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.5,
                                  "T of the target policies softmax(z(scores) / T).")
_MAX_WEIGHT = flags.DEFINE_float("max_weight", 10.0, "Clipping level M of clipped IPS.")
_RM_NOISE = flags.DEFINE_float("rm_noise", 0.5, "Noise of the synthetic reward model (DM, DR).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 2000,
                                    "Monte-Carlo races per context for the true propensities.")
_COMPARE_DIR = flags.DEFINE_string("compare_dir", "",
                                   "A finished experiments.compare workdir: also its policies.")

COMPARE_PRETRAIN = "epochs=20,loss.kind=full,batch_size=64"
SMOKE_PRETRAIN = ("epochs=1,loss.kind=full,batch_size=64,model.num_blocks=1,model.dim=16,"
                  "model.qk_dim=8,model.v_dim=8,data.max_len=16")
SMOKE_WORLD = dict(num_users=1000, num_items=40, events_per_user=(4, 8))
SOURCES = ("true", "popularity", "bc")
PROPENSITY_ESTIMATORS = ("ips", "clipped_ips", "snips", "dr", "dr_r_star")
PLAIN_ESTIMATORS = ("dm", "dm_r_star")


# ---------------------------------------------------------------- world and data

def world_config(seed: int, quality: float, smoke: bool):
    """experiments/configs/pretrain.py with the compare config's pretrain settings, sizes and
    simulator block (``policy_quality = quality``, world seed = run seed = ``seed``)."""
    from experiments.configs import compare as compare_config
    from experiments.configs import pretrain as pretrain_config

    cmp = compare_config.get_config()
    if smoke:
        arg = SMOKE_PRETRAIN
    else:
        arg = (f"{COMPARE_PRETRAIN},data.max_len={int(cmp.data.max_len)},"
               f"model.dim={int(cmp.model.dim)},model.qk_dim={int(cmp.model.qk_dim)},"
               f"model.v_dim={int(cmp.model.v_dim)}")
    cfg = pretrain_config.get_config(arg)
    block = dict(cmp.simulator)
    if smoke:
        block.update(SMOKE_WORLD)
    cfg.simulator = ml_collections.ConfigDict(block)
    cfg.simulator.seed = seed
    cfg.simulator.policy_quality = float(quality)
    cfg.seed = seed
    cfg.checkpoint_every = 10**9
    return cfg


def training_events(split) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(items, ratings, src, dst)``: dense ids and ratings of the training events, and the
    adjacent training pairs ``src → dst`` of each user."""
    ds = split.dataset
    items, ratings, src, dst = [], [], [], []
    for u in range(ds.num_users):
        n = int(split.train_len[u])
        seq = ds.items[ds.offsets[u]:ds.offsets[u] + n].astype(np.int64)
        items.append(seq)
        ratings.append(ds.ratings[ds.offsets[u]:ds.offsets[u] + n])
        src.append(seq[:-1])
        dst.append(seq[1:])
    return tuple(np.concatenate(x) for x in (items, ratings, src, dst))


def all_scores(score_fn, arrays, num_columns: int) -> np.ndarray:
    """``[U, V]`` float64 scores of ``score_fn`` on every row of ``arrays``."""
    from genrec_jax.eval.ranking import padded_batches

    out = []
    for batch, num_real in padded_batches(arrays, 256):
        out.append(np.asarray(score_fn(batch), np.float64)[:num_real, :num_columns])
    return np.concatenate(out)


def softmax_policy(scores: np.ndarray, allowed: np.ndarray, temperature: float) -> np.ndarray:
    """``[N, V]`` ``softmax(z(scores) / T)`` over ``allowed`` (0 elsewhere); ``z``: scores
    standardised over each row's allowed items (non-finite scores count as the row's lowest
    finite score; a row of equal scores is uniform)."""
    s = np.where(allowed, scores, np.nan)
    finite = np.isfinite(s)
    low = np.nanmin(np.where(finite, s, np.nan), axis=1, keepdims=True)
    s = np.where(allowed & ~finite, low, s)
    mean = np.nanmean(s, axis=1, keepdims=True)
    std = np.nanstd(s, axis=1, keepdims=True)
    z = (s - mean) / np.where(std > 0, std, 1.0)
    logits = np.where(allowed, z / temperature, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def expected_observed(r_star: np.ndarray, sigma: float) -> np.ndarray:
    """``E[clip(round(r* + N(0, σ²)), 1, 5)] = 1 + Σ_{k=1..4} P(r* + noise >= k + 1/2)``."""
    from scipy.special import ndtr

    r = np.asarray(r_star, np.float64)
    if sigma == 0:
        return np.clip(np.rint(r), 1, 5)
    return 1.0 + sum(ndtr((r - (k + 0.5)) / sigma) for k in range(1, 5))


# ---------------------------------------------------------------- policies

def reference_policies(data) -> dict:
    from genrec_jax.eval import reference_policies as rp
    from genrec_jax.eval.truth import SimIds

    sim = data.simulator
    ids = SimIds.from_dataset(data.dataset)
    items, ratings, src, dst = training_events(data.split)
    n = data.dataset.num_items
    return {
        "most_popular": rp.most_popular_score_fn(data.popularity),
        "top_rated": rp.top_rated_score_fn(rp.shrunk_item_means(items, ratings, n)),
        "markov": rp.markov_score_fn(rp.transition_counts(src, dst, n), data.popularity),
        "oracle_r_star": rp.oracle_score_fn(sim, ids),
    }


def pretrained_hstu(cfg, data):
    from genrec_jax.eval.model_eval import model_score_fn
    from genrec_jax.train.pretrain import pretrain

    with tempfile.TemporaryDirectory(prefix="ope_hstu_") as workdir:
        _, graphdef, params, _ = pretrain(cfg, workdir, data=data, verbose=False)
    return model_score_fn(graphdef, params)


def _plain(x):
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def compare_policies(compare_dir: str, seed: int, cfg, data) -> tuple[dict, list]:
    """Score functions of the post-trained policies ``compare_dir/seed{seed}/<algo>/`` of a
    finished ``experiments.compare`` run, when its world is this one (the simulator block of
    ``seed{seed}/pretrain/config.json`` equals ``cfg.simulator``); ``(fns, notes)``.

    Each finished stage (``stage.json`` present) is restored with
    :func:`genrec_jax.train.pretrained.restore_pretrained` from its post-training workdir (its
    latest checkpoint and optimizer; the architecture of the pretraining config); one that does
    not restore is skipped with a note."""
    from genrec_jax import sharding as shd
    from genrec_jax.eval.model_eval import model_score_fn
    from genrec_jax.train.pretrained import load_init_config, restore_pretrained

    base = os.path.join(compare_dir, f"seed{seed}")
    pre_cfg_path = os.path.join(base, "pretrain", "config.json")
    if not os.path.exists(pre_cfg_path):
        return {}, [f"{pre_cfg_path} missing: no compare policies for seed {seed}"]
    pre_cfg = load_init_config(os.path.join(base, "pretrain"))
    theirs, ours = _plain(dict(pre_cfg.get("simulator", {}))), _plain(dict(cfg.simulator))
    diffs = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if diffs:
        return {}, [f"compare run's world differs ({', '.join(diffs[:4])}): its policies are "
                    f"skipped for seed {seed} q {cfg.simulator.policy_quality:g}"]
    mesh = shd.mesh_from_config(pre_cfg.mesh)
    fns, notes = {}, []
    for path in sorted(glob.glob(os.path.join(base, "*", "checkpoints"))):
        workdir = os.path.dirname(path)
        name = os.path.basename(workdir)
        if name in ("pretrain", "reward"):
            continue
        if not os.path.exists(os.path.join(workdir, "stage.json")):
            notes.append(f"{name}: unfinished (no stage.json), skipped")
            continue
        try:
            post_cfg = load_init_config(workdir)
            init_cfg = ml_collections.ConfigDict(pre_cfg.to_dict())
            init_cfg.optimizer = post_cfg.optimizer          # the saved optimizer state's shape
            if "mesh" in post_cfg:
                init_cfg.mesh = post_cfg.mesh
            graphdef, params, _ = restore_pretrained(workdir, data.dataset.num_items, mesh,
                                                     init_cfg=init_cfg)
            fns[f"compare_{name}"] = model_score_fn(graphdef, params)
        except Exception as err:  # noqa: BLE001 (an optional extra: report and go on)
            notes.append(f"{name}: restore failed ({type(err).__name__}: {str(err)[:300]})")
    return fns, notes


# ---------------------------------------------------------------- one world

def run_world(seed: int, quality: float, flags_: dict, stage) -> dict:
    """Truth and every estimate of every target policy in the world ``(seed, quality)``."""
    from genrec_jax.data.prepare import prepare_data
    from genrec_jax.data.simulator import SyntheticRewardModel
    from genrec_jax.eval import ope
    from genrec_jax.eval.reference_policies import logging_policy_score_fn
    from genrec_jax.eval.truth import SimIds, eval_histories

    tag = f"seed {seed} q {quality:g}"
    with stage(f"{tag}: world"):
        cfg = world_config(seed, quality, flags_["smoke"])
        data = prepare_data(cfg)
        sim = data.simulator
        ids = SimIds.from_dataset(data.dataset)
        v = ids.num_columns
        test = data.test
        valid = np.asarray(test["valid"]) != 0
        users, hist = eval_histories(test, ids)
        lengths = np.asarray(test["lengths"], np.int64)
        times = np.asarray(test["query_timestamps"])[np.arange(len(lengths)),
                                                     np.maximum(lengths - 1, 0)]
        actions = np.asarray(test["target"], np.int64)[valid]
        rewards = np.asarray(test["target_rating"], np.float64)[valid]
        users, hist, times = users[valid], hist[valid], times[valid]
        n = len(actions)
        rows = np.arange(n)
        state = sim.state_after(users, hist)
        r_star = ids.columns(sim, sim.rating_from_state(state, users).astype(np.float64))
        r_star[:, 0] = 0.0
        released = ids.columns(sim, sim.released(times).astype(np.float64)) > 0
        in_hist = np.zeros((n, v), bool)
        dense_hist = ids.dense_items(hist)
        rr, cc = np.nonzero(dense_hist > 0)
        in_hist[rr, dense_hist[rr, cc]] = True
        allowed = released & ~in_hist
        allowed[:, 0] = False
        assert np.all(allowed[rows, actions]), "a logged test item is not allowed"
    with stage(f"{tag}: true propensities ({n} contexts x {flags_['num_samples']} races)"):
        mu_raw, se_raw = sim.choice_propensities(users, hist, times,
                                                 num_samples=flags_["num_samples"], seed=seed)
        raw_actions = ids.raw_items(actions) - 1
        mu_true = mu_raw[rows, raw_actions]
        mu_full = ids.columns(sim, mu_raw)
        mu_full[:, 0] = 0.0
        rel_se = se_raw[rows, raw_actions] / mu_true
    with stage(f"{tag}: pretrain HSTU (the BC model and a target)"):
        t0 = time.perf_counter()
        hstu_fn = pretrained_hstu(cfg, data)
        hstu_seconds = time.perf_counter() - t0
    with stage(f"{tag}: target policies and estimates"):
        fns = dict(reference_policies(data), hstu=hstu_fn)
        notes = []
        if flags_["compare_dir"]:
            extra, notes = compare_policies(flags_["compare_dir"], seed, cfg, data)
            fns.update(extra)
        hstu_scores = all_scores(hstu_fn, test, v)[valid]
        train_items = training_events(data.split)[0]
        support = np.ones(v, bool)
        support[0] = False
        mus = {
            "true": mu_true,
            "popularity": ope.popularity_propensities(train_items, v, support=support)[actions],
            "bc": ope.model_propensities(softmax_policy(hstu_scores, ~in_hist & support[None],
                                                        1.0), actions),
        }
        targets = {name: softmax_policy(all_scores(fn, test, v)[valid], allowed,
                                        flags_["temperature"]) for name, fn in fns.items()}
        log_pi = all_scores(logging_policy_score_fn(sim, ids), test, v)[valid]
        logging = np.where(allowed, np.exp(log_pi), 0.0)
        targets["logging_policy"] = logging / logging.sum(axis=1, keepdims=True)
        rm = SyntheticRewardModel(sim, noise=flags_["rm_noise"], seed=seed)
        r_hat = ids.columns(sim, rm.rating_matrix(users, hist).astype(np.float64))
        r_hat[:, 0] = 0.0
        observed = expected_observed(r_star, float(sim.config.rating_noise))
        policies = {}
        for name, pi in targets.items():
            row = {"truth": float(np.mean(np.sum(pi * r_star, 1))),
                   "truth_observed": float(np.mean(np.sum(pi * observed, 1))),
                   "dm": ope.direct_method(pi, r_hat),
                   "dm_r_star": ope.direct_method(pi, r_star), "by_source": {},
                   # Overlap with the true logger: target mass on items the logger never logs
                   # (must be 0), and on items whose true weight pi/mu exceeds max_weight.
                   "mass_without_support": float(np.mean(np.sum(pi * (mu_full <= 0), 1))),
                   "mass_above_max_weight": float(np.mean(np.sum(
                       pi * (pi > flags_["max_weight"] * mu_full), 1)))}
            for source, mu in mus.items():
                est = ope.estimate_all(actions, rewards, mu, target_probs=pi, reward_model=r_hat,
                                       max_weight=flags_["max_weight"])
                est["dr_r_star"] = ope.doubly_robust(actions, rewards, mu, pi, r_star)
                row["by_source"][source] = est
            policies[name] = row
    return {
        "world": {"num_users": int(data.dataset.num_users),
                  "num_items": int(data.dataset.num_items),
                  "num_events": int(data.dataset.num_events), "num_contexts": int(n),
                  "simulator": {k: (list(x) if isinstance(x, tuple) else x)
                                for k, x in dict(cfg.simulator).items()}},
        "true_propensity_mc": {"num_samples": flags_["num_samples"],
                               "relative_se_median": float(np.median(rel_se)),
                               "relative_se_max": float(np.max(rel_se))},
        "propensity_at_logged_action": {s: {"median": float(np.median(m)),
                                            "min": float(np.min(m))} for s, m in mus.items()},
        "reward_bias_observed_minus_r_star": float(np.mean(
            observed[rows, actions] - r_star[rows, actions])),
        "hstu_pretrain_seconds": hstu_seconds,
        "notes": notes,
        "policies": policies,
    }


# ---------------------------------------------------------------- metrics, plot, main

def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def estimate_of(row: dict, estimator: str, source: str) -> float:
    if estimator in PLAIN_ESTIMATORS:
        return row[estimator]["value"]
    return row["by_source"][source][estimator]["value"]


def metrics(worlds: list[dict], estimator: str, source: str) -> dict:
    """bias, rmse (over every policy of every world), spearman (mean over worlds)."""
    errors, rhos = [], []
    for w in worlds:
        truth = [p["truth"] for p in w["policies"].values()]
        est = [estimate_of(p, estimator, source) for p in w["policies"].values()]
        errors.extend(np.subtract(est, truth).tolist())
        rhos.append(spearman(est, truth))
    errors = np.asarray(errors)
    finite = np.isfinite(errors)
    return {"bias": float(np.mean(errors[finite])) if finite.any() else math.nan,
            "rmse": float(np.sqrt(np.mean(errors[finite] ** 2))) if finite.any() else math.nan,
            "spearman": float(np.nanmean(rhos)) if np.isfinite(rhos).any() else math.nan,
            "num_policies": int(finite.sum())}


def table(result: dict) -> list[dict]:
    rows = []
    for q, worlds in result["by_quality"].items():
        ws = list(worlds.values())
        for est in PLAIN_ESTIMATORS:
            rows.append({"estimator": est, "propensity": "none", "quality": float(q),
                         **metrics(ws, est, "true")})
        for source in SOURCES:
            for est in PROPENSITY_ESTIMATORS:
                rows.append({"estimator": est, "propensity": source, "quality": float(q),
                             **metrics(ws, est, source)})
    return rows


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = [(q, w) for q, ws in result["by_quality"].items() for w in ws.values()]
    fig, axes = plt.subplots(1, len(SOURCES), figsize=(5 * len(SOURCES), 4.6), squeeze=False)
    colors = dict(zip(PLAIN_ESTIMATORS + PROPENSITY_ESTIMATORS,
                      ["tab:gray", "k", "tab:red", "tab:orange", "tab:blue", "tab:green",
                       "tab:olive"]))
    markers = ["o", "s", "^", "D", "v", "P"]
    qualities = sorted({q for q, _ in worlds})
    truths = [p["truth"] for _, w in worlds for p in w["policies"].values()]
    lo, hi = min(truths), max(truths)
    bottom, top = lo - 1.5 * (hi - lo), hi + 1.5 * (hi - lo)
    for ax, source in zip(axes[0], SOURCES):
        off = 0
        for est in ("dm",) + PROPENSITY_ESTIMATORS:
            for q, w in worlds:
                t = [p["truth"] for p in w["policies"].values()]
                e = np.array([estimate_of(p, est, source) for p in w["policies"].values()])
                off += int(np.sum((e < bottom) | (e > top)))
                ax.scatter(t, np.clip(e, bottom, top), s=18, color=colors[est],
                           marker=markers[qualities.index(q) % 6],
                           label=est if q == qualities[0] else None, alpha=0.8)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"propensities: {source}"
                     + (f" ({off} estimates off-scale, drawn at the edge)" if off else ""),
                     fontsize=9)
        ax.set_xlabel("true value Σ π r*")
        ax.set_ylabel("estimate")
        ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.05 * (top - bottom))
        ax.legend(fontsize=7, title="markers: q " + ", ".join(f"{float(q):g}" for q in qualities),
                  title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out: str, seeds, qualities, flags_: dict) -> dict:
    t_start = time.perf_counter()
    total = 4 * len(seeds) * len(qualities)
    st = stages(total, "ope")
    result = {"command": " ".join(sys.argv), "settings": dict(flags_, seeds=list(seeds),
                                                               qualities=list(qualities)),
              "machine": machine_info(), "by_quality": {}}
    for q in qualities:
        for s in seeds:
            world = run_world(s, q, flags_, st.stage)
            result["by_quality"].setdefault(f"{q:g}", {})[str(s)] = world
            write_json(out, result)
    result["table"] = table(result)
    result["seconds"] = time.perf_counter() - t_start
    write_json(out, result)
    plot(result, os.path.join(os.path.dirname(os.path.abspath(out)), "ope.png"))
    return result


def summary_line(result: dict) -> str:
    parts = []
    for row in result["table"]:
        if row["estimator"] in ("ips", "snips", "dr") or row["estimator"] == "dm":
            parts.append(f"{row['estimator']}/{row['propensity']}/q{row['quality']:g} "
                         f"rmse {row['rmse']:.3f} rho {row['spearman']:.2f}")
    return "ope: " + " | ".join(parts)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)       # no per-checkpoint lines from pretraining
    seeds = [int(x) for x in _SEEDS.value.split(",") if x.strip()]
    qualities = [float(x) for x in _QUALITIES.value.split(",") if x.strip()]
    if not seeds or not qualities:
        raise app.UsageError("--seeds and --qualities need at least one value each")
    flags_ = {"smoke": _SMOKE.value, "temperature": _TEMPERATURE.value,
              "max_weight": _MAX_WEIGHT.value, "rm_noise": _RM_NOISE.value,
              "num_samples": _NUM_SAMPLES.value if not _SMOKE.value else min(_NUM_SAMPLES.value,
                                                                              500),
              "compare_dir": _COMPARE_DIR.value}
    out_dir = os.path.dirname(os.path.abspath(_OUT.value))
    os.makedirs(out_dir, exist_ok=True)
    result = run(_OUT.value, seeds, qualities, flags_)
    print(summary_line(result), flush=True)
    print(f"wrote {_OUT.value} and {os.path.join(out_dir, 'ope.png')}", flush=True)


if __name__ == "__main__":
    app.run(main)
