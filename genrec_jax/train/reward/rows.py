"""Reward-model rows: training windows with held-out events, and the test rows.

:func:`reward_rows` builds, from a ``SequenceDataset``, rows that follow the batch contract of
docs/architecture.md, so that a random fraction of the training events can be held out: a
held-out event keeps its place in every history (sequences are unchanged) but its rating input
is 0 ("unknown") everywhere and its target position weighs 0 in training; it is scored
teacher-forced afterwards. The test rows score each user's last event after the training
history.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MODEL_KEYS = ("inputs", "timestamps", "query_timestamps", "ratings", "lengths")
TRAIN_KEYS = ("inputs", "targets", "timestamps", "query_timestamps", "ratings", "target_ratings",
              "weights", "lengths", "user")


@dataclasses.dataclass
class RewardRows:
    """Arrays for training and evaluating reward models on one leave-last-out split.

    ``train``: training rows (``TRAIN_KEYS``, the batch contract of docs/architecture.md). Row
    ``u < U`` is user u's most recent ``max_len + 1`` training events (as
    ``genrec_jax.data.sequences.train_arrays``); with ``chunked`` further rows cover the user's
    older training events in windows of ``max_len`` targets, so every training event but the
    user's first is a target exactly once. Held-out targets weigh 0 and held-out rating inputs
    are 0. ``heldout`` (bool, like ``train["targets"]``) marks the held-out target positions.
    ``test``: one row per user with ≥ 1 training event, scoring the user's last event after the
    most recent ``max_len`` training events (``MODEL_KEYS`` + ``target``, ``target_rating``,
    ``user``; as ``eval_arrays(which="test")`` without a validation split).
    ``fit_users/items/ratings``: every training event not held out (for the baselines);
    ``heldout_users/items/ratings``: the held-out events in the order of ``train[...][heldout]``.
    """

    train: dict[str, np.ndarray]
    heldout: np.ndarray
    test: dict[str, np.ndarray]
    fit_users: np.ndarray
    fit_items: np.ndarray
    fit_ratings: np.ndarray
    heldout_users: np.ndarray
    heldout_items: np.ndarray
    heldout_ratings: np.ndarray


def _windows(start: int, stop: int, max_len: int, chunked: bool) -> list[tuple[int, int]]:
    """Event ranges ``[a, b)`` of a user's training rows, most recent first."""
    out = []
    end = stop
    while end - start >= 2 and (chunked or not out):
        out.append((max(start, end - (max_len + 1)), end))
        end -= max_len
    return out


def reward_rows(dataset, *, max_len: int, holdout_fraction: float = 0.0, seed: int = 0,
                chunked: bool = False, train_len=None) -> RewardRows:
    """Builds :class:`RewardRows` from a ``SequenceDataset`` (CSR ``offsets/items/ratings/
    timestamps``, each user's events chronological). Train = each user's first ``train_len[u]``
    events (default: all but the last one; pass ``split.train_len`` so that no validation or
    test event of the split trains a reward model), test = the event right after them.
    Exactly ``round(holdout_fraction · #targets)`` training targets, drawn uniformly with
    ``seed``, are held out."""
    if not 0.0 <= float(holdout_fraction) < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if int(max_len) < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    offsets = np.asarray(dataset.offsets, np.int64)
    items = np.asarray(dataset.items, np.int64)
    ratings = np.asarray(dataset.ratings, np.float32)
    stamps = np.asarray(dataset.timestamps, np.int64)
    num_users = len(offsets) - 1
    length = int(max_len)
    lengths = np.diff(offsets)
    train_len = (np.maximum(lengths - 1, 0) if train_len is None
                 else np.minimum(np.asarray(train_len, np.int64), lengths))

    # Event index of every input / target position (−1 = padding), one row per window.
    first, extra = [], []
    test_hist = np.full((num_users, length), -1, np.int64)
    test_event = np.full(num_users, -1, np.int64)
    for u in range(num_users):
        start, stop = int(offsets[u]), int(offsets[u + 1])
        train_stop = start + int(train_len[u])    # the next event is the test event
        windows = _windows(start, train_stop, length, chunked)
        first.append((u, windows[0] if windows else (start, start)))
        extra.extend((u, w) for w in windows[1:])
        if start < train_stop < stop:
            hist = np.arange(max(start, train_stop - length), train_stop)
            test_hist[u, :len(hist)] = hist
            test_event[u] = train_stop
    spans = first + extra
    row_user = np.asarray([u for u, _ in spans], np.int64)
    in_idx = np.full((len(spans), length), -1, np.int64)
    tg_idx = np.full((len(spans), length), -1, np.int64)
    for r, (_, (a, b)) in enumerate(spans):
        n_in = max(b - a - 1, 0)
        in_idx[r, :n_in] = np.arange(a, a + n_in)
        tg_idx[r, :n_in] = np.arange(a + 1, a + 1 + n_in)

    targets_flat = tg_idx[tg_idx >= 0]
    held = np.zeros(len(items), bool)
    num_held = int(round(float(holdout_fraction) * len(targets_flat)))
    if num_held:
        rng = np.random.default_rng(seed)
        held[rng.choice(targets_flat, size=num_held, replace=False)] = True

    def gather(values, idx, fill=0):
        return np.where(idx >= 0, values[np.maximum(idx, 0)], fill)

    def rating_inputs(idx):
        keep = (idx >= 0) & ~held[np.maximum(idx, 0)]
        return np.where(keep, ratings[np.maximum(idx, 0)], 0.0).astype(np.float32)

    heldout = (tg_idx >= 0) & held[np.maximum(tg_idx, 0)]
    train = {
        "inputs": gather(items, in_idx).astype(np.int32),
        "targets": gather(items, tg_idx).astype(np.int32),
        "timestamps": gather(stamps, in_idx).astype(np.int64),
        "query_timestamps": gather(stamps, tg_idx).astype(np.int64),
        "ratings": rating_inputs(in_idx),
        "target_ratings": gather(ratings, tg_idx, 0.0).astype(np.float32),
        "weights": ((tg_idx >= 0) & ~heldout).astype(np.float32),
        "lengths": (in_idx >= 0).sum(axis=1).astype(np.int32),
        "user": row_user.astype(np.int32),
    }
    has_test = test_event >= 0
    te = test_hist[has_test]
    # The event after history position j is j + 1 (the test event after the last one).
    te_query = gather(stamps, np.where(te >= 0, te + 1, -1))
    test = {
        "inputs": gather(items, te).astype(np.int32),
        "timestamps": gather(stamps, te).astype(np.int64),
        "query_timestamps": te_query.astype(np.int64),
        "ratings": rating_inputs(te),
        "lengths": (te >= 0).sum(axis=1).astype(np.int32),
        "target": items[test_event[has_test]].astype(np.int32),
        "target_rating": ratings[test_event[has_test]].astype(np.float32),
        "user": np.flatnonzero(has_test).astype(np.int32),
    }
    user_of = np.repeat(np.arange(num_users), lengths)
    is_train = np.arange(len(items)) - offsets[:-1][user_of] < train_len[user_of]
    fit = is_train & ~held
    ho = tg_idx[heldout]
    return RewardRows(
        train=train, heldout=heldout, test=test,
        fit_users=user_of[fit], fit_items=items[fit], fit_ratings=ratings[fit],
        heldout_users=user_of[ho], heldout_items=items[ho], heldout_ratings=ratings[ho])
