"""Write a data set our code reads in the ML-1M file format the public HSTU reference reads.

  python benchmarks/reference_format.py --dataset=ml-100k --data_dir=../shared/data/ml-100k \
      --out=/work/ref/data/ml-100k
  python benchmarks/reference_format.py --dataset=csv --data_dir=/work/ref/data/sparse-sim/events.csv \
      --out=/work/ref/data/sparse-sim/ml1m-format

The events are exactly those our pretraining sees (``load_events`` then ``clean`` with the
same ``min_events``), written to three ``::``-separated files in ``--out``:

* ``ratings.dat``: ``user::item::rating::timestamp``, one line per event in the ORIGINAL file
  order (a stable sort by timestamp then breaks ties as our ``build_sequences`` does). Users
  are ``1..U`` and items ``1..V`` in the order of their sorted raw keys, i.e. the dense ids our
  ``build_sequences`` gives, so item ``i`` is the same item in both implementations. Ratings
  must be integers (the reference parses them into int64): a fractional rating is an error.
* ``movies.dat``: ``id::title (0000)::unknown`` for ``id = 1..V`` in latin-1. The reference
  reads the catalogue (its candidate set) from this file, and cuts a ``" (YYYY)"`` suffix off
  every title, so each title gets one.
* ``users.dat``: ``id::M::1::0::00000`` placeholders for ``id = 1..U`` (HSTU does not use them).

Never write licensed data (MovieLens) inside the repository: ``--out`` must be elsewhere.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional, Sequence

import numpy as np

from genrec_jax.data.events import Events, clean
from genrec_jax.data.sources import load_events

__all__ = ["write_reference_format", "main"]

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _dense_ids(keys: np.ndarray) -> np.ndarray:
    """``[E]`` raw keys -> ``[E]`` int64 ids ``1..K`` in the order of the sorted distinct keys."""
    _, inverse = np.unique(keys, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64) + 1


def write_reference_format(events: Events, out: pathlib.Path) -> dict:
    """Write ``ratings.dat``, ``movies.dat`` and ``users.dat`` for ``events`` into ``out``.

    Returns ``{"num_users": U, "num_items": V, "num_events": E}``. Raises ``ValueError``
    naming the first offending line when a rating is not an integer, and when there are no
    events.
    """
    if len(events) == 0:
        raise ValueError(f"{events.source}: no events to write")
    rating = events.rating.astype(np.float64)
    bad = np.nonzero(rating != np.round(rating))[0]
    if len(bad):
        i = int(bad[0])
        user, item = (getattr(k, "item", lambda k=k: k)() for k in (events.user[i],
                                                                   events.item[i]))
        raise ValueError(
            f"{events.source}: event {i} (user {user!r}, item {item!r}) "
            f"has rating {float(events.rating[i])!r}; the reference reads integer ratings only "
            f"({len(bad)} fractional ratings in all)")
    users = _dense_ids(events.user)
    items = _dense_ids(events.item)
    num_users, num_items = int(users.max()), int(items.max())
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{i}::{int(r)}::{int(t)}\n"
             for u, i, r, t in zip(users.tolist(), items.tolist(), rating.tolist(),
                                   events.timestamp.tolist())]
    (out / "ratings.dat").write_text("".join(lines), encoding="latin-1")
    (out / "movies.dat").write_text(
        "".join(f"{i}::item {i} (0000)::unknown\n" for i in range(1, num_items + 1)),
        encoding="latin-1")
    (out / "users.dat").write_text(
        "".join(f"{u}::M::1::0::00000\n" for u in range(1, num_users + 1)), encoding="latin-1")
    return {"num_users": num_users, "num_items": num_items, "num_events": len(events)}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="ml-100k, csv, ... (load_events names)")
    parser.add_argument("--data_dir", required=True, help="folder or file of the data set")
    parser.add_argument("--out", required=True, help="output folder (outside the repository)")
    parser.add_argument("--min_events", type=int, default=3,
                        help="users with fewer events are dropped (our data.min_events)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out).resolve()
    if out == _REPO or _REPO in out.parents:
        parser.error(f"--out={args.out} is inside the repository {_REPO}; write data elsewhere")
    kwargs = {"rating_scale": (1.0, 5.0)} if args.dataset == "csv" else {}
    events = load_events(args.dataset, args.data_dir, **kwargs)
    events, repairs = clean(events, min_events=args.min_events)
    info = write_reference_format(events, out)
    print(f"{info} (repairs {repairs}) -> {out}")
    return info


if __name__ == "__main__":
    main(sys.argv[1:])
