"""Ground truth of policies: one-step top-k and rollouts against naive Python loops; the rollout
equals the reward-model judge when the judge is r* itself."""

import numpy as np
import pytest

from genrec_jax.data import Simulator, SimulatorConfig, build_sequences, leave_last_out
from genrec_jax.data.sequences import eval_arrays
from genrec_jax.data.simulator import SyntheticRewardModel
from genrec_jax.eval.judge import judge_rollout
from genrec_jax.eval.truth import (SimIds, history_arrays, eval_histories, true_rollout_value,
                                   true_rollout_value_arrays, true_topk_rating)

WORLD = SimulatorConfig(num_users=12, num_items=30, events_per_user=(4, 8), seed=3,
                        initial_catalog=1.0)


@pytest.fixture(scope="module")
def world():
    sim = Simulator(WORLD)
    ds = build_sequences(sim.generate())
    split = leave_last_out(ds)
    return sim, ds, SimIds.from_dataset(ds), eval_arrays(split, max_len=16)


def table_score_fn(num_users, num_columns, seed=0):
    """Fixed random scores per dense user (a stand-in policy)."""
    table = np.random.default_rng(seed).standard_normal((num_users, num_columns))
    table[:, 0] = -np.inf
    return lambda batch: table[np.asarray(batch["user"])].astype(np.float32), table


def naive_state(sim, user, items):
    c = sim.config
    noise = sim._state_noise(np.array([user - 1]), len(items))[0]
    s = sim.user_vectors[user - 1].copy()
    for t, a in enumerate(items):
        s = (c.state_memory * s + (1 - c.state_memory) * sim.item_vectors[a - 1]
             + c.state_noise * noise[t])
    return s, (items[-1] if len(items) else 0)


def naive_r(sim, user, state, item):
    c = sim.config
    s, last = state
    x = (c.affinity_scale * float(s @ sim.item_vectors[item - 1]) + sim.user_bias[user - 1]
         + sim.item_bias[item - 1] + c.rating_offset)
    if last:
        if sim.item_group[item - 1] == sim.item_group[last - 1]:
            x += c.group_bonus
        if sim.next_in_series(last) == item:
            x += c.series_bonus
    return 3 + 2 * np.tanh(x / 2)


def test_ids_map_dense_and_raw(world):
    sim, ds, ids, _ = world
    assert ids.num_columns == ds.num_items + 1
    dense = np.arange(ds.num_items + 1)
    np.testing.assert_array_equal(ids.dense_items(ids.raw_items(dense)), dense)
    np.testing.assert_array_equal(ids.raw_users(ids.dense_users(ds.user_keys)), ds.user_keys)
    table = sim.rating_matrix(ds.user_keys)
    cols = ids.columns(sim, table)
    assert np.all(cols[:, 0] == -np.inf)
    np.testing.assert_allclose(cols[:, 1:], table[:, ds.item_keys[1:].astype(int) - 1])
    with pytest.raises(ValueError, match="not in the data"):
        SimIds(ids.user_keys, ids.item_keys[:5]).dense_items([ids.item_keys[-1]])


def test_true_topk_rating_equals_a_naive_loop(world):
    sim, ds, ids, test = world
    score_fn, table = table_score_fn(ds.num_users, ids.num_columns)
    out = true_topk_rating(sim, test, score_fn, ids=ids, ks=(1, 3), batch_size=5)
    users, hist = eval_histories(test, ids)
    got = {1: [], 3: []}
    best = {1: [], 3: []}
    for b in range(ds.num_users):
        h = [int(x) for x in hist[b] if x]
        state = naive_state(sim, int(users[b]), h)
        cand = [d for d in range(1, ds.num_items + 1) if int(ids.item_keys[d]) not in h]
        r = {d: naive_r(sim, int(users[b]), state, int(ids.item_keys[d])) for d in cand}
        by_score = sorted(cand, key=lambda d: (-table[b, d], d))
        by_truth = sorted(r.values(), reverse=True)
        for k in (1, 3):
            got[k].append(np.mean([r[d] for d in by_score[:k]]))
            best[k].append(np.mean(by_truth[:k]))
    for k in (1, 3):
        np.testing.assert_allclose(out["per_user"][f"true_rating@{k}"], got[k], rtol=1e-5)
        np.testing.assert_allclose(out[f"true_rating@{k}"], np.mean(got[k]), rtol=1e-5)
        np.testing.assert_allclose(out[f"best_rating@{k}"], np.mean(best[k]), rtol=1e-5)
        assert out[f"regret@{k}"] >= 0
    assert out["num_users"] == ds.num_users
    # The state after the evaluation history is the simulator's own test state.
    np.testing.assert_allclose(sim.state_after(users, hist).vector, sim.test_state(users).vector,
                               rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_true_rollout_value_equals_a_naive_loop(world, k):
    sim, ds, ids, test = world
    score_fn, table = table_score_fn(ds.num_users, ids.num_columns, seed=1)
    horizon, gamma = 3, 0.8
    out = true_rollout_value_arrays(sim, test, score_fn, ids=ids, horizon=horizon, gamma=gamma,
                                    k=k, batch_size=5, seed=2)
    users, hist = eval_histories(test, ids)
    for b in range(ds.num_users):
        user = int(users[b])
        h = [int(x) for x in hist[b] if x]
        g = sim.rollout_gumbel([user], horizon, k, seed=2)[0]
        total = 0.0
        for step in range(horizon):
            state = naive_state(sim, user, h)
            cand = [d for d in range(1, ds.num_items + 1) if int(ids.item_keys[d]) not in h]
            slate = sorted(cand, key=lambda d: (-table[b, d], d))[:k]
            r = [naive_r(sim, user, state, int(ids.item_keys[d])) for d in slate]
            j = int(np.argmax([sim.config.choice_sharpness * r[i] + g[step, i]
                               for i in range(k)])) if k > 1 else 0
            total += gamma ** step * r[j]
            h.append(int(ids.item_keys[slate[j]]))
            assert out["chosen"][b, step] == h[-1]
        np.testing.assert_allclose(out["per_user"][b], total, rtol=1e-5)
    np.testing.assert_allclose(out["true_value"], np.mean(out["per_user"]))
    # The raw-history entry point gives the same numbers.
    again = true_rollout_value(sim, users, hist, score_fn, ids=ids, horizon=horizon,
                               gamma=gamma, k=k, max_len=16, seed=2)
    np.testing.assert_allclose(again["per_user"], out["per_user"], rtol=1e-6)


def test_rollout_with_k1_equals_the_judge_scored_by_r_star(world):
    """judge_rollout with the exact synthetic reward model as its only judge is the truth."""
    sim, ds, ids, test = world
    score_fn, _ = table_score_fn(ds.num_users, ids.num_columns, seed=4)
    rm = SyntheticRewardModel(sim, noise=0.0)

    def reward_fn(batch, items):
        # max_len 16 >= every history + 3 steps: the input window is the whole history.
        inputs = np.asarray(batch["inputs"])
        lengths = np.asarray(batch["lengths"])
        hist = [ids.raw_items(inputs[b, :lengths[b]]) for b in range(len(lengths))]
        users = ids.raw_users(np.asarray(batch["user"]))
        return rm.score(users, hist, ids.raw_items(np.asarray(items)))[None].astype(np.float32)

    judge = judge_rollout(score_fn, reward_fn, test, horizon=3, gamma=0.9, batch_size=8,
                          return_recommended=True)
    truth = true_rollout_value_arrays(sim, test, score_fn, ids=ids, horizon=3, gamma=0.9, k=1)
    np.testing.assert_allclose(judge["judge_score"], truth["true_value"], rtol=1e-5)
    np.testing.assert_array_equal(ids.raw_items(judge["recommended"]), truth["chosen"])


def test_history_arrays_layout(world):
    sim, ds, ids, test = world
    users, hist = eval_histories(test, ids)
    arrays = history_arrays(users, hist, ids, max_len=16)
    np.testing.assert_array_equal(arrays["inputs"], test["inputs"])
    np.testing.assert_array_equal(arrays["lengths"], test["lengths"])
    np.testing.assert_array_equal(arrays["user"], test["user"])
    short = history_arrays(users[:1], [[int(x) for x in hist[0] if x]], ids, max_len=2,
                           timestamps=np.arange(1, hist.shape[1] + 1)[None] * (hist[:1] > 0))
    n = int((hist[0] > 0).sum())
    np.testing.assert_array_equal(short["inputs"][0], ids.dense_items(hist[0, n - 2:n]))
    np.testing.assert_array_equal(short["timestamps"][0], [n - 1, n])
    np.testing.assert_array_equal(short["query_timestamps"][0], [n, n])


def test_rollout_argument_errors(world):
    sim, ds, ids, test = world
    score_fn, _ = table_score_fn(ds.num_users, ids.num_columns)
    with pytest.raises(ValueError, match="horizon"):
        true_rollout_value_arrays(sim, test, score_fn, ids=ids, horizon=0)
    with pytest.raises(ValueError, match="gamma"):
        true_rollout_value_arrays(sim, test, score_fn, ids=ids, gamma=1.5)
    with pytest.raises(ValueError, match=r"score_fn must return \[B, V\]"):
        true_topk_rating(sim, test, lambda b: np.zeros((3, 3)), ids=ids)
