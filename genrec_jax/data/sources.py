"""The data-set registry: names, where their files are found, and ``load_events``.

``load_events(name, data_dir, download=False, cache_dir=None, **options)`` reads any of
:data:`DATASETS`:

- MovieLens releases (:data:`MOVIELENS_RELEASES`: name → (folders, ratings file, parser)): the
  ratings file is looked for directly in ``data_dir`` and in each folder the release's zip
  extracts to; with ``download=True`` a missing release is fetched by
  :func:`genrec_jax.data.download.download_movielens` (the download hook).
- Amazon Review Data 2018 5-core files (:data:`AMAZON_FILES`), placed by hand.
- ``csv``: a plain ``user,item,rating,timestamp`` file (options: :func:`read_csv`'s, e.g.
  ``rating_scale=(0.5, 5), rating_step=0.5``).
- ``simulator``: the embedded simulator (options: ``SimulatorConfig`` fields).
- ``tfds:movielens/<release>-ratings``: through TensorFlow Datasets (optional extra).

Without ``data_dir`` files are looked for in ``cache_dir`` or :func:`default_data_dir`. A file
that cannot be found raises :class:`~genrec_jax.data.errors.DataError` listing the places looked
at and how to get the file.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable, Dict, Optional, Tuple

from genrec_jax.data.download import download_movielens
from genrec_jax.data.errors import DataError, PathLike
from genrec_jax.data.events import Events
from genrec_jax.data.parsers import (read_amazon_2018, read_csv, read_ml_100k, read_ml_1m,
                                     read_ml_10m, read_ml_csv)
from genrec_jax.data.releases import MOVIELENS_LAYOUT
from genrec_jax.data.simulator import Simulator, SimulatorConfig
from genrec_jax.data.tfds_bridge import load_tfds_events

__all__ = ["AMAZON_FILES", "DATASETS", "MOVIELENS_RELEASES", "default_data_dir", "load_events"]

_PARSERS: Dict[str, Callable[..., Events]] = {
    "ml-100k": read_ml_100k, "ml-1m": read_ml_1m, "ml-10m": read_ml_10m,
    "ml-20m": read_ml_csv, "ml-25m": read_ml_csv, "ml-32m": read_ml_csv,
    "ml-latest-small": read_ml_csv,
}
# name -> (folder names the zip extracts to, ratings file, parser)
MOVIELENS_RELEASES: Dict[str, Tuple[Tuple[str, ...], str, Callable[..., Events]]] = {
    name: (folders, filename, _PARSERS[name])
    for name, (folders, filename) in MOVIELENS_LAYOUT.items()
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
        return load_tfds_events(name, data_dir, download=download, **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known names: {', '.join(DATASETS)}, "
                         "or tfds:movielens/<release>-ratings")
    if name == "simulator":
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

