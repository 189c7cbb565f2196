"""Per-user chronological sequences, the leave-last-out split and fixed-shape row arrays.

Conventions (see docs/architecture.md): dense item ids ``1..num_items`` with ``0`` as
padding; dense user index ``0..num_users-1``; rows right-padded; ids ``int32``, timestamps
``int64``, ratings and weights ``float32``.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from genrec_jax.data.events import Events, clean
from genrec_jax.data.sources import load_events

__all__ = [
    "SequenceDataset",
    "Split",
    "build_sequences",
    "eval_arrays",
    "item_popularity",
    "leave_last_out",
    "load_sequences",
    "train_arrays",
    "training_mask",
]


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Every user's events in chronological order, in CSR form.

    User ``u``'s events are ``items[offsets[u]:offsets[u+1]]`` (and the same slice of
    ``ratings`` and ``timestamps``), ordered by (timestamp, file order).

    Attributes:
      offsets: ``[U+1]`` int64.
      items: ``[E]`` int32 dense item ids in ``1..num_items``.
      ratings: ``[E]`` float32.
      timestamps: ``[E]`` int64.
      num_users, num_items: sizes.
      user_keys: ``[U]`` raw user key of each dense user index (sorted ascending).
      item_keys: ``[I+1]`` raw item key of each dense item id (sorted ascending from
        index 1); index 0 (padding) holds 0 for numeric keys, ``None`` for string keys.
      repairs: what cleaning did (see :func:`~genrec_jax.data.events.clean`).
      rating_scale: ``(lo, hi)`` of the source.
      source: where the events came from.
    """

    offsets: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int
    user_keys: np.ndarray
    item_keys: np.ndarray
    repairs: Dict[str, int] = dataclasses.field(default_factory=dict)
    rating_scale: Tuple[float, float] = (1.0, 5.0)
    source: str = ""

    @property
    def num_events(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """``[U]`` number of events per user."""
        return np.diff(self.offsets)

    def user_slice(self, u: int) -> slice:
        return slice(int(self.offsets[u]), int(self.offsets[u + 1]))

    def item_ids(self, keys) -> np.ndarray:
        """Dense item ids of raw item keys (``ValueError`` for unknown keys)."""
        keys = np.asarray(keys, dtype=self.item_keys.dtype)
        known = self.item_keys[1:]
        pos = np.searchsorted(known, keys)
        pos_c = np.minimum(pos, len(known) - 1)
        if np.any(known[pos_c] != keys):
            raise ValueError(f"unknown item keys: {keys[known[pos_c] != keys][:5].tolist()}")
        return (pos_c + 1).astype(np.int32)


def build_sequences(
    events: Events, *, repairs: Optional[Dict[str, int]] = None
) -> SequenceDataset:
    """Group events by user into chronological sequences.

    Dense user indices follow the sorted raw user keys; dense item ids ``1..I`` follow the
    sorted raw item keys (so MovieLens ids that run 1..I without gaps keep their values).
    Within a user, events are ordered by timestamp; events with equal timestamps keep their
    file order (a stable sort). ``repairs`` (from :func:`clean`) is stored on the result.
    """
    n = len(events)
    if n == 0:
        raise ValueError(f"{events.source}: no events to build sequences from")
    user_keys, user_index = np.unique(events.user, return_inverse=True)
    item_keys, item_index = np.unique(events.item, return_inverse=True)
    user_index = user_index.reshape(-1)
    item_index = item_index.reshape(-1)
    order = np.lexsort((np.arange(n), events.timestamp, user_index))
    counts = np.bincount(user_index, minlength=len(user_keys))
    offsets = np.zeros(len(user_keys) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if item_keys.dtype == object:
        pad = np.array([None], dtype=object)
    else:
        pad = np.zeros(1, dtype=item_keys.dtype)
    return SequenceDataset(
        offsets=offsets,
        items=(item_index[order] + 1).astype(np.int32),
        ratings=events.rating[order].astype(np.float32),
        timestamps=events.timestamp[order].astype(np.int64),
        num_users=len(user_keys),
        num_items=len(item_keys),
        user_keys=user_keys,
        item_keys=np.concatenate([pad, item_keys]),
        repairs=dict(repairs or {}),
        rating_scale=tuple(events.rating_scale),
        source=events.source,
    )


def load_sequences(
    name: str,
    data_dir=None,
    *,
    min_events: int = 3,
    dedupe: bool = True,
    **load_kwargs,
) -> SequenceDataset:
    """``load_events`` -> ``clean`` -> ``build_sequences`` in one call."""
    events, repairs = clean(
        load_events(name, data_dir, **load_kwargs), min_events=min_events, dedupe=dedupe
    )
    return build_sequences(events, repairs=repairs)


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Leave-last-out split of a :class:`SequenceDataset` (see :func:`leave_last_out`).

    Attributes:
      dataset: the sequences.
      validation: whether a validation target was held out.
      train_len: ``[U]`` number of training events; they are the first ``train_len[u]``
        events of user ``u``.
      valid_pos: ``[U]`` index into the CSR arrays of the validation target (the first event
        of the validation block), ``-1`` if none.
      test_pos: ``[U]`` index into the CSR arrays of the test target (the first event of the
        test block).
      holdout: ``k``, the events held out per user for each of test and validation.
      block_len: ``[U]`` the user's block length (``k`` or fewer for short histories; all ones
        when ``k = 1``).
    """

    dataset: SequenceDataset
    validation: bool
    train_len: np.ndarray
    valid_pos: np.ndarray
    test_pos: np.ndarray
    holdout: int = 1
    block_len: np.ndarray | None = None

    @property
    def num_users(self) -> int:
        return self.dataset.num_users

    @property
    def num_items(self) -> int:
        return self.dataset.num_items


def leave_last_out(ds: SequenceDataset, *, validation: bool = False, holdout: int = 1) -> Split:
    """Hold out each user's last ``holdout = k`` events (test) and, optionally, the ``k``
    before them (validation).

    ``k = 1`` (leave-last-out): for user ``u`` with events ``e_0..e_{n-1}``: test target
    ``e_{n-1}``; validation target ``e_{n-2}`` when ``validation``; training events: the rest.
    Users with too few events for a training part (``n <= 1``, or ``n <= 2`` with validation)
    are kept: they still have a test target (and a validation one if ``n >= 2``) and just
    contribute no training rows (all-zero weights). A user with ``n == 1`` (or ``n == 1`` with
    validation) has no history before its target; :func:`eval_arrays` marks such rows
    ``valid = 0``. ``clean(min_events=3)`` removes all these cases.

    ``k > 1``: the test block is the last ``b`` events, the validation block the ``b`` before,
    with ``b = min(k, max(⌊(n − 1) / (1 + validation)⌋, 1))`` so that a short history keeps at
    least one event before its blocks; the block's first event is the next-item target (as for
    ``k = 1``) and :func:`eval_arrays` adds the whole block (graded / multi-target metrics,
    :mod:`genrec_jax.eval.multi_target`). Training events: those before the blocks.
    """
    k = int(holdout)
    if k < 1:
        raise ValueError(f"holdout must be >= 1 event per user, got {holdout}")
    n = ds.lengths
    ends = ds.offsets[1:]
    v = int(bool(validation))
    b = np.minimum(k, np.maximum((n - 1) // (1 + v), 1)).astype(np.int64)
    test_pos = (ends - b).astype(np.int64)
    if validation:
        valid_pos = np.where(n >= 2 * b, ends - 2 * b, -1).astype(np.int64)
    else:
        valid_pos = np.full(ds.num_users, -1, dtype=np.int64)
    train_len = np.maximum(n - b * (1 + v), 0).astype(np.int64)
    return Split(ds, bool(validation), train_len, valid_pos, test_pos, k, b)


def _gather(values: np.ndarray, index: np.ndarray, mask: np.ndarray, dtype) -> np.ndarray:
    if len(values) == 0:
        return np.zeros(index.shape, dtype=dtype)
    safe = np.clip(index, 0, len(values) - 1)
    return np.where(mask, values[safe], 0).astype(dtype)


def train_arrays(split: Split, max_len: int) -> Dict[str, np.ndarray]:
    """One training row per user from the most recent ``max_len + 1`` training events.

    With ``e`` those events: ``inputs = e[:-1]``, ``targets = e[1:]``; ``timestamps`` and
    ``ratings`` belong to the inputs, ``query_timestamps`` and ``target_ratings`` to the
    targets; ``weights`` is 1.0 where a target exists; ``lengths`` = number of inputs
    (``len(e) - 1``, 0 for users with fewer than 2 training events). All ``[U, max_len]``
    right-padded with 0, except ``lengths [U]`` and ``user [U]`` (dense user index).
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    ds = split.dataset
    take = np.minimum(split.train_len, max_len + 1)
    lengths = np.maximum(take - 1, 0)
    start = ds.offsets[:-1] + split.train_len - take
    j = np.arange(max_len)[None, :]
    mask = j < lengths[:, None]
    idx = start[:, None] + j
    return {
        "inputs": _gather(ds.items, idx, mask, np.int32),
        "targets": _gather(ds.items, idx + 1, mask, np.int32),
        "timestamps": _gather(ds.timestamps, idx, mask, np.int64),
        "query_timestamps": _gather(ds.timestamps, idx + 1, mask, np.int64),
        "ratings": _gather(ds.ratings, idx, mask, np.float32),
        "target_ratings": _gather(ds.ratings, idx + 1, mask, np.float32),
        "weights": mask.astype(np.float32),
        "lengths": lengths.astype(np.int32),
        "user": np.arange(ds.num_users, dtype=np.int32),
    }


def eval_arrays(
    split: Split, max_len: int, *, which: str = "test", exclude: str = "history"
) -> Dict[str, np.ndarray]:
    """One evaluation row per user: predict the ``which`` target from the events before it.

    ``which``: ``"test"`` or ``"validation"`` (alias ``"valid"``).

    ``inputs``, ``timestamps``, ``ratings`` ``[U, max_len]``: the most recent ``max_len``
    events before the target (for ``which="test"`` with a validation split, the validation
    event is part of this history). ``query_timestamps[i]`` is the timestamp of event
    ``i+1`` for ``i < length-1`` and the target's timestamp at ``i = length-1``.
    ``lengths [U]``, ``target [U]``, ``target_rating [U]``, ``user [U]``.
    ``valid [U]`` float32: 1, or 0 for users without such a target or without any event
    before it. With ``split.holdout = k > 1`` also the held-out block that starts at the target:
    ``block_items``, ``block_ratings`` and ``block_valid`` ``[U, k]``. ``exclude [U, H]``
    0-padded item ids not to rank: ``"history"`` = every item of the user's whole history
    before the target, in order (``H`` = the longest such history, at least 1); ``"window"`` = the items of the truncated input window
    (``H = max_len``). The target itself may appear in ``exclude`` (a re-consumption);
    ranking never excludes the target.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if which == "test":
        target_pos = split.test_pos
    elif which in ("validation", "valid"):
        if not split.validation:
            raise ValueError("eval_arrays(which='validation') needs leave_last_out(validation=True)")
        target_pos = split.valid_pos
    else:
        raise ValueError(f"which must be 'test' or 'validation' ('valid'), got {which!r}")
    if exclude not in ("history", "window"):
        raise ValueError(f"exclude must be 'history' or 'window', got {exclude!r}")
    ds = split.dataset
    has_target = target_pos >= 0
    begin = ds.offsets[:-1]
    hist_len = np.where(has_target, target_pos - begin, 0)
    lengths = np.minimum(hist_len, max_len)
    start = np.where(has_target, target_pos, begin) - lengths
    j = np.arange(max_len)[None, :]
    mask = j < lengths[:, None]
    idx = start[:, None] + j
    inputs = _gather(ds.items, idx, mask, np.int32)
    out = {
        "inputs": inputs,
        "timestamps": _gather(ds.timestamps, idx, mask, np.int64),
        # start + lengths == target position, so event i+1 is the target at i = length-1.
        "query_timestamps": _gather(ds.timestamps, idx + 1, mask, np.int64),
        "ratings": _gather(ds.ratings, idx, mask, np.float32),
        "lengths": lengths.astype(np.int32),
        "target": _gather(ds.items, target_pos, has_target, np.int32),
        "target_rating": _gather(ds.ratings, target_pos, has_target, np.float32),
        "user": np.arange(ds.num_users, dtype=np.int32),
        "valid": (has_target & (lengths > 0)).astype(np.float32),
    }
    if split.holdout > 1:
        out.update(_block_arrays(split, target_pos, has_target))
    if exclude == "window":
        out["exclude"] = inputs.copy()
    else:
        width = max(1, int(hist_len.max()) if len(hist_len) else 1)
        h = np.arange(width)[None, :]
        out["exclude"] = _gather(ds.items, begin[:, None] + h, h < hist_len[:, None], np.int32)
    return out


def _block_arrays(split: Split, target_pos: np.ndarray, has_target: np.ndarray):
    """``block_items``, ``block_ratings`` ``[U, k]`` and ``block_valid [U, k]`` (float32) of the
    held-out block starting at ``target_pos`` (a repeated item keeps its first slot only)."""
    ds = split.dataset
    k = split.holdout
    j = np.arange(k)[None, :]
    mask = has_target[:, None] & (j < split.block_len[:, None])
    idx = target_pos[:, None] + j
    items = _gather(ds.items, idx, mask, np.int32)
    repeat = np.zeros_like(mask)
    for a in range(1, k):  # k is small (e.g. 5): pairwise check of earlier slots
        repeat[:, a] = np.any((items[:, :a] == items[:, a:a + 1]) & mask[:, :a], axis=1)
    mask &= ~repeat
    return {"block_items": np.where(mask, items, 0).astype(np.int32),
            "block_ratings": _gather(ds.ratings, idx, mask, np.float32),
            "block_valid": mask.astype(np.float32)}


def training_mask(split: Split) -> np.ndarray:
    """``[E]`` bool over the CSR events: True for the split's training events (each user's first
    ``train_len`` events; no validation or test event)."""
    ds = split.dataset
    rel = np.arange(ds.num_events) - np.repeat(ds.offsets[:-1], ds.lengths)
    return rel < np.repeat(split.train_len, ds.lengths)


def item_popularity(split: Split) -> np.ndarray:
    """``[num_items + 1]`` int64 counts of each item among training events (index 0 = 0)."""
    ds = split.dataset
    return np.bincount(ds.items[training_mask(split)],
                       minlength=ds.num_items + 1).astype(np.int64)
