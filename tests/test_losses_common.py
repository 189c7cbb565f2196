"""Properties every loss in genrec_jax.losses must have.

One table of cases (a loss and small inputs) drives: finite-difference gradients in float64,
masked entries giving exactly zero loss and zero gradient even with garbage inputs, and
jit / vmap giving the same answer as eager. Also: the registry and the import isolation.
"""
import contextlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from genrec_jax import losses
from genrec_jax.losses import _registry

B, L, V, K = 3, 2, 5, 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def x64():
    """float64 on, restored afterwards (API moved between JAX versions)."""
    if hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
    else:  # older JAX
        from jax.experimental import enable_x64
        with enable_x64():
            yield


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    logps = -rng.uniform(0.3, 3.0, (B, L))
    return dict(
        logits=rng.normal(size=(B, L, V)),
        actions=rng.integers(0, V, (B, L)),
        rewards=rng.uniform(1, 5, (B, L)),
        adv=rng.normal(size=(B, L)),
        logps=logps,
        logps2=-rng.uniform(0.3, 3.0, (B, L)),
        ref1=-rng.uniform(0.3, 3.0, (B, L)),
        ref2=-rng.uniform(0.3, 3.0, (B, L)),
        # PPO ratios exp(+-0.05 .. 0.5): some inside, some outside [0.8, 1.2], none at a kink.
        old=logps + rng.choice([-1.0, 1.0], (B, L)) * rng.uniform(0.05, 0.5, (B, L)),
        pos=rng.normal(size=(B, L)),
        neg=rng.normal(size=(B, L, K)),
        neg_mask=rng.uniform(size=(B, L, K)) > 0.3,
        values=rng.normal(size=(B, L)),
        returns=rng.normal(size=(B, L)),
        targets=rng.normal(size=(B, L)),
        lse=rng.uniform(1.0, 3.0, (B, L)),
        qtaken=rng.normal(size=(B, L)),
    )


# name -> (fn, positional input keys, array-kwarg keys (batched), static kwargs, diff argnums)
CASES = {
    "bc": (losses.bc, ("logits", "actions"), {}, {}, (0,)),
    "bc_from_logps": (losses.bc_from_logps, ("logps",), {}, {}, (0,)),
    "log_prob_of": (losses.log_prob_of, ("logits", "actions"), {}, {}, (0,)),
    "rwbc_linear": (losses.rwbc, ("logits", "actions", "rewards"), {}, {}, (0,)),
    "rwbc_minmax": (losses.rwbc, ("logits", "actions", "rewards"), {},
                    dict(transform="minmax"), (0,)),
    "rwbc_exp": (losses.rwbc, ("logits", "actions", "rewards"), {},
                 dict(transform="exp", beta=0.5), (0,)),
    "rwbc_from_logps": (losses.rwbc_from_logps, ("logps", "rewards"), {},
                        dict(transform="minmax"), (0,)),
    "asft": (losses.asft, ("logits", "actions", "adv"), {}, dict(lam=0.7, w_max=3.0), (0,)),
    "asft_from_logps": (losses.asft_from_logps, ("logps", "adv"), {}, dict(lam=0.7), (0,)),
    "sampled_softmax": (losses.sampled_softmax, ("pos", "neg"), {"neg_mask": "neg_mask"}, {},
                        (0, 1)),
    "dpo": (losses.dpo, ("logps", "logps2", "ref1", "ref2"), {},
            dict(beta=0.5, label_smoothing=0.1), (0, 1)),
    "dpo_margin": (losses.dpo_margin, ("logps", "logps2", "ref1", "ref2"), {}, dict(beta=0.5),
                   (0, 1)),
    "ipo": (losses.ipo, ("logps", "logps2", "ref1", "ref2"), {}, dict(beta=0.5), (0, 1)),
    "grpo": (losses.grpo, ("logps", "old", "ref1", "adv"), {}, dict(clip_eps=0.2, kl_coef=0.1),
             (0,)),
    "ppo": (losses.ppo, ("logps", "old", "adv"), {}, dict(clip_eps=0.2), (0,)),
    "ppo_value": (losses.ppo_value_loss, ("values", "returns"), {}, {}, (0,)),
    "ppo_objective": (losses.ppo_objective, ("logits", "actions", "old", "adv"),
                      {"values": "values", "returns": "returns"},
                      dict(entropy_coef=0.05), (0,)),
    "cql": (losses.cql, ("logits", "actions", "targets"), {}, dict(alpha=0.5), (0,)),
    "cql_from_lse": (losses.cql_from_lse, ("lse", "qtaken", "targets"), {}, dict(alpha=0.5),
                     (0, 1)),
}


def _build(name, dtype=jnp.float32, seed=0):
    fn, keys, akw, kw, diff = CASES[name]
    data = _inputs(seed)

    def conv(x):
        x = np.asarray(x)
        if x.dtype.kind == "f":
            return jnp.asarray(x, dtype)
        return jnp.asarray(x)

    args = [conv(data[k]) for k in keys]
    array_kwargs = {k: conv(data[v]) for k, v in akw.items()}
    return fn, args, array_kwargs, kw, diff


def test_every_registered_loss_has_a_case():
    case_fns = {CASES[name][0] for name in CASES}
    for name in losses.available_losses():
        assert losses.get_loss(name) in case_fns, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    with x64():
        fn, args, akw, kw, diff = _build(name, jnp.float64)
        mask = jnp.asarray(np.array([[True, True], [True, False], [True, True]]))

        def f(*diff_args):
            full = list(args)
            for i, a in zip(diff, diff_args):
                full[i] = a
            return fn(*full, **akw, **kw, where=mask)

        check_grads(f, tuple(args[i] for i in diff), order=1, modes=("rev",), eps=1e-6,
                    atol=1e-6, rtol=1e-6)


def _corrupt(x, mask):
    """Garbage in the masked entries: NaN / -1 in row 0, -inf / 10**6 in row 2 (whole rows of
    ``[..., V]`` arrays)."""
    if x.dtype == jnp.bool_:
        return x
    row0 = (jnp.arange(B) == 0)[:, None]
    if jnp.issubdtype(x.dtype, jnp.integer):
        bad = jnp.where(row0, -1, 10 ** 6).astype(x.dtype)
    else:
        bad = jnp.where(row0, jnp.nan, -jnp.inf).astype(x.dtype)
    extra = x.ndim - mask.ndim
    m = mask.reshape(mask.shape + (1,) * extra)
    return jnp.where(m, x, bad.reshape(bad.shape + (1,) * extra))


@pytest.mark.parametrize("name", sorted(CASES))
def test_masked_entries_zero_loss_zero_grad(name):
    fn, args, akw, kw, diff = _build(name)
    # Row 0 fully masked, one more masked entry in row 2.
    mask = jnp.asarray(np.array([[False, False], [True, True], [True, False]]))
    clean = fn(*args, **akw, **kw, where=mask)
    bad_args = [_corrupt(a, mask) for a in args]
    bad_akw = {k: _corrupt(v, mask) for k, v in akw.items()}

    def total(*diff_args):
        full = list(bad_args)
        for i, a in zip(diff, diff_args):
            full[i] = a
        return jnp.sum(fn(*full, **bad_akw, **kw, where=mask))

    out = fn(*bad_args, **bad_akw, **kw, where=mask)
    assert out.shape == (B, L)
    np.testing.assert_array_equal(np.asarray(out)[~np.asarray(mask)], 0.0)
    np.testing.assert_allclose(out, clean, rtol=1e-6)  # unmasked entries untouched
    grads = jax.grad(total, argnums=tuple(range(len(diff))))(*(bad_args[i] for i in diff))
    for g in grads:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), f"{name}: non-finite gradient {g}"
        np.testing.assert_array_equal(g[~np.asarray(mask)], 0.0)
        assert np.any(g != 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_where_all_false_and_float_mask(name):
    fn, args, akw, kw, _ = _build(name)
    np.testing.assert_array_equal(fn(*args, **akw, **kw, where=False), np.zeros((B, L)))
    fmask = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    np.testing.assert_array_equal(fn(*args, **akw, **kw, where=fmask),
                                  fn(*args, **akw, **kw, where=fmask > 0))


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_and_vmap_agree_with_eager(name):
    fn, args, akw, kw, _ = _build(name)
    akw = dict(akw, where=jnp.asarray(np.array([[True, False], [True, True], [False, True]])))

    def call(args, akw):
        return fn(*args, **akw, **kw)

    eager = call(args, akw)
    assert eager.shape == (B, L)
    np.testing.assert_allclose(jax.jit(call)(args, akw), eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(call)(args, akw), eager, rtol=1e-6, atol=1e-7)


def test_registry_lookup():
    names = losses.available_losses()
    for name in ("bc", "rwbc", "asft", "dpo", "ipo", "ppo", "cql", "cql_from_lse",
                 "sampled_softmax"):
        assert name in names
    assert list(names) == sorted(names)
    assert losses.get_loss("asft") is losses.asft
    assert losses.get_loss("dpo") is losses.dpo


def test_registry_unknown_name_lists_available():
    with pytest.raises(ValueError) as err:
        losses.get_loss("asfft")
    msg = str(err.value)
    assert "asfft" in msg and "asft" in msg and "cql" in msg and "dpo" in msg


def test_register_new_and_duplicate(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @losses.register("my_test_loss")
    def my_test_loss(x, *, where=None):
        return x

    assert losses.get_loss("my_test_loss") is my_test_loss
    assert "my_test_loss" in losses.available_losses()
    with pytest.raises(ValueError, match="already registered"):
        losses.register("bc")(my_test_loss)
    with pytest.raises(ValueError):
        losses.register("")


def _run_python(code):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_does_not_pull_other_packages():
    proc = _run_python(
        "import genrec_jax.losses, sys; "
        "assert 'flax' not in sys.modules and 'genrec_jax.models' not in sys.modules; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('flax', 'orbax', 'chex', "
        "'ml_collections', 'absl', 'grain', 'tensorflow') or (m.startswith('genrec_jax.') "
        "and not m.startswith('genrec_jax.losses'))]; "
        "assert not bad, bad")
    assert proc.returncode == 0, proc.stderr


def test_import_works_with_flax_and_orbax_unavailable():
    proc = _run_python(
        "import sys\n"
        "for name in ('flax', 'orbax', 'orbax.checkpoint', 'genrec_jax.models',\n"
        "             'genrec_jax.train', 'genrec_jax.data', 'genrec_jax.eval',\n"
        "             'genrec_jax.kernels'):\n"
        "    sys.modules[name] = None  # makes any import of it fail\n"
        "import jax.numpy as jnp\n"
        "from genrec_jax import losses\n"
        "print(float(losses.bc(jnp.zeros((1, 4)), jnp.array([2]))[0]))\n")
    assert proc.returncode == 0, proc.stderr
    assert abs(float(proc.stdout.strip()) - np.log(4)) < 1e-6
