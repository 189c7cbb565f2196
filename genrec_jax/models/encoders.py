"""The sequence encoders behind ``model.kind``, built from the ``model`` config block.

``kind="hstu"`` (default; also for configs saved before the key existed) gives
:class:`~genrec_jax.models.hstu.HSTU`, ``kind="sasrec"`` gives
:class:`~genrec_jax.models.sasrec.SASRec`. Both expose the same interface to the rest of the
code: ``config`` (``num_items``, ``max_len``, ``dim``, ``dropout``, ``temperature``,
``table_multiple``, ``precision``, ``table_size``), parameters ``item_emb`` / ``pos_emb``,
``encode(batch, dropout_key=None) → [B, L, D]`` float32 unit vectors, ``item_vectors()``,
``valid_items()``, ``logits``, ``last_position`` and ``next_item_logits``.

Keys of the block used by both: ``dim``, ``num_blocks``, ``num_heads``, ``dropout``,
``temperature``; HSTU only: ``qk_dim``, ``v_dim``, ``num_time_buckets``, ``output_slots``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from genrec_jax.models.hstu import HSTU, HSTUConfig
from genrec_jax.models.sasrec import SASRec, SASRecConfig

__all__ = ["ENCODER_KINDS", "EncoderConfig", "build_encoder", "encoder_config", "encoder_kind"]

ENCODER_KINDS = ("hstu", "sasrec")
EncoderConfig = HSTUConfig | SASRecConfig


def encoder_kind(model_block: Mapping[str, Any]) -> str:
    """``model_block["kind"]`` ("hstu" when absent), checked against :data:`ENCODER_KINDS`."""
    kind = str(model_block.get("kind", "hstu"))
    if kind not in ENCODER_KINDS:
        raise ValueError(f"model.kind must be one of {ENCODER_KINDS}, got {kind!r}")
    return kind


def encoder_config(model_block: Mapping[str, Any], num_items: int, *, max_len: int,
                   table_multiple: int = 1, precision: str = "float32") -> EncoderConfig:
    """The dataclass config of the encoder a ``model`` block describes.

    ``max_len`` is ``data.max_len``; ``table_multiple`` the ``model`` mesh size (the item table
    is padded to a multiple of it); ``precision`` the top-level ``precision`` key. A block
    without ``output_slots`` (runs saved before that key existed) gets HSTU's N = max_len.
    """
    m = model_block
    shared = dict(num_items=int(num_items), max_len=int(max_len), dim=int(m["dim"]),
                  num_blocks=int(m["num_blocks"]), num_heads=int(m["num_heads"]),
                  dropout=float(m["dropout"]), temperature=float(m["temperature"]),
                  table_multiple=int(table_multiple), precision=str(precision))
    if encoder_kind(m) == "sasrec":
        return SASRecConfig(**shared)
    return HSTUConfig(**shared, qk_dim=int(m["qk_dim"]), v_dim=int(m["v_dim"]),
                      num_time_buckets=int(m["num_time_buckets"]),
                      output_slots=int(m.get("output_slots", 0)))


def build_encoder(config: EncoderConfig, rngs: nnx.Rngs) -> HSTU | SASRec:
    """The module for ``config``: HSTU for :class:`HSTUConfig`, SASRec for :class:`SASRecConfig`."""
    if isinstance(config, SASRecConfig):
        return SASRec(config, rngs=rngs)
    if isinstance(config, HSTUConfig):
        return HSTU(config, rngs=rngs)
    raise TypeError("build_encoder: expected HSTUConfig or SASRecConfig, got "
                    f"{type(config).__name__}")
