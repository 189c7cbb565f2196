"""The simulator: determinism, valid logs, the replayable user state, the truth methods, the
logging policy, each knob's effect, the synthetic reward model and the command line."""

import json

import numpy as np
import pytest

from genrec_jax.data import (
    Simulator,
    SimulatorConfig,
    build_sequences,
    clean,
    leave_last_out,
    load_events,
    train_arrays,
)
from genrec_jax.data.simulator import SyntheticRewardModel, UserState, main

SMALL = dict(num_users=30, num_items=50, events_per_user=(5, 15))


def _user_histories(ev):
    return {int(u): ev.item[ev.user == u] for u in np.unique(ev.user)}


def _x_of(r):
    """Inverse of r* = 3 + 2 tanh(x / 2)."""
    return 2.0 * np.arctanh((np.asarray(r, np.float64) - 3.0) / 2.0)


def test_deterministic_per_seed_and_seeds_differ():
    a = Simulator(SimulatorConfig(seed=4, **SMALL)).generate()
    b = Simulator(SimulatorConfig(seed=4, **SMALL)).generate()
    c = Simulator(SimulatorConfig(seed=5, **SMALL)).generate()
    for field in ("user", "item", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert len(a) != len(c) or not np.array_equal(a.item, c.item)


@pytest.mark.parametrize("sizes", [dict(num_users=60, num_items=120, events_per_user=(10, 30)),
                                   dict(num_users=64, num_items=80, events_per_user=(8, 20))])
def test_logs_are_valid(sizes):
    # The second world is the smoke world of experiments/configs/common.py.
    sim = Simulator(SimulatorConfig(seed=1, **sizes))
    ev = sim.generate()
    lo, hi = sizes["events_per_user"]
    assert ev.user.dtype == np.int64 and ev.rating.dtype == np.float32
    assert ev.rating_scale == (1.0, 5.0)
    assert set(np.unique(ev.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    counts = np.bincount(ev.user)[1:]
    assert len(counts) == sizes["num_users"] and counts.min() >= lo and counts.max() <= hi
    assert ev.item.min() >= 1 and ev.item.max() <= sizes["num_items"]
    for u, items in _user_histories(ev).items():
        mine = ev.user == u
        assert len(np.unique(items)) == len(items)  # no repeats
        assert np.all(np.diff(ev.timestamp[mine]) > 0)  # increasing timestamps
        # Every item was released when it was consumed.
        assert np.all(sim.item_release[items - 1] <= ev.timestamp[mine])
    # Observed ratings are noisy roundings of the r* each event was chosen at.
    err = ev.rating - sim.logged_true_rating()
    assert np.abs(err).max() <= 0.5 + 5 * sim.config.rating_noise
    assert abs(float(err.mean())) < 0.2


def test_state_is_a_replayable_function_of_the_consumed_items():
    sim = Simulator(SimulatorConfig(seed=3, **SMALL))
    ev = sim.generate()
    c = sim.config
    hist = _user_histories(ev)
    user = 7
    items = hist[user]
    # Naive formula with the stream's rows t = 0, 1, ...
    noise = sim._state_noise(np.array([user - 1]), len(items))[0]
    s = sim.user_vectors[user - 1].copy()
    for t, a in enumerate(items):
        s = (c.state_memory * s + (1 - c.state_memory) * sim.item_vectors[a - 1]
             + c.state_noise * noise[t])
    full = sim.state_after([user], [items])
    np.testing.assert_allclose(full.vector[0], s, rtol=1e-12)
    assert full.last[0] == items[-1]
    # Step by step gives the same state; a longer noise table does not change earlier rows.
    step = sim.initial_state([user])
    for t, a in enumerate(items):
        step = sim.step_state(step, [user], [a], [t])
    np.testing.assert_allclose(step.vector, full.vector, rtol=1e-12)
    np.testing.assert_allclose(sim._state_noise(np.array([user - 1]), 300)[0, :len(items)], noise)
    # The test state is the state after all but the last event, and each logged r* is the r*
    # of the event's item at the state before it.
    test = sim.test_state([user])
    np.testing.assert_allclose(test.vector, sim.state_after([user], [items[:-1]]).vector,
                               rtol=1e-12)
    assert test.last[0] == items[-2]
    first = np.flatnonzero(ev.user == user)[0]
    for t in (0, 3, len(items) - 1):
        st = sim.state_after([user], [items[:t]])
        r = sim.rating_from_state(st, [user])[0, items[t] - 1]
        np.testing.assert_allclose(sim.logged_true_rating()[first + t], r, rtol=1e-6)
        np.testing.assert_allclose(sim.event_true_rating(user, items[t]), r, rtol=1e-6)
    np.testing.assert_allclose(sim.event_true_rating([user], [items[-1]]),
                               sim.true_rating([user], [items[-1]]), rtol=1e-6)
    unseen = np.setdiff1d(np.arange(1, 51), items)[0]
    with pytest.raises(ValueError, match="never logged"):
        sim.event_true_rating(user, unseen)


def test_true_rating_matrix_and_range():
    sim = Simulator(SimulatorConfig(**SMALL))
    users = np.arange(1, 31)
    r = sim.true_rating(users[:, None], np.arange(1, 51)[None, :])
    assert r.shape == (30, 50) and r.dtype == np.float32
    assert np.all((r > 1) & (r < 5))
    np.testing.assert_allclose(r, sim.rating_matrix(users), rtol=1e-6)
    np.testing.assert_allclose(
        r, sim.rating_from_state(sim.test_state(users), users), rtol=1e-6)
    assert sim.true_rating(3, 7).shape == ()
    with pytest.raises(ValueError, match="item ids"):
        sim.true_rating(1, 51)
    with pytest.raises(ValueError, match="user ids"):
        sim.true_rating(0, 1)


def test_true_rating_formula_with_group_and_series_terms():
    cfg = SimulatorConfig(seed=2, group_bonus=0.7, series_bonus=1.9, **SMALL)
    sim = Simulator(cfg)
    vec = sim.user_vectors[:1]
    a = int(np.flatnonzero(sim._next_index >= 0)[0]) + 1          # an item with a successor
    nxt = int(sim.next_in_series(a))
    assert sim.item_series[nxt - 1] == sim.item_series[a - 1]
    assert sim.series_position[nxt - 1] == sim.series_position[a - 1] + 1
    assert sim.item_release[nxt - 1] >= sim.item_release[a - 1]
    plain = _x_of(sim.rating_from_state(UserState(vec, np.array([0])), [1]))[0]
    after = _x_of(sim.rating_from_state(UserState(vec, np.array([a])), [1]))[0]
    hand = (cfg.affinity_scale * sim.item_vectors @ vec[0] + sim.user_bias[0] + sim.item_bias
            + cfg.rating_offset)
    np.testing.assert_allclose(plain, hand, atol=2e-4)
    bonus = np.where(sim.item_group == sim.item_group[a - 1], cfg.group_bonus, 0.0)
    bonus[nxt - 1] += cfg.series_bonus
    np.testing.assert_allclose(after - plain, bonus, atol=2e-4)


def test_logging_policy_sums_to_one_and_respects_exclusions_and_releases():
    sim = Simulator(SimulatorConfig(initial_catalog=0.3, **SMALL))
    sim.generate()
    user = 3
    p = sim.logging_probs(user)
    released = sim.item_release <= sim._log.test_time[user - 1]
    assert p.shape == (50,) and np.isclose(p.sum(), 1.0)
    assert np.all(p[released] > 0) and np.all(p[~released] == 0) and (~released).any()
    drop = np.flatnonzero(released)[:3] + 1
    q = sim.logging_probs(user, exclude_items=drop)
    assert np.isclose(q.sum(), 1.0) and np.all(q[drop - 1] == 0)
    keep = np.ones(50, bool)
    keep[drop - 1] = False
    np.testing.assert_allclose(q[keep], p[keep] / p[keep].sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="every item"):
        sim.logging_probs(1, exclude_items=range(1, 51))


def test_best_rating_with_exclusions():
    sim = Simulator(SimulatorConfig(**SMALL))
    users = np.array([1, 2, 3])
    full = sim.rating_matrix(users)
    np.testing.assert_allclose(sim.best_rating(users), full.max(axis=1))
    top = full.argmax(axis=1) + 1
    padded = np.stack([top, np.zeros(3, int)], axis=1)  # 0 = padding
    second = np.sort(full, axis=1)[:, -2]
    np.testing.assert_allclose(sim.best_rating(users, padded), second)
    np.testing.assert_allclose(sim.best_rating(users, [[t] for t in top]), second)


# -- knobs -----------------------------------------------------------------------------------

KNOB_WORLD = dict(num_users=80, num_items=60, events_per_user=(10, 20), seed=5)


def test_rating_noise_knob_moves_the_observed_error():
    def rmse(noise):
        sim = Simulator(SimulatorConfig(rating_noise=noise, **KNOB_WORLD))
        ev = sim.generate()
        return float(np.sqrt(np.mean((ev.rating - sim.logged_true_rating()) ** 2)))

    low, mid, high = rmse(0.1), rmse(0.6), rmse(1.5)
    assert low < mid < high and high > low + 0.5


def _markov_hr10(sim):
    """HR@10 of first-order Markov (adjacent training pairs) on the leave-last-out test event."""
    ev, _ = clean(sim.generate(), min_events=3)
    split = leave_last_out(build_sequences(ev))
    ds = split.dataset
    v = ds.num_items + 1
    counts = np.zeros((v, v))
    hits = 0
    for u in range(ds.num_users):
        seq = ds.items[ds.offsets[u]:ds.offsets[u + 1]]
        train = seq[:-1]
        np.add.at(counts, (train[:-1], train[1:]), 1)
    for u in range(ds.num_users):
        seq = ds.items[ds.offsets[u]:ds.offsets[u + 1]]
        score = counts[seq[-2]].copy()
        score[0] = -1
        score[seq[:-1]] = -1
        score[seq[-2]] = -1
        hits += int(np.sum(score > score[seq[-1]]) < 10 and score[seq[-1]] > 0)
    return hits / ds.num_users


def test_series_knob_raises_markov_hit_rate():
    def hr(series_bonus):
        return sum(_markov_hr10(Simulator(SimulatorConfig(
            series_bonus=series_bonus, num_users=200, num_items=100, events_per_user=(10, 20),
            seed=seed))) for seed in (5, 6)) / 2

    assert hr(4.0) > hr(0.0) + 0.05


def test_policy_quality_moves_logged_items_towards_true_preference():
    def mean_true(q):
        sim = Simulator(SimulatorConfig(policy_quality=q, **KNOB_WORLD))
        sim.generate()
        return float(sim.logged_true_rating().mean())

    assert mean_true(1.0) > mean_true(0.5) > mean_true(0.0)


def test_synthetic_reward_model_error_is_its_knob():
    sim = Simulator(SimulatorConfig(**KNOB_WORLD))
    hist = sim.histories()
    users = np.arange(1, 81)
    rng = np.random.default_rng(0)
    items = rng.integers(1, 61, size=80)
    past = [h[:5] for h in hist]
    truth = sim.rating_from_state(sim.state_after(users, past), users)[np.arange(80), items - 1]
    exact = SyntheticRewardModel(sim, noise=0.0).score(users, past, items)
    np.testing.assert_allclose(exact, truth, rtol=1e-6)
    shifted = SyntheticRewardModel(sim, noise=0.0, bias=0.3).score(users, past, items)
    np.testing.assert_allclose(shifted - truth, 0.3, atol=1e-5)
    # The same (user, item) keeps its noise across histories; RMSE grows with the knob.
    rm = SyntheticRewardModel(sim, noise=0.5, seed=1)
    a = rm.score(users, past, items) - truth
    later = [h[:8] for h in hist]
    t2 = sim.rating_from_state(sim.state_after(users, later), users)[np.arange(80), items - 1]
    np.testing.assert_allclose(rm.score(users, later, items) - t2, a, atol=1e-5)
    rmses = [float(np.sqrt(np.mean((SyntheticRewardModel(sim, noise=s).rating_matrix(
        users, past) - sim.rating_from_state(sim.state_after(users, past), users)) ** 2)))
        for s in (0.1, 0.2, 0.5, 1.0, 1.5)]
    assert all(b > a for a, b in zip(rmses, rmses[1:]))
    np.testing.assert_allclose(rmses, [0.1, 0.2, 0.5, 1.0, 1.5], rtol=0.05)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="state_memory"):
        SimulatorConfig(state_memory=1.0)
    with pytest.raises(ValueError, match="policy_exploration"):
        SimulatorConfig(policy_exploration=1.5)
    with pytest.raises(ValueError, match="events_per_user"):
        SimulatorConfig(num_items=10, events_per_user=(5, 11))


# -- files -----------------------------------------------------------------------------------


def test_command_line_writes_csv_that_round_trips(tmp_path, capsys):
    out = main([f"--out={tmp_path / 'w'}", "--seed=9", "--num_users=30", "--num_items=50",
                "--events_per_user=5:15", "--series_bonus=2.5"])
    world = json.loads((out / "world.json").read_text())
    assert world["seed"] == 9 and world["series_bonus"] == 2.5
    assert world["events_per_user"] == [5, 15]
    back = load_events("csv", out / "events.csv")
    ev = Simulator(SimulatorConfig(seed=9, series_bonus=2.5, **SMALL)).generate()
    for field in ("user", "item", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(back, field), getattr(ev, field))
    assert "events of 30 users" in capsys.readouterr().out
    cleaned, repairs = clean(back)
    assert repairs["duplicates_removed"] == 0 and repairs["users_dropped"] == 0
    rows = train_arrays(leave_last_out(build_sequences(cleaned)), max_len=8)
    assert rows["inputs"].shape == (30, 8) and rows["weights"].sum() > 0


# -- logging propensities ------------------------------------------------------------------------

TINY_PROP = dict(num_users=4, num_items=8, dim=4, events_per_user=(2, 3), slate_size=3,
                 initial_catalog=1.0, policy_temperature=1.0)


def _naive_logged_choices(sim, p, r, n, rng):
    """Simulates ``n`` logging steps of one state the slow, literal way: a slate drawn item by
    item without replacement from ``p``, then the Gumbel argmax over the slate and "no choice".
    Returns the counts of each chosen item (the logged events)."""
    c = sim.config
    k = min(c.slate_size, int((p > 0).sum()))
    counts = np.zeros(len(p))
    for _ in range(n):
        left = p.copy()
        slate = []
        for _ in range(k):
            j = rng.choice(len(p), p=left / left.sum())
            slate.append(j)
            left[j] = 0.0
        util = c.choice_sharpness * np.append(r[slate], c.no_choice_rating)
        pick = np.argmax(util + rng.gumbel(size=k + 1))
        if pick < k:
            counts[slate[pick]] += 1
    return counts


def test_choice_propensities_match_simulated_choice_frequencies():
    sim = Simulator(SimulatorConfig(seed=3, **TINY_PROP))
    users = np.arange(1, 5)
    exact, exact_se = sim.test_choice_propensities(users)
    mc, se = sim.test_choice_propensities(users, max_exact=0, num_samples=4000, seed=1)
    np.testing.assert_array_equal(exact_se, 0.0)
    np.testing.assert_allclose(exact.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(mc.sum(1), 1.0, atol=1e-12)
    # The Monte-Carlo estimate agrees with exact enumeration within its stated error.
    assert np.all(np.abs(mc - exact) <= 5 * se + 1e-9)
    # Consumed items (all but the test item of the history) have propensity 0.
    hist = sim.histories()
    for b, u in enumerate(users):
        assert np.all(exact[b, hist[u - 1][:-1] - 1] == 0)
        assert exact[b, hist[u - 1][-1] - 1] > 0
    # Against the literal process, for the first user: frequencies of the logged choice.
    log = sim._ensure_log()
    r = sim.rating_from_state(sim.test_state(users[:1]), users[:1])
    allowed = ~sim._exclusion_mask(1, [hist[0][:-1]])
    p = sim.policy_probs(r, log.test_time[:1], allowed)[0].astype(np.float64)
    counts = _naive_logged_choices(sim, p, r[0].astype(np.float64), 20_000,
                                   np.random.default_rng(0))
    freq = counts / counts.sum()
    binom = np.sqrt(exact[0] * (1 - exact[0]) / counts.sum())
    assert counts.sum() > 2000
    assert np.all(np.abs(freq - exact[0]) <= 4.5 * binom + 1e-3), (freq, exact[0])
    assert np.all(np.abs(freq - mc[0]) <= 4.5 * np.hypot(binom, se[0]) + 1e-3)


def test_choice_propensities_seeded_and_fixed_slate():
    sim = Simulator(SimulatorConfig(seed=1, **TINY_PROP))
    users = np.array([2, 3])
    a = sim.test_choice_propensities(users, max_exact=0, num_samples=50, seed=5)
    b = sim.test_choice_propensities(users, max_exact=0, num_samples=50, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    # With no more items than the slate holds, mu ∝ exp(β (r* - no_choice_rating)).
    c = sim.config
    r = np.array([[4.0, 2.0, 3.0] + [1.0] * 5])
    p = np.array([[0.5, 0.3, 0.2] + [0.0] * 5])
    mu, se = sim.slate_choice_probs(p, r)
    w = np.exp(c.choice_sharpness * (r[0, :3] - c.no_choice_rating))
    np.testing.assert_allclose(mu[0, :3], w / w.sum(), rtol=1e-12)
    assert np.all(mu[0, 3:] == 0) and np.all(se == 0)
    with pytest.raises(ValueError, match="row 0 of policy has no item"):
        sim.slate_choice_probs(np.zeros((1, 8)), r)
