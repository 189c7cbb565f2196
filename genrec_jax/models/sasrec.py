"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A stack of causal softmax self-attention blocks, each followed by a point-wise feed-forward
network; every sub-layer is wrapped as ``g(x) = x + Dropout(g(LayerNorm(x)))`` (the paper's
residual form, layer norm with learned scale and bias, eps 1e-8):

    x⁰      = Dropout(item_emb[ids] · √D + pos_emb[position])      (padding rows 0)
    a       = LayerNorm(x)                                          [B, L, D]
    q, k, v = split(a W_qkv + b_qkv)                                 (H heads of D / H)
    P_h     = Dropout(softmax_j(q_h k_hᵀ / √(D/H) with j ≤ i masked)) (per head)
    x       = x + Dropout(concat_h P_h v_h)
    f       = ReLU(LayerNorm(x) W₁ + b₁)                            (W₁: D × D)
    x       = x + Dropout(Dropout(f) W₂ + b₂)                        (W₂: D × D)
    h       = LayerNorm(x) after the last block

The paper's attention has no output projection, so none is used here. Positions are learned
absolute embeddings (``max_len`` rows, row ``i`` for the ``i``-th event of a sequence).

Rating inputs (``rating_inputs=True``, used by the reward model, as in HSTU): the input also adds
``rating_emb[round(2·ratings_j)]`` (an ``[11, D]`` table on a half-star grid, row 0 = "rating
unknown"), so ``x⁰ = Dropout(item_emb[ids]·√D + pos_emb[position] + rating_emb[level])``; the
batch then needs ``ratings [B, L]``.

Usual hyper-parameters (the paper's ML-1M setting, also this module's defaults and what
``model.kind=sasrec`` gets from the shared ``model`` config block unless overridden): D = 50,
2 blocks, 1 head, dropout 0.2, ``max_len`` 200.

Differences from the paper, so that the model drops into the same losses, fused kernel and
evaluation as :class:`genrec_jax.models.hstu.HSTU`: outputs are L2-normalised user vectors
``[B, L, D]`` and logits are cosine similarities with the L2-normalised item table divided by the
temperature τ (the paper scores with a raw dot product and binary cross-entropy).

Batches follow the data convention: rows right-padded with id 0 (``lengths`` valid events), or
packed rows with ``segment_ids`` (0 = padding) and per-segment ``positions``; attention is causal
and, when packed, restricted to equal segment ids, so a valid position never sees padding or
another user. Timestamps are not used.

Initialisation: item, position (and rating) tables Glorot normal (the item table's scale taken
over its ``num_items + 1`` real rows, so it does not depend on the sharding padding); linear kernels
Glorot uniform with zero biases; layer norms scale 1, bias 0.

``precision="bf16"`` computes the blocks in bfloat16 with float32 parameters (layer-norm
statistics and the softmax in float32); the output is cast to float32 before the L2
normalisation, so logits and losses are float32 (see ``genrec_jax.models.precision``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from genrec_jax.models.hstu import (HSTU, RATING_LEVELS, attention_mask, dropout, embed_events,
                                    l2_normalize)
from genrec_jax.models.precision import check_precision, compute_dtype

__all__ = ["SASRec", "SASRecBlock", "SASRecConfig"]

_LN_EPS = 1e-8
_KERNEL_INIT = nnx.initializers.xavier_uniform()
_MASKED = -1e30
_KEYS_PER_BLOCK = 4  # attention weights, attention output, FFN hidden, FFN output


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    """Hyper-parameters of a SASRec retrieval model (defaults: the paper's ML-1M setting)."""

    num_items: int
    max_len: int = 200
    dim: int = 50
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    temperature: float = 0.05
    table_multiple: int = 1
    precision: str = "float32"
    rating_inputs: bool = False

    def __post_init__(self):
        for name in ("num_items", "max_len", "dim", "num_blocks", "num_heads", "table_multiple"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.num_heads:
            raise ValueError(f"SASRecConfig.dim={self.dim} must be divisible by "
                             f"num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"SASRecConfig.temperature must be > 0, got {self.temperature}")
        check_precision(self.precision, "SASRecConfig.precision")

    @property
    def compute_dtype(self):
        """Activation / matmul dtype: float32, or bfloat16 under ``precision="bf16"``."""
        return compute_dtype(self.precision)

    @property
    def table_size(self) -> int:
        """Rows of the item table: padding row 0, items 1..num_items, then sharding padding."""
        rows = self.num_items + 1
        return -(-rows // self.table_multiple) * self.table_multiple


def _glorot_normal(key, rows: int, shape) -> jax.Array:
    """N(0, 2 / (rows + D)) of ``shape`` (``rows`` = the fan-in the scale is taken over)."""
    return jax.random.normal(key, shape, jnp.float32) * math.sqrt(2.0 / (rows + shape[-1]))


class SASRecBlock(nnx.Module):
    """One SASRec layer: self-attention then feed-forward, each ``x + Dropout(g(LN(x)))``."""

    def __init__(self, config: SASRecConfig, *, rngs: nnx.Rngs):
        c = config
        dt = c.compute_dtype
        self.num_heads = c.num_heads
        self.dropout_rate = c.dropout

        def linear(fan_in, fan_out):
            return nnx.Linear(fan_in, fan_out, kernel_init=_KERNEL_INIT, dtype=dt,
                              param_dtype=jnp.float32, rngs=rngs)

        def norm():
            return nnx.LayerNorm(c.dim, epsilon=_LN_EPS, dtype=dt, param_dtype=jnp.float32,
                                 rngs=rngs)

        self.attn_norm = norm()
        self.qkv = linear(c.dim, 3 * c.dim)
        self.ffn_norm = norm()
        self.ffn_in = linear(c.dim, c.dim)
        self.ffn_out = linear(c.dim, c.dim)

    def attention(self, a: jax.Array, mask: jax.Array, key=None) -> jax.Array:
        """``a [B, L, D]`` (normalised input), ``mask [B or 1, L, L]`` → ``[B, L, D]``.

        ``P[b, h, i, j] = softmax_j(q_i · k_j / √(D/H))`` over the allowed ``j`` (the diagonal
        is always allowed, so no row is empty), computed in float32.
        """
        batch, length, dim = a.shape
        h = self.num_heads
        q, k, v = (t.reshape(batch, length, h, dim // h)
                   for t in jnp.split(self.qkv(a), 3, axis=-1))
        scores = jnp.einsum("bihd,bjhd->bhij", q, k).astype(jnp.float32) / math.sqrt(dim // h)
        probs = jax.nn.softmax(jnp.where(mask[:, None], scores, _MASKED), axis=-1)
        probs = dropout(probs, self.dropout_rate, key).astype(a.dtype)
        return jnp.einsum("bhij,bjhd->bihd", probs, v).reshape(batch, length, dim)

    def __call__(self, x, mask, keys=None):
        """``x [B, L, D]``, ``mask [B or 1, L, L]``, ``keys``: None or 4 dropout keys."""
        keys = keys if keys is not None else (None,) * _KEYS_PER_BLOCK
        rate = self.dropout_rate
        x = x + dropout(self.attention(self.attn_norm(x), mask, keys[0]), rate, keys[1])
        hidden = dropout(jax.nn.relu(self.ffn_in(self.ffn_norm(x))), rate, keys[2])
        return x + dropout(self.ffn_out(hidden), rate, keys[3])


class SASRec(nnx.Module):
    """SASRec next-item model with HSTU's interface: ``encode`` gives L2-normalised user vectors,
    ``logits`` scores the catalogue (cosine / τ, non-item rows at −inf)."""

    def __init__(self, config: SASRecConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = c
        self.item_emb = nnx.Param(
            _glorot_normal(rngs.params(), c.num_items + 1, (c.table_size, c.dim)))
        self.pos_emb = nnx.Param(_glorot_normal(rngs.params(), c.max_len, (c.max_len, c.dim)))
        if c.rating_inputs:
            # Ratings enter on a half-star grid: level = round(2 · rating), 0 = no rating.
            self.rating_emb = nnx.Param(_glorot_normal(rngs.params(), RATING_LEVELS,
                                                       (RATING_LEVELS, c.dim)))
        self.blocks = nnx.List([SASRecBlock(c, rngs=rngs) for _ in range(c.num_blocks)])
        self.final_norm = nnx.LayerNorm(c.dim, epsilon=_LN_EPS, dtype=c.compute_dtype,
                                        param_dtype=jnp.float32, rngs=rngs)

    def embed(self, batch, key=None) -> jax.Array:
        """[B, L] ids (and ``ratings`` with ``rating_inputs``) → [B, L, D] block inputs in the
        compute dtype (padding rows 0)."""
        c = self.config
        ids = batch["inputs"]
        if ids.shape[1] > c.max_len:
            raise ValueError(f"SASRec: batch width {ids.shape[1]} exceeds the position table "
                             f"(SASRecConfig.max_len={c.max_len})")
        return embed_events(batch, self.item_emb[...], self.pos_emb[...],
                            self.rating_emb[...] if c.rating_inputs else None,
                            dropout_rate=c.dropout, key=key, dtype=c.compute_dtype)

    def encode(self, batch, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """[B, L] batch → [B, L, D] float32 L2-normalised user vectors (position i sees events
        ≤ i of its own sequence; padding rows are 0)."""
        n_keys = 1 + _KEYS_PER_BLOCK * len(self.blocks)
        keys = (None,) * n_keys
        if dropout_key is not None:
            keys = tuple(jax.random.split(dropout_key, n_keys))
        x = self.embed(batch, keys[0])
        mask = attention_mask(batch)
        for b, block in enumerate(self.blocks):
            x = block(x, mask, keys[1 + _KEYS_PER_BLOCK * b: 1 + _KEYS_PER_BLOCK * (b + 1)])
        x = self.final_norm(x).astype(jnp.float32)
        return l2_normalize(jnp.where((batch["inputs"] != 0)[..., None], x, 0.0))

    # The scoring side is HSTU's, unchanged: it only reads ``item_emb`` and ``config``
    # (``num_items``, ``table_size``, ``temperature``), which both models define alike.
    item_vectors = HSTU.item_vectors
    valid_items = HSTU.valid_items
    logits = HSTU.logits
    last_position = HSTU.last_position
    next_item_logits = HSTU.next_item_logits
