"""Reward model: a sequence encoder (HSTU or SASRec) over the rated history and a head that
predicts a rating.

    config = RewardConfig(HSTUConfig(num_items=1682), rating_scale=(1.0, 5.0))
    config = RewardConfig(SASRecConfig(num_items=1682, precision="bf16"))   # or SASRec, bf16
    model = RewardModel(config, rngs=nnx.Rngs(0))
    r_pos = model.predict_positions(batch)          # [B, L] rating of batch["targets"] at each i
    r_new = model.score(batch, items)               # [B, K] ratings of candidates after the history

Encoder. The project's encoders, not copies, chosen by the type of ``RewardConfig.encoder``
(``model.kind`` of an experiment config): ``HSTU(rating_inputs=True)`` for an
:class:`HSTUConfig`, ``SASRec(rating_inputs=True)`` for a :class:`SASRecConfig`. In both the
input at position ``j`` is ``item_emb[inputs_j]·√D + pos_emb[j] + rating_emb[round(2·ratings_j)]``;
causal attention makes the user vector ``h_i`` (L2-normalised, ``[D]``) a function of events
``0..i`` and of their ratings only. ``ratings_j = 0`` means "rating unknown" (used for events
whose rating is held out). With the encoder's ``precision="bf16"`` the encoder computes in
bfloat16 with float32 parameters (``genrec_jax.models.precision``); its user vectors leave it as
float32, and the head below, the predicted ratings and the losses are float32 in both modes.

Head. For position ``i`` (its user vector ``h_i``) and a candidate item ``c`` with the encoder's
tied, L2-normalised item vector ``e_c`` (vectors below are scaled by √D to unit-size entries):

    f_i    = [ (m̄_i − mid)/half, 1[n_i > 0], log(1+n_i)/log(1+L) ]      running user statistics
    z_i    = W_z Σ_{j ≤ i} (r̃_j − m̃_i) e_j / √(n_i + 1)                 rated-history factor
    t_i(c) = per head k: [ Σ_j α_jk (r̃_j − m̃_i), Σ_j α_jk ],  α_·k = softmax over
             {j ≤ i rated} ∪ {null} of ⟨W_q^k e_c, W_k^k e_j⟩/√d_t (null logit 0)
    x      = dropout([ h_i, e_c, h_i ⊙ e_c, f_i, t_i(c), z_i ⊙ e_c, ⟨z_i, e_c⟩ ])
    z      = W₂ SiLU(W₁ x + b₁) + b₂ + g · item_bias[c]                   ([out])

``n_i`` is the number of rated events at positions ``≤ i``, ``m̄_i`` their mean rating, ``r̃``
and ``m̃`` ratings and mean mapped to [−1, 1] (``mid``/``half``: centre and half-width of
``[lo, hi]``). Why these inputs besides the encoder's user vector: HSTU's attention, divided
by the padded length, represents a running mean poorly (``f``); ``z_i`` is the asymmetric-SVD user
factor ("how the user rated items along each latent direction"), ``t_i(c)`` a candidate-aware
(DIN-style) pooling ("how the user rated items like c") — on the simulator, whose true rating is
mostly a user·item affinity, the model stayed at the bias baselines' error without them. All of
them use events ``≤ i`` only. The per-item bias is stored divided by ``g = bias_gain`` (10):
with Adam every parameter moves about ``lr`` per step, and item biases of ±1 star would otherwise
need ~1000 steps. ``b₂`` starts at the training ratings' prior (``rating_prior``, class
frequencies) when given. Dropout: the encoder's (``dropout``) and ``head_dropout`` on ``x``.

Two heads:

- ``head="regression"``: ``out = 1``, ``r̂ = lo + (hi − lo)·σ(z)``; loss ``(r̂ − r)²``.
- ``head="ordinal"``: ``out = K`` scale bins ``v_k = lo + k·step`` (K = 5 on a 1–5 star scale);
  ``p = softmax(z)``, ``r̂ = Σ_k p_k v_k``; loss = cross-entropy of the bin
  ``round((r − lo)/step)``.

Both predictions lie in ``[lo, hi]`` by construction. Losses are per position; the mask is
``batch["weights"] > 0`` (positions without a target, held-out events and, in an ensemble, users
outside a member's bootstrap half weigh 0). Rows hold one user each (no packed batches).

Head choice: ``"regression"`` (the default). Measured with ``python -m experiments.reward``
(HSTU encoder, float32; defaults: M = 5, 8 epochs, 3 seeds; ``reward.head=`` overridden), ensemble mean, mean over seeds;
RMSE / MAE on (a) each user's last event, RMSE / MAE / within-user pairwise accuracy on (b) the
random 10 % of training events held out, and on the simulator RMSE against the true rating r*:

    simulator  regression  (a) 0.991 / 0.794   (b) 1.017 / 0.807 / 0.614   r* (a) 0.873 (b) 0.887
               ordinal     (a) 1.017 / 0.817   (b) 1.031 / 0.821 / 0.595   r* (a) 0.903 (b) 0.905
    ml-100k    regression  (a) 1.009 / 0.787   (b) 0.943 / 0.740 / 0.709
               ordinal     (a) 1.008 / 0.788   (b) 0.941 / 0.740 / 0.712

(seed std 0.002–0.009 RMSE). On ml-100k the two heads tie (every difference is below one seed
std); on the simulator the regression head is better on every metric, by about 2 (b) to 5 (a)
seed stds in RMSE — the simulator's rating is mostly a smooth user·item affinity, which the
squared-error head appears to pick up faster in the 96 steps of training. It also has one output
instead of K.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from genrec_jax.models.encoders import EncoderConfig, build_encoder
from genrec_jax.models.hstu import HSTUConfig, dropout
from genrec_jax.models.sasrec import SASRecConfig

HEADS = ("regression", "ordinal")
ENCODER_CONFIGS = (HSTUConfig, SASRecConfig)
_CONFIG_OF_KIND = {"hstu": HSTUConfig, "sasrec": SASRecConfig}
NUM_HISTORY_FEATURES = 3
_INIT = nnx.initializers.normal(stddev=0.02)


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Hyper-parameters of a reward model: the ``encoder`` and the rating head.

    ``encoder`` is an :class:`HSTUConfig` or a :class:`SASRecConfig` (its ``precision`` is the
    encoder's compute precision); its ``rating_inputs`` is always on (set here if the given
    config has it off), since the encoder reads the history's ratings. ``max_len`` is the
    encoder's (the window the model scores).
    """

    encoder: EncoderConfig
    rating_scale: tuple[float, float] = (1.0, 5.0)
    rating_step: float = 1.0
    head: str = "regression"
    hidden_dim: int = 64
    rating_prior: tuple[float, ...] = ()
    bias_gain: float = 10.0
    target_heads: int = 4
    target_dim: int = 8
    history_factor: bool = True
    head_dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.encoder, ENCODER_CONFIGS):
            raise TypeError(f"RewardConfig.encoder must be an HSTUConfig or a SASRecConfig, got "
                            f"{type(self.encoder).__name__}")
        if not self.encoder.rating_inputs:
            object.__setattr__(self, "encoder",
                               dataclasses.replace(self.encoder, rating_inputs=True))
        object.__setattr__(self, "rating_scale", tuple(float(v) for v in self.rating_scale))
        object.__setattr__(self, "rating_prior", tuple(float(v) for v in self.rating_prior))
        if self.head not in HEADS:
            raise ValueError(f"RewardConfig.head must be one of {HEADS}, got {self.head!r}")
        lo, hi = self.rating_scale
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"RewardConfig.rating_scale must be (lo, hi) with lo < hi, "
                             f"got {self.rating_scale}")
        if lo <= 0:
            raise ValueError(f"RewardConfig.rating_scale lo must be > 0 (0 encodes 'no rating' "
                             f"in the encoder's rating input), got {lo}")
        if not self.rating_step > 0:
            raise ValueError(f"RewardConfig.rating_step must be > 0, got {self.rating_step}")
        bins = (hi - lo) / self.rating_step
        if abs(bins - round(bins)) > 1e-6:
            raise ValueError(f"RewardConfig.rating_step {self.rating_step} must divide the scale "
                             f"width {hi - lo}")
        if self.rating_prior and (len(self.rating_prior) != self.num_classes
                                  or min(self.rating_prior) < 0 or sum(self.rating_prior) <= 0):
            raise ValueError(f"RewardConfig.rating_prior must hold {self.num_classes} "
                             f"non-negative class frequencies, got {self.rating_prior}")
        if not self.bias_gain > 0:
            raise ValueError(f"RewardConfig.bias_gain must be > 0, got {self.bias_gain}")
        if int(self.target_heads) < 0 or int(self.target_dim) < 1:
            raise ValueError(f"RewardConfig.target_heads must be >= 0 and target_dim >= 1, got "
                             f"{self.target_heads}, {self.target_dim}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"RewardConfig.head_dropout must be in [0, 1), got "
                             f"{self.head_dropout}")
        if int(self.hidden_dim) < 1:
            raise ValueError(f"RewardConfig.hidden_dim must be >= 1, got {self.hidden_dim}")

    @property
    def kind(self) -> str:
        """The encoder kind: ``"hstu"`` or ``"sasrec"`` (``model.kind``)."""
        return "sasrec" if isinstance(self.encoder, SASRecConfig) else "hstu"

    @property
    def max_len(self) -> int:
        """The encoder's window: rows are scored at exactly this width."""
        return self.encoder.max_len

    @property
    def num_classes(self) -> int:
        lo, hi = self.rating_scale
        return int(round((hi - lo) / self.rating_step)) + 1

    @property
    def num_outputs(self) -> int:
        return 1 if self.head == "regression" else self.num_classes

    def class_values(self) -> jax.Array:
        """[K] ratings of the ordinal head's bins: lo, lo + step, …, hi."""
        lo = self.rating_scale[0]
        return lo + self.rating_step * jnp.arange(self.num_classes, dtype=jnp.float32)

    def initial_output_bias(self) -> jax.Array:
        """[out] output bias at init: the prior's mean rating (regression, as a logit) or its
        log class frequencies (ordinal); zeros without a prior."""
        if not self.rating_prior:
            return jnp.zeros((self.num_outputs,), jnp.float32)
        p = jnp.asarray(self.rating_prior, jnp.float32)
        p = jnp.maximum(p / jnp.sum(p), 1e-4)
        if self.head == "ordinal":
            return jnp.log(p / jnp.sum(p))
        lo, hi = self.rating_scale
        frac = jnp.clip((jnp.sum(p * self.class_values()) / jnp.sum(p) - lo) / (hi - lo),
                        1e-3, 1 - 1e-3)
        return jnp.log(frac / (1 - frac))[None]

    def to_dict(self) -> dict:
        """Plain JSON-able dict; the encoder nested under ``"encoder"`` with its ``"kind"``."""
        d = dataclasses.asdict(self)
        d["encoder"] = {"kind": self.kind, **d["encoder"]}
        d["rating_scale"] = list(d["rating_scale"])
        d["rating_prior"] = list(d["rating_prior"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RewardConfig":
        """Inverse of :meth:`to_dict`. An encoder without ``kind`` is an HSTU and one without
        ``precision`` float32 (ensembles saved before SASRec and bf16 existed). Also reads the
        flat form saved before the encoder was nested (encoder fields beside the head's; without
        ``output_slots`` it means 0, the padded length then being ``max_len``). Unknown keys are
        ignored; an unknown ``kind`` raises a ValueError naming it."""
        head_fields = {f.name for f in dataclasses.fields(cls)} - {"encoder"}
        if "encoder" in d:
            enc = dict(d["encoder"])
        else:  # ensembles saved before the encoder was nested
            hstu_fields = {f.name for f in dataclasses.fields(HSTUConfig)}
            enc = {"output_slots": 0, **{k: v for k, v in d.items() if k in hstu_fields}}
        kind = str(enc.get("kind", "hstu"))
        if kind not in _CONFIG_OF_KIND:
            raise ValueError(f"reward config: encoder kind must be one of "
                             f"{tuple(_CONFIG_OF_KIND)}, got {kind!r}")
        enc_cls = _CONFIG_OF_KIND[kind]
        enc_fields = {f.name for f in dataclasses.fields(enc_cls)}
        encoder = enc_cls(**{k: v for k, v in enc.items() if k in enc_fields})
        return cls(encoder=encoder, **{
            k: (tuple(v) if k in ("rating_scale", "rating_prior") else v)
            for k, v in d.items() if k in head_fields})


def history_features(batch, config: RewardConfig) -> jax.Array:
    """[B, L, 3] running statistics of the rated events at positions ≤ i (see module docstring).

    Rows hold one user each (packed batches with ``segment_ids`` are not supported)."""
    if "segment_ids" in batch:
        raise ValueError("RewardModel does not support packed batches (segment_ids): the running "
                         "rating statistics would cross users")
    ratings = batch["ratings"].astype(jnp.float32)
    rated = (batch["inputs"] != 0) & (ratings > 0)
    count = jnp.cumsum(rated.astype(jnp.float32), axis=1)
    total = jnp.cumsum(jnp.where(rated, ratings, 0.0), axis=1)
    lo, hi = config.rating_scale
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    mean = jnp.where(count > 0, total / jnp.maximum(count, 1.0), mid)
    length = ratings.shape[1]
    return jnp.stack([(mean - mid) / half, (count > 0).astype(jnp.float32),
                      jnp.log1p(count) / math.log1p(length)], axis=-1)


class RewardModel(nnx.Module):
    """Encoder (HSTU or SASRec) with rating inputs + a rating head (parameters only, no RNG
    state)."""

    def __init__(self, config: RewardConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = c
        self.encoder = build_encoder(c.encoder, rngs)
        width = 3 * c.encoder.dim + NUM_HISTORY_FEATURES + 2 * c.target_heads
        if c.history_factor:
            width += c.encoder.dim + 1
            self.factor = nnx.Linear(c.encoder.dim, c.encoder.dim, use_bias=False, rngs=rngs,
                                     kernel_init=nnx.initializers.lecun_normal())
        if c.target_heads:
            att = c.target_heads * c.target_dim
            self.target_q = nnx.Linear(c.encoder.dim, att, use_bias=False, rngs=rngs,
                                       kernel_init=nnx.initializers.lecun_normal())
            self.target_k = nnx.Linear(c.encoder.dim, att, use_bias=False, rngs=rngs,
                                       kernel_init=nnx.initializers.lecun_normal())
        self.hidden = nnx.Linear(width, c.hidden_dim, kernel_init=nnx.initializers.lecun_normal(),
                                 rngs=rngs)
        self.output = nnx.Linear(c.hidden_dim, c.num_outputs, kernel_init=_INIT, rngs=rngs)
        self.output.bias[...] = c.initial_output_bias()
        self.item_bias = nnx.Param(jnp.zeros((c.encoder.table_size, c.num_outputs), jnp.float32))

    # ------------------------------------------------------------------ head

    def head_outputs(self, user_vecs: jax.Array, feats: jax.Array, items: jax.Array,
                     factor: jax.Array | None = None, key: jax.Array | None = None) -> jax.Array:
        """``user_vecs [..., D]``, ``feats [..., F]``, ``items [...]`` and (with
        ``history_factor``) ``factor [..., D]`` → raw outputs ``[..., out]``."""
        d = self.config.encoder.dim
        e = self.encoder.item_vectors()[items]
        parts = [math.sqrt(d) * user_vecs, math.sqrt(d) * e, d * user_vecs * e, feats]
        if factor is not None:
            ze = math.sqrt(d) * factor * e
            parts += [ze, jnp.sum(ze, axis=-1, keepdims=True)]
        x = dropout(jnp.concatenate(parts, axis=-1), self.config.head_dropout, key)
        bias = self.config.bias_gain * self.item_bias[...][items]
        return self.output(jax.nn.silu(self.hidden(x))) + bias

    def history_factor(self, batch, user_mean: jax.Array) -> jax.Array | None:
        """``[B, L, D]`` user factor from the rated history (asymmetric-SVD style):
        ``W_z Σ_{j ≤ i} (r̃_j − m̃_i) e_j / √(n_i + 1)`` with ``r̃`` the scaled ratings, ``m̃_i``
        their running mean and ``e_j`` the item vectors (× √D); None when disabled."""
        c = self.config
        if not c.history_factor:
            return None
        inputs = batch["inputs"]
        ratings = batch["ratings"].astype(jnp.float32)
        rated = ((inputs != 0) & (ratings > 0)).astype(jnp.float32)
        lo, hi = c.rating_scale
        scaled = (ratings - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        e = math.sqrt(c.encoder.dim) * self.encoder.item_vectors()[inputs] * rated[..., None]
        weighted = jnp.cumsum(scaled[..., None] * e, axis=1)
        total = jnp.cumsum(e, axis=1)
        count = jnp.cumsum(rated, axis=1)
        z = (weighted - user_mean[..., None] * total) / jnp.sqrt(count + 1.0)[..., None]
        return self.factor(z)

    def rating_from_outputs(self, raw: jax.Array) -> jax.Array:
        """Raw head outputs ``[..., out]`` → predicted ratings ``[...]`` in ``[lo, hi]``."""
        c = self.config
        lo, hi = c.rating_scale
        if c.head == "regression":
            return lo + (hi - lo) * jax.nn.sigmoid(raw[..., 0])
        return jax.nn.softmax(raw, axis=-1) @ c.class_values()

    def rating_class(self, ratings: jax.Array) -> jax.Array:
        """The ordinal head's bin of each rating (clipped to the scale)."""
        c = self.config
        k = jnp.round((ratings - c.rating_scale[0]) / c.rating_step)
        return jnp.clip(k, 0, c.num_classes - 1).astype(jnp.int32)

    # ------------------------------------------------------------------ public API

    def target_features(self, batch, items: jax.Array, query_pos: jax.Array,
                        user_mean: jax.Array) -> jax.Array:
        """Candidate-aware pooling of the history's ratings: ``[B, Q, 2·heads]``.

        ``items [B, Q]`` candidates; query q may look at the rated events ``j ≤ query_pos[b, q]``;
        ``user_mean [B, Q]`` the scaled running mean there. Per head, attention weights
        ``α_j ∝ exp(⟨W_q e_c, W_k e_j⟩/√d)`` with a null slot of logit 0; features
        ``Σ_j α_j (r_j − m̄)/half`` (how the user rated items like c, relative to their mean)
        and ``Σ_j α_j`` (how much such evidence there is)."""
        c = self.config
        num_rows, num_q = items.shape
        if not c.target_heads:
            return jnp.zeros((num_rows, num_q, 0), jnp.float32)
        heads, dim = c.target_heads, c.target_dim
        table = math.sqrt(c.encoder.dim) * self.encoder.item_vectors()
        inputs = batch["inputs"]
        length = inputs.shape[1]
        q = self.target_q(table[items]).reshape(num_rows, num_q, heads, dim)
        k = self.target_k(table[inputs]).reshape(num_rows, length, heads, dim)
        logits = jnp.einsum("bqhd,blhd->bhql", q, k) / math.sqrt(dim)
        ratings = batch["ratings"].astype(jnp.float32)
        rated = (inputs != 0) & (ratings > 0)
        allowed = rated[:, None, None, :] & (
            jnp.arange(length)[None, None, None, :] <= query_pos[:, None, :, None])
        logits = jnp.where(allowed, logits, -1e9)
        top = jnp.maximum(jnp.max(logits, axis=-1, keepdims=True), 0.0)
        w = jnp.where(allowed, jnp.exp(logits - top), 0.0)
        alpha = w / (jnp.sum(w, axis=-1, keepdims=True) + jnp.exp(-top))
        lo, hi = c.rating_scale
        scaled = jnp.where(rated, (ratings - 0.5 * (lo + hi)) / (0.5 * (hi - lo)), 0.0)
        mass = jnp.sum(alpha, axis=-1)                                  # [B, H, Q]
        pooled = jnp.einsum("bhql,bl->bhq", alpha, scaled) - mass * user_mean[:, None, :]
        return jnp.concatenate([pooled, mass], axis=1).transpose(0, 2, 1)

    def position_outputs(self, batch, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """Raw head outputs ``[B, L, out]`` for ``batch["targets"]`` at every position."""
        enc_key = head_key = None
        if dropout_key is not None:
            enc_key, head_key = jax.random.split(dropout_key)
        user_vecs = self.encoder.encode(batch, dropout_key=enc_key)
        feats = history_features(batch, self.config)
        targets = batch["targets"]
        query_pos = jnp.broadcast_to(jnp.arange(targets.shape[1])[None], targets.shape)
        factor = self.history_factor(batch, feats[..., 0])
        feats = jnp.concatenate(
            [feats, self.target_features(batch, targets, query_pos, feats[..., 0])], axis=-1)
        return self.head_outputs(user_vecs, feats, targets, factor, head_key)

    def predict_positions(self, batch, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """Teacher-forced ``[B, L]`` predicted rating of ``batch["targets"][:, i]`` from events ≤ i.

        The target's own rating is never an input (it is ``ratings[i + 1]``, seen only by later
        positions). Positions without a target give a prediction for item 0 (ignore them).
        """
        return self.rating_from_outputs(self.position_outputs(batch, dropout_key=dropout_key))

    def score(self, batch, items: jax.Array) -> jax.Array:
        """``[B, K]`` predicted ratings of candidate ``items [B, K]`` after each row's last valid
        position (``lengths − 1``; the request time is ``query_timestamps[lengths − 1]``)."""
        user_vecs = self.encoder.encode(batch)
        feats = history_features(batch, self.config)
        index = jnp.maximum(batch["lengths"] - 1, 0)[:, None, None]
        k = items.shape[1]

        def last(x):                                             # [B, L, n] → [B, K, n]
            x = jnp.take_along_axis(x, index, axis=1)
            return jnp.broadcast_to(x, (x.shape[0], k, x.shape[2]))

        factor = self.history_factor(batch, feats[..., 0])
        factor = None if factor is None else last(factor)
        h, f = last(user_vecs), last(feats)
        query_pos = jnp.broadcast_to(index[:, :, 0], items.shape)
        f = jnp.concatenate([f, self.target_features(batch, items, query_pos, f[..., 0])], axis=-1)
        return self.rating_from_outputs(self.head_outputs(h, f, items, factor))

    def losses(self, batch, *, dropout_key: jax.Array | None = None,
               weights: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Per-position ``(loss [B, L], mask [B, L])``: squared error (regression) or bin
        cross-entropy (ordinal) on ``batch["target_ratings"]``; zero where ``weights <= 0``
        (``weights`` defaults to ``batch["weights"]``)."""
        weights = batch["weights"] if weights is None else weights
        mask = weights > 0
        raw = self.position_outputs(batch, dropout_key=dropout_key)
        target = batch["target_ratings"].astype(jnp.float32)
        if self.config.head == "regression":
            per_pos = jnp.square(self.rating_from_outputs(raw) - target)
        else:
            logp = jax.nn.log_softmax(raw, axis=-1)
            cls = self.rating_class(target)
            per_pos = -jnp.take_along_axis(logp, cls[..., None], axis=-1)[..., 0]
        return jnp.where(mask, per_pos, 0.0), mask


def masked_mean(per_pos: jax.Array, mask: jax.Array) -> jax.Array:
    """Σ loss / number of masked-in positions (at least 1)."""
    return jnp.sum(per_pos) / jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)

