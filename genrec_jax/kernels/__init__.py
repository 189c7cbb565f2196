"""Fused kernels: full-catalogue weighted softmax cross-entropy.

Implementations: reference, chunked, sharded, Pallas (see :mod:`.weighted_xent`).
"""
from genrec_jax.kernels.weighted_xent import IMPLS, weighted_softmax_xent

__all__ = ["IMPLS", "weighted_softmax_xent"]
