"""The one exception type of the data package.

Every problem with input data (a malformed line, a value out of range, a missing or
undecodable file, a failed download) is raised as :class:`DataError`. The message names
the file (full path), the 1-based line number and the field, so that the user can open
the file at the right place, e.g.::

    /data/ml-100k/u.data line 17, field 'rating': '7' is outside the rating scale [1, 5]
"""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class DataError(ValueError):
    """Malformed, missing or unreadable input data.

    Attributes:
      path: the file concerned (``None`` when the error is not about one file).
      line: 1-based line number, or ``None``.
      field: the name of the field concerned, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Optional[PathLike] = None,
        line: Optional[int] = None,
        field: Optional[str] = None,
    ):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.field = field

    @classmethod
    def at(cls, path: PathLike, line: int, field: str, problem: str) -> "DataError":
        """An error located at ``path``, 1-based ``line`` and ``field``."""
        return cls(
            f"{os.fspath(path)} line {line}, field {field!r}: {problem}",
            path=path,
            line=line,
            field=field,
        )


def show(raw: Union[bytes, str], limit: int = 60) -> str:
    """A short, quoted rendering of a raw field value for error messages."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="backslashreplace")
    else:
        text = str(raw)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)
