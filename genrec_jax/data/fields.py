"""Line- and field-level reading shared by the file parsers and the title readers.

Every function raises :class:`~genrec_jax.data.errors.DataError` for bad input, with a message
naming the file, the 1-based line number and the field; none lets a raw traceback from deep
inside a parser reach the user. Files are opened in binary mode and streamed line by line
(:func:`numbered_lines`: a UTF-8 byte-order mark on line 1 and a trailing ``\\r`` are dropped;
read or decompression failures name the line where the file stops being readable).

Field rules: ids are non-negative integers that fit int64; timestamps are non-negative integer
unix seconds that fit int64; ratings follow a :class:`RatingRule` (``lo ≤ r ≤ hi`` and, with a
step, ``r`` on the grid ``lo, lo + step, …, hi``).
"""

from __future__ import annotations

import codecs
import csv
import math
import pathlib
import zlib
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from genrec_jax.data.errors import DataError, PathLike, show

EVENT_FIELDS = ("user", "item", "rating", "timestamp")
INT64_MAX = 2**63 - 1  # ids and timestamps are stored as int64
_EPS = float(np.finfo(np.float64).eps)
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


def movielens_hint(release: Optional[str], path: pathlib.Path) -> str:
    name = release or "ml-<release>"
    return (
        f"Download the MovieLens release with "
        f"genrec_jax.data.download_movielens({name!r}, cache_dir) (or pass --download / "
        f"load_events({name!r}, ..., download=True)), or get "
        f"https://files.grouplens.org/datasets/movielens/{name}.zip yourself and place "
        f"its files in the folder {path.parent}."
    )


def require_file(path: PathLike, hint: str = "") -> pathlib.Path:
    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected a file. {hint}".strip(), path=path)
    if not path.exists():
        raise DataError(f"{path}: file not found. {hint}".strip(), path=path)
    return path


def open_binary(path: pathlib.Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot open the file ({e.strerror or e})", path=path) from None


def numbered_lines(path: pathlib.Path, f) -> Iterator[Tuple[int, bytes]]:
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


def field_at(line: bytes, sep: bytes, offset: int, names: Sequence[str]) -> str:
    index = line[:offset].count(sep)
    return names[index] if index < len(names) else f"field {index + 1}"


def utf8_error(path, lineno, line: bytes, err: UnicodeDecodeError, field: str) -> DataError:
    bad = line[err.start:err.end]
    return DataError.at(
        path, lineno, field,
        f"invalid UTF-8 byte(s) {bad!r} at column {err.start + 1}; this file must be UTF-8",
    )


def check_utf8(path, lineno, line: bytes, sep: bytes, names: Sequence[str]) -> None:
    if line.isascii():
        return
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(path, lineno, line, e, field_at(line, sep, e.start, names)) from None


# --------------------------------------------------------------------------------------
# Field parsers (the slow, careful path used to diagnose a line that failed the fast path)


class RatingRule:
    """Valid ratings: ``lo <= r <= hi`` and, when ``step`` is given, ``r`` on the grid
    ``lo, lo + step, …, hi``, i.e. ``(r − lo) / step`` a whole number: exactly when ``lo`` and
    ``step`` are binary fractions (1, 0.5, 0.25: the grid is exact in floating point), else up
    to the rounding of a decimal step such as 0.1 (8 units in the last place, relative).

    ``RatingRule(1, 5, 1)``: whole stars 1–5; ``RatingRule(0.5, 5, 0.5)``: half stars;
    ``RatingRule(1, 10, 1)``: a 1–10 scale; ``step=None``: any number in ``[lo, hi]``.
    """

    def __init__(self, lo: float, hi: float, step: Optional[float] = None, *, hint: str = ""):
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"rating scale must have finite lo <= hi, got ({lo:g}, {hi:g})")
        if step is not None:
            step = float(step)
            if not (math.isfinite(step) and step > 0):
                raise ValueError(f"rating step must be a finite number > 0, got {step:g}")
            if not self._whole((hi - lo) / step):
                raise ValueError(f"rating step {step:g} does not divide the scale "
                                 f"[{lo:g}, {hi:g}] into whole steps")
        self.lo, self.hi, self.step = lo, hi, step
        self.hint = hint  # appended to every problem (e.g. how to declare another scale)
        self._exact = step is None or all(v.as_integer_ratio()[1] <= 1024 for v in (lo, step))

    @staticmethod
    def _whole(q: float, exact: bool = False) -> bool:
        if exact:
            return q == int(q)
        return abs(q - round(q)) <= 8 * _EPS * max(1.0, abs(q))

    def ok(self, r: float) -> bool:
        if not self.lo <= r <= self.hi:  # also False for nan
            return False
        return self.step is None or self._whole((r - self.lo) / self.step, self._exact)

    def problem(self, raw, r: float) -> str:
        """Why ``raw`` (parsed as ``r``) is not a valid rating; ends with the hint, if any."""
        scale = f"[{self.lo:g}, {self.hi:g}]"
        if not math.isfinite(r):
            text = f"{show(raw)} is not a finite number"
        elif not self.lo <= r <= self.hi:
            text = f"{show(raw)} is outside the rating scale {scale}"
        elif self.step == 1 and self.lo == int(self.lo):
            text = f"{show(raw)} is not an integer; this file has whole-star ratings {scale}"
        elif self._whole(self.lo / self.step):
            text = (f"{show(raw)} is not a multiple of {self.step:g}; this file has ratings in "
                    f"steps of {self.step:g} on {scale}")
        else:
            text = (f"{show(raw)} is not {self.lo:g} plus a multiple of {self.step:g}; this file "
                    f"has ratings in steps of {self.step:g} on {scale}")
        return f"{text} ({self.hint})" if self.hint else text


def parse_id(path, lineno, field, raw) -> int:
    try:
        value = int(raw)
    except (ValueError, TypeError):
        raise DataError.at(path, lineno, field, f"{show(raw)} is not an integer id") from None
    if value < 0:
        raise DataError.at(path, lineno, field, f"{show(raw)} is negative; ids must be >= 0")
    if value > INT64_MAX:
        raise DataError.at(path, lineno, field, f"{show(raw)} is too large for an int64 id")
    return value


def parse_rating(path, lineno, field, raw, rule: RatingRule) -> float:
    try:
        value = float(raw)
    except (ValueError, TypeError):
        raise DataError.at(path, lineno, field, f"{show(raw)} is not a number") from None
    if not rule.ok(value):
        raise DataError.at(path, lineno, field, rule.problem(raw, value))
    return value


def parse_timestamp(path, lineno, field, raw) -> int:
    try:
        value = int(raw)
    except (ValueError, TypeError):
        raise DataError.at(
            path, lineno, field, f"{show(raw)} is not an integer timestamp (unix seconds)"
        ) from None
    if value < 0:
        raise DataError.at(path, lineno, field, f"{show(raw)} is a negative timestamp")
    if value > INT64_MAX:
        raise DataError.at(
            path, lineno, field, f"{show(raw)} is too large for an int64 timestamp"
        )
    return value


def count_error(path, lineno, line: bytes, sep: bytes, names: Sequence[str]) -> DataError:
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


def csv_rows(path: pathlib.Path, f, delimiter: str, names: Sequence[str]):
    """Yield ``(line_number, row)`` from a UTF-8 CSV file via the csv module."""
    state = {"lineno": 0}

    def decoded():
        for lineno, raw in numbered_lines(path, f):
            state["lineno"] = lineno
            try:
                yield raw.decode("utf-8") + "\n"
            except UnicodeDecodeError as e:
                field = field_at(raw, delimiter.encode(), e.start, names)
                raise utf8_error(path, lineno, raw, e, field) from None

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

def object_array(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


