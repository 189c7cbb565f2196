"""Readers of the MovieLens item-title files: ``{movie id: title}``.

- ``read_item_titles_100k``: ``u.item`` (100K), Latin-1, pipe-separated ``id|title|...``.
- ``read_item_titles_dat`` (alias ``read_item_titles_1m``): ``movies.dat`` (1M, 10M),
  ``MovieID::Title::Genres``, Latin-1 by default (``encoding=`` for UTF-8 files).
- ``read_item_titles_csv``: ``movies.csv`` (20M and later), UTF-8, header
  ``movieId,title,genres``, titles with commas quoted.

Training never needs titles; they make recommendations readable. Errors are DataErrors naming
the file, line and field, as for the rating files; a movie id listed twice names both lines.
"""

from __future__ import annotations

import pathlib
from typing import Dict

from genrec_jax.data.errors import DataError, PathLike, show
from genrec_jax.data.fields import (count_error, csv_rows, field_at, movielens_hint,
                                    numbered_lines, open_binary, parse_id, require_file)

__all__ = [
    "read_item_titles_100k",
    "read_item_titles_1m",
    "read_item_titles_csv",
    "read_item_titles_dat",
]


def read_item_titles_100k(path: PathLike) -> Dict[int, str]:
    """MovieLens 100K ``u.item`` (Latin-1, ``|``-separated ``id|title|...``) -> {id: title}."""
    path = require_file(path, movielens_hint("ml-100k", pathlib.Path(path)))

    def entries(f):
        for lineno, line in numbered_lines(path, f):
            if not line.strip():
                continue
            parts = line.decode("latin-1").split("|")
            if len(parts) < 2:
                raise DataError.at(
                    path, lineno, "title",
                    "missing: expected pipe ('|')-separated fields 'movie id|title|...', "
                    f"found {show(line)}",
                )
            yield lineno, parse_id(path, lineno, "movie id", parts[0]), parts[1]

    with open_binary(path) as f:
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
    path = require_file(path, movielens_hint(None, pathlib.Path(path)))
    names = ("MovieID", "Title", "Genres")

    def entries(f):
        for lineno, line in numbered_lines(path, f):
            if not line.strip():
                continue
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError as e:
                field = field_at(line, b"::", e.start, names)
                raise DataError.at(
                    path, lineno, field,
                    f"byte(s) {line[e.start:e.end]!r} at column {e.start + 1} are not "
                    f"valid {encoding}",
                ) from None
            parts = text.split("::")
            if len(parts) < 3:
                raise count_error(path, lineno, line, b"::", names)
            # A title could itself contain '::'; the genres are always the last field.
            yield lineno, parse_id(path, lineno, "MovieID", parts[0]), "::".join(parts[1:-1])

    with open_binary(path) as f:
        return _titles_by_id(path, entries(f), "MovieID")


read_item_titles_1m = read_item_titles_dat


def read_item_titles_csv(path: PathLike) -> Dict[int, str]:
    """MovieLens ``movies.csv`` (UTF-8, header ``movieId,title,genres``, quoted titles)."""
    path = require_file(path, movielens_hint(None, pathlib.Path(path)))
    names = ("movieId", "title", "genres")

    def entries(f):
        header_seen = False
        for lineno, row in csv_rows(path, f, ",", names):
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
            yield lineno, parse_id(path, lineno, "movieId", row[0]), row[1]

    with open_binary(path) as f:
        return _titles_by_id(path, entries(f), "movieId")


