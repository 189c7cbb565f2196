"""Data: parsers of the publishers' files, the data-set registry, cleaning, sequences, splits,
batching, simulator.

Pure numpy and the standard library; importing it does not import JAX.
"""

from genrec_jax.data.batching import Batcher
from genrec_jax.data.download import download_movielens, fetch_and_extract
from genrec_jax.data.errors import DataError
from genrec_jax.data.events import Events, clean
from genrec_jax.data.parsers import (
    parse_rating_scale,
    read_amazon_2018,
    read_csv,
    read_ml_100k,
    read_ml_10m,
    read_ml_1m,
    read_ml_csv,
    write_csv,
)
from genrec_jax.data.sequences import (
    SequenceDataset,
    Split,
    build_sequences,
    eval_arrays,
    item_popularity,
    leave_last_out,
    load_sequences,
    train_arrays,
    training_mask,
)
from genrec_jax.data.simulator import Simulator, SimulatorConfig
from genrec_jax.data.sources import DATASETS, default_data_dir, load_events
from genrec_jax.data.titles import (
    read_item_titles_100k,
    read_item_titles_1m,
    read_item_titles_csv,
    read_item_titles_dat,
)

__all__ = [
    "Batcher",
    "DATASETS",
    "DataError",
    "Events",
    "SequenceDataset",
    "Simulator",
    "SimulatorConfig",
    "Split",
    "build_sequences",
    "clean",
    "default_data_dir",
    "download_movielens",
    "eval_arrays",
    "fetch_and_extract",
    "item_popularity",
    "leave_last_out",
    "load_events",
    "load_sequences",
    "parse_rating_scale",
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
    "train_arrays",
    "training_mask",
    "write_csv",
]
