"""From a config to model-ready arrays: load → clean → sequences → leave-last-out → arrays.

Every launcher goes through ``prepare_data(cfg)`` so they all see the same split.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import numpy as np

from genrec_jax.data.batching import Batcher
from genrec_jax.data.events import clean
from genrec_jax.data.packing import PackedBatcher
from genrec_jax.data.parsers import parse_rating_scale
from genrec_jax.data.sources import load_events
from genrec_jax.data.sequences import (SequenceDataset, Split, build_sequences, eval_arrays,
                                       item_popularity, leave_last_out, train_arrays)
from genrec_jax.data.simulator import Simulator, SimulatorConfig

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class PreparedData:
    dataset: SequenceDataset
    split: Split
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    valid: dict[str, np.ndarray] | None
    popularity: np.ndarray
    repairs: dict[str, int]
    simulator: Simulator | None = None

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train["inputs"]) // batch_size)

    def train_batcher(self, batch_size: int, seed: int, *, pack: bool = False,
                      num_steps: int = 0, row_multiple: int = 8, max_shapes: int = 1):
        """This process's share of deterministic shuffled global batches; with ``pack``, the
        rows are packed (see ``genrec_jax.data.packing``) for steps ``[0, num_steps)`` into at
        most ``max_shapes`` row counts."""
        kw = dict(batch_size=batch_size, seed=seed, process_index=jax.process_index(),
                  process_count=jax.process_count())
        if pack:
            return PackedBatcher(self.train, num_steps=num_steps, row_multiple=row_multiple,
                                 max_shapes=max_shapes, **kw)
        return Batcher(self.train, shuffle=True, **kw)


def simulator_config(cfg) -> SimulatorConfig:
    fields = {f.name for f in dataclasses.fields(SimulatorConfig)}
    values = {k: v for k, v in cfg.simulator.items() if k in fields}
    if "events_per_user" in values:
        values["events_per_user"] = tuple(values["events_per_user"])
    return SimulatorConfig(**values)


def load_configured_events(cfg) -> tuple[Any, Simulator | None]:
    if cfg.dataset == "simulator":
        sim = Simulator(simulator_config(cfg))
        return sim.generate(), sim
    data_dir = os.path.expanduser(str(cfg.data_dir)) if cfg.data_dir else None
    cache_dir = os.path.expanduser(str(cfg.get("cache_dir", "~/.cache/genrec_jax")))
    return load_events(cfg.dataset, data_dir, download=bool(cfg.get("download", False)),
                       cache_dir=cache_dir, **csv_options(cfg)), None


def csv_options(cfg) -> dict[str, Any]:
    """``read_csv`` options of ``dataset=csv``: the rating scale from ``data.rating_scale``
    (``lo:hi`` or ``lo:hi:step``, e.g. ``0.5:5:0.5`` or ``1:10:1``); none for other data sets."""
    if cfg.dataset != "csv":
        return {}
    spec = cfg.data.get("rating_scale", (1.0, 5.0))
    lo, hi, step = parse_rating_scale(spec, name="data.rating_scale")
    return {"rating_scale": (lo, hi), "rating_step": step}


def prepare_data(cfg) -> PreparedData:
    events, sim = load_configured_events(cfg)
    events, repairs = clean(events, min_events=int(cfg.data.min_events))
    if any(repairs.values()):
        _log.info("data repairs: %s", repairs)
    dataset = build_sequences(events)
    split = leave_last_out(dataset, validation=bool(cfg.data.validation),
                           holdout=int(cfg.data.get("holdout", 1)))
    max_len = int(cfg.data.max_len)
    exclude = str(cfg.eval.exclude)
    test = eval_arrays(split, max_len, which="test", exclude=exclude)
    valid = (eval_arrays(split, max_len, which="valid", exclude=exclude)
             if cfg.data.validation else None)
    return PreparedData(dataset=dataset, split=split, train=train_arrays(split, max_len),
                        test=test, valid=valid, popularity=item_popularity(split),
                        repairs=repairs, simulator=sim)
