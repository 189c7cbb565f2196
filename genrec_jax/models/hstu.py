"""HSTU: Hierarchical Sequential Transduction Units (Zhai et al., ICML 2024).

Each block is pre-norm, has no feed-forward network, and replaces softmax attention with a
pointwise SiLU over ``q kᵀ + rab`` divided by the padded length ``N``:

    x̃            = LayerNorm(x)                      (no affine, eps 1e-6)
    u, v, q, k   = split(SiLU(x̃ W_uvqk))              (no bias, init N(0, 0.02))
    A_h          = SiLU(q_h k_hᵀ + rab) / N · causal  (per head)
    y            = x + W_o · dropout(u ⊙ LayerNorm(concat_h A_h v_h))

``rab[i, j] = w_p[N − 1 + j − i] + w_t[bucket(t_query[i] − t[j])]`` is shared by the heads of a
block, with ``bucket(Δ) = clip(floor(ln(max(|Δ|, 1)) / 0.301), 0, num_time_buckets)``.
The query time of position ``i`` is the time of the event predicted there (the request time,
``batch["query_timestamps"]``).

``N = max_len + output_slots``, whatever the width of the batch. Like the public reference, the
padded length keeps ``output_slots`` positions after the history for the target and generated
items (the reference: 1 + 10); they are never filled here, but they set the divisor and the span
of the position tables; the default (11) is the reference's ML-1M setting.

Packed batches (several users per row, see ``genrec_jax.data.packing``) carry ``segment_ids``
and ``positions``: attention is then also restricted to equal segment ids and positions restart
per segment, which gives exactly the padded computation.

Inputs are ``item_emb[ids] · √D + pos_emb[i]`` with dropout and padding rows zeroed; outputs are
L2-normalised user vectors, and logits are cosine similarities with the L2-normalised item
table divided by the temperature τ. The modules hold parameters only: randomness (dropout)
comes in through an explicit key so the model is a pure function of ``(params, batch, key)``.

``precision="bf16"`` (see ``genrec_jax.models.precision``) runs the blocks in bfloat16 with
float32 parameters: the embedded input is cast to bfloat16, the linear layers cast their float32
weights, ``rab`` is cast before it is added, layer norms take their statistics in float32, and
the output is cast to float32 before the L2 normalisation. With ``"float32"`` every cast is the
identity, so the numbers are exactly those of the float32-only model.

Training draws R uniform negatives per position, as the public reference does
(``loss.negatives_share=1``, the default). ``negatives_share=c`` shares one draw among c
consecutive positions: the same expected loss and about half the CPU step time at c = 8 on
MovieLens 100K, but a noisier gradient that measurably lowered NDCG@10 / MRR there (README,
"Speed"), so it is an option, not the default.

Initialisation is the one the reference's parameters end up with: item embeddings truncated
N(0, 0.02); ``W_uvqk``, ``w_p``, ``w_t`` N(0, 0.02); positions N(0, 2 / (N + D)) (Glorot normal
over the ``[N, D]`` table); ``W_o`` variance 1 / fan-in with bias U(±1/√fan-in).

Parity with the public reference (checked once side by side with its code, which this
repository does not contain; curves: ``benchmarks/reference_parity.py``): with the reference's
weights, training rows and negatives, one training step gave the same loss, gradients and AdamW
update to float32 rounding (≤ 5e-7), and our training and test rows equalled its rows on
MovieLens 100K and on a sparse simulated catalogue. Deliberate remaining differences: ``W_o`` is
truncated-normal with variance 1 / fan-in where the reference draws Glorot-uniform (variance
2 / (fan-in + fan-out): the same at the default D = v_dim = 50); the random streams (initial
values, dropout masks, negatives, batch order) differ, so single runs differ by seed noise; a
target that re-appears in the input window is never excluded from the ranking (the reference
excludes it). The relative-time buckets are computed from exact integer differences, as in the
reference. On a sparse 10k-item catalogue both implementations end a 60-epoch run in one of
two states, set by the run's random draws: the second block's query/key weights stay small
(norm ≈ 1.1, higher HR@10) or grow to ≈ 2.1 with a strongly negative relative-position bias
(lower HR@10). The reference reaches either state, so does this model; the comparison is over
many runs of each (README "Results").
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from genrec_jax.models.precision import check_precision, compute_dtype

_INIT = nnx.initializers.normal(stddev=0.02)
_LN_EPS = 1e-6
_L2_EPS = 1e-6
_TIME_LOG_BASE = 0.301
RATING_LEVELS = 11  # half-star levels: 0 = no rating, 1 = 0.5 stars, ..., 10 = 5 stars


@dataclasses.dataclass(frozen=True)
class HSTUConfig:
    """Hyper-parameters of an HSTU retrieval model (defaults: the public ML-1M configuration)."""

    num_items: int
    max_len: int = 200
    dim: int = 50
    num_blocks: int = 2
    num_heads: int = 1
    qk_dim: int = 50
    v_dim: int = 50
    dropout: float = 0.2
    temperature: float = 0.05
    num_time_buckets: int = 128
    table_multiple: int = 1
    rating_inputs: bool = False
    output_slots: int = 11
    precision: str = "float32"

    def __post_init__(self):
        for name in ("num_items", "max_len", "dim", "num_blocks", "num_heads", "qk_dim", "v_dim",
                     "table_multiple"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"HSTUConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"HSTUConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"HSTUConfig.temperature must be > 0, got {self.temperature}")
        if int(self.output_slots) < 0:
            raise ValueError(f"HSTUConfig.output_slots must be >= 0, got {self.output_slots}")
        check_precision(self.precision, "HSTUConfig.precision")

    @property
    def compute_dtype(self):
        """Activation / matmul dtype: float32, or bfloat16 under ``precision="bf16"``."""
        return compute_dtype(self.precision)

    @property
    def padded_length(self) -> int:
        """N: the attention divisor and the span of the position tables."""
        return self.max_len + self.output_slots

    @property
    def table_size(self) -> int:
        """Rows of the item table: padding row 0, items 1..num_items, then sharding padding."""
        rows = self.num_items + 1
        return -(-rows // self.table_multiple) * self.table_multiple


def _uniform(bound: float):
    """Initializer drawing U(−bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def layer_norm(x: jax.Array) -> jax.Array:
    """LayerNorm over the last axis without scale or bias (eps 1e-6), computed in float32 and
    returned in the dtype of ``x``."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + _LN_EPS)).astype(x.dtype)


def l2_normalize(x: jax.Array) -> jax.Array:
    """x / max(‖x‖, eps), written so that the gradient at x = 0 is finite (zero rows occur at
    padding positions)."""
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, _L2_EPS**2))


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when ``key`` is None (evaluation) or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def embed_events(batch, item_emb, pos_emb, rating_emb=None, *, dropout_rate: float, key,
                 dtype) -> jax.Array:
    """The block inputs of HSTU and SASRec: ``item_emb[ids]·√D + pos_emb[position]`` (+
    ``rating_emb[level]`` with ``level = clip(round(2·rating), 0, RATING_LEVELS − 1)``, a
    half-star grid, 0 = no rating), dropout, padding rows zeroed, cast to ``dtype``. Positions
    are ``batch["positions"]`` in packed batches, else ``0..L−1``. ``[B, L]`` → ``[B, L, D]``."""
    ids = batch["inputs"]
    pos = pos_emb[batch["positions"]] if "positions" in batch else pos_emb[: ids.shape[1]][None]
    x = item_emb[ids] * math.sqrt(item_emb.shape[-1]) + pos
    if rating_emb is not None:
        levels = jnp.clip(jnp.round(2.0 * batch["ratings"]), 0, RATING_LEVELS - 1)
        x = x + rating_emb[levels.astype(jnp.int32)]
    x = dropout(x, dropout_rate, key)
    return jnp.where((ids != 0)[..., None], x, 0.0).astype(dtype)


def time_buckets(query_ts: jax.Array, key_ts: jax.Array, num_buckets: int) -> jax.Array:
    """bucket[b, i, j] = clip(floor(ln(max(|q_i − k_j|, 1)) / 0.301), 0, num_buckets).

    The difference is taken in the timestamps' integer dtype (exact, as the reference does in
    int64) and only then cast to float32: unix seconds (~1.5e9) cast first would be rounded to
    multiples of 128 s, which put 13% of the MovieLens 100K attention pairs (every gap under a
    few minutes, e.g. a rating session) in the wrong bucket."""
    delta = query_ts[:, :, None] - key_ts[:, None, :]
    delta = jnp.abs(delta).astype(jnp.float32)
    bucket = jnp.floor(jnp.log(jnp.maximum(delta, 1.0)) / _TIME_LOG_BASE)
    return jnp.clip(bucket, 0, num_buckets).astype(jnp.int32)


def attention_mask(batch) -> jax.Array:
    """Causal (j ≤ i), and within one segment when the batch is packed: ``[B or 1, L, L]``."""
    length = batch["inputs"].shape[1]
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))[None]
    if "segment_ids" not in batch:
        return causal
    seg = batch["segment_ids"]
    return causal & (seg[:, :, None] == seg[:, None, :])


class RelativeBias(nnx.Module):
    """rab[b, i, j] = w_p[N − 1 + j − i] + w_t[bucket(t_query[b, i] − t[b, j])].

    Computed as one gather from the outer-sum table ``W[m, k] = w_p[m] + w_t[k]``
    (``[2N − 1, buckets + 1]``, the same additions) at ``(N − 1 + j − i, bucket)``: the backward
    pass is then one scatter-add into ``W`` whose row and column sums are the gradients of
    ``w_p`` and ``w_t``, instead of a scatter for ``w_t`` plus a sum of a ``[B, L, L]``
    cotangent over the batch for ``w_p`` (the slowest op of a CPU train step).
    """

    def __init__(self, padded_length: int, num_time_buckets: int, *, rngs: nnx.Rngs):
        self.padded_length = padded_length
        self.num_time_buckets = num_time_buckets
        self.position = nnx.Param(_INIT(rngs.params(), (2 * padded_length - 1,)))
        self.time = nnx.Param(_INIT(rngs.params(), (num_time_buckets + 1,)))

    def __call__(self, buckets: jax.Array) -> jax.Array:
        """``buckets [B, L, L]`` from :func:`time_buckets` → ``rab [B, L, L]``."""
        length = buckets.shape[1]
        width = self.num_time_buckets + 1
        i = jnp.arange(length)[:, None]
        j = jnp.arange(length)[None, :]
        table = (self.position[...][:, None] + self.time[...][None, :]).reshape(-1)
        return table[(self.padded_length - 1 + j - i)[None] * width + buckets]


class HSTUBlock(nnx.Module):
    """One HSTU layer (see the module docstring for the equations)."""

    def __init__(self, config: HSTUConfig, *, rngs: nnx.Rngs):
        c = config
        self.num_heads, self.qk_dim, self.v_dim = c.num_heads, c.qk_dim, c.v_dim
        self.padded_length = c.padded_length
        self.dropout_rate = c.dropout
        width = c.num_heads * (2 * c.v_dim + 2 * c.qk_dim)
        dt = c.compute_dtype
        self.uvqk = nnx.Linear(c.dim, width, use_bias=False, kernel_init=_INIT, dtype=dt,
                               param_dtype=jnp.float32, rngs=rngs)
        fan_in = c.num_heads * c.v_dim
        self.out = nnx.Linear(fan_in, c.dim, use_bias=True, rngs=rngs, dtype=dt,
                              param_dtype=jnp.float32, bias_init=_uniform(1 / math.sqrt(fan_in)))
        self.bias = RelativeBias(c.padded_length, c.num_time_buckets, rngs=rngs)

    def __call__(self, x, mask, time_bucket, key=None):
        """``x [B, L, D]``, ``mask [B or 1, L, L]`` (who attends to whom), ``time_bucket [B, L, L]``."""
        batch, length, _ = x.shape
        h, dqk, dv = self.num_heads, self.qk_dim, self.v_dim
        uvqk = jax.nn.silu(self.uvqk(layer_norm(x)))
        u, v, q, k = jnp.split(uvqk, [h * dv, 2 * h * dv, 2 * h * dv + h * dqk], axis=-1)
        q = q.reshape(batch, length, h, dqk)
        k = k.reshape(batch, length, h, dqk)
        v = v.reshape(batch, length, h, dv)
        rab = self.bias(time_bucket).astype(x.dtype)
        scores = jnp.einsum("bihd,bjhd->bhij", q, k) + rab[:, None]
        attn = jnp.where(mask[:, None], jax.nn.silu(scores), 0.0) / self.padded_length
        mixed = jnp.einsum("bhij,bjhd->bihd", attn, v).reshape(batch, length, h * dv)
        return x + self.out(dropout(u * layer_norm(mixed), self.dropout_rate, key))


class HSTU(nnx.Module):
    """HSTU next-item model: ``encode`` gives user vectors, ``logits`` scores the catalogue."""

    def __init__(self, config: HSTUConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = c
        self.item_emb = nnx.Param(
            jax.random.truncated_normal(rngs.params(), -2.0, 2.0, (c.table_size, c.dim)) * 0.02)
        n = c.padded_length
        self.pos_emb = nnx.Param(jax.random.normal(rngs.params(), (n, c.dim))
                                 * math.sqrt(2.0 / (n + c.dim)))
        if c.rating_inputs:
            # Ratings enter on a half-star grid: level = round(2 · rating), 0 = no rating.
            self.rating_emb = nnx.Param(_INIT(rngs.params(), (RATING_LEVELS, c.dim)))
        self.blocks = nnx.List([HSTUBlock(c, rngs=rngs) for _ in range(c.num_blocks)])

    def embed(self, batch, key=None) -> jax.Array:
        """[B, L] ids → [B, L, D] block inputs in the compute dtype (padding rows 0)."""
        c = self.config
        return embed_events(batch, self.item_emb[...], self.pos_emb[...],
                            self.rating_emb[...] if c.rating_inputs else None,
                            dropout_rate=c.dropout, key=key, dtype=c.compute_dtype)

    def encode(self, batch, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """[B, L] batch → [B, L, D] L2-normalised user vectors (position i sees events ≤ i)."""
        keys = (None,) * (len(self.blocks) + 1)
        if dropout_key is not None:
            keys = tuple(jax.random.split(dropout_key, len(self.blocks) + 1))
        x = self.embed(batch, keys[0])
        mask = attention_mask(batch)
        buckets = time_buckets(batch["query_timestamps"], batch["timestamps"],
                               self.config.num_time_buckets)
        for block, key in zip(self.blocks, keys[1:]):
            x = block(x, mask, buckets, key)
        return l2_normalize(x.astype(jnp.float32))

    def item_vectors(self) -> jax.Array:
        """[V_table, D] L2-normalised item table (row 0 and rows > num_items are not items)."""
        return l2_normalize(self.item_emb[...])

    def valid_items(self) -> jax.Array:
        """[V_table] bool: True for the real items 1..num_items."""
        rows = jnp.arange(self.config.table_size)
        return (rows >= 1) & (rows <= self.config.num_items)

    def logits(self, user_vectors: jax.Array) -> jax.Array:
        """[..., D] → [..., V_table] cosine / τ, with non-item rows at −inf."""
        scores = user_vectors @ self.item_vectors().T / self.config.temperature
        return jnp.where(self.valid_items(), scores, -jnp.inf)

    def last_position(self, user_vectors: jax.Array, lengths: jax.Array) -> jax.Array:
        """[B, L, D] → [B, D] at position ``lengths − 1`` (position 0 when a row is empty)."""
        index = jnp.maximum(lengths - 1, 0)[:, None, None]
        return jnp.take_along_axis(user_vectors, index, axis=1)[:, 0]

    def next_item_logits(self, batch) -> jax.Array:
        """Scores [B, V_table] for the item following each row's last event."""
        return self.logits(self.last_position(self.encode(batch), batch["lengths"]))
