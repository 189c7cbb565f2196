"""The layout of the MovieLens zips as GroupLens publishes them.

``MOVIELENS_LAYOUT[name] = (folders, ratings_file)``: the folder names the release's zip may
extract to (the first is the one it does extract to) and the name of its ratings file. Both the
download (which needs to know when a release is already there) and the data-set registry of
:mod:`genrec_jax.data.sources` (which finds the file and picks its parser) read this table, so
neither imports the other for it.
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["MOVIELENS_LAYOUT"]

MOVIELENS_LAYOUT: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "ml-100k": (("ml-100k",), "u.data"),
    "ml-1m": (("ml-1m",), "ratings.dat"),
    "ml-10m": (("ml-10M100K", "ml-10m"), "ratings.dat"),
    "ml-20m": (("ml-20m",), "ratings.csv"),
    "ml-25m": (("ml-25m",), "ratings.csv"),
    "ml-32m": (("ml-32m",), "ratings.csv"),
    "ml-latest-small": (("ml-latest-small",), "ratings.csv"),
}
