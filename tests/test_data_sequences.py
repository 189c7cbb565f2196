"""Cleaning, sequences, leave-last-out, row arrays and the Batcher on hand-made tables."""

import numpy as np
import pytest

from genrec_jax.data import (
    Batcher,
    Events,
    build_sequences,
    clean,
    eval_arrays,
    item_popularity,
    leave_last_out,
    train_arrays,
)


def events(rows, source="hand-made"):
    user, item, rating, ts = zip(*rows)
    return Events(
        user=np.array(user, dtype=np.int64),
        item=np.array(item, dtype=np.int64),
        rating=np.array(rating, dtype=np.float32),
        timestamp=np.array(ts, dtype=np.int64),
        source=source,
        rating_scale=(1.0, 5.0),
    )


eq = np.testing.assert_array_equal


# ---------------------------------------------------------------------------------------
# clean


def test_clean_removes_exact_duplicates_keeps_first_and_reconsumptions():
    ev = events([
        (1, 5, 4, 100),
        (1, 5, 4, 100),  # exact duplicate: removed
        (1, 5, 4, 200),  # same item later: a re-consumption, kept
        (1, 5, 3, 100),  # same item and time, other rating: kept
        (2, 6, 1, 10),
        (2, 6, 1, 10),   # duplicate: removed, then user 2 has 1 event: dropped
        (1, 7, 2, 50),
    ])
    cleaned, repairs = clean(ev)
    assert repairs == {"duplicates_removed": 2, "users_dropped": 1, "events_dropped_with_users": 1}
    eq(cleaned.timestamp, [100, 200, 100, 50])
    eq(cleaned.rating, [4, 4, 3, 2])
    assert cleaned.source == "hand-made"
    kept, repairs = clean(ev, dedupe=False, min_events=1)
    assert len(kept) == len(ev) and repairs["duplicates_removed"] == 0


def test_clean_default_min_events_is_three():
    ev = events([(1, 1, 5, 1), (1, 2, 5, 2), (2, 1, 5, 1), (2, 2, 5, 2), (2, 3, 5, 3)])
    cleaned, repairs = clean(ev)
    eq(cleaned.user, [2, 2, 2])
    assert repairs["users_dropped"] == 1 and repairs["events_dropped_with_users"] == 2


def test_clean_string_keys():
    ev = Events(
        user=np.array(["a", "a", "b"], dtype=object), item=np.array(["x", "x", "y"], dtype=object),
        rating=np.ones(3, np.float32), timestamp=np.zeros(3, np.int64), source="s",
        rating_scale=(1.0, 5.0),
    )
    cleaned, repairs = clean(ev, min_events=1)
    assert list(cleaned.user) == ["a", "b"] and repairs["duplicates_removed"] == 1


# ---------------------------------------------------------------------------------------
# build_sequences


def test_order_by_timestamp_then_file_order():
    ev = events([
        (20, 50, 4, 100),
        (10, 30, 3, 50),
        (20, 10, 5, 100),
        (10, 70, 1, 50),
        (20, 30, 2, 40),
        (10, 50, 4, 10),
    ])
    ds = build_sequences(ev, repairs={"duplicates_removed": 0})
    assert (ds.num_users, ds.num_items, ds.num_events) == (2, 4, 6)
    eq(ds.user_keys, [10, 20])
    eq(ds.item_keys, [0, 10, 30, 50, 70])
    eq(ds.offsets, [0, 3, 6])
    # user 10: 50@10, then the tie at 50 in file order: 30 (line 2) before 70 (line 4)
    # user 20: 30@40, then the tie at 100 in file order: 50 (line 1) before 10 (line 3)
    eq(ds.items, [3, 2, 4, 2, 3, 1])
    eq(ds.timestamps, [10, 50, 50, 40, 100, 100])
    eq(ds.ratings, [4, 3, 1, 2, 4, 5])
    assert ds.items.dtype == np.int32 and ds.timestamps.dtype == np.int64
    assert ds.ratings.dtype == np.float32 and ds.repairs == {"duplicates_removed": 0}
    eq(ds.item_ids([70, 10]), [4, 1])


def test_string_keys_get_dense_ids():
    ev = Events(
        user=np.array(["u2", "u1", "u2"], dtype=object),
        item=np.array(["b", "a", "c"], dtype=object),
        rating=np.ones(3, np.float32), timestamp=np.array([3, 2, 1], np.int64), source="s",
        rating_scale=(1.0, 5.0),
    )
    ds = build_sequences(ev)
    assert list(ds.user_keys) == ["u1", "u2"] and list(ds.item_keys) == [None, "a", "b", "c"]
    eq(ds.items, [1, 3, 2])


# ---------------------------------------------------------------------------------------
# leave-last-out and row arrays

# user 1: items 1..6 at t=10..60; user 2: 7, 3, 5 at t=15, 25, 35; user 3: 2, 7 at t=5, 6.
TABLE = [
    (1, 1, 1, 10), (2, 7, 5, 15), (1, 2, 2, 20), (3, 2, 2, 5), (1, 3, 3, 30), (2, 3, 4, 25),
    (1, 4, 4, 40), (3, 7, 2, 6), (1, 5, 5, 50), (2, 5, 3, 35), (1, 6, 1, 60),
]


@pytest.fixture
def ds():
    return build_sequences(events(TABLE))


def test_train_arrays_truncation(ds):
    split = leave_last_out(ds)
    eq(split.train_len, [5, 2, 1])
    rows = train_arrays(split, max_len=3)
    eq(rows["inputs"], [[2, 3, 4], [7, 0, 0], [0, 0, 0]])
    eq(rows["targets"], [[3, 4, 5], [3, 0, 0], [0, 0, 0]])
    eq(rows["timestamps"], [[20, 30, 40], [15, 0, 0], [0, 0, 0]])
    eq(rows["query_timestamps"], [[30, 40, 50], [25, 0, 0], [0, 0, 0]])
    eq(rows["ratings"], [[2, 3, 4], [5, 0, 0], [0, 0, 0]])
    eq(rows["target_ratings"], [[3, 4, 5], [4, 0, 0], [0, 0, 0]])
    eq(rows["weights"], [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    eq(rows["lengths"], [3, 1, 0])
    eq(rows["user"], [0, 1, 2])
    dtypes = {k: v.dtype for k, v in rows.items()}
    assert dtypes == {
        "inputs": np.int32, "targets": np.int32, "timestamps": np.int64,
        "query_timestamps": np.int64, "ratings": np.float32, "target_ratings": np.float32,
        "weights": np.float32, "lengths": np.int32, "user": np.int32,
    }
    long = train_arrays(split, max_len=8)
    assert long["inputs"].shape == (3, 8)
    eq(long["inputs"][0], [1, 2, 3, 4, 0, 0, 0, 0])


def test_eval_arrays_test_target(ds):
    split = leave_last_out(ds)
    rows = eval_arrays(split, max_len=3)
    eq(rows["inputs"], [[3, 4, 5], [7, 3, 0], [2, 0, 0]])
    eq(rows["timestamps"], [[30, 40, 50], [15, 25, 0], [5, 0, 0]])
    eq(rows["query_timestamps"], [[40, 50, 60], [25, 35, 0], [6, 0, 0]])
    eq(rows["ratings"], [[3, 4, 5], [5, 4, 0], [2, 0, 0]])
    eq(rows["lengths"], [3, 2, 1])
    eq(rows["target"], [6, 5, 7])
    eq(rows["target_rating"], [1, 3, 2])
    eq(rows["valid"], [1, 1, 1])
    eq(rows["user"], [0, 1, 2])
    eq(rows["exclude"], [[1, 2, 3, 4, 5], [7, 3, 0, 0, 0], [2, 0, 0, 0, 0]])
    window = eval_arrays(split, max_len=3, exclude="window")
    eq(window["exclude"], [[3, 4, 5], [7, 3, 0], [2, 0, 0]])
    for key in rows:
        if key != "exclude":
            eq(window[key], rows[key])


def test_validation_split(ds):
    split = leave_last_out(ds, validation=True)
    eq(split.train_len, [4, 1, 0])
    rows = train_arrays(split, max_len=3)
    eq(rows["inputs"], [[1, 2, 3], [0, 0, 0], [0, 0, 0]])
    eq(rows["targets"], [[2, 3, 4], [0, 0, 0], [0, 0, 0]])
    eq(rows["lengths"], [3, 0, 0])
    # The test history includes the validation event.
    test = eval_arrays(split, max_len=3, which="test")
    eq(test["inputs"], [[3, 4, 5], [7, 3, 0], [2, 0, 0]])
    eq(test["target"], [6, 5, 7])
    val = eval_arrays(split, max_len=3, which="validation")
    eq(val["inputs"], [[2, 3, 4], [7, 0, 0], [0, 0, 0]])
    eq(val["query_timestamps"], [[30, 40, 50], [25, 0, 0], [0, 0, 0]])
    eq(val["target"], [5, 3, 2])
    eq(val["target_rating"], [5, 4, 2])
    eq(val["valid"], [1, 1, 0])  # user 3 has no event before its validation target
    eq(val["exclude"], [[1, 2, 3, 4], [7, 0, 0, 0], [0, 0, 0, 0]])
    eq(eval_arrays(split, max_len=3, which="valid")["target"], val["target"])
    with pytest.raises(ValueError, match="validation=True"):
        eval_arrays(leave_last_out(ds), 3, which="validation")


def test_item_popularity_counts_training_events_only(ds):
    eq(item_popularity(leave_last_out(ds)), [0, 1, 2, 2, 1, 1, 0, 1])
    eq(item_popularity(leave_last_out(ds, validation=True)), [0, 1, 1, 1, 1, 0, 0, 1])


# ---------------------------------------------------------------------------------------
# Batcher


def rows(n=10):
    return {
        "inputs": np.arange(n * 3, dtype=np.int32).reshape(n, 3) + 1,
        "weights": np.ones((n, 3), np.float32),
        "valid": np.ones(n, np.float32),
        "user": np.arange(n, dtype=np.int32) + 1,
    }


def test_batcher_epoch_visits_every_row_once_and_pads():
    b = Batcher(rows(), batch_size=4, seed=3)
    assert b.batches_per_epoch == 3
    batches = list(b.epoch_batches(0))
    assert len(batches) == 3 and all(x["inputs"].shape == (4, 3) for x in batches)
    users = np.concatenate([x["user"] for x in batches])
    eq(np.sort(users[:10]), np.arange(1, 11))
    last = batches[-1]
    eq(last["weights"][2:], 0)
    eq(last["valid"][2:], 0)
    eq(last["inputs"][2:], 0)
    eq(last["user"][2:], 0)
    eq(last["valid"][:2], 1)
    unshuffled = Batcher(rows(), batch_size=4, seed=3, shuffle=False)
    eq(next(unshuffled.epoch_batches(5))["user"], [1, 2, 3, 4])


def test_batcher_is_deterministic_per_seed_and_epoch():
    a = [x["user"] for x in Batcher(rows(), batch_size=4, seed=7).epoch_batches(2)]
    b = [x["user"] for x in Batcher(rows(), batch_size=4, seed=7).epoch_batches(2)]
    for x, y in zip(a, b):
        eq(x, y)
    c = np.concatenate([x["user"] for x in Batcher(rows(), batch_size=4, seed=8).epoch_batches(2)])
    d = np.concatenate([x["user"] for x in Batcher(rows(), batch_size=4, seed=7).epoch_batches(3)])
    assert not np.array_equal(np.concatenate(a), c)
    assert not np.array_equal(np.concatenate(a), d)


def test_batcher_process_shares_make_the_global_batch():
    full = Batcher(rows(), batch_size=4, seed=1)
    shares = [Batcher(rows(), batch_size=4, seed=1, process_index=p, process_count=2)
              for p in range(2)]
    assert shares[0].local_batch_size == 2
    for step in range(7):
        whole = full.batch_at(step)
        parts = [s.batch_at(step) for s in shares]
        for key in whole:
            eq(np.concatenate([p[key] for p in parts]), whole[key])
    with pytest.raises(ValueError, match="divisible by process_count"):
        Batcher(rows(), batch_size=5, seed=1, process_count=2)


def test_batcher_resume_continues_at_the_same_position():
    first = Batcher(rows(), batch_size=4, seed=5)
    for _ in range(4):
        next(first)
    state = first.state_dict()
    assert state["step"] == 4
    resumed = Batcher(rows(), batch_size=4, seed=5)
    resumed.load_state_dict(state)
    for step in range(4, 9):
        expected, got = next(first), next(resumed)
        for key in expected:
            eq(got[key], expected[key])
            eq(got[key], resumed.batch_at(step)[key])
    epoch1 = list(Batcher(rows(), batch_size=4, seed=5).epoch_batches(1))
    eq(Batcher(rows(), batch_size=4, seed=5).batch_at(4)["user"], epoch1[1]["user"])
    with pytest.raises(ValueError, match="seed"):
        Batcher(rows(), batch_size=4, seed=6).load_state_dict(state)


def test_batcher_with_real_row_arrays(ds):
    split = leave_last_out(ds)
    b = Batcher(eval_arrays(split, 3), batch_size=2, seed=0, shuffle=False)
    last = b.batch_at(1)
    eq(last["valid"], [1, 0])
    eq(last["exclude"][1], 0)
    assert last["exclude"].shape == (2, 5)


# ---------------------------------------------------------------------------------------
# Property: sequences and the split agree with a plain-Python reference

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

event_rows = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(0, 3)),
    min_size=1, max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(event_rows, st.booleans(), st.integers(1, 4))
def test_sequences_match_reference(table, validation, max_len):
    ds = build_sequences(events(table))
    split = leave_last_out(ds, validation=validation)
    train = train_arrays(split, max_len)
    test = eval_arrays(split, max_len)
    for u, key in enumerate(ds.user_keys):
        mine = sorted((t, k, i, r) for k, (uu, i, r, t) in enumerate(table) if uu == key)
        ref_items = [int(ds.item_ids([i])[0]) for _, _, i, _ in mine]
        got = ds.items[ds.user_slice(u)].tolist()
        assert got == ref_items
        n = len(ref_items)
        n_train = max(n - 1 - int(validation), 0)
        window = ref_items[:n_train][-(max_len + 1):]
        length = max(len(window) - 1, 0)
        assert train["inputs"][u, :length].tolist() == window[:-1][:length]
        assert train["targets"][u, :length].tolist() == window[1:]
        assert not train["inputs"][u, length:].any() and train["lengths"][u] == length
        assert test["target"][u] == ref_items[-1]
        history = ref_items[:-1][-max_len:]
        assert test["inputs"][u, : len(history)].tolist() == history
        assert test["valid"][u] == (n >= 2)
