"""Small file helpers with no dependency on the rest of ``genrec_jax``.

``write_json(path, obj)`` is the one JSON writer of the project (metrics, configs, reports,
benchmark results): the text goes to ``path + ".tmp"`` first and is then renamed over ``path``
(``os.replace``, atomic on POSIX), so a reader never sees half a file and a crash leaves the
previous version in place (and no temporary file behind).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

__all__ = ["write_json"]


def _nonfinite_to_null(obj: Any) -> Any:
    """NaN/±inf floats → None, recursively through dicts, lists and tuples."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nonfinite_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nonfinite_to_null(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True,
               nonfinite_as_null: bool = False) -> str:
    """Writes ``obj`` as indented JSON (2 spaces, trailing newline) atomically; returns the path.

    Args:
      path: the file; its folder is created when missing.
      obj: JSON-serialisable data; other objects with ``__float__`` (numpy scalars) are written
        as floats.
      sort_keys: sort dictionary keys (the default) or keep their insertion order.
      nonfinite_as_null: write NaN / ±inf Python floats as ``null`` (strict JSON) instead of the
        ``NaN`` / ``Infinity`` tokens of Python's ``json`` module.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if nonfinite_as_null:
        obj = _nonfinite_to_null(obj)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=sort_keys, default=float)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
