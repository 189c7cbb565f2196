"""Readers for the publishers' rating files, and the ``load_events`` registry.

Every reader takes the path of one file and returns :class:`~genrec_jax.data.events.Events`
in file order. Files are streamed line by line. Any problem with the input is raised as a
:class:`~genrec_jax.data.errors.DataError` whose message names the file, the 1-based line
number and the field; no raw traceback from deep inside the parser reaches the user.

Formats (as published):

===================  =====================================================  ==============
reader               file and layout                                        ratings
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
"""

from __future__ import annotations

import array
import codecs
import csv
import gzip
import json
import math
import os
import pathlib
import re
import zlib
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from genrec_jax.data.errors import DataError, PathLike, show
from genrec_jax.data.events import Events

__all__ = [
    "DATASETS",
    "MOVIELENS_RELEASES",
    "default_data_dir",
    "load_events",
    "read_amazon_2018",
    "read_csv",
    "read_item_titles_100k",
    "read_item_titles_1m",
    "read_item_titles_csv",
    "read_item_titles_dat",
    "read_ml_100k",
    "read_ml_10m",
    "read_ml_1m",
    "read_ml_csv",
    "write_csv",
]

_EVENT_FIELDS = ("user", "item", "rating", "timestamp")
_INT64_MAX = 2**63 - 1  # ids and timestamps are stored as int64
_ML_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
_AMAZON_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")

_SEPARATOR_NAMES = {
    b"\t": "tab",
    b"::": "'::'",
    b",": "comma (',')",
    b";": "semicolon (';')",
    b"|": "pipe ('|')",
    b" ": "space",
}


# --------------------------------------------------------------------------------------
# Files


def _movielens_hint(release: Optional[str], path: pathlib.Path) -> str:
    name = release or "ml-<release>"
    return (
        f"Download the MovieLens release with "
        f"genrec_jax.data.download_movielens({name!r}, cache_dir) (or pass --download / "
        f"load_events({name!r}, ..., download=True)), or get "
        f"https://files.grouplens.org/datasets/movielens/{name}.zip yourself and place "
        f"its files in the folder {path.parent}."
    )


def _require_file(path: PathLike, hint: str = "") -> pathlib.Path:
    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected a file. {hint}".strip(), path=path)
    if not path.exists():
        raise DataError(f"{path}: file not found. {hint}".strip(), path=path)
    return path


def _open_binary(path: pathlib.Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot open the file ({e.strerror or e})", path=path) from None


def _numbered_lines(path: pathlib.Path, f) -> Iterator[Tuple[int, bytes]]:
    """Yield ``(line_number, line_without_eol)``; read/decompression errors as DataError."""
    lineno = 0
    it = iter(f)
    while True:
        try:
            raw = next(it)
        except StopIteration:
            return
        except (OSError, EOFError, zlib.error) as e:
            raise DataError.at(
                path, lineno + 1, "(file data)",
                f"the file cannot be read past line {lineno}: {e}"
                " (a truncated or corrupt download?)",
            ) from None
        lineno += 1
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        yield lineno, raw.rstrip(b"\r\n")


def _field_at(line: bytes, sep: bytes, offset: int, names: Sequence[str]) -> str:
    index = line[:offset].count(sep)
    return names[index] if index < len(names) else f"field {index + 1}"


def _utf8_error(path, lineno, line: bytes, err: UnicodeDecodeError, field: str) -> DataError:
    bad = line[err.start:err.end]
    return DataError.at(
        path, lineno, field,
        f"invalid UTF-8 byte(s) {bad!r} at column {err.start + 1}; this file must be UTF-8",
    )


def _check_utf8(path, lineno, line: bytes, sep: bytes, names: Sequence[str]) -> None:
    if line.isascii():
        return
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(path, lineno, line, e, _field_at(line, sep, e.start, names)) from None


# --------------------------------------------------------------------------------------
# Field parsers (the slow, careful path used to diagnose a line that failed the fast path)


class _RatingRule:
    """Valid ratings: ``lo <= r <= hi`` and (optionally) ``r`` a multiple of ``step``."""

    def __init__(self, lo: float, hi: float, step: Optional[float]):
        if not lo <= hi:
            raise ValueError(f"rating scale must have lo <= hi, got ({lo}, {hi})")
        self.lo, self.hi, self.step = float(lo), float(hi), step

    def ok(self, r: float) -> bool:
        if not self.lo <= r <= self.hi:  # also False for nan
            return False
        if self.step is None:
            return True
        q = r / self.step
        return q == int(q)

    def problem(self, raw, r: float) -> str:
        scale = f"[{self.lo:g}, {self.hi:g}]"
        if not math.isfinite(r):
            return f"{show(raw)} is not a finite number"
        if not self.lo <= r <= self.hi:
            return f"{show(raw)} is outside the rating scale {scale}"
        if self.step == 1:
            return f"{show(raw)} is not an integer; this file has whole-star ratings {scale}"
        return (
            f"{show(raw)} is not a multiple of {self.step:g}; this file has ratings in steps "
            f"of {self.step:g} on {scale}"
        )


def _parse_id(path, lineno, field, raw) -> int:
    try:
        value = int(raw)
    except (ValueError, TypeError):
        raise DataError.at(path, lineno, field, f"{show(raw)} is not an integer id") from None
    if value < 0:
        raise DataError.at(path, lineno, field, f"{show(raw)} is negative; ids must be >= 0")
    if value > _INT64_MAX:
        raise DataError.at(path, lineno, field, f"{show(raw)} is too large for an int64 id")
    return value


def _parse_rating(path, lineno, field, raw, rule: _RatingRule) -> float:
    try:
        value = float(raw)
    except (ValueError, TypeError):
        raise DataError.at(path, lineno, field, f"{show(raw)} is not a number") from None
    if not rule.ok(value):
        raise DataError.at(path, lineno, field, rule.problem(raw, value))
    return value


def _parse_timestamp(path, lineno, field, raw) -> int:
    try:
        value = int(raw)
    except (ValueError, TypeError):
        raise DataError.at(
            path, lineno, field, f"{show(raw)} is not an integer timestamp (unix seconds)"
        ) from None
    if value < 0:
        raise DataError.at(path, lineno, field, f"{show(raw)} is a negative timestamp")
    if value > _INT64_MAX:
        raise DataError.at(
            path, lineno, field, f"{show(raw)} is too large for an int64 timestamp"
        )
    return value


def _count_error(path, lineno, line: bytes, sep: bytes, names: Sequence[str]) -> DataError:
    parts = line.split(sep)
    n = len(names)
    sep_name = _SEPARATOR_NAMES.get(sep, repr(sep.decode()))
    expected = f"expected {n} {sep_name}-separated fields ({', '.join(names)})"
    hint = ""
    for other, other_name in _SEPARATOR_NAMES.items():
        if other != sep and other not in sep and line.count(other) == n - 1:
            hint = f"; the line looks {other_name}-separated, but this format uses {sep_name}"
            break
    if len(parts) < n:
        field = names[len(parts)]
        return DataError.at(
            path, lineno, field, f"missing: {expected}, found {len(parts)}{hint}"
        )
    return DataError.at(
        path, lineno, names[-1],
        f"{expected}, found {len(parts)}: unexpected text after the {names[-1]!r} field{hint}",
    )


# --------------------------------------------------------------------------------------
# Delimited numeric files (u.data, ratings.dat, ratings.csv)


def _read_numeric_table(
    path: pathlib.Path,
    *,
    sep: bytes,
    names: Sequence[str],
    rule: _RatingRule,
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
    with _open_binary(path) as f:
        for lineno, line in _numbered_lines(path, f):
            last = lineno
            if not line.strip():
                continue
            if utf8:
                _check_utf8(path, lineno, line, sep, names)
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
                raise _count_error(path, lineno, line, sep, names)
            # Fast path; any failure is diagnosed field by field below.
            try:
                u = int(parts[0])
                i = int(parts[1])
                r = float(parts[2])
                t = int(parts[3])
                good = (0 <= u <= _INT64_MAX and 0 <= i <= _INT64_MAX and 0 <= t <= _INT64_MAX
                        and lo <= r <= hi)
                if good and step is not None:
                    q = r / step
                    good = q == int(q)
            except ValueError:
                good = False
            if not good:
                u = _parse_id(path, lineno, names[0], parts[0])
                i = _parse_id(path, lineno, names[1], parts[1])
                r = _parse_rating(path, lineno, names[2], parts[2], rule)
                t = _parse_timestamp(path, lineno, names[3], parts[3])
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
    path = _require_file(path, _movielens_hint("ml-100k", pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b"\t", names=_EVENT_FIELDS, rule=_RatingRule(1, 5, 1), header=None,
        utf8=False,
    )


def read_ml_1m(path: PathLike) -> Events:
    """MovieLens 1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``, ratings 1-5."""
    path = _require_file(path, _movielens_hint("ml-1m", pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b"::", names=_EVENT_FIELDS, rule=_RatingRule(1, 5, 1), header=None,
        utf8=False,
    )


def read_ml_10m(path: PathLike) -> Events:
    """MovieLens 10M ``ratings.dat``: ``::``-separated like 1M, half-star ratings 0.5-5."""
    path = _require_file(path, _movielens_hint("ml-10m", pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b"::", names=_EVENT_FIELDS, rule=_RatingRule(0.5, 5, 0.5), header=None,
        utf8=False,
    )


def read_ml_csv(path: PathLike, *, release: Optional[str] = None) -> Events:
    """MovieLens 20M/25M/32M/latest-small ``ratings.csv``.

    Header ``userId,movieId,rating,timestamp`` required; half-star ratings 0.5-5; CRLF line
    ends tolerated. ``release`` only improves the message when the file is missing.
    """
    path = _require_file(path, _movielens_hint(release, pathlib.Path(path)))
    return _read_numeric_table(
        path, sep=b",", names=_ML_CSV_HEADER, rule=_RatingRule(0.5, 5, 0.5),
        header=_ML_CSV_HEADER, utf8=True,
    )


# --------------------------------------------------------------------------------------
# Titles


def read_item_titles_100k(path: PathLike) -> Dict[int, str]:
    """MovieLens 100K ``u.item`` (Latin-1, ``|``-separated ``id|title|...``) -> {id: title}."""
    path = _require_file(path, _movielens_hint("ml-100k", pathlib.Path(path)))

    def entries(f):
        for lineno, line in _numbered_lines(path, f):
            if not line.strip():
                continue
            parts = line.decode("latin-1").split("|")
            if len(parts) < 2:
                raise DataError.at(
                    path, lineno, "title",
                    "missing: expected pipe ('|')-separated fields 'movie id|title|...', "
                    f"found {show(line)}",
                )
            yield lineno, _parse_id(path, lineno, "movie id", parts[0]), parts[1]

    with _open_binary(path) as f:
        return _titles_by_id(path, entries(f), "movie id")


def _titles_by_id(path, entries, field) -> Dict[int, str]:
    """{id: title} from ``(line number, id, title)`` entries; a repeated id is an error that
    names both lines."""
    titles: Dict[int, str] = {}
    first_line: Dict[int, int] = {}
    for lineno, item, title in entries:
        if item in titles:
            raise DataError.at(
                path, lineno, field,
                f"duplicate id {item} (first seen on line {first_line[item]})",
            )
        titles[item] = title
        first_line[item] = lineno
    return titles


def read_item_titles_dat(path: PathLike, *, encoding: str = "latin-1") -> Dict[int, str]:
    """MovieLens 1M/10M ``movies.dat`` (``MovieID::Title::Genres``) -> {id: title}.

    The 1M file is Latin-1 (the default); pass ``encoding="utf-8"`` for files in UTF-8.
    """
    path = _require_file(path, _movielens_hint(None, pathlib.Path(path)))
    names = ("MovieID", "Title", "Genres")

    def entries(f):
        for lineno, line in _numbered_lines(path, f):
            if not line.strip():
                continue
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError as e:
                field = _field_at(line, b"::", e.start, names)
                raise DataError.at(
                    path, lineno, field,
                    f"byte(s) {line[e.start:e.end]!r} at column {e.start + 1} are not "
                    f"valid {encoding}",
                ) from None
            parts = text.split("::")
            if len(parts) < 3:
                raise _count_error(path, lineno, line, b"::", names)
            # A title could itself contain '::'; the genres are always the last field.
            yield lineno, _parse_id(path, lineno, "MovieID", parts[0]), "::".join(parts[1:-1])

    with _open_binary(path) as f:
        return _titles_by_id(path, entries(f), "MovieID")


read_item_titles_1m = read_item_titles_dat


def _csv_rows(path: pathlib.Path, f, delimiter: str, names: Sequence[str]):
    """Yield ``(line_number, row)`` from a UTF-8 CSV file via the csv module."""
    state = {"lineno": 0}

    def decoded():
        for lineno, raw in _numbered_lines(path, f):
            state["lineno"] = lineno
            try:
                yield raw.decode("utf-8") + "\n"
            except UnicodeDecodeError as e:
                field = _field_at(raw, delimiter.encode(), e.start, names)
                raise _utf8_error(path, lineno, raw, e, field) from None

    reader = csv.reader(decoded(), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError.at(path, state["lineno"], "(csv syntax)", str(e)) from None
        # reader.line_num counts physical lines; a quoted field may span several.
        yield reader.line_num, row


def read_item_titles_csv(path: PathLike) -> Dict[int, str]:
    """MovieLens ``movies.csv`` (UTF-8, header ``movieId,title,genres``, quoted titles)."""
    path = _require_file(path, _movielens_hint(None, pathlib.Path(path)))
    names = ("movieId", "title", "genres")

    def entries(f):
        header_seen = False
        for lineno, row in _csv_rows(path, f, ",", names):
            if not row or not any(cell.strip() for cell in row):
                continue
            if not header_seen:
                if [c.strip() for c in row[:3]] != list(names):
                    raise DataError.at(
                        path, lineno, "header",
                        f"expected the header line 'movieId,title,genres', found {row!r}",
                    )
                header_seen = True
                continue
            if len(row) != 3:
                raise DataError.at(
                    path, lineno, "title" if len(row) < 3 else "genres",
                    f"expected 3 comma-separated fields (movieId, title, genres), found "
                    f"{len(row)} (titles containing commas must be quoted)",
                )
            yield lineno, _parse_id(path, lineno, "movieId", row[0]), row[1]

    with _open_binary(path) as f:
        return _titles_by_id(path, entries(f), "movieId")


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
    path = _require_file(
        path,
        "The Amazon 2018 files cannot be downloaded automatically: get the 5-core file from "
        f"the publisher's page and place it at {path}.",
    )
    rule = _RatingRule(1, 5, 1)
    users, items = [], []
    ratings = array.array("d")
    stamps = array.array("q")
    with _open_binary(path) as raw_file:
        magic = raw_file.read(2)
        raw_file.seek(0)
        f = gzip.GzipFile(fileobj=raw_file, mode="rb") if magic == b"\x1f\x8b" else raw_file
        last = 0
        for lineno, line in _numbered_lines(path, f):
            last = lineno
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_error(path, lineno, line, e, _json_field_at(line, e.start)) from None
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
                raise DataError.at(path, lineno, "overall", f"{show(repr(overall))} is not a number")
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
            stamp = _parse_timestamp(path, lineno, "unixReviewTime", stamp)
            users.append(user)
            items.append(item)
            ratings.append(rating)
            stamps.append(stamp)
    if not users:
        raise DataError.at(path, last + 1, "reviewerID", "no events: the file is empty")
    return Events(
        user=_object_array(users),
        item=_object_array(items),
        rating=np.frombuffer(ratings, dtype=np.float64).astype(np.float32),
        timestamp=np.frombuffer(stamps, dtype=np.int64).copy(),
        source=str(path),
        rating_scale=(1.0, 5.0),
    )


def _object_array(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


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
           and (len(v) < 19 or (len(v) == 19 and int(v) <= _INT64_MAX)) for v in values):
        return np.array([int(v) for v in values], dtype=np.int64)
    return _object_array(values)


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
      rating_step: if given, ratings must be multiples of it (1 for whole stars, 0.5 for
        half stars).
      header: ``True``/``False`` forces the first line to be / not be a header. ``None``
        (default) detects it: the first line is a header when both its rating and its
        timestamp field are not numbers.
      delimiter: the field separator.

    User and item keys become ``int64`` when every key in the file is a plain non-negative
    integer, else ``str`` objects. Quoted fields follow the csv module's rules.
    """
    path = _require_file(path)
    rule = _RatingRule(rating_scale[0], rating_scale[1], rating_step)
    names = list(_EVENT_FIELDS)
    users, items = [], []
    ratings = array.array("d")
    stamps = array.array("q")
    first = True
    last = 0
    with _open_binary(path) as f:
        for lineno, row in _csv_rows(path, f, delimiter, names):
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
                    names[:] = [c.strip() or d for c, d in zip(row, _EVENT_FIELDS)]
                    continue
            if len(row) != 4:
                line = delimiter.encode().join(c.encode() for c in row)
                raise _count_error(path, lineno, line, delimiter.encode(), names)
            user, item = row[0].strip(), row[1].strip()
            for field, value in ((names[0], user), (names[1], item)):
                if not value:
                    raise DataError.at(path, lineno, field, "empty key")
            r = _parse_rating(path, lineno, names[2], row[2].strip(), rule)
            t = _parse_timestamp(path, lineno, names[3], row[3].strip())
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
        writer.writerow(_EVENT_FIELDS)
        for u, i, r, t in zip(
            events.user.tolist(), events.item.tolist(), events.rating.tolist(),
            events.timestamp.tolist(),
        ):
            writer.writerow((u, i, f"{r:g}", t))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------
# Registry

# name -> (folder names the zip extracts to, ratings file, reader)
MOVIELENS_RELEASES: Dict[str, Tuple[Tuple[str, ...], str, Callable[..., Events]]] = {
    "ml-100k": (("ml-100k",), "u.data", read_ml_100k),
    "ml-1m": (("ml-1m",), "ratings.dat", read_ml_1m),
    "ml-10m": (("ml-10M100K", "ml-10m"), "ratings.dat", read_ml_10m),
    "ml-20m": (("ml-20m",), "ratings.csv", read_ml_csv),
    "ml-25m": (("ml-25m",), "ratings.csv", read_ml_csv),
    "ml-32m": (("ml-32m",), "ratings.csv", read_ml_csv),
    "ml-latest-small": (("ml-latest-small",), "ratings.csv", read_ml_csv),
}
AMAZON_FILES = {"amazon-beauty": ("All_Beauty_5.json.gz", "amazon-2018-all-beauty-5core")}
DATASETS: Tuple[str, ...] = tuple(MOVIELENS_RELEASES) + tuple(AMAZON_FILES) + ("csv", "simulator")


def default_data_dir() -> pathlib.Path:
    """``$GENREC_JAX_DATA`` if set, else ``~/.cache/genrec_jax/datasets``."""
    env = os.environ.get("GENREC_JAX_DATA")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "genrec_jax" / "datasets"


def _find_movielens(name: str, root: pathlib.Path) -> Tuple[Optional[pathlib.Path], list]:
    folders, filename, _ = MOVIELENS_RELEASES[name]
    candidates = [root / filename] + [root / folder / filename for folder in folders]
    for candidate in candidates:
        if candidate.is_file():
            return candidate, candidates
    return None, candidates


def load_events(
    name: str,
    data_dir: Optional[PathLike] = None,
    *,
    download: bool = False,
    cache_dir: Optional[PathLike] = None,
    **kwargs,
) -> Events:
    """Read a named data set.

    Args:
      name: one of :data:`DATASETS`: ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
        ``ml-25m``, ``ml-32m``, ``ml-latest-small``, ``amazon-beauty``, ``csv``,
        ``simulator``; or ``tfds:movielens/<release>-ratings`` read through TensorFlow
        Datasets (optional extra, see :mod:`genrec_jax.data.tfds_bridge`; ``data_dir`` is
        then the TFDS data folder and ``split`` an option).
      data_dir: for MovieLens, the release folder (e.g. ``.../ml-100k`` holding ``u.data``)
        or its parent; for ``amazon-beauty``, the folder holding ``All_Beauty_5.json.gz``
        (or its parent ``amazon-2018-all-beauty-5core``, or the file itself); for ``csv``,
        the file or a folder holding ``ratings.csv``. Defaults to ``cache_dir`` or
        :func:`default_data_dir`.
      download: for MovieLens, download and extract the release into ``cache_dir`` (default
        ``data_dir`` or :func:`default_data_dir`) when the files are not found.
      cache_dir: where downloads go.
      **kwargs: for ``simulator``, :class:`~genrec_jax.data.simulator.SimulatorConfig`
        fields (or ``config=SimulatorConfig(...)``); for ``csv``, :func:`read_csv` options.
        Not accepted for other names.
    """
    if name.startswith("tfds:"):
        from genrec_jax.data.tfds_bridge import load_tfds_events

        return load_tfds_events(name, data_dir, download=download, **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known names: {', '.join(DATASETS)}, "
                         "or tfds:movielens/<release>-ratings")
    if name == "simulator":
        from genrec_jax.data.simulator import Simulator, SimulatorConfig

        config = kwargs.pop("config", None)
        if config is None:
            config = SimulatorConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either config= or SimulatorConfig fields, not both")
        return Simulator(config).generate()
    if name == "csv":
        if data_dir is None:
            raise ValueError("load_events('csv', data_dir) needs the CSV file or its folder")
        path = pathlib.Path(data_dir)
        if path.is_dir():
            path = path / "ratings.csv"
        return read_csv(path, **kwargs)
    if kwargs:
        raise TypeError(f"load_events({name!r}) takes no extra options, got {sorted(kwargs)}")
    root = pathlib.Path(data_dir if data_dir is not None else (cache_dir or default_data_dir()))
    if name in AMAZON_FILES:
        filename, folder = AMAZON_FILES[name]
        candidates = [root, root / filename, root / folder / filename]
        for candidate in candidates:
            if candidate.is_file():
                return read_amazon_2018(candidate)
        raise DataError(
            f"{name}: {filename} not found (looked at {', '.join(map(str, candidates[1:]))}). "
            f"It cannot be downloaded automatically: download {filename} (Amazon Review Data "
            f"2018, 5-core) from the publisher and place it in the folder {root}.",
            path=candidates[1],
        )
    found, candidates = _find_movielens(name, root)
    folders, filename, reader = MOVIELENS_RELEASES[name]
    if found is None and download:
        from genrec_jax.data.download import download_movielens

        dest = pathlib.Path(cache_dir) if cache_dir is not None else root
        download_movielens(name, dest)
        found, more = _find_movielens(name, dest)
        candidates += more
    if found is None:
        where = root / folders[0]
        raise DataError(
            f"{name}: {filename} not found (looked at {', '.join(map(str, candidates))}). "
            f"Download the release with genrec_jax.data.download_movielens({name!r}, "
            f"cache_dir) or --download (load_events(..., download=True)), or place the "
            f"extracted files of https://files.grouplens.org/datasets/movielens/{name}.zip "
            f"in the folder {where}.",
            path=candidates[0],
        )
    if reader is read_ml_csv:
        return read_ml_csv(found, release=name)
    return reader(found)
