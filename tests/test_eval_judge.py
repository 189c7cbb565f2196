"""Reward-model-as-judge rollout: hand-computable toys, history updates, validation."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from genrec_jax.eval import append_item, greedy_pick, judge_rollout

V = 8  # item ids 1..7
L = 4


def toy_arrays(exclude, lengths=None, inputs=None):
    exclude = np.asarray(exclude, np.int32)
    n = exclude.shape[0]
    if inputs is None:
        inputs = np.zeros((n, L), np.int32)
        inputs[:, : exclude.shape[1]] = exclude[:, :L]
    inputs = np.asarray(inputs, np.int32)
    if lengths is None:
        lengths = (inputs != 0).sum(axis=1)
    ts = np.tile(np.arange(1, L + 1, dtype=np.int32) * 10, (n, 1))
    return {
        "inputs": inputs,
        "timestamps": ts,
        "query_timestamps": ts + 5,
        "ratings": np.full((n, L), 3.0, np.float32),
        "lengths": np.asarray(lengths, np.int32),
        "target": np.ones(n, np.int32),
        "target_rating": np.full(n, 4.0, np.float32),
        "exclude": exclude,
        "user": np.arange(n, dtype=np.int32),
    }


@jax.jit
def prefer_low_ids(batch):
    """Fixed policy: score -j, so the greedy pick is the lowest allowed id."""
    rows = batch["inputs"].shape[0]
    return jnp.broadcast_to(-jnp.arange(V, dtype=jnp.float32), (rows, V))


# Judge 0 predicts rating j for item j, judge 1 predicts 10 - j.
R = np.stack([np.arange(V), 10 - np.arange(V)]).astype(np.float32)


def table_reward(batch, items):
    return jnp.asarray(R)[:, items]


def test_judge_hand_computed_discounted_sum():
    exclude = [[2, 0, 0], [1, 3, 4], [0, 0, 0]]
    picks = [[1, 3, 4], [2, 5, 6], [1, 2, 3]]  # lowest ids not in the history, never repeated
    gamma = 0.9
    out = judge_rollout(
        prefer_low_ids, table_reward, toy_arrays(exclude),
        horizon=3, gamma=gamma, batch_size=2, return_recommended=True,  # 2 batches, last padded
    )
    np.testing.assert_array_equal(out["recommended"], picks)
    per_user = [[sum(gamma**h * R[m, a] for h, a in enumerate(row)) for row in picks] for m in range(2)]
    per_judge = [float(np.mean(u)) for u in per_user]
    assert out["per_judge"] == pytest.approx(per_judge, rel=1e-6)
    assert out["judge_score"] == pytest.approx(np.mean(per_judge), rel=1e-6)
    assert out["judge_std"] == pytest.approx(np.std(per_judge), rel=1e-6)
    assert out["judge_rel_std"] == pytest.approx(np.std(per_judge) / abs(np.mean(per_judge)), rel=1e-6)
    assert out["horizon"] == 3 and out["gamma"] == gamma and out["num_judges"] == 2
    assert out["num_users"] == 3
    # Judge 0 on user 0: 1 + 0.9 * 3 + 0.81 * 4 = 6.94.
    assert per_user[0][0] == pytest.approx(6.94)


def test_judge_sees_updated_history_and_skips_invalid_rows():
    # reward = current history length (judge 0) and twice it (judge 1); the window caps it at L.
    arrays = toy_arrays([[1, 2, 0, 0], [1, 2, 3, 4], [1, 0, 0, 0]])
    arrays["valid"] = np.array([1, 1, 0], np.int32)

    def length_reward(batch, items):
        n = batch["lengths"].astype(jnp.float32)
        return jnp.stack([n, 2.0 * n])

    out = judge_rollout(prefer_low_ids, length_reward, arrays, horizon=3, gamma=0.5)
    user0 = 2 + 0.5 * 3 + 0.25 * 4
    user1 = 4 + 0.5 * 4 + 0.25 * 4
    assert out["per_judge"] == pytest.approx([(user0 + user1) / 2, user0 + user1], rel=1e-6)
    assert out["num_users"] == 2


def test_policy_reads_appended_items():
    # Policy: prefer item (last history item + 1); starting from last item 3 the picks chain 4, 5, 6.
    @jax.jit
    def next_id(batch):
        rows = jnp.arange(batch["inputs"].shape[0])
        last = batch["inputs"][rows, batch["lengths"] - 1]
        cols = jnp.arange(V)
        return -jnp.abs(cols[None, :] - (last[:, None] + 1)).astype(jnp.float32)

    out = judge_rollout(
        next_id, table_reward, toy_arrays([[2, 3, 0, 0]]), horizon=3, return_recommended=True
    )
    np.testing.assert_array_equal(out["recommended"], [[4, 5, 6]])


def test_recommendations_never_repeat_nor_hit_history():
    rng = np.random.default_rng(0)
    n, hist, horizon = 9, 4, 5
    exclude = rng.integers(0, 12, size=(n, hist))
    fixed = jnp.asarray(rng.normal(size=(n, 12)), jnp.float32)  # ignores history: would repeat

    def policy(batch):
        return fixed[batch["user"]]

    def reward(batch, items):
        return jnp.ones((3, items.shape[0]), jnp.float32)

    arrays = toy_arrays(exclude)
    out = judge_rollout(policy, reward, arrays, horizon=horizon, gamma=1.0, batch_size=4,
                        return_recommended=True)
    rec = out["recommended"]
    assert rec.shape == (n, horizon)
    for row, banned in zip(rec, exclude):
        assert len(set(row.tolist())) == horizon
        assert 0 not in row
        assert not set(row.tolist()) & set(banned.tolist())
    assert out["judge_score"] == pytest.approx(horizon)
    assert out["judge_std"] == 0.0 and out["judge_rel_std"] == 0.0


def test_append_item_writes_and_shifts_full_window():
    batch = {
        "inputs": jnp.array([[5, 0, 0], [5, 6, 7]], jnp.int32),
        "timestamps": jnp.array([[10, 0, 0], [10, 20, 30]], jnp.int32),
        "query_timestamps": jnp.array([[15, 0, 0], [20, 30, 40]], jnp.int32),
        "ratings": jnp.array([[4.0, 0, 0], [1.0, 2.0, 3.0]], jnp.float32),
        "lengths": jnp.array([1, 3], jnp.int32),
        "user": jnp.array([7, 8], jnp.int32),
    }
    out = append_item(batch, jnp.array([9, 9], jnp.int32), jnp.array([2.5, 4.5], jnp.float32))
    np.testing.assert_array_equal(out["inputs"], [[5, 9, 0], [6, 7, 9]])
    np.testing.assert_array_equal(out["timestamps"], [[10, 15, 0], [20, 30, 40]])
    np.testing.assert_array_equal(out["query_timestamps"], [[15, 15, 0], [30, 40, 40]])
    np.testing.assert_array_equal(out["ratings"], [[4.0, 2.5, 0.0], [2.0, 3.0, 4.5]])
    np.testing.assert_array_equal(out["lengths"], [2, 3])
    np.testing.assert_array_equal(out["user"], [7, 8])
    assert out["inputs"].dtype == jnp.int32 and out["lengths"].dtype == jnp.int32
    # Without ratings the rating input is 0.
    out = append_item({"inputs": batch["inputs"], "lengths": batch["lengths"]}, jnp.array([1, 2]))
    np.testing.assert_array_equal(out["inputs"], [[5, 1, 0], [6, 7, 2]])


def test_greedy_pick_bans_padding_history_and_past_picks():
    scores = jnp.array([[9.0, 1.0, 8.0, 7.0, 2.0]])
    assert int(greedy_pick(scores, jnp.array([[2]]), jnp.array([[3, 0]]))[0]) == 4
    assert int(greedy_pick(scores, jnp.array([[1, 2, 3, 4]]), jnp.array([[0]]))[0]) == 0


def test_bad_configs_rejected():
    arrays = toy_arrays([[2, 0, 0]])
    with pytest.raises(ValueError, match="horizon must be ≥ 1"):
        judge_rollout(prefer_low_ids, table_reward, arrays, horizon=0)
    with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\]"):
        judge_rollout(prefer_low_ids, table_reward, arrays, gamma=0.0)
    with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\]"):
        judge_rollout(prefer_low_ids, table_reward, arrays, gamma=1.5)
    with pytest.raises(ValueError, match=r"M = 0"):
        judge_rollout(prefer_low_ids, lambda b, a: jnp.zeros((0, a.shape[0])), arrays, batch_size=2)
    with pytest.raises(ValueError, match=r"\[M, 2\].*got shape \(2,\)"):
        judge_rollout(prefer_low_ids, lambda b, a: jnp.zeros(a.shape), arrays, batch_size=2)
    with pytest.raises(ValueError, match=r"got shape \(1, 3\)"):
        judge_rollout(prefer_low_ids, lambda b, a: jnp.zeros((1, 3)), arrays, batch_size=2)
    with pytest.raises(ValueError, match="no recommendable item"):
        judge_rollout(prefer_low_ids, table_reward, arrays, horizon=7)
