"""Tile sizes for the Pallas softmax cross-entropy kernels: a static table and an autotuner.

A :class:`Tiles` is ``(block_n, block_v, num_warps, num_stages, v_splits)``:

* ``block_n``: query rows per program (power of two >= 16);
* ``block_v``: item rows per tile of the inner loop (power of two >= 16);
* ``num_warps`` / ``num_stages``: Triton compiler parameters (ignored in interpret mode);
* ``v_splits``: the item table is cut into this many contiguous ranges, each handled by its own
  program of the forward and ``dh`` kernels (grid ``[N / block_n, v_splits]``), so that a batch
  with few query blocks still fills the GPU; partial statistics are combined outside the kernel.

:func:`select_tiles` picks the tiles for one shape:

* with autotuning off (``GENREC_PALLAS_AUTOTUNE=0``, or in interpret mode unless the variable is
  ``1``): :func:`default_tiles`, a lookup in ``DEFAULT_TILES`` by (device family, dtype), clamped
  to the shape;
* otherwise the candidates of :func:`candidate_tiles` are run on inputs of the actual shape
  (forward + backward, via a caller-supplied ``run(tiles)`` thunk factory), timed with ``timer``,
  and the fastest kept. The choice is cached in-process by ``(N, V, D, dtype, device kind)``, so
  each shape is tuned once per process.

Nothing here imports Pallas: the kernels live in :mod:`genrec_jax.kernels.pallas_xent`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

AUTOTUNE_ENV = "GENREC_PALLAS_AUTOTUNE"
MIN_BLOCK = 16
# Programs per streaming multiprocessor the forward / dh grids aim for (v_splits follows from it).
_PROGRAMS_PER_SM = 2
# A split keeps at least this many item tiles, so its partial result is worth the combine step.
_MIN_TILES_PER_SPLIT = 8


@dataclasses.dataclass(frozen=True)
class Tiles:
    """Tile sizes of one kernel launch (see module docstring)."""

    block_n: int
    block_v: int
    num_warps: int = 4
    num_stages: int = 2
    v_splits: int = 1

    def __post_init__(self):
        for name in ("block_n", "block_v"):
            x = getattr(self, name)
            if x < MIN_BLOCK or x & (x - 1):
                raise ValueError(f"Tiles.{name} must be a power of two >= {MIN_BLOCK}, got {x}")
        if self.v_splits < 1:
            raise ValueError(f"Tiles.v_splits must be >= 1, got {self.v_splits}")


# (device family, dtype name) -> (block_n, block_v, num_warps, num_stages). "cpu" serves interpret
# mode (no compiler: the figures only set the loop structure); "gpu" any CUDA device not listed.
DEFAULT_TILES: Dict[Tuple[str, str], Tuple[int, int, int, int]] = {
    ("cpu", "float32"): (64, 128, 4, 2),
    ("cpu", "bfloat16"): (64, 128, 4, 2),
    ("gpu", "float32"): (64, 64, 4, 2),
    ("gpu", "bfloat16"): (64, 128, 4, 3),
    ("nvidia h100", "float32"): (64, 64, 4, 3),
    ("nvidia h100", "bfloat16"): (128, 64, 8, 3),
    ("nvidia h200", "float32"): (64, 64, 4, 3),
    ("nvidia h200", "bfloat16"): (128, 64, 8, 3),
}

# Autotune candidates (block_n, block_v, num_warps, num_stages), tried in this order.
CANDIDATES: Tuple[Tuple[int, int, int, int], ...] = (
    (64, 64, 4, 2),
    (64, 64, 4, 3),
    (64, 128, 4, 2),
    (128, 64, 8, 2),
    (128, 128, 8, 2),
    (32, 128, 4, 2),
)

_CACHE: Dict[tuple, "TuneResult"] = {}


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The chosen tiles of one cache key and how they were chosen."""

    tiles: Tiles
    source: str                     # "table" or "autotune"
    timings_s: Tuple[Tuple[Tiles, float], ...] = ()  # (candidate, seconds; inf if it failed)
    tune_s: float = 0.0             # wall time spent tuning


def pow2_at_least(x: int, floor: int = MIN_BLOCK) -> int:
    """Smallest power of two >= max(x, floor)."""
    return max(floor, 1 << max(0, int(x) - 1).bit_length())


def device_family(device_kind: str) -> str:
    """``"cpu"`` for host platforms, the lower-cased kind if it is in the table, else ``"gpu"``."""
    kind = (device_kind or "cpu").strip().lower()
    if kind == "cpu" or kind.startswith("cpu"):
        return "cpu"
    for fam, _ in DEFAULT_TILES:
        if fam not in ("cpu", "gpu") and kind.startswith(fam):
            return fam
    return "gpu"


def v_splits_for(n: int, v: int, block_n: int, block_v: int, sm_count: Optional[int]) -> int:
    """Item-range splits so the ``[N / block_n, splits]`` grid has ~2 programs per SM.

    ``1`` without an SM count (CPU / interpret mode). A split keeps >= 8 item tiles.
    """
    if not sm_count:
        return 1
    q_blocks = -(-n // block_n)
    tiles = -(-v // block_v)
    want = -(-_PROGRAMS_PER_SM * sm_count // q_blocks)
    return max(1, min(want, tiles // _MIN_TILES_PER_SPLIT))


def clamp(tiles: Tiles, n: int, v: int, sm_count: Optional[int]) -> Tiles:
    """Shrinks blocks to the padded shape (tiny N or V) and sets ``v_splits`` for it."""
    bn = min(tiles.block_n, pow2_at_least(n))
    bv = min(tiles.block_v, pow2_at_least(v))
    return dataclasses.replace(tiles, block_n=bn, block_v=bv,
                               v_splits=v_splits_for(n, v, bn, bv, sm_count))


def default_tiles(n: int, v: int, d: int, dtype: str, device_kind: str,
                  sm_count: Optional[int] = None) -> Tiles:
    """The table's tiles for ``(device family, dtype)``, clamped to the shape.

    Unknown dtypes use the float32 row; unknown GPU kinds the ``"gpu"`` rows.
    """
    del d  # the table does not depend on D (padded to a power of two >= 16)
    fam = device_family(device_kind)
    key = (fam, str(dtype))
    if key not in DEFAULT_TILES:
        key = (fam, "float32")
    return clamp(Tiles(*DEFAULT_TILES[key]), n, v, sm_count)


def candidate_tiles(n: int, v: int, sm_count: Optional[int],
                    candidates: Sequence[Tuple[int, int, int, int]] = CANDIDATES) -> List[Tiles]:
    """The distinct autotune candidates after clamping to the shape, in order."""
    out: List[Tiles] = []
    for c in candidates:
        t = clamp(Tiles(*c), n, v, sm_count)
        if t not in out:
            out.append(t)
    return out


def autotune_enabled(interpret: bool) -> bool:
    """``GENREC_PALLAS_AUTOTUNE``: ``0`` off, ``1`` on (even in interpret mode); unset: on when
    the kernels are compiled (GPU), off in interpret mode."""
    flag = os.environ.get(AUTOTUNE_ENV, "").strip().lower()
    if flag in ("0", "false", "off", "no"):
        return False
    if flag in ("1", "true", "on", "yes"):
        return True
    if flag:
        raise ValueError(f"{AUTOTUNE_ENV} must be 0 or 1, got {os.environ[AUTOTUNE_ENV]!r}")
    return not interpret


def wall_timer(thunk: Callable[[], object], *, reps: int = 3) -> float:
    """Seconds per call of ``thunk`` (which must block on its result): one untimed call (compile
    and warm-up), then the median of ``reps`` timed calls."""
    thunk()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        thunk()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def cache_key(n: int, v: int, d: int, dtype: str, device_kind: str) -> tuple:
    return (int(n), int(v), int(d), str(dtype), str(device_kind))


def cached() -> Dict[tuple, TuneResult]:
    """A copy of the in-process cache (``cache_key(...) -> TuneResult``)."""
    return dict(_CACHE)


def clear_cache() -> None:
    _CACHE.clear()


def select_tiles(n: int, v: int, d: int, dtype: str, *, device_kind: str, interpret: bool,
                 make_runner: Optional[Callable[[Tiles], Callable[[], object]]] = None,
                 sm_count: Optional[int] = None, autotune: Optional[bool] = None,
                 timer: Optional[Callable[[Callable[[], object]], float]] = None,
                 candidates: Sequence[Tuple[int, int, int, int]] = CANDIDATES) -> TuneResult:
    """Tiles for one shape: a cached autotune result, else the table or a fresh autotune.

    Args:
      n, v, d, dtype, device_kind: the cache key (``dtype`` a name such as ``"float32"``).
      interpret: kernels run in interpret mode (autotune then off unless forced).
      make_runner: ``tiles -> thunk``; the thunk runs forward + backward once on inputs of this
        shape with those tiles and blocks on the result. Needed when autotuning.
      sm_count: streaming multiprocessors of the device (sets ``v_splits``); None on CPU.
      autotune: overrides :func:`autotune_enabled`.
      timer: ``thunk -> seconds`` (default :func:`wall_timer`); tests pass a fake one.
      candidates: ``(block_n, block_v, num_warps, num_stages)`` tuples to try.

    A candidate whose thunk raises (e.g. a Triton compile failure: too much shared memory) is
    recorded with time ``inf`` and skipped; if every candidate fails the last error is raised.
    """
    key = cache_key(n, v, d, dtype, device_kind)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    tune = autotune_enabled(interpret) if autotune is None else bool(autotune)
    if not tune:  # a table lookup is cheap: not cached, so toggling the variable takes effect
        return TuneResult(default_tiles(n, v, d, dtype, device_kind, sm_count), "table")
    if make_runner is None:
        raise ValueError("select_tiles: autotuning needs make_runner (tiles -> thunk)")
    timer = wall_timer if timer is None else timer
    t0 = time.perf_counter()
    timings: List[Tuple[Tiles, float]] = []
    last_error: Optional[BaseException] = None
    for tiles in candidate_tiles(n, v, sm_count, candidates):
        try:
            seconds = float(timer(make_runner(tiles)))
        except Exception as e:  # noqa: BLE001 (a failing candidate is skipped, not fatal)
            last_error = e
            seconds = math.inf
        timings.append((tiles, seconds))
    finite = [(t, s) for t, s in timings if math.isfinite(s)]
    if not finite:
        raise RuntimeError(f"every Pallas tile candidate failed for key {key}") from last_error
    best = min(finite, key=lambda ts: ts[1])[0]
    result = TuneResult(best, "autotune", tuple(timings), time.perf_counter() - t0)
    _CACHE[key] = result
    return result
