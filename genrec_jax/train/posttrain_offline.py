"""Offline post-training over the logged training rows: BC, RWBC, A-SFT and CQL.

Every position with a target is one logged event ``(s, a, r)``: ``s`` = the events up to the
position, ``a`` = ``targets``, ``r`` = ``target_ratings``. Losses (DESIGN.md §2), averaged over the
positions with a target (``Σ ℓ / #targets``, as pretraining):

* ``bc``:   ``−log π(a|s)``;
* ``rwbc``: ``−g(r)·log π(a|s)``, ``g`` = :func:`genrec_jax.losses.rwbc_weights`;
* ``asft``: ``−min(exp(A/λ), w_max)·log π(a|s)``, ``A = r̂ − b`` (optionally normalised over the
  batch's targets);
* ``cql``:  ``α·(lse(s) − Q(s,a)) + ½(Q(s,a) − y)²`` with ``Q = logits = cos/τ``, ``y = r``
  (``γ = 0``) or ``y = r + γ·E_{a'~softmax Q(s',·)} Q(s', a')`` at the next position ``s'``
  (computed from the current parameters, without gradient; the last position of a row is
  terminal).

``log π`` and ``lse`` come from the fused kernel; ``E_π Q`` from the chunked
:func:`~genrec_jax.train.posttrain_common.softmax_stats`. A-SFT's ``r̂`` and ``b`` are columns
precomputed on the host (:func:`asft_columns`) and batched with the rows (keys ``reward`` and
``baseline``), except ``baseline="batch_mean"`` (per batch, in the step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax import losses
from genrec_jax.eval.ranking import padded_batches
from genrec_jax.train import posttrain_common as pc
from genrec_jax.train.state import bind

OFFLINE_ALGOS = ("bc", "rwbc", "asft", "cql")
BASELINES = ("user_mean", "item_mean", "batch_mean", "value", "none")
REWARD_SOURCES = ("rating", "reward_model")


def make_offline_loss(algo: str, graphdef, *, impl: str = "chunked", chunk_size: int = 4096,
                      mesh=None, lam: float = 1.0, w_max: float | None = 20.0,
                      normalize_advantages: bool = False, batch_mean_baseline: bool = False,
                      rwbc_transform: str = "linear", rwbc_beta: float = 1.0,
                      rating_scale=(1.0, 5.0), alpha: float = 1.0, gamma: float = 0.0,
                      log_kl: bool = True):
    """``loss_fn(model, batch, key, ref_params) -> (loss, aux)`` for :func:`make_train_step`.

    ``ref_params`` (the frozen pretrained policy) is an explicit argument; it is used for the
    logged ``kl_ref`` (exact KL to the reference at each row's last position) only.
    A-SFT reads ``batch["reward"]`` and ``batch["baseline"]`` (``batch_mean_baseline=True``:
    the baseline is the batch mean of ``reward`` instead).
    """
    if algo not in OFFLINE_ALGOS:
        raise ValueError(f"offline algo must be one of {OFFLINE_ALGOS}, got {algo!r}")
    r_min, r_max = (float(v) for v in rating_scale)
    w_max = None if w_max is None or not np.isfinite(w_max) or w_max <= 0 else float(w_max)

    def loss_fn(model, batch, key, ref_params):
        logp, lse, vecs, mask = pc.position_logps(model, batch, dropout_key=key, impl=impl,
                                                  chunk_size=chunk_size, mesh=mesh)
        count = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
        aux = {}
        if algo == "bc":
            per = losses.bc_from_logps(logp, where=mask)
        elif algo == "rwbc":
            r = batch["target_ratings"]
            per = losses.rwbc_from_logps(logp, r, transform=rwbc_transform, r_min=r_min,
                                         r_max=r_max, beta=rwbc_beta, where=mask)
            g = losses.rwbc_weights(r, transform=rwbc_transform, r_min=r_min, r_max=r_max,
                                    beta=rwbc_beta)
            aux["mean_weight"] = pc.masked_mean(g, mask)
        elif algo == "asft":
            r = batch["reward"]
            if batch_mean_baseline:
                b = losses.batch_mean_baseline(r, where=mask)
            else:
                b = batch["baseline"]
            adv = losses.compute_advantages(r, b, normalize=normalize_advantages, where=mask)
            per = losses.asft_from_logps(logp, adv, lam=lam, w_max=w_max, where=mask)
            w = losses.asft_weights(adv, lam=lam, w_max=w_max)
            aux["mean_weight"] = pc.masked_mean(w, mask)
            aux["mean_advantage"] = pc.masked_mean(adv, mask)
            aux["mean_reward"] = pc.masked_mean(r, mask)
            if w_max is not None:
                aux["frac_w_max"] = pc.masked_mean((w >= w_max).astype(jnp.float32), mask)
        else:  # cql
            items = model.item_vectors()
            tau = model.config.temperature
            targets = batch["targets"]
            q = jnp.sum(vecs * jnp.take(items, targets, axis=0), axis=-1) / tau
            r = batch["target_ratings"]
            if gamma:
                b, length, d = vecs.shape
                # E_{a'~softmax Q(s', .)} Q(s', a') at position i + 1, no gradient.
                st = pc.softmax_stats(vecs.reshape(-1, d), items, temperature=tau,
                                      valid_range=pc.item_range(model), chunk_size=chunk_size)
                v_next = jnp.roll(st["mean_logit"].reshape(b, length), -1, axis=1)
                has_next = jnp.roll(mask, -1, axis=1).at[:, -1].set(False)
                y = losses.cql_targets(r) + gamma * jnp.where(has_next, v_next, 0.0)
            else:
                y = losses.cql_targets(r)
            per = losses.cql_from_lse(lse, q, y, alpha=alpha, where=mask)
            aux["q_taken"] = pc.masked_mean(q, mask)
            aux["td_error"] = pc.masked_mean(jnp.abs(jax.lax.stop_gradient(q) - y), mask)
            aux["penalty"] = pc.masked_mean(jax.lax.stop_gradient(lse - q), mask)
        loss = jnp.sum(per) / count
        aux["nll"] = -jnp.sum(jax.lax.stop_gradient(logp)) / count
        if log_kl:
            ref = bind(graphdef, ref_params)
            aux["kl_ref"] = pc.last_position_kl(model, jax.lax.stop_gradient(vecs), ref,
                                                ref.encode(batch), batch["lengths"],
                                                chunk_size=chunk_size)
        return loss, aux

    return loss_fn


# ---------------------------------------------------------------------------------------------
# Host-side precomputation of A-SFT's rewards and baselines (once per run).
# ---------------------------------------------------------------------------------------------


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


def rm_position_rewards(scorer: pc.Scorer, train, *, batch_size: int = 64) -> np.ndarray:
    """``[U, L]`` teacher-forced reward-model score of each logged target (0 without one)."""
    fn = jax.jit(lambda p, b: scorer.positions(p, b, b["targets"][..., None])[..., 0])
    keys = ("inputs", "timestamps", "query_timestamps", "ratings", "lengths", "targets", "user")
    out = [np.asarray(fn(scorer.params, b))[:n] for b, n in _row_batches(train, keys, batch_size)]
    return np.where(train["weights"] > 0, np.concatenate(out), 0.0).astype(np.float32)


def value_baseline_rows(graphdef, ref_params, scorer: pc.Scorer, train, *, num_samples: int = 8,
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
        if num_samples <= 0:
            cand = jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), (b, width, vocab))
            values = scorer.positions(p_rm, batch, cand)
            return losses.value_baseline(logits, values)
        cand = jax.random.categorical(key, logits, axis=-1, shape=(num_samples, b, width))
        cand = jnp.moveaxis(cand, 0, -1).astype(jnp.int32)
        return jnp.mean(scorer.positions(p_rm, batch, cand), axis=-1)

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


def asft_columns(data, *, reward_source: str = "rating", baseline: str = "user_mean",
                 scorer: pc.Scorer | None = None, graphdef=None, ref_params=None,
                 value_samples: int = 8, seed: int = 0, batch_size: int = 64):
    """``{"reward": [U, L], "baseline": [U, L]}`` for ``data.train`` (0 where no target).

    ``reward_source``: ``"rating"`` (the observed target rating) or ``"reward_model"`` (the
    scorer's teacher-forced prediction for the logged target). ``baseline``: ``"user_mean"``
    (the user's mean training rating), ``"item_mean"`` (the logged item's mean training
    rating), ``"value"`` (:func:`value_baseline_rows` with the scorer), ``"none"`` (0) or
    ``"batch_mean"`` (computed in the step; the column is 0 here). User and item means are of
    the observed ratings (the reward model predicts on the same scale).
    """
    if reward_source not in REWARD_SOURCES:
        raise ValueError(f"reward_source must be one of {REWARD_SOURCES}, got {reward_source!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    train = data.train
    mask = train["weights"] > 0
    if reward_source == "rating":
        reward = train["target_ratings"].astype(np.float32)
    else:
        reward = rm_position_rewards(scorer, train, batch_size=batch_size)
    if baseline == "user_mean":
        base = np.broadcast_to(user_mean_ratings(data.split)[train["user"]][:, None], mask.shape)
    elif baseline == "item_mean":
        base = item_mean_ratings(data.split)[train["targets"]]
    elif baseline == "value":
        base = value_baseline_rows(graphdef, ref_params, scorer, train,
                                   num_samples=value_samples, seed=seed)
    else:
        base = np.zeros(mask.shape, np.float32)
    return {"reward": np.where(mask, reward, 0.0).astype(np.float32),
            "baseline": np.where(mask, base, 0.0).astype(np.float32)}
