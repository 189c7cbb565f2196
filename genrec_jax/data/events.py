"""Raw rating events as read from a publisher's file, and their cleaning rules."""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Events:
    """A table of rating events, one entry per input line, in file order.

    Attributes:
      user: ``[E]`` raw user keys: ``int64`` for numeric ids (MovieLens), an ``object``
        array of ``str`` for string ids (Amazon).
      item: ``[E]`` raw item keys, same convention as ``user``.
      rating: ``[E]`` ``float32`` ratings on ``rating_scale``.
      timestamp: ``[E]`` ``int64`` unix seconds.
      source: the file the events were read from (or a description for generated data).
      rating_scale: ``(lo, hi)``, the inclusive range of valid ratings.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    source: str
    rating_scale: Tuple[float, float]

    def __post_init__(self):
        n = len(self.user)
        for name in ("item", "rating", "timestamp"):
            arr = getattr(self, name)
            if np.ndim(arr) != 1 or len(arr) != n:
                raise ValueError(
                    f"Events.{name} must be a 1-D array of length {n} (like Events.user), "
                    f"got shape {np.shape(arr)}"
                )
        if np.ndim(self.user) != 1:
            raise ValueError(f"Events.user must be 1-D, got shape {np.shape(self.user)}")
        if self.rating.dtype != np.float32:
            raise ValueError(f"Events.rating must be float32, got {self.rating.dtype}")
        if self.timestamp.dtype != np.int64:
            raise ValueError(f"Events.timestamp must be int64, got {self.timestamp.dtype}")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def num_events(self) -> int:
        return len(self.user)

    def select(self, index: np.ndarray) -> "Events":
        """The events at ``index`` (a boolean mask or integer positions), order kept."""
        return dataclasses.replace(
            self,
            user=self.user[index],
            item=self.item[index],
            rating=self.rating[index],
            timestamp=self.timestamp[index],
        )


def _codes(keys: np.ndarray) -> np.ndarray:
    """Dense integer codes of raw keys (equal keys get equal codes)."""
    _, inverse = np.unique(keys, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def clean(
    events: Events, *, min_events: int = 3, dedupe: bool = True
) -> Tuple[Events, Dict[str, int]]:
    """Apply the documented repairs to raw events.

    Rules, applied in this order:

    a. **Exact duplicates** (``dedupe=True``): events with the same user, item, rating *and*
       timestamp are one event logged several times (the Amazon 2018 files repeat lines).
       The first occurrence in file order is kept, the later ones are removed.
       Re-consumptions of the same item at a *different* time, or the same item and time
       with a *different* rating, are kept: they are distinct events.
    b. **Short users**: users with fewer than ``min_events`` events (counted after rule a)
       are dropped with all their events. The default 3 guarantees that a leave-last-out
       split with a validation event still leaves at least one training event per user.
       ``min_events <= 1`` keeps every user.

    The surviving events keep their file order. Nothing else is changed.

    Returns:
      ``(cleaned_events, repairs)`` where ``repairs`` counts what was done:
      ``duplicates_removed``, ``users_dropped``, ``events_dropped_with_users``.
    """
    if min_events < 0:
        raise ValueError(f"min_events must be >= 0, got {min_events}")
    n = len(events)
    repairs = {"duplicates_removed": 0, "users_dropped": 0, "events_dropped_with_users": 0}
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return events, repairs
    user_code = _codes(events.user)
    if dedupe:
        item_code = _codes(events.item)
        rating_bits = events.rating.view(np.int32)
        # Sort by the event tuple, ties by file position; the first of each run of equal
        # tuples is then the earliest occurrence in the file.
        order = np.lexsort(
            (np.arange(n), events.timestamp, rating_bits, item_code, user_code)
        )
        same_as_prev = np.zeros(n, dtype=bool)
        same_as_prev[1:] = (
            (user_code[order[1:]] == user_code[order[:-1]])
            & (item_code[order[1:]] == item_code[order[:-1]])
            & (rating_bits[order[1:]] == rating_bits[order[:-1]])
            & (events.timestamp[order[1:]] == events.timestamp[order[:-1]])
        )
        keep[order[same_as_prev]] = False
        repairs["duplicates_removed"] = int(same_as_prev.sum())
    if min_events > 1:
        counts = np.bincount(user_code[keep], minlength=int(user_code.max()) + 1)
        present = np.bincount(user_code, minlength=len(counts)) > 0
        short = (counts < min_events) & present
        # A user whose every event was a duplicate cannot exist (the first copy is kept),
        # so every present user has counts >= 1 here.
        drop = keep & short[user_code]
        repairs["users_dropped"] = int(short.sum())
        repairs["events_dropped_with_users"] = int(drop.sum())
        keep &= ~drop
    if keep.all():
        return events, repairs
    return events.select(np.flatnonzero(keep)), repairs
