"""Per-event reward and baseline columns of the logged training rows (host-side, once per run).

``[U, L]`` arrays aligned with ``data.train`` (0 where a position has no target): the users' and
items' mean training ratings, a reward model's teacher-forced score of each logged target, and
the value baseline ``E_{a~π_ref}[r̂(s, a)]`` at every position. A-SFT
(:mod:`genrec_jax.train.algorithms.asft`) batches them with the rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax import losses
from genrec_jax.eval.ranking import padded_batches
from genrec_jax.train.scorers import Scorer
from genrec_jax.train.state import bind


def _train_event_mask(split) -> np.ndarray:
    ds = split.dataset
    lengths = ds.lengths
    rel = np.arange(ds.num_events) - np.repeat(ds.offsets[:-1], lengths)
    return rel < np.repeat(split.train_len, lengths)


def user_mean_ratings(split) -> np.ndarray:
    """``[U]`` each user's mean rating over all of their training events (the global training
    mean for a user without any)."""
    ds = split.dataset
    is_train = _train_event_mask(split)
    user_of = np.repeat(np.arange(ds.num_users), ds.lengths)
    sums = np.bincount(user_of[is_train], ds.ratings[is_train], minlength=ds.num_users)
    counts = np.bincount(user_of[is_train], minlength=ds.num_users)
    glob = float(ds.ratings[is_train].mean()) if is_train.any() else 0.0
    return np.where(counts > 0, sums / np.maximum(counts, 1), glob).astype(np.float32)


def item_mean_ratings(split) -> np.ndarray:
    """``[num_items + 1]`` each item's mean rating over the training events (the global
    training mean for an item without any; index 0 unused)."""
    ds = split.dataset
    is_train = _train_event_mask(split)
    n = ds.num_items + 1
    sums = np.bincount(ds.items[is_train], ds.ratings[is_train], minlength=n)
    counts = np.bincount(ds.items[is_train], minlength=n)
    glob = float(ds.ratings[is_train].mean()) if is_train.any() else 0.0
    return np.where(counts > 0, sums / np.maximum(counts, 1), glob).astype(np.float32)


def _block_rows(length: int, width: int, budget: int = 1 << 22) -> int:
    return int(max(1, min(256, budget // max(1, length * width))))


def _row_batches(train, keys, rows: int):
    arrays = {k: train[k] for k in keys}
    for batch, num_real in padded_batches(arrays, rows):
        batch.pop("valid", None)
        yield {k: jnp.asarray(v) for k, v in batch.items()}, num_real


def rm_position_rewards(scorer: Scorer, train, *, batch_size: int = 64) -> np.ndarray:
    """``[U, L]`` teacher-forced reward-model score of each logged target (0 without one)."""
    fn = jax.jit(lambda p, b: scorer.positions(p, b, b["targets"][..., None])[..., 0])
    keys = ("inputs", "timestamps", "query_timestamps", "ratings", "lengths", "targets", "user")
    out = [np.asarray(fn(scorer.params, b))[:n] for b, n in _row_batches(train, keys, batch_size)]
    return np.where(train["weights"] > 0, np.concatenate(out), 0.0).astype(np.float32)


def expected_reward(logits, score, key, num_samples: int) -> jax.Array:
    """``E_{a~softmax(logits)} r̂(a)`` per state: ``logits [..., V]``, ``score(cand [..., K]) ->
    [..., K]`` rewards of candidate items. ``num_samples = K > 0``: the mean over K items drawn
    with replacement (``key``); ``0``: exact, ``Σ_a softmax(logits)_a r̂(a)`` over all V items.
    Returns ``[...]``. Shared by A-SFT's value baseline and PPO's."""
    if num_samples <= 0:
        cand = jnp.broadcast_to(jnp.arange(logits.shape[-1], dtype=jnp.int32), logits.shape)
        return losses.value_baseline(logits, score(cand))
    cand = jax.random.categorical(key, logits, axis=-1, shape=(num_samples, *logits.shape[:-1]))
    return jnp.mean(score(jnp.moveaxis(cand, 0, -1).astype(jnp.int32)), axis=-1)


def value_baseline_rows(graphdef, ref_params, scorer: Scorer, train, *, num_samples: int = 8,
                        seed: int = 0, rows: int | None = None) -> np.ndarray:
    """``[U, L]`` value baseline ``b(s_i) = E_{a~π_ref(·|s_i)}[ r̂(s_i, a) ]`` at every position.

    ``π_ref`` (the pretrained BC policy) estimates the logging policy μ, so this is AWR's
    ``V^μ``. The policy at position ``i`` excludes the items of ``inputs[:i + 1]`` (what it
    would recommend). ``num_samples = K > 0``: mean of ``r̂`` over ``K`` samples with
    replacement; ``0``: exact, ``Σ_a π_ref(a|s) r̂(s, a)`` over the whole catalogue (small
    catalogues only: ``r̂`` is evaluated for every item at every position). Rows are processed
    in blocks so a block's ``[rows, L, V]`` logits stay small (precomputation, not the trainer).
    """
    length = train["inputs"].shape[1]

    def fn(p_ref, p_rm, batch, key):
        model = bind(graphdef, p_ref)
        logits = model.logits(model.encode(batch))                     # [b, L, V]
        b, width, vocab = logits.shape
        # first[b, j]: first position holding item j (width if none) -> excluded from then on.
        first = jnp.full((b, vocab), width, jnp.int32).at[
            jnp.arange(b)[:, None], batch["inputs"]].min(
            jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), (b, width)))
        excluded = first[:, None, :] <= jnp.arange(width)[None, :, None]
        logits = jnp.where(excluded, -jnp.inf, logits)
        return expected_reward(logits, lambda cand: scorer.positions(p_rm, batch, cand), key,
                               num_samples)

    jfn = jax.jit(fn)
    keys = ("inputs", "timestamps", "query_timestamps", "ratings", "lengths", "targets", "user")
    vocab = int(bind(graphdef, ref_params).config.table_size)
    rows = rows or _block_rows(length, vocab)
    key = jax.random.PRNGKey(seed)
    out = []
    for i, (batch, n) in enumerate(_row_batches(train, keys, rows)):
        out.append(np.asarray(jfn(ref_params, scorer.params, batch,
                                  jax.random.fold_in(key, i)))[:n])
    return np.where(train["weights"] > 0, np.concatenate(out), 0.0).astype(np.float32)
