"""Most-popular baseline, evaluated through the same :func:`genrec_jax.eval.ranking.evaluate`.

    counts = item_counts(train_items, num_items)          # [num_items + 1], counts[0] = 0
    metrics = evaluate(popularity_score_fn(counts), eval_arrays)

Every user gets the same scores: items ordered by training count, most popular first.

Ties. :func:`target_ranks` only counts strictly higher scores, so equal counts would give every tied
item the same optimistic rank. To make ranks deterministic, ties are broken in favour of the lower item
id, i.e. the order is that of ``count_j + eps * (V - j)`` for an infinitesimal ``eps > 0``. Adding a
literal tiny offset to float32 counts loses it once ``count * 2**-24`` exceeds the offset (a few thousand
interactions on a catalogue of a few thousand items), so the stored score is instead the item's position
in that order counted from the bottom: the most popular item scores ``num_items``, the least popular 1.
This is a strictly increasing function of (count, -id), hence gives exactly the ranks of the counts with
the lower-id tie-break, and it is exact in float32 up to 2**24 items. Column 0 (padding) and columns
beyond the counts (``num_columns``) score ``-inf``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["item_counts", "popularity_scores", "popularity_score_fn"]


def item_counts(items: Any, num_items: int, *, weights: Any = None) -> np.ndarray:
    """Interaction count per dense item id: float64 ``[num_items + 1]``, entry 0 (padding) = 0.

    ``items`` holds dense ids in ``0..num_items`` (0 entries are padding and are not counted);
    ``weights`` (same shape) optionally weights each interaction.
    """
    items = np.asarray(items).reshape(-1)
    if items.size and (items.min() < 0 or items.max() > num_items):
        raise ValueError(
            f"item ids must lie in [0, {num_items}], got range [{items.min()}, {items.max()}]"
        )
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and w.shape != items.shape:
        raise ValueError(f"weights must match items ({items.shape}), got {w.shape}")
    counts = np.bincount(items.astype(np.int64), weights=w, minlength=num_items + 1)
    counts = counts.astype(np.float64)
    counts[0] = 0.0
    return counts


def popularity_scores(counts: Any, *, num_columns: int | None = None) -> np.ndarray:
    """Deterministic popularity scores, float32 ``[num_columns]`` (default ``len(counts)``).

    ``counts[j]`` is item ``j``'s popularity (``counts[0]`` ignored). Score of item ``j >= 1`` = number of
    items it beats in the order (count descending, id ascending), plus one; column 0 and columns
    ``>= len(counts)`` are ``-inf``. See the module docstring for why this replaces "count + tiny offset".
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.shape[0] < 2:
        raise ValueError(f"counts must be 1-D [num_items + 1] with num_items >= 1, got {counts.shape}")
    if not np.all(np.isfinite(counts[1:])):
        raise ValueError("counts must be finite")
    size = counts.shape[0]
    num_columns = size if num_columns is None else int(num_columns)
    if num_columns < size:
        raise ValueError(f"num_columns ({num_columns}) must be >= len(counts) ({size})")
    num_items = size - 1
    ids = np.arange(1, size)
    # lexsort: last key is primary -> count descending, then id ascending.
    order = np.lexsort((ids, -counts[1:]))
    scores = np.full(num_columns, -np.inf, dtype=np.float32)
    scores[ids[order]] = np.arange(num_items, 0, -1, dtype=np.float32)
    return scores


def popularity_score_fn(
    counts: Any, *, num_columns: int | None = None
) -> Callable[[Mapping[str, Any]], jax.Array]:
    """A jitted ``score_fn(batch) -> [B, V]`` giving every row :func:`popularity_scores` of ``counts``.

    ``B`` is read from ``batch["target"]`` (or ``batch["inputs"]`` / ``batch["lengths"]``), so the
    function plugs into :func:`genrec_jax.eval.ranking.evaluate` unchanged.
    """
    table = jnp.asarray(popularity_scores(counts, num_columns=num_columns))

    @jax.jit
    def score_fn(batch: Mapping[str, Any]) -> jax.Array:
        for key in ("target", "inputs", "lengths"):
            if key in batch:
                rows = jnp.shape(batch[key])[0]
                break
        else:
            raise ValueError("batch needs a 'target', 'inputs' or 'lengths' entry to size the scores")
        return jnp.broadcast_to(table, (rows, table.shape[0]))

    return score_fn
