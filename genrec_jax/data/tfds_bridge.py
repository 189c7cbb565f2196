"""MovieLens through TensorFlow Datasets, as :class:`~genrec_jax.data.events.Events`.

An optional path: the core readers parse the publishers' files without TensorFlow. This bridge
is for users who already keep MovieLens prepared by TFDS (``~/tensorflow_datasets``) and want
the same events from there::

    load_tfds_events("tfds:movielens/100k-ratings")           # or via load_events(...)
    python -m experiments.pretrain \\
        --config=experiments/configs/pretrain.py:dataset=tfds:movielens/100k-ratings

Needs the ``tfds`` extra (``pip install -e .[tfds]``: tensorflow-datasets and tensorflow-cpu,
about 1.6 GB). Both are imported only when a ``tfds:`` data set is loaded.

Mapping of the TFDS features: ``user_id`` → ``user``, ``movie_id`` → ``item`` (bytes in TFDS;
``int64`` keys when every id is a non-negative integer, as with the publishers' files, else
``str``), ``user_rating`` → ``rating`` (float32), ``timestamp`` → ``timestamp`` (int64 seconds).
The events come in TFDS's stored order, which TFDS shuffles deterministically when it prepares
a data set — not the publisher's file order; only ties between equal timestamps of one user
depend on it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import numpy as np

from genrec_jax.data.errors import DataError, PathLike
from genrec_jax.data.events import Events

__all__ = ["TFDS_DATASETS", "PREFIX", "INSTALL_HINT", "load_tfds_events"]

PREFIX = "tfds:"
INSTALL_HINT = ("the tfds: data sets need TensorFlow Datasets and TensorFlow; install them "
                "with: pip install -e .[tfds]")
# name -> rating scale (whole stars for 100K/1M, half stars for the later releases)
TFDS_DATASETS = {
    "movielens/100k-ratings": (1.0, 5.0),
    "movielens/1m-ratings": (1.0, 5.0),
    "movielens/20m-ratings": (0.5, 5.0),
    "movielens/25m-ratings": (0.5, 5.0),
    "movielens/latest-small-ratings": (0.5, 5.0),
}
FEATURES = ("user_id", "movie_id", "user_rating", "timestamp")
_INT64_MAX = np.iinfo(np.int64).max


def _import_tfds():
    """``tensorflow_datasets``, or an ImportError that says how to install it."""
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415
        import tensorflow  # noqa: F401, PLC0415  (TFDS reads its files through TensorFlow)
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return tfds


def _canonical(name: str) -> str:
    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
    short = short.split(":")[0]  # a version such as movielens/100k-ratings:0.1.1 is TFDS's
    if short not in TFDS_DATASETS:
        raise ValueError(f"unknown TFDS data set {name!r}; supported: "
                         f"{', '.join(PREFIX + n for n in TFDS_DATASETS)}")
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def _keys(raw: np.ndarray) -> np.ndarray:
    """int64 keys when every id is a canonical non-negative integer that fits, else str."""
    text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw]
    if all(v.isascii() and v.isdigit() and (v == "0" or v[0] != "0")
           and (len(v) < 19 or (len(v) == 19 and int(v) <= _INT64_MAX)) for v in text):
        return np.array([int(v) for v in text], dtype=np.int64)
    out = np.empty(len(text), dtype=object)
    out[:] = text
    return out


def load_tfds_events(name: str, data_dir: Optional[PathLike] = None, *, split: str = "train",
                     download: bool = False, batch_size: int = 1 << 16) -> Events:
    """Events of a TFDS MovieLens ratings data set.

    Args:
      name: ``tfds:movielens/100k-ratings``, ``…/1m-ratings``, ``…/20m-ratings``,
        ``…/25m-ratings`` or ``…/latest-small-ratings`` (the ``tfds:`` prefix is optional).
      data_dir: the TFDS data folder (default: TFDS's own, ``~/tensorflow_datasets`` or
        ``$TFDS_DATA_DIR``).
      split: a TFDS split expression (MovieLens has only ``train``; ``train[:10%]`` works).
      download: download and prepare the data set when it is not in ``data_dir`` yet (a
        DataError otherwise, so that nothing is fetched unasked).
      batch_size: examples read per TensorFlow batch.

    Raises:
      ImportError: without tensorflow-datasets / tensorflow (``pip install -e .[tfds]``).
      ValueError: for a name that is not a MovieLens ratings data set.
      DataError: data set not prepared (and ``download`` false), empty, or with a rating
        outside its scale, a non-finite rating or a negative timestamp.
    """
    tfds_name = _canonical(name)
    scale = TFDS_DATASETS[tfds_name.split(":")[0]]
    tfds = _import_tfds()
    data_dir = os.fspath(os.path.expanduser(data_dir)) if data_dir is not None else None
    where = f"{PREFIX}{tfds_name}[{split}]" + (f" in {data_dir}" if data_dir else "")
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        if not download:
            raise DataError(
                f"{where}: not prepared in {builder.data_dir}. Pass download=True (config "
                f"download=True) to let TFDS download and prepare it, or run "
                f"`tfds build {tfds_name.split(':')[0]} --data_dir=...` yourself.",
                path=where)
        if importlib.util.find_spec("importlib_resources") is None:
            # tensorflow-datasets 4.9.10 imports it while preparing but declares it only for
            # Python < 3.9.
            raise ImportError(f"{INSTALL_HINT}; preparing a TFDS data set also needs "
                              "importlib_resources (pip install importlib_resources)")
        builder.download_and_prepare()
    decoders = tfds.decode.PartialDecoding({k: True for k in FEATURES})
    dataset = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    parts = {k: [] for k in FEATURES}
    for batch in tfds.as_numpy(dataset.batch(batch_size)):
        for k in FEATURES:
            parts[k].append(np.asarray(batch[k]))
    if not parts["user_id"]:
        raise DataError(f"{where}: no events (the split is empty)", path=where)
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    rating = cols["user_rating"].astype(np.float32)
    timestamp = cols["timestamp"].astype(np.int64)
    lo, hi = scale
    bad = ~(np.isfinite(rating) & (rating >= lo) & (rating <= hi))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: example {k}, field 'user_rating': {rating[k]!r} is outside "
                        f"the rating scale [{lo:g}, {hi:g}]", path=where, field="user_rating")
    if (timestamp < 0).any():
        k = int(np.flatnonzero(timestamp < 0)[0])
        raise DataError(f"{where}: example {k}, field 'timestamp': {timestamp[k]} is a negative "
                        "timestamp", path=where, field="timestamp")
    return Events(user=_keys(cols["user_id"]), item=_keys(cols["movie_id"]), rating=rating,
                  timestamp=timestamp, source=where, rating_scale=scale)
