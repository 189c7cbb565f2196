"""Pallas fused loss, tuned: tile table and autotune cache, tilings agree, gradient-tile skipping,
bfloat16 inputs. CPU only (interpret mode), tiny shapes; the GPU timings are not tested here.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.kernels import pallas_tiles, pallas_xent, weighted_softmax_xent
from genrec_jax.kernels.pallas_tiles import Tiles

U32 = 2.0 ** -24  # float32 unit roundoff


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv(pallas_tiles.AUTOTUNE_ENV, raising=False)
    pallas_tiles.clear_cache()
    yield
    pallas_tiles.clear_cache()


def exact_stats_and_grads(hs, items, targets, lo, hi, a, b):
    """float64 numpy: lse, t and the gradients of sum(a * lse - b * t) in hs and items."""
    hs, items = np.asarray(hs, np.float64), np.asarray(items, np.float64)
    logits = hs @ items.T
    sub = logits[:, lo:hi]
    m = sub.max(axis=1)
    lse = m + np.log(np.exp(sub - m[:, None]).sum(axis=1))
    rows = np.arange(len(targets))
    t = logits[rows, targets]
    p = np.zeros_like(logits)
    p[:, lo:hi] = np.exp(sub - lse[:, None])
    coef = a[:, None] * p
    coef[rows, targets] -= b
    return lse, t, coef @ items, coef.T @ hs


# --------------------------------------------------------------------------------------------------
# Tile table and autotune cache (no kernel runs).
# --------------------------------------------------------------------------------------------------

def test_table_lookup_clamps_to_shape_and_falls_back():
    t = pallas_tiles.default_tiles(4096, 100_000, 64, "float32", "cpu")
    assert t == Tiles(*pallas_tiles.DEFAULT_TILES[("cpu", "float32")])
    # Tiny shapes: blocks shrink to the next power of two >= 16 of N and V.
    small = pallas_tiles.default_tiles(24, 72, 12, "float32", "cpu")
    assert (small.block_n, small.block_v, small.v_splits) == (32, 128, 1)
    tiny = pallas_tiles.default_tiles(5, 9, 4, "float32", "cpu")
    assert (tiny.block_n, tiny.block_v) == (16, 16)
    # Known GPU kinds use their row; unknown kinds and dtypes fall back.
    h200 = pallas_tiles.default_tiles(4096, 100_000, 64, "bfloat16", "NVIDIA H200", sm_count=132)
    bn, bv, warps, stages = pallas_tiles.DEFAULT_TILES[("nvidia h200", "bfloat16")]
    assert (h200.block_n, h200.block_v, h200.num_warps, h200.num_stages) == (bn, bv, warps, stages)
    # 4096 / 128 = 32 query blocks; 2 programs per SM -> ceil(264 / 32) = 9 item-range splits.
    assert h200.v_splits == 9
    other = pallas_tiles.default_tiles(4096, 100_000, 64, "float16", "Some New GPU")
    assert other == pallas_tiles.clamp(Tiles(*pallas_tiles.DEFAULT_TILES[("gpu", "float32")]),
                                       4096, 100_000, None)
    # Splits keep >= 8 item tiles each: V = 1000 rows of 64 -> 16 tiles -> at most 2 splits.
    assert pallas_tiles.v_splits_for(4096, 1000, 64, 64, 132) == 2
    with pytest.raises(ValueError, match="block_v must be a power of two >= 16"):
        Tiles(64, 96)


def test_autotune_env_switch(monkeypatch):
    assert pallas_tiles.autotune_enabled(interpret=False) is True
    assert pallas_tiles.autotune_enabled(interpret=True) is False
    monkeypatch.setenv(pallas_tiles.AUTOTUNE_ENV, "0")
    assert pallas_tiles.autotune_enabled(interpret=False) is False
    monkeypatch.setenv(pallas_tiles.AUTOTUNE_ENV, "1")
    assert pallas_tiles.autotune_enabled(interpret=True) is True
    monkeypatch.setenv(pallas_tiles.AUTOTUNE_ENV, "maybe")
    with pytest.raises(ValueError, match="GENREC_PALLAS_AUTOTUNE must be 0 or 1, got 'maybe'"):
        pallas_tiles.autotune_enabled(interpret=False)


def test_autotune_keeps_fastest_and_caches(monkeypatch):
    """A fake timer counts candidate runs: one tuning per (N, V, D, dtype, device kind)."""
    runs = []
    fake_seconds = {32: 3.0, 64: 1.0, 128: 2.0}  # by block_v

    def make_runner(tiles):
        return lambda: tiles

    def timer(thunk):
        tiles = thunk()
        runs.append(tiles)
        if tiles.block_n == 128:
            raise RuntimeError("out of shared memory")  # a failing candidate is skipped
        return fake_seconds[tiles.block_v]

    cands = ((64, 32, 4, 2), (64, 64, 4, 2), (32, 128, 4, 2), (128, 64, 8, 2))
    kw = dict(device_kind="NVIDIA H200", interpret=False, make_runner=make_runner, timer=timer,
              sm_count=132, candidates=cands)
    first = pallas_tiles.select_tiles(4096, 100_000, 64, "float32", **kw)
    assert len(runs) == 4
    assert first.source == "autotune" and (first.tiles.block_n, first.tiles.block_v) == (64, 64)
    assert [s for _, s in first.timings_s] == [3.0, 1.0, 2.0, math.inf]
    again = pallas_tiles.select_tiles(4096, 100_000, 64, "float32", **kw)
    assert again is first and len(runs) == 4  # cached: no candidate ran
    pallas_tiles.select_tiles(4096, 100_000, 64, "bfloat16", **kw)  # another key: tuned again
    assert len(runs) == 8
    assert set(pallas_tiles.cached()) == {(4096, 100_000, 64, "float32", "NVIDIA H200"),
                                          (4096, 100_000, 64, "bfloat16", "NVIDIA H200")}
    # Autotune off: the table, and nothing runs.
    monkeypatch.setenv(pallas_tiles.AUTOTUNE_ENV, "0")
    off = pallas_tiles.select_tiles(1024, 100_000, 64, "float32", **kw)
    assert off.source == "table" and len(runs) == 8
    assert off.tiles == pallas_tiles.default_tiles(1024, 100_000, 64, "float32", "NVIDIA H200",
                                                   sm_count=132)


def test_autotune_all_candidates_failing_names_the_key():
    def timer(thunk):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match=r"every Pallas tile candidate failed for key "
                                           r"\(64, 256, 8, 'float32', 'x'\)"):
        pallas_tiles.select_tiles(64, 256, 8, "float32", device_kind="x", interpret=False,
                                  make_runner=lambda t: None, timer=timer)


# --------------------------------------------------------------------------------------------------
# Kernels in interpret mode.
# --------------------------------------------------------------------------------------------------

def test_entry_point_tunes_once_per_shape(monkeypatch):
    """``pallas_lse_and_target_logit`` inside a jit: autotune (forced on) at the first trace, the
    cached tiles afterwards; fake timer: the later a candidate, the faster."""
    monkeypatch.setenv(pallas_tiles.AUTOTUNE_ENV, "1")
    calls = []

    def fake_timer(thunk):
        calls.append(thunk)
        return 1.0 / len(calls)

    monkeypatch.setattr(pallas_tiles, "wall_timer", fake_timer)
    n, v, d = 20, 40, 8
    rng = np.random.default_rng(5)
    targets = jnp.asarray(rng.integers(0, v, size=n), jnp.int32)
    f = jax.jit(lambda h, it: pallas_xent.pallas_lse_and_target_logit(h, it, targets,
                                                                      valid_range=(0, v)))
    for seed in (0, 1):
        h = jnp.asarray(np.random.default_rng(seed).normal(size=(n, d)), jnp.float32)
        items = jnp.asarray(np.random.default_rng(seed + 10).normal(size=(v, d)), jnp.float32)
        lse, t = f(h, items)
        want_lse, want_t, _, _ = exact_stats_and_grads(h, items, np.asarray(targets), 0, v,
                                                       np.ones(n), np.ones(n))
        np.testing.assert_allclose(lse, want_lse, rtol=1e-5)
        np.testing.assert_allclose(t, want_t, rtol=1e-5, atol=1e-5)
    # Candidates after clamping to N=20 (block_n 32) and V=40 (block_v 64): distinct ones only.
    cands = pallas_tiles.candidate_tiles(n, v, None)
    assert len(calls) == len(cands) >= 2
    (res,) = pallas_tiles.cached().values()
    assert res.source == "autotune" and res.tiles == cands[-1]
    # A new trace of the same shape (here: the lookup it makes) reuses the cached choice.
    again = pallas_xent.select_tiles(n, v, d, jnp.float32, valid_range=(0, v))
    assert again is res and len(calls) == len(cands)

def test_every_candidate_tiling_gives_the_same_gradients(monkeypatch):
    """The real runner, timed by a fake timer from inside a jit trace (where tiles are chosen in
    use): every candidate (several blocks, tiles and item-range splits) runs forward + backward
    and returns the same gradients, equal to float64 ones within float32 rounding."""
    n, v, d, lo, hi = 40, 96, 12, 1, 90
    interpret = jax.default_backend() == "cpu"  # compiled on a GPU (accelerator_checks.sh)
    runner = pallas_xent.make_runner(n, v, d, jnp.float32, lo, hi, interpret, -math.inf)
    grads, seconds = [], iter([3.0, 1.0, 2.0])

    def timer(thunk):
        grads.append(thunk())
        return next(seconds)

    monkeypatch.setattr(pallas_tiles, "_MIN_TILES_PER_SPLIT", 2)  # let 6 tiles split in two
    cands = ((16, 16, 4, 2), (16, 64, 4, 2), (64, 32, 4, 2))  # sm_count=2 -> v_splits 2, 1, 1

    @jax.jit
    def traced(x):
        res = pallas_tiles.select_tiles(n, v, d, "float32", device_kind="test", interpret=interpret,
                                        make_runner=runner, sm_count=2, autotune=True,
                                        timer=timer, candidates=cands)
        traced.result = res
        return x

    traced(jnp.float32(0))
    res = traced.result
    assert [t.v_splits for t, _ in res.timings_s] == [2, 1, 1]
    assert res.tiles == Tiles(16, 64, 4, 2, 1)
    assert len(grads) == 3
    # The runner's inputs (seeded): rebuild them to get the float64 gradients of sum(lse - t).
    rng = np.random.default_rng(0)

    def unit(rows):
        x = rng.standard_normal((rows, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    hs, items = 20.0 * unit(n), unit(v)
    tg = rng.integers(lo, hi, size=n).astype(np.int32)
    _, _, want_dh, want_di = exact_stats_and_grads(hs, items, tg, lo, hi, np.ones(n), np.ones(n))
    for dh, di in grads:
        # |dh| <= 2 max|items| = 2 and |ditems| <= sum |hs| ~ 2 * 20 * N / V: absolute errors of a
        # few float32 roundings of logits of size 20 (20 * 2^-24 each).
        np.testing.assert_allclose(dh, want_dh, rtol=0, atol=2e-5)
        np.testing.assert_allclose(di, want_di, rtol=0, atol=2e-4)
    for dh, di in grads[1:]:
        np.testing.assert_allclose(dh, grads[0][0], rtol=0, atol=2e-5)
        np.testing.assert_allclose(di, grads[0][1], rtol=0, atol=2e-4)


def _peaked(n=32, v=128, d=16, seed=0):
    """Query rows near +e0; items 0..31 ("near", holding every target) near +e0, items 32..127
    ("far") near -3 e0 and with coordinate 15 = 1 (where every query is 0): far logits sit ~40
    below the near ones, so with 16 x 16 tiles 6 of the 8 item tiles of each query block are
    skipped, and any far-tile contribution would show up in dh[:, 15] and ditems[far]."""
    rng = np.random.default_rng(seed)
    hs = np.zeros((n, d), np.float32)
    hs[:, 0] = 10.0
    hs[:, 1:15] = 0.1 * rng.standard_normal((n, 14))
    items = 0.3 * rng.standard_normal((v, d)).astype(np.float32)
    items[:, 15] = 0.0
    items[:32, 0] = 1.0
    items[32:, 0] = -3.0
    items[32:, 15] = 1.0
    targets = rng.integers(1, 32, size=n).astype(np.int32)
    return hs, items, targets


def test_gradient_tiles_skipped_where_softmax_mass_is_negligible():
    n, v, lo, hi = 32, 128, 1, 128
    hs, items, targets = _peaked(n, v)
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 1.5, n)
    b = rng.uniform(0.5, 1.5, n)
    log_thr = pallas_xent.skip_log_threshold(hi - lo)
    assert log_thr == -30.0  # min(-30, -24 ln 2 - ln 127 = -21.5)

    def f(hs, items):
        lse, t = pallas_xent.pallas_lse_and_target_logit(
            hs, items, jnp.asarray(targets), valid_range=(lo, hi), tiles=Tiles(16, 16))
        return jnp.sum(jnp.asarray(a, jnp.float32) * lse - jnp.asarray(b, jnp.float32) * t), (lse,
                                                                                            t)

    (_, (lse, t)), (dh, di) = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(
        jnp.asarray(hs), jnp.asarray(items))
    want_lse, want_t, want_dh, want_di = exact_stats_and_grads(hs, items, targets, lo, hi, a, b)

    # The skip rule, evaluated in numpy: most (query block, item tile) pairs qualify.
    z = np.asarray(hs, np.float64) @ np.asarray(items, np.float64).T - want_lse[:, None]
    z[:, :lo] = -np.inf
    skipped = [[z[q:q + 16, j:j + 16].max() < log_thr
                and not np.any((targets[q:q + 16] >= j) & (targets[q:q + 16] < j + 16))
                for j in range(0, v, 16)] for q in range(0, n, 16)]
    assert np.mean(skipped) == 0.75 and all(all(row[2:]) for row in skipped)

    # The far tiles were skipped: their exact contributions are tiny but not zero in float32.
    assert np.all(want_dh[:, 15] > 0) and np.all(np.abs(want_di[32:]).max(axis=1) > 0)
    assert np.all(np.asarray(dh)[:, 15] == 0.0)
    assert np.all(np.asarray(di)[32:] == 0.0)

    # Error vs float64 within float32 precision. Skipping drops per row a softmax mass below
    # V * tau <= 2^-24, i.e. at most 2^-24 * |a_n| * max|items| in dh_n and tau * sum|a_n h_n| in
    # ditems; the rest is float32 rounding of logits of size ~10 (abs. error ~10 * 2^-24 on
    # log p). Bound asserted: 2^-24 * scale * 16, scale = max|a| * max|items| (dh) or
    # sum_n |a_n| |hs_n| (ditems): the same order as a float32 evaluation of the formula.
    np.testing.assert_allclose(lse, want_lse, rtol=4 * U32)
    np.testing.assert_allclose(t, want_t, rtol=4 * U32, atol=4 * U32)
    dh_scale = a.max() * np.abs(items).max()
    di_scale = np.sum(a[:, None] * np.abs(hs), axis=0).max()
    assert np.abs(np.asarray(dh, np.float64) - want_dh).max() <= 16 * U32 * dh_scale
    assert np.abs(np.asarray(di, np.float64) - want_di).max() <= 16 * U32 * di_scale


def test_bfloat16_inputs_float32_accumulation(monkeypatch):
    """bf16 ``h`` / ``items`` through ``weighted_softmax_xent(impl="pallas")`` against the
    reference in float32 on the same (bf16-rounded) values."""
    monkeypatch.setenv(pallas_tiles.AUTOTUNE_ENV, "0")  # on a GPU: the table's tiles, no tuning
    n, v, d = 24, 72, 16
    rng = np.random.default_rng(3)
    h = jnp.asarray(rng.normal(size=(n, d)), jnp.bfloat16)
    items = jnp.asarray(rng.normal(size=(v, d)) / 2, jnp.bfloat16)
    targets = jnp.asarray(rng.integers(1, v, size=n), jnp.int32)
    weights = jnp.asarray(rng.uniform(0.1, 2.0, size=n), jnp.float32)
    coef = jnp.asarray(rng.normal(size=n), jnp.float32)
    # temperature 0.5: h / 0.5 is exact in bf16, so both paths see the same values.
    kw = dict(valid_range=(1, v), temperature=0.5)

    def run(impl, h, items):
        def f(h, items):
            loss, lse = weighted_softmax_xent(h, items, targets, weights, impl=impl, **kw)
            return jnp.sum(loss) + jnp.sum(coef * lse), (loss, lse)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(h, items)

    (val, (loss, lse)), (dh, di) = run("pallas", h, items)
    (w_val, (w_loss, w_lse)), (w_dh, w_di) = run("reference", h.astype(jnp.float32),
                                                 items.astype(jnp.float32))
    assert dh.dtype == jnp.bfloat16 and di.dtype == jnp.bfloat16
    assert loss.dtype == jnp.float32 and lse.dtype == jnp.float32
    # Products of bf16 values are exact in float32: the statistics agree to float32 rounding.
    np.testing.assert_allclose(lse, w_lse, rtol=1e-5)
    np.testing.assert_allclose(loss, w_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(val, w_val, rtol=1e-5)
    # Gradients: the tile coefficients g*p + onehot are rounded to bf16 before the matmul
    # (relative 2^-9 each) and the result is rounded to bf16 (2^-9): |error| <= 2 * 2^-9 of
    # the gradient's scale (sum of |terms| <= max|coef| * max|rows| * 2). Asserted: 2^-7 * scale.
    for got, want in ((dh, w_dh), (di, w_di)):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= 2.0 ** -7 * scale
