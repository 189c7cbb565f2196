"""Tests for genrec_jax.kernels.weighted_softmax_xent (reference / chunked / sharded / pallas).

Small shapes only (the CI machine has 2 cores); the Pallas cases run in interpret mode on CPU and
are kept tiny. conftest.py forces 8 CPU devices for the sharded cases.
"""
import contextlib
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from genrec_jax.kernels import IMPLS, weighted_softmax_xent
from genrec_jax.kernels import weighted_xent

REPO = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------------

def make_data(n, v, d, *, seed=0, unit=False, lo=0, hi=None, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, d))
    items = rng.normal(size=(v, d))
    if unit:
        h /= np.linalg.norm(h, axis=1, keepdims=True)
        items /= np.linalg.norm(items, axis=1, keepdims=True)
    targets = rng.integers(lo, v if hi is None else hi, size=n)
    weights = rng.uniform(0.1, 2.0, size=n)
    return (jnp.asarray(h, dtype), jnp.asarray(items, dtype), jnp.asarray(targets, jnp.int32),
            jnp.asarray(weights, dtype))


def numpy_reference(h, items, targets, weights, temperature=1.0, valid_range=None):
    """float64 numpy: (loss, lse) straight from the formula."""
    h, items = np.asarray(h, np.float64), np.asarray(items, np.float64)
    targets, weights = np.asarray(targets), np.asarray(weights, np.float64)
    v = items.shape[0]
    lo, hi = valid_range or (0, v)
    logits = h @ items.T / temperature
    sub = logits[:, lo:hi]
    m = sub.max(axis=1)
    lse = m + np.log(np.exp(sub - m[:, None]).sum(axis=1))
    t = logits[np.arange(len(targets)), np.clip(targets, 0, v - 1)]
    return -weights * (t - lse), lse


def objective(impl, targets, *, lse_coef=None, **kw):
    """A scalar mixing both outputs with per-row coefficients (both cotangents non-trivial)."""

    def f(h, items, weights):
        loss, lse = weighted_softmax_xent(h, items, targets, weights, impl=impl, **kw)
        out = jnp.sum(loss)
        if lse_coef is not None:
            out = out + jnp.sum(lse_coef * lse)
        return out

    return f


def value_and_grads(impl, h, items, targets, weights, *, lse_coef=None, **kw):
    f = objective(impl, targets, lse_coef=lse_coef, **kw)
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(h, items, weights)


def forward(impl, h, items, targets, weights, **kw):
    f = jax.jit(lambda *a: weighted_softmax_xent(*a, impl=impl, **kw))
    return f(h, items, targets, weights)


def forward_and_grads(impl, h, items, targets, weights, *, lse_coef=None, **kw):
    """``((loss, lse), (value, (dh, ditems, dweights)))`` from one compiled function."""
    f = objective(impl, targets, lse_coef=lse_coef, **kw)

    @jax.jit
    def both(h, items, weights):
        return (weighted_softmax_xent(h, items, targets, weights, impl=impl, **kw),
                jax.value_and_grad(f, argnums=(0, 1, 2))(h, items, weights))

    return both(h, items, weights)


def assert_tree_close(a, b, rtol=1e-5, atol=1e-5):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol,
                                   atol=atol)


def mesh_of(shape, names):
    devices = np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape)
    return Mesh(devices, names)


@contextlib.contextmanager
def x64():
    """float64 on, restored afterwards (no subprocess)."""
    if hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
        return
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


# --------------------------------------------------------------------------------------------------
# Reference and chunked paths.
# --------------------------------------------------------------------------------------------------

def test_reference_matches_numpy_formula():
    h, items, targets, weights = make_data(12, 30, 6, seed=1)
    loss, lse = forward("reference", h, items, targets, weights, temperature=0.7,
                        valid_range=(1, 28))
    want_loss, want_lse = numpy_reference(h, items, targets, weights, 0.7, (1, 28))
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-5, atol=1e-5)


def test_pinned_values():
    # logits row 0: [0, 1, 2] -> lse = log(1 + e + e^2); target 2, weight 2.
    h = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    items = jnp.array([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]])
    targets = jnp.array([2, 0])
    weights = jnp.array([2.0, 0.5])
    lse0 = math.log(1 + math.e + math.e ** 2)
    lse1 = math.log(2 + math.e)
    for impl in ("reference", "chunked"):
        loss, lse = forward(impl, h, items, targets, weights, chunk_size=2)
        np.testing.assert_allclose(lse, [lse0, lse1], rtol=1e-6)
        np.testing.assert_allclose(loss, [-2.0 * (2.0 - lse0), -0.5 * (0.0 - lse1)], rtol=1e-6)


CHUNKED_CASES = [
    # n, v, d, chunk, valid_range, tile_elems (None: default tiling)
    (16, 40, 8, 16, None, None),        # ragged last chunk (40 % 16 = 8)
    (16, 40, 8, 7, (1, 40), None),      # row 0 excluded, ragged
    (20, 45, 12, 4096, (3, 41), None),  # one chunk larger than V, trailing rows excluded
    (33, 50, 8, 9, (1, 47), 64),        # tiny tiles: ragged query blocks and ragged chunks
    (16, 40, 8, 1, None, None),         # one row per chunk
]


@pytest.mark.parametrize("n,v,d,chunk,valid_range,tile", CHUNKED_CASES)
def test_chunked_matches_reference(monkeypatch, n, v, d, chunk, valid_range, tile):
    if tile is not None:
        monkeypatch.setattr(weighted_xent, "_TILE_ELEMS", tile)
        monkeypatch.setattr(weighted_xent, "_MIN_BLOCK_N", 1)
    h, items, targets, weights = make_data(n, v, d, seed=n + v)
    coef = jnp.asarray(np.random.default_rng(0).normal(size=n), jnp.float32)
    kw = dict(valid_range=valid_range, temperature=0.9, lse_coef=coef)
    want = forward_and_grads("reference", h, items, targets, weights, **kw)
    got = forward_and_grads("chunked", h, items, targets, weights, chunk_size=chunk, **kw)
    assert_tree_close(got, want)


def test_chunked_l2_normalised_small_temperature():
    h, items, targets, weights = make_data(32, 100, 16, seed=3, unit=True, lo=1)
    kw = dict(temperature=0.05, valid_range=(1, 100))
    want = value_and_grads("reference", h, items, targets, weights, **kw)
    got = value_and_grads("chunked", h, items, targets, weights, chunk_size=32, **kw)
    # logits reach +-20 and gradients carry 1/temperature = 20: compare relative to their scale.
    assert_tree_close(got[0], want[0], rtol=1e-5, atol=1e-4)
    for g_got, g_want in zip(got[1], want[1]):
        scale = float(jnp.max(jnp.abs(g_want)))
        np.testing.assert_allclose(g_got, g_want, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(forward("chunked", h, items, targets, weights, chunk_size=32, **kw),
                               numpy_reference(h, items, targets, weights, 0.05, (1, 100)),
                               rtol=1e-5, atol=1e-4)


def test_valid_range_equals_sub_table():
    lo, hi = 2, 37
    h, items, targets, weights = make_data(18, 41, 8, seed=5, lo=lo, hi=hi)
    (loss, lse), (_, (_, ditems, _)) = forward_and_grads(
        "chunked", h, items, targets, weights, valid_range=(lo, hi), chunk_size=8)
    (sub_loss, sub_lse), (_, (_, dsub, _)) = forward_and_grads(
        "reference", h, items[lo:hi], targets - lo, weights)
    np.testing.assert_allclose(loss, sub_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lse, sub_lse, rtol=1e-5, atol=1e-5)
    # Rows outside the range get no gradient (no target points there).
    assert float(jnp.max(jnp.abs(ditems[:lo]))) == 0.0
    assert float(jnp.max(jnp.abs(ditems[hi:]))) == 0.0
    np.testing.assert_allclose(ditems[lo:hi], dsub, rtol=1e-5, atol=1e-5)


def test_cql_like_gradient_through_lse():
    """CQL: alpha * (lse - Q(a)) + 0.5 * (Q(a) - y)^2 with Q(a) = lse - loss (weights = 1)."""
    h, items, targets, _ = make_data(16, 40, 8, seed=7, lo=1)
    ones = jnp.ones((16,), jnp.float32)
    y = jnp.linspace(-1.0, 1.0, 16)

    def cql(impl, **kw):
        def f(h, items):
            loss, lse = weighted_softmax_xent(h, items, targets, ones, impl=impl,
                                              valid_range=(1, 40), temperature=0.5, **kw)
            q = lse - loss
            return jnp.sum(0.3 * (lse - q) + 0.5 * (q - y) ** 2)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(h, items)

    want = cql("reference")
    assert_tree_close(cql("chunked", chunk_size=16), want)
    assert_tree_close(cql("chunked", chunk_size=7), want)


def test_weights_and_temperature_gradients():
    h, items, targets, weights = make_data(12, 30, 8, seed=9)

    def f(impl):
        def g(weights, temperature):
            loss, lse = weighted_softmax_xent(h, items, targets, weights, impl=impl,
                                              temperature=temperature, chunk_size=8)
            return jnp.sum(loss) + 0.1 * jnp.sum(lse)

        return jax.jit(jax.grad(g, argnums=(0, 1)))(weights, jnp.float32(0.8))

    dw, dtemp = f("chunked")
    want_dw, want_dtemp = f("reference")
    np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dtemp, want_dtemp, rtol=1e-4)
    # d loss_n / d w_n = -(target_logit - lse): equal to loss_n / w_n.
    loss, _ = forward("chunked", h, items, targets, weights, temperature=0.8)
    np.testing.assert_allclose(dw, loss / weights, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["reference", "chunked", "sharded", "pallas"])
def test_zero_weights_give_zero_loss_and_gradients(impl):
    h, items, targets, _ = make_data(16, 48, 8, seed=11)
    targets = targets.at[:4].set(0)  # invalid under valid_range=(1, 48)
    zeros = jnp.zeros((16,), jnp.float32)
    kw = dict(valid_range=(1, 48), chunk_size=8)
    if impl == "sharded":
        kw["mesh"] = mesh_of((8,), ("model",))
    (loss, _), (value, (dh, ditems, _)) = forward_and_grads(impl, h, items, targets, zeros, **kw)
    assert float(value) == 0.0
    assert np.all(np.asarray(loss) == 0.0)
    assert float(jnp.max(jnp.abs(dh))) == 0.0
    assert float(jnp.max(jnp.abs(ditems))) == 0.0


@pytest.mark.parametrize("impl", ["reference", "chunked", "sharded", "pallas"])
def test_masked_rows_with_invalid_targets(impl):
    """Weight-0 rows with invalid targets (padding 0, negative, >= V) change nothing."""
    n, v = 16, 48
    h, items, targets, weights = make_data(n, v, 8, seed=13, lo=1)
    masked = np.array([1, 5, 6, 12])
    targets = targets.at[masked].set(jnp.array([0, -3, v + 5, 0]))
    weights = weights.at[masked].set(0.0)
    keep = np.setdiff1d(np.arange(n), masked)
    kw = dict(valid_range=(1, v), chunk_size=8, temperature=0.5)
    if impl == "sharded":
        kw["mesh"] = mesh_of((2, 4), ("data", "model"))
        kw["data_axis"] = "data"
    (loss, lse), (value, (dh, ditems, _)) = forward_and_grads(impl, h, items, targets, weights,
                                                              **kw)
    assert np.all(np.isfinite(np.asarray(lse)))
    assert np.all(np.asarray(loss)[masked] == 0.0)
    assert float(jnp.max(jnp.abs(dh[masked]))) == 0.0
    kw_ref = {k: kw[k] for k in ("valid_range", "temperature")}
    want_value, (want_dh, want_ditems, _) = value_and_grads(
        "reference", h[keep], items, targets[keep], weights[keep], **kw_ref)
    np.testing.assert_allclose(value, want_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dh[keep], want_dh, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ditems, want_ditems, rtol=1e-5, atol=1e-5)


def test_bfloat16_inputs():
    h, items, targets, weights = make_data(16, 40, 8, seed=15)
    kw = dict(valid_range=(1, 40), chunk_size=16)
    got = value_and_grads("chunked", h.astype(jnp.bfloat16), items.astype(jnp.bfloat16), targets,
                          weights, **kw)
    want = value_and_grads("chunked", h, items, targets, weights, **kw)
    assert got[1][0].dtype == jnp.bfloat16 and got[1][1].dtype == jnp.bfloat16
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=2e-2)
    for g, w in zip(got[1][:2], want[1][:2]):
        np.testing.assert_allclose(np.asarray(g, np.float32), w, rtol=0.1, atol=0.05)


def test_one_trace_per_shape():
    traces = []

    @jax.jit
    def step(h, items, targets, weights):
        traces.append(1)  # Python side effect: runs only while tracing
        loss, lse = weighted_softmax_xent(h, items, targets, weights, valid_range=(1, 40),
                                          chunk_size=16)
        return jnp.mean(loss) + jnp.mean(lse)

    grad_step = jax.jit(jax.grad(step, argnums=(0, 1)))
    a = make_data(16, 40, 8, seed=1)
    b = make_data(16, 40, 8, seed=2)
    step(*a)
    step(*b)
    assert len(traces) == 1
    grad_step(*a)
    after_grad = len(traces)  # jax may reuse the forward trace for the gradient, or trace once
    assert after_grad <= 2
    grad_step(*b)
    assert len(traces) == after_grad
    step(*make_data(24, 40, 8, seed=3))
    assert len(traces) == after_grad + 1  # a new shape traces again


def test_float64_finite_differences():
    from jax.test_util import check_grads

    with x64():
        h, items, targets, weights = make_data(5, 13, 4, seed=17, dtype=jnp.float64)
        assert h.dtype == jnp.float64
        coef = jnp.linspace(0.5, -0.5, 5)

        def f(h, items, weights):
            loss, lse = weighted_softmax_xent(h, items, targets, weights, valid_range=(1, 12),
                                              temperature=0.7, chunk_size=4)
            return jnp.sum(loss * loss) + jnp.sum(coef * lse)

        assert f(h, items, weights).dtype == jnp.float64
        check_grads(jax.jit(f), (h, items, weights), order=1, modes=("rev",), eps=1e-6, atol=1e-7,
                    rtol=1e-7)
    assert jnp.zeros(1).dtype == jnp.float32  # x64 restored


# --------------------------------------------------------------------------------------------------
# Sharded path.
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,names,data_axis", [
    ((8,), ("model",), None),
    ((2, 4), ("data", "model"), "data"),
    ((2, 4), ("data", "model"), None),
])
def test_sharded_matches_unsharded(shape, names, data_axis):
    # V=72 over 8 shards = 9 rows each; valid rows 1..59: shard 0 loses row 0, shard 6 is partly
    # and shard 7 wholly outside the softmax.
    n, v = 24, 72
    h, items, targets, weights = make_data(n, v, 8, seed=19, lo=1, hi=60)
    targets = targets.at[3].set(65)  # a target outside the valid range, on the all-masked shard
    coef = jnp.asarray(np.random.default_rng(1).normal(size=n), jnp.float32)
    mesh = mesh_of(shape, names)
    kw = dict(valid_range=(1, 60), temperature=0.5, chunk_size=4, lse_coef=coef)
    want = forward_and_grads("chunked", h, items, targets, weights, **kw)
    got = forward_and_grads("sharded", h, items, targets, weights, mesh=mesh, data_axis=data_axis,
                            **kw)
    assert_tree_close(got, want)


def test_sharded_with_explicit_axes_mesh():
    if not hasattr(jax, "set_mesh"):
        pytest.skip("jax.set_mesh not available")
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    h, items, targets, weights = make_data(16, 40, 8, seed=21)
    kw = dict(valid_range=(1, 40), chunk_size=4)
    want = value_and_grads("reference", h, items, targets, weights, **kw)
    with jax.set_mesh(mesh):
        got = value_and_grads("sharded", h, items, targets, weights, mesh=mesh, data_axis="data",
                              **kw)
    assert_tree_close(got, want)


# --------------------------------------------------------------------------------------------------
# Pallas path (interpret mode on CPU: tiny shapes).
# --------------------------------------------------------------------------------------------------

def test_pallas_matches_reference():
    # N=24 pads to a 32-row block, V=72 to a 128-row tile, D=12 to 16.
    h, items, targets, weights = make_data(24, 72, 12, seed=23, lo=1)
    targets = targets.at[0].set(0)
    coef = jnp.asarray(np.random.default_rng(2).normal(size=24), jnp.float32)
    kw = dict(valid_range=(1, 70), temperature=0.5, lse_coef=coef)
    assert_tree_close(forward_and_grads("pallas", h, items, targets, weights, **kw),
                      forward_and_grads("reference", h, items, targets, weights, **kw))


def test_pallas_kernels_lower_to_triton():
    """Without a GPU: the kernels must lower to Triton IR for CUDA (block shapes, dots, loops,
    the tile-skip branch), in float32 with the table's tiles and in bfloat16 with the item range
    split over a second grid axis."""
    pytest.importorskip("jax.experimental.pallas.triton")
    from jax import export

    from genrec_jax.kernels import pallas_xent
    from genrec_jax.kernels.pallas_tiles import Tiles

    h, items, targets, _ = make_data(300, 1300, 50, seed=27)  # pads to 320 x 1408 x 64

    def g(h, items):
        lse, t = pallas_xent.pallas_lse_and_target_logit(h, items, targets, valid_range=(1, 1290),
                                                         interpret=False)
        lse16, t16 = pallas_xent.pallas_lse_and_target_logit(
            h.astype(jnp.bfloat16), items.astype(jnp.bfloat16), targets, valid_range=(1, 1290),
            interpret=False, tiles=Tiles(64, 64, 4, 3, v_splits=2))
        return jnp.sum(lse - t) + jnp.sum(lse16 - t16)

    try:
        exported = export.export(
            jax.jit(jax.value_and_grad(g, argnums=(0, 1))), platforms=["cuda"],
            disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
        )(h, items)
    except (ImportError, NotImplementedError) as e:  # a JAX build without the Triton lowering
        pytest.skip(f"Triton lowering unavailable: {e}")
    text = exported.mlir_module()
    assert text.count("__gpu$xla.gpu.triton") == 6  # forward, dh and ditems kernels, twice


# --------------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------------

def _args(n=8, v=16, d=4):
    return make_data(n, v, d)


@pytest.mark.parametrize("change,match", [
    (lambda a: (a[0][:, :3],) + a[1:], "last dimension"),
    (lambda a: (a[0][0],) + a[1:], r"h must have shape"),
    (lambda a: (a[0], a[1][None]) + a[2:], r"items must have shape"),
    (lambda a: a[:2] + (a[2][:5], a[3]), r"targets must have shape"),
    (lambda a: a[:3] + (a[3][:5],), r"weights must have shape"),
    (lambda a: a[:2] + (a[2].astype(jnp.float32), a[3]), "targets must be integers"),
])
def test_shape_and_dtype_errors(change, match):
    with pytest.raises(ValueError, match=match):
        weighted_softmax_xent(*change(_args()))


@pytest.mark.parametrize("kw,match", [
    (dict(impl="dense"), "unknown impl"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=-4), "chunk_size"),
    (dict(chunk_size=2.5), "chunk_size"),
    (dict(valid_range=(5, 5)), "valid_range"),
    (dict(valid_range=(0, 17)), "valid_range"),
    (dict(valid_range=(3,)), "valid_range"),
    (dict(temperature=0.0), "temperature"),
    (dict(impl="sharded"), "needs a jax.sharding.Mesh"),
])
def test_argument_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        weighted_softmax_xent(*_args(), **kw)


def test_sharded_argument_errors():
    mesh = mesh_of((2, 4), ("data", "model"))
    with pytest.raises(ValueError, match="divisible"):
        weighted_softmax_xent(*_args(v=18), impl="sharded", mesh=mesh)
    with pytest.raises(ValueError, match="not an axis"):
        weighted_softmax_xent(*_args(), impl="sharded", mesh=mesh, model_axis="items")
    with pytest.raises(ValueError, match="not an axis"):
        weighted_softmax_xent(*_args(), impl="sharded", mesh=mesh, data_axis="batch")
    with pytest.raises(ValueError, match="N=9 must be divisible"):
        weighted_softmax_xent(*_args(n=9), impl="sharded", mesh=mesh, data_axis="data")


def test_impls_listed():
    assert set(IMPLS) == {"reference", "chunked", "sharded", "pallas"}


# --------------------------------------------------------------------------------------------------
# Benchmark smoke run.
# --------------------------------------------------------------------------------------------------

def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def test_benchmark_quick_smoke(tmp_path):
    out = tmp_path / "fused_loss_quick.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device is enough
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fused_loss.py"), "--quick", "--pallas",
         f"--out={out}"],
        capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEADLINE" in proc.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True
    (res,) = data["results"]
    for section in (res["reference"], res["chunked"], res["pallas"]):
        assert section["time_s"] > 0 and section["added_bytes"] is not None
        assert section["finite"] is True
    # Every path computes the reference's loss and gradients (compared through projections).
    parity = res["parity_vs_reference"]
    assert set(parity) == {"chunked[4096]", "chunked[8192]", "pallas"}
    for diffs in parity.values():
        assert diffs["loss_rel_diff"] < 1e-5
        assert diffs["dh_projection_rel_diff"] < 1e-4 and diffs["ditems_projection_rel_diff"] < 1e-4
    head = data["headline"]
    assert head["time_ratio"] > 0 and head["added_memory_ratio"] is not None
    assert head["pallas_time_ratio"] > 0
    # Throughput: FLOPs counted per path (2NVD forward, 4NVD backward, + recomputation), peaks
    # measured on the CPU, fractions positive.
    nvd = res["N"] * res["V"] * res["D"]
    assert data["peaks"]["source"] == "measured" and data["peaks"]["bandwidth"] > 0
    for path, per_nvd, passes in (("reference", 6, 2), ("chunked", 8, 2), ("pallas", 10, 3)):
        tp = res[path]["throughput"]
        assert tp["flops_executed"] == per_nvd * nvd and tp["flops_model"] == 6 * nvd
        io = (res["N"] + res["V"]) * res["D"] * 4
        logits = 6 * res["N"] * res["V"] * 4 if path == "reference" else 0
        assert tp["bytes_moved"] == (passes + 1) * io + logits
        assert tp["fraction_of_matmul_peak"] > 0 and tp["fraction_of_bandwidth"] > 0
        assert math.isclose(tp["tflops_executed"], per_nvd * nvd / res[path]["time_s"] / 1e12)
    assert res["pallas"]["tiles"]["block_n"] == 64 and res["pallas"]["autotune_s"] >= 0
    nums = list(_numbers(data))
    assert nums and all(math.isfinite(x) for x in nums)
