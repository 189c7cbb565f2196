"""Deterministic, resumable, multi-process batching of fixed-shape row arrays."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, Mapping

import numpy as np

__all__ = ["Batcher"]


class Batcher:
    """Cuts a dict of row arrays (same leading size ``N``) into fixed-shape batches.

    * A global batch has ``batch_size`` rows. Epoch ``e`` visits the rows in the order of a
      permutation that depends only on ``(seed, e)`` (identity when ``shuffle=False``);
      ``batches_per_epoch = ceil(N / batch_size)``.
    * The last global batch of an epoch is filled up with padding rows: every field 0,
      so ``weights`` (and ``valid``, if present) are 0 there. Every batch has the same shape.
    * Process ``p`` of ``P`` gets rows ``[p*B/P, (p+1)*B/P)`` of each global batch, so the
      processes' shares, concatenated in process order, are the global batch.
    * ``batch_at(step)`` is the global step's batch (epoch ``step // batches_per_epoch``);
      iterating the Batcher (``next(batcher)``) walks the steps from the saved position,
      which ``state_dict()``/``load_state_dict()`` carry across a restart.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if not arrays:
            raise ValueError("Batcher needs at least one array")
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in self._arrays.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ValueError(f"all arrays need the same leading size, got {sizes}")
        self.num_rows = next(iter(sizes.values()))
        if self.num_rows == 0:
            raise ValueError("Batcher got arrays with 0 rows")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(
                f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
            )
        if batch_size % process_count:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by process_count {process_count} "
                "(each process takes an equal share of every global batch)"
            )
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.local_batch_size = self.batch_size // self.process_count
        self.batches_per_epoch = math.ceil(self.num_rows / self.batch_size)
        self._step = 0
        self._perm_epoch = None
        self._perm = None

    @property
    def step(self) -> int:
        """The global step ``next()`` will return."""
        return self._step

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            if self.shuffle:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))
                self._perm = rng.permutation(self.num_rows)
            else:
                self._perm = np.arange(self.num_rows)
            self._perm_epoch = epoch
        return self._perm

    def _batch(self, epoch: int, index: int) -> Dict[str, np.ndarray]:
        perm = self._permutation(epoch)
        lo = index * self.batch_size + self.process_index * self.local_batch_size
        rows = perm[lo:lo + self.local_batch_size]
        pad = self.local_batch_size - len(rows)
        batch = {}
        for key, arr in self._arrays.items():
            part = arr[rows]
            if pad:
                filler = np.zeros((pad,) + arr.shape[1:], dtype=arr.dtype)
                part = np.concatenate([part, filler], axis=0)
            batch[key] = part
        return batch

    def epoch_batches(self, epoch: int) -> Iterator[Dict[str, np.ndarray]]:
        """This process's share of every global batch of ``epoch``, in order."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        for index in range(self.batches_per_epoch):
            yield self._batch(epoch, index)

    def batch_at(self, step: int) -> Dict[str, np.ndarray]:
        """This process's share of global step ``step``'s batch."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, index = divmod(int(step), self.batches_per_epoch)
        return self._batch(epoch, index)

    def __iter__(self) -> "Batcher":
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        batch = self.batch_at(self._step)
        self._step += 1
        return batch

    def state_dict(self) -> Dict[str, Any]:
        """The data position (and what it depends on), for checkpoints."""
        return {
            "step": self._step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_rows": self.num_rows,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue at ``state['step']``; the order-defining settings must match."""
        for key in ("seed", "batch_size", "num_rows", "shuffle"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume: saved {key}={state[key]!r} but this Batcher has "
                    f"{key}={getattr(self, key)!r}, so the data order would differ"
                )
        step = int(state["step"])
        if step < 0:
            raise ValueError(f"saved step must be >= 0, got {step}")
        self._step = step
