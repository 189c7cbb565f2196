"""The simulator: determinism, ranges, the logging policy and the ground truth."""

import time

import numpy as np
import pytest

from genrec_jax.data import (
    Simulator,
    SimulatorConfig,
    build_sequences,
    clean,
    leave_last_out,
    load_events,
    read_csv,
    train_arrays,
    write_csv,
)

SMALL = dict(num_users=30, num_items=50, events_per_user=(5, 15))


def test_deterministic_per_seed_and_seeds_differ():
    a = Simulator(SimulatorConfig(seed=4, **SMALL)).generate()
    b = Simulator(SimulatorConfig(seed=4, **SMALL)).generate()
    c = Simulator(SimulatorConfig(seed=5, **SMALL)).generate()
    for field in ("user", "item", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert len(a) != len(c) or not np.array_equal(a.item, c.item)


def test_default_world_generates_fast_with_valid_events():
    start = time.perf_counter()
    sim = Simulator()
    ev = sim.generate()
    assert time.perf_counter() - start < 1.0
    cfg = sim.config
    assert (cfg.num_users, cfg.num_items, cfg.events_per_user) == (200, 300, (20, 60))
    assert ev.user.dtype == np.int64 and ev.rating.dtype == np.float32
    assert ev.rating_scale == (1.0, 5.0)
    assert set(np.unique(ev.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    counts = np.bincount(ev.user)[1:]
    assert counts.min() >= 20 and counts.max() <= 60 and len(counts) == 200
    assert ev.item.min() >= 1 and ev.item.max() <= 300
    for u in range(1, 201):
        mine = ev.user == u
        assert len(np.unique(ev.item[mine])) == mine.sum()  # no repeats
        assert np.all(np.diff(ev.timestamp[mine]) > 0)  # increasing timestamps
    # Observed ratings are noisy roundings of the true ratings.
    err = ev.rating - sim.true_rating(ev.user, ev.item)
    assert np.abs(err).max() <= 0.5 + 5 * cfg.rating_noise
    assert abs(float(err.mean())) < 0.2


def test_true_rating_shape_and_range():
    sim = Simulator(SimulatorConfig(**SMALL))
    r = sim.true_rating(np.arange(1, 31)[:, None], np.arange(1, 51)[None, :])
    assert r.shape == (30, 50) and r.dtype == np.float32
    assert np.all((r > 1) & (r < 5))
    np.testing.assert_allclose(r, sim.rating_matrix(np.arange(1, 31)), rtol=1e-6)
    assert sim.true_rating(3, 7).shape == ()
    with pytest.raises(ValueError, match="item ids"):
        sim.true_rating(1, 51)
    with pytest.raises(ValueError, match="user ids"):
        sim.true_rating(0, 1)


def test_logging_policy_sums_to_one_and_respects_exclusions():
    sim = Simulator(SimulatorConfig(**SMALL))
    p = sim.logging_probs(3)
    assert p.shape == (50,) and np.isclose(p.sum(), 1.0) and np.all(p > 0)
    q = sim.logging_probs(3, exclude_items=[1, 2, 50])
    assert np.isclose(q.sum(), 1.0)
    assert q[0] == q[1] == q[49] == 0
    np.testing.assert_allclose(q[2:49], p[2:49] / p[2:49].sum())
    with pytest.raises(ValueError, match="every item"):
        sim.logging_probs(1, exclude_items=range(1, 51))


def test_policy_quality_moves_logged_items_towards_true_preference():
    def mean_true(q):
        sim = Simulator(SimulatorConfig(policy_quality=q, seed=2, **SMALL))
        ev = sim.generate()
        return float(sim.true_rating(ev.user, ev.item).mean())

    assert mean_true(1.0) > mean_true(0.0) + 0.2


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


def test_simulated_data_runs_through_the_pipeline(tmp_path):
    ev = load_events("simulator", seed=9, **SMALL)
    back = read_csv(write_csv(ev, tmp_path / "sim.csv"))  # the on-disk shape of real data
    np.testing.assert_array_equal(back.item, ev.item)
    np.testing.assert_array_equal(back.rating, ev.rating)
    cleaned, repairs = clean(back)
    assert repairs["duplicates_removed"] == 0 and repairs["users_dropped"] == 0
    rows = train_arrays(leave_last_out(build_sequences(cleaned)), max_len=8)
    assert rows["inputs"].shape == (30, 8) and rows["weights"].sum() > 0
