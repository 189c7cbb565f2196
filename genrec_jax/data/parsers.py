"""Parsers of the publishers' rating files: one function per format, file in, Events out.

Every parser takes the path of one file and returns :class:`~genrec_jax.data.events.Events` in
file order. Files are streamed line by line. Any problem with the input is raised as a
:class:`~genrec_jax.data.errors.DataError` whose message names the file, the 1-based line
number and the field (the line and field machinery is in :mod:`genrec_jax.data.fields`).

Formats (as published):

===================  =====================================================  ==============
parser               file and layout                                        ratings
===================  =====================================================  ==============
``read_ml_100k``     ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``  integers 1-5
``read_ml_1m``       ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``  integers 1-5
``read_ml_10m``      ``ratings.dat`` (same layout)                          halves 0.5-5
``read_ml_csv``      ``ratings.csv`` with header                            halves 0.5-5
                     ``userId,movieId,rating,timestamp`` (20M/25M/32M/
                     latest-small; CRLF tolerated)
``read_amazon_2018`` ``*_5.json.gz``: JSON lines, keys ``reviewerID``,      whole stars 1-5
                     ``asin``, ``overall``, ``unixReviewTime``
``read_csv``         ``user,item,rating,timestamp`` (header optional)       a parameter
===================  =====================================================  ==============

Numeric ids must be non-negative integers; timestamps non-negative integers (unix
seconds); both must fit int64 (plain-CSV keys beyond it are kept as strings). Blank lines
are skipped. A trailing ``\\r`` (CRLF line ends) is tolerated everywhere. Files that hold
only ASCII numbers are read as bytes; files whose text must be UTF-8 (``ratings.csv``,
Amazon JSON, plain CSV) report the line of any invalid byte.

The plain CSV's rating scale is a parameter: ``read_csv(path, rating_scale=(lo, hi),
rating_step=s)``, or from text with :func:`parse_rating_scale` (``"1:5"``, ``"0.5:5:0.5"``,
``"1:10:1"``; the experiment configs' ``data.rating_scale``).
"""

from __future__ import annotations

import array
import csv
import gzip
import json
import math
import os
import pathlib
import re
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from genrec_jax.data.errors import DataError, PathLike, show
from genrec_jax.data.events import Events
from genrec_jax.data.fields import (EVENT_FIELDS, INT64_MAX, RatingRule, check_utf8, count_error,
                                    csv_rows, movielens_hint, numbered_lines, object_array,
                                    open_binary, parse_id, parse_rating, parse_timestamp,
                                    require_file, utf8_error)

__all__ = [
    "parse_rating_scale",
    "read_amazon_2018",
    "read_csv",
    "read_ml_100k",
    "read_ml_10m",
    "read_ml_1m",
    "read_ml_csv",
    "write_csv",
]

_ML_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
_AMAZON_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")
_CSV_SCALE_HINT = ("another scale: read_csv(rating_scale=(lo, hi), rating_step=s), or "
                   "data.rating_scale=lo:hi:step in the experiment config")


# --------------------------------------------------------------------------------------
# Delimited numeric files (u.data, ratings.dat, ratings.csv)


def _read_numeric_table(
    path: pathlib.Path,
    *,
    sep: bytes,
    names: Sequence[str],
    rule: RatingRule,
    header: Optional[Sequence[str]],
    utf8: bool,
) -> Events:
    users = array.array("q")
    items = array.array("q")
    ratings = array.array("d")
    stamps = array.array("q")
    lo, hi, step = rule.lo, rule.hi, rule.step
    need_header = header is not None
    last = 0
    with open_binary(path) as f:
        for lineno, line in numbered_lines(path, f):
            last = lineno
            if not line.strip():
                continue
            if utf8:
                check_utf8(path, lineno, line, sep, names)
            if need_header:
                got = tuple(p.strip().decode("utf-8", "replace") for p in line.split(sep))
                if got != tuple(header):
                    raise DataError.at(
                        path, lineno, "header",
                        f"expected the header line {sep.decode().join(header)!r}, found "
                        f"{show(line)}",
                    )
                need_header = False
                continue
            parts = line.split(sep)
            if len(parts) != 4:
                raise count_error(path, lineno, line, sep, names)
            # Fast path; any failure is diagnosed field by field below. ``r / step`` whole is
            # ``rule.ok`` for the MovieLens rules (lo a multiple of step, both binary fractions).
            try:
                u = int(parts[0])
                i = int(parts[1])
                r = float(parts[2])
                t = int(parts[3])
                good = (0 <= u <= INT64_MAX and 0 <= i <= INT64_MAX and 0 <= t <= INT64_MAX
                        and lo <= r <= hi)
                if good and step is not None:
                    q = r / step
                    good = q == int(q)
            except ValueError:
                good = False
            if not good:
                u = parse_id(path, lineno, names[0], parts[0])
                i = parse_id(path, lineno, names[1], parts[1])
                r = parse_rating(path, lineno, names[2], parts[2], rule)
                t = parse_timestamp(path, lineno, names[3], parts[3])
            users.append(u)
            items.append(i)
            ratings.append(r)
            stamps.append(t)
    if not users:
        what = "only a header line" if header is not None and not need_header else "no lines"
        raise DataError.at(
            path, last + 1, names[0], f"no events: the file is empty (it has {what})"
        )
    return Events(
        user=np.frombuffer(users, dtype=np.int64).copy(),
        item=np.frombuffer(items, dtype=np.int64).copy(),
        rating=np.frombuffer(ratings, dtype=np.float64).astype(np.float32),
        timestamp=np.frombuffer(stamps, dtype=np.int64).copy(),
        source=str(path),
        rating_scale=(rule.lo, rule.hi),
    )


def read_ml_100k(path: PathLike) -> Events:
    """MovieLens 100K ``u.data``: tab-separated ``user item rating timestamp``, ratings 1-5."""
    path = require_file(path, movielens_hint("ml-100k", pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b"\t", names=EVENT_FIELDS, rule=RatingRule(1, 5, 1), header=None,
        utf8=False,
    )


def read_ml_1m(path: PathLike) -> Events:
    """MovieLens 1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``, ratings 1-5."""
    path = require_file(path, movielens_hint("ml-1m", pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b"::", names=EVENT_FIELDS, rule=RatingRule(1, 5, 1), header=None,
        utf8=False,
    )


def read_ml_10m(path: PathLike) -> Events:
    """MovieLens 10M ``ratings.dat``: ``::``-separated like 1M, half-star ratings 0.5-5."""
    path = require_file(path, movielens_hint("ml-10m", pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b"::", names=EVENT_FIELDS, rule=RatingRule(0.5, 5, 0.5), header=None,
        utf8=False,
    )


def read_ml_csv(path: PathLike, *, release: Optional[str] = None) -> Events:
    """MovieLens 20M/25M/32M/latest-small ``ratings.csv``.

    Header ``userId,movieId,rating,timestamp`` required; half-star ratings 0.5-5; CRLF line
    ends tolerated. ``release`` only improves the message when the file is missing.
    """
    path = require_file(path, movielens_hint(release, pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b",", names=_ML_CSV_HEADER, rule=RatingRule(0.5, 5, 0.5),
        header=_ML_CSV_HEADER, utf8=True,
    )


# --------------------------------------------------------------------------------------
# Amazon 2018 JSON lines

_JSON_KEY_BEFORE = re.compile(rb'"([^"\\]{1,40})"\s*:\s*[^:]*$')


def _json_field_at(line: bytes, offset: int) -> str:
    match = _JSON_KEY_BEFORE.search(line[:offset])
    return match.group(1).decode("ascii", "replace") if match else "(JSON line)"


def read_amazon_2018(path: PathLike) -> Events:
    """Amazon Review Data (2018) JSON lines, gzip-compressed or plain.

    Uses ``reviewerID`` (user), ``asin`` (item), ``overall`` (rating, whole stars 1-5) and
    ``unixReviewTime`` (timestamp). Users and items are kept as ``str`` keys. Duplicate
    lines are kept here; :func:`~genrec_jax.data.events.clean` removes them.
    """
    path = require_file(
        path,
        "The Amazon 2018 files cannot be downloaded automatically: get the 5-core file from "
        f"the publisher's page and place it at {path}.",
    )
    rule = RatingRule(1, 5, 1)
    users, items = [], []
    ratings = array.array("d")
    stamps = array.array("q")
    with open_binary(path) as raw_file:
        magic = raw_file.read(2)
        raw_file.seek(0)
        f = gzip.GzipFile(fileobj=raw_file, mode="rb") if magic == b"\x1f\x8b" else raw_file
        last = 0
        for lineno, line in numbered_lines(path, f):
            last = lineno
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise utf8_error(path, lineno, line, e, _json_field_at(line, e.start)) from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError.at(
                    path, lineno, "(JSON line)",
                    f"invalid JSON: {e.msg} at column {e.colno}",
                ) from None
            except (ValueError, RecursionError) as e:  # a number too long, nesting too deep
                raise DataError.at(
                    path, lineno, "(JSON line)", f"unreadable JSON: {str(e)[:120]}"
                ) from None
            if not isinstance(obj, dict):
                raise DataError.at(
                    path, lineno, "(JSON line)",
                    f"expected a JSON object, found {type(obj).__name__}",
                )
            for key in _AMAZON_KEYS:
                if key not in obj:
                    raise DataError.at(
                        path, lineno, key,
                        f"missing key (each line needs {', '.join(_AMAZON_KEYS)})",
                    )
            user, item = obj["reviewerID"], obj["asin"]
            for key, value in (("reviewerID", user), ("asin", item)):
                if not isinstance(value, str) or not value:
                    raise DataError.at(
                        path, lineno, key, f"{show(repr(value))} is not a non-empty string"
                    )
            overall = obj["overall"]
            if isinstance(overall, bool) or not isinstance(overall, (int, float)):
                raise DataError.at(path, lineno, "overall",
                                   f"{show(repr(overall))} is not a number")
            try:
                rating = float(overall)
            except OverflowError:  # an integer beyond the float range
                rating = math.inf
            if not rule.ok(rating):
                raise DataError.at(path, lineno, "overall", rule.problem(repr(overall), rating))
            stamp = obj["unixReviewTime"]
            if isinstance(stamp, bool) or not isinstance(stamp, (int, str)):
                raise DataError.at(
                    path, lineno, "unixReviewTime",
                    f"{show(repr(stamp))} is not an integer timestamp (unix seconds)",
                )
            stamp = parse_timestamp(path, lineno, "unixReviewTime", stamp)
            users.append(user)
            items.append(item)
            ratings.append(rating)
            stamps.append(stamp)
    if not users:
        raise DataError.at(path, last + 1, "reviewerID", "no events: the file is empty")
    return Events(
        user=object_array(users),
        item=object_array(items),
        rating=np.frombuffer(ratings, dtype=np.float64).astype(np.float32),
        timestamp=np.frombuffer(stamps, dtype=np.int64).copy(),
        source=str(path),
        rating_scale=(1.0, 5.0),
    )


# --------------------------------------------------------------------------------------
# Plain CSV


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _keys_array(values) -> np.ndarray:
    """int64 when every key is a canonical non-negative integer that fits int64, else str
    objects."""
    if all(v.isascii() and v.isdigit() and (v == "0" or v[0] != "0")
           and (len(v) < 19 or (len(v) == 19 and int(v) <= INT64_MAX)) for v in values):
        return np.array([int(v) for v in values], dtype=np.int64)
    return object_array(values)


def parse_rating_scale(spec: Any, *, name: str = "rating_scale"
                       ) -> Tuple[float, float, Optional[float]]:
    """``(lo, hi, step)`` from ``"lo:hi"`` / ``"lo:hi:step"`` or a sequence of 2 or 3 numbers.

    ``"1:5"`` → ``(1.0, 5.0, None)`` (any number in [1, 5]); ``"0.5:5:0.5"`` → half stars;
    ``"1:10:1"`` → whole numbers 1–10. Raises ValueError naming ``name`` when the text is not
    2 or 3 numbers, when ``lo > hi``, or when the step is not > 0 or does not divide ``hi − lo``.
    """
    parts: Sequence[Any] = spec.split(":") if isinstance(spec, str) else list(spec)
    if len(parts) not in (2, 3):
        raise ValueError(f"{name}: expected 'lo:hi' or 'lo:hi:step' (e.g. 1:5, 0.5:5:0.5, "
                         f"1:10:1), got {spec!r}")
    try:
        values = [float(v) for v in parts]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers in 'lo:hi' or 'lo:hi:step', got "
                         f"{spec!r}") from None
    lo, hi = values[0], values[1]
    step = values[2] if len(values) == 3 else None
    try:
        RatingRule(lo, hi, step)
    except ValueError as e:
        raise ValueError(f"{name}={spec!r}: {e}") from None
    return lo, hi, step


def read_csv(
    path: PathLike,
    *,
    rating_scale: Tuple[float, float] = (1, 5),
    rating_step: Optional[float] = None,
    header: Optional[bool] = None,
    delimiter: str = ",",
) -> Events:
    """A plain UTF-8 CSV file ``user,item,rating,timestamp``.

    Args:
      path: the file.
      rating_scale: inclusive ``(lo, hi)`` range of valid ratings.
      rating_step: if given, ratings must lie on the grid ``lo, lo + step, …, hi`` (1 for
        whole stars, 0.5 for half stars) and the step must divide ``hi − lo``; ``None`` accepts
        any number in ``[lo, hi]``. :func:`parse_rating_scale` reads both from text.
      header: ``True``/``False`` forces the first line to be / not be a header. ``None``
        (default) detects it: the first line is a header when both its rating and its
        timestamp field are not numbers.
      delimiter: the field separator.

    User and item keys become ``int64`` when every key in the file is a plain non-negative
    integer, else ``str`` objects. Quoted fields follow the csv module's rules.
    """
    path = require_file(path)
    if len(rating_scale) != 2:
        raise ValueError(f"read_csv: rating_scale must be (lo, hi), got {tuple(rating_scale)}; "
                         "pass the step as rating_step")
    rule = RatingRule(rating_scale[0], rating_scale[1], rating_step, hint=_CSV_SCALE_HINT)
    names = list(EVENT_FIELDS)
    users, items = [], []
    ratings = array.array("d")
    stamps = array.array("q")
    first = True
    last = 0
    with open_binary(path) as f:
        for lineno, row in csv_rows(path, f, delimiter, names):
            last = lineno
            if not row or not any(cell.strip() for cell in row):
                continue
            if first:
                first = False
                is_header = header
                if is_header is None:
                    is_header = (
                        len(row) == 4
                        and not _is_number(row[2].strip())
                        and not _is_number(row[3].strip())
                    )
                if is_header:
                    if len(row) != 4:
                        raise DataError.at(
                            path, lineno, "header",
                            f"expected 4 header names (user, item, rating, timestamp), "
                            f"found {len(row)}",
                        )
                    names[:] = [c.strip() or d for c, d in zip(row, EVENT_FIELDS)]
                    continue
            if len(row) != 4:
                line = delimiter.encode().join(c.encode() for c in row)
                raise count_error(path, lineno, line, delimiter.encode(), names)
            user, item = row[0].strip(), row[1].strip()
            for field, value in ((names[0], user), (names[1], item)):
                if not value:
                    raise DataError.at(path, lineno, field, "empty key")
            r = parse_rating(path, lineno, names[2], row[2].strip(), rule)
            t = parse_timestamp(path, lineno, names[3], row[3].strip())
            users.append(user)
            items.append(item)
            ratings.append(r)
            stamps.append(t)
    if not users:
        raise DataError.at(path, last + 1, names[0], "no events: the file is empty")
    return Events(
        user=_keys_array(users),
        item=_keys_array(items),
        rating=np.frombuffer(ratings, dtype=np.float64).astype(np.float32),
        timestamp=np.frombuffer(stamps, dtype=np.int64).copy(),
        source=str(path),
        rating_scale=(float(rating_scale[0]), float(rating_scale[1])),
    )


def write_csv(events: Events, path: PathLike) -> pathlib.Path:
    """Write events as a plain CSV (with header) that :func:`read_csv` reads back."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(EVENT_FIELDS)
        for u, i, r, t in zip(
            events.user.tolist(), events.item.tolist(), events.rating.tolist(),
            events.timestamp.tolist(),
        ):
            writer.writerow((u, i, f"{r:g}", t))
    os.replace(tmp, path)
    return path


