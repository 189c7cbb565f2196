"""Host memory allocator settings that keep XLA:CPU's per-step temporaries off the page-fault path.

XLA:CPU allocates an executable's temporaries and outputs with ``malloc`` on every call and frees
them afterwards. With glibc's defaults every block over 32 MiB is a fresh ``mmap`` that is
unmapped again on ``free``, and each thread of XLA's pool allocates from its own arena, whose
heaps are capped at 64 MiB and fall back to ``mmap`` the same way. Every call therefore touches
its large buffers for the first time, and the kernel zero-fills them page by page: on the
MovieLens 100K pretraining step (``[rows·L, V]`` scores of 97 MB and the like) that was about
90,000 page faults, a quarter of the step time on the 2-core CPU.

:func:`retain_freed_memory` asks glibc to serve every thread from the main heap, never to
``mmap`` and not to return freed memory to the system until 2 GiB of it lie at the top of the
heap, so later steps reuse the pages of earlier ones (0 page faults per step once the heap has
grown). The price is resident memory: the heap keeps its peak extent, fragmentation included.
Measured on the 2-core CPU (README, "Speed"): MovieLens 100K pretraining, 3 epochs, 2.45 vs
3.10 s per epoch, 0.35 M vs 2.27 M page faults, peak RSS 1.53 vs 0.99 GB; the ``large`` HSTU
of ``benchmarks/hstu_throughput.py`` (D = 256, 8 blocks, batch 64, several GB per step, beyond
what the 2 GiB rule keeps) no faster and a peak RSS of 15.5 vs 8.2 GB. So it is for CPU runs
whose step works in well under 2 GiB; on accelerators host buffers are small and it changes
little. Launchers and the CPU benchmarks call it first thing (``--noretain_freed_memory``
turns it off); library code never does, since it changes the whole process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (glibc <malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
#: Free memory at the top of the heap beyond this is still returned to the system (the largest
#: value mallopt accepts; glibc stores the parameter as an int).
TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def retain_freed_memory() -> bool:
    """Sets glibc ``mallopt`` so freed memory is reused rather than unmapped (see the module
    docstring); True when applied, False where the C library is not glibc (macOS, musl), which
    is left unchanged. Idempotent. Call it before JAX runs its first computation: a thread that
    has already allocated keeps its own arena."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all(mallopt(param, value) == 1 for param, value in settings)
