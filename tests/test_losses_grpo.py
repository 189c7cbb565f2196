"""GRPO: group advantages, the k3 KL estimator and the clipped loss against numpy references."""
import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from genrec_jax import losses


@contextlib.contextmanager
def x64():
    if hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
    else:  # older JAX
        from jax.experimental import enable_x64
        with enable_x64():
            yield


# ---------------------------------------------------------------- numpy references

def np_group_advantages(r, mask, eps):
    """Loop over groups: (r - mean) / (population std + eps) over the valid entries."""
    out = np.zeros(r.shape, np.float64)
    flat_r, flat_m, flat_o = r.reshape(-1, r.shape[-1]), mask.reshape(-1, r.shape[-1]), \
        out.reshape(-1, r.shape[-1])
    for g in range(flat_r.shape[0]):
        vals = [float(flat_r[g, i]) for i in range(r.shape[-1]) if flat_m[g, i]]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
        for i in range(r.shape[-1]):
            if flat_m[g, i]:
                flat_o[g, i] = (flat_r[g, i] - mean) / (std + eps)
    return out


def np_grpo(logp, old, ref, adv, mask, clip_eps, kl_coef):
    rho = np.exp(logp - old)
    surrogate = -np.minimum(rho * adv, np.clip(rho, 1 - clip_eps, 1 + clip_eps) * adv)
    d = ref - logp
    k3 = np.exp(d) - d - 1
    return np.where(mask, surrogate + kl_coef * k3, 0.0)


def np_grpo_grad(logp, old, ref, adv, mask, clip_eps, kl_coef):
    """Hand derivative of np_grpo in logp: -rho*A where the unclipped branch is active."""
    rho = np.exp(logp - old)
    unclipped_active = rho * adv <= np.clip(rho, 1 - clip_eps, 1 + clip_eps) * adv
    g = np.where(unclipped_active, -rho * adv, 0.0) + kl_coef * (1 - np.exp(ref - logp))
    return np.where(mask, g, 0.0)


def _random_case(seed, shape):
    rng = np.random.default_rng(seed)
    logp = -rng.uniform(0.3, 4.0, shape)
    # Ratios exp(+-0.02..0.6): both sides of the trust region, never exactly at a kink.
    old = logp + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.02, 0.6, shape)
    ref = -rng.uniform(0.3, 4.0, shape)
    rewards = rng.uniform(1, 5, shape)
    mask = rng.uniform(size=shape) > 0.25
    return logp, old, ref, rewards, mask


# ---------------------------------------------------------------- group advantages

@pytest.mark.parametrize("seed,shape", [(0, (4, 6)), (1, (2, 3, 5)), (2, (7,)), (3, (5, 1))])
def test_group_advantages_match_numpy(seed, shape):
    _, _, _, rewards, mask = _random_case(seed, shape)
    with x64():
        got = losses.group_advantages(jnp.asarray(rewards), eps=1e-6, where=jnp.asarray(mask))
        np.testing.assert_allclose(got, np_group_advantages(rewards, mask, 1e-6), rtol=1e-10,
                                   atol=1e-12)
        unmasked = losses.group_advantages(jnp.asarray(rewards), eps=0.1)
        np.testing.assert_allclose(unmasked, np_group_advantages(rewards, np.ones(shape, bool),
                                                                 0.1), rtol=1e-10, atol=1e-12)


def test_group_advantages_population_std_pinned():
    # Mean 2, population std 1 (the sample std would be sqrt 2).
    a = losses.group_advantages(jnp.array([[1.0, 3.0], [2.0, 2.0]]), eps=1e-6)
    np.testing.assert_allclose(a, [[-1 / (1 + 1e-6), 1 / (1 + 1e-6)], [0.0, 0.0]], rtol=1e-6)
    # Third entry masked: its 100 is ignored and its advantage is 0.
    a = losses.group_advantages(jnp.array([1.0, 3.0, 100.0]), eps=1e-6,
                                where=jnp.array([1, 1, 0]))
    np.testing.assert_allclose(a, [-1 / (1 + 1e-6), 1 / (1 + 1e-6), 0.0], rtol=1e-6)


def test_group_advantages_invariant_to_shift_and_positive_scale_per_group():
    rng = np.random.default_rng(4)
    r = rng.uniform(1, 5, (6, 8)).astype(np.float32)
    mask = rng.uniform(size=(6, 8)) > 0.2
    shift = rng.normal(0, 10, (6, 1)).astype(np.float32)
    scale = rng.uniform(0.5, 4.0, (6, 1)).astype(np.float32)
    base = losses.group_advantages(r, where=mask)
    np.testing.assert_allclose(losses.group_advantages(r + shift, where=mask), base, atol=2e-5)
    np.testing.assert_allclose(losses.group_advantages(r * scale, where=mask), base, atol=2e-5)
    np.testing.assert_allclose(losses.group_advantages(r * scale + shift, where=mask), base,
                               atol=2e-5)
    # Valid entries: mean 0 and population std 1 per group (up to eps).
    b = np.asarray(base)
    for g in range(6):
        v = b[g][mask[g]]
        assert abs(v.mean()) < 1e-5 and abs(v.std() - 1) < 1e-4


def test_equal_rewards_give_exactly_zero_advantage_and_zero_policy_gradient():
    # float32 rewards that are not exactly representable sums: still exactly 0.
    rewards = jnp.array([[3.7, 3.7, 3.7, 3.7], [0.1, 0.1, 0.1, 0.1], [1.0, 2.0, 4.0, 8.0]],
                        jnp.float32)
    adv = losses.group_advantages(rewards)
    np.testing.assert_array_equal(adv[:2], 0.0)
    assert np.all(np.asarray(adv[2]) != 0)
    # A group with one valid sample (or none) also gets 0.
    one = losses.group_advantages(rewards, where=jnp.array([[1, 0, 0, 0]] * 3))
    np.testing.assert_array_equal(one, 0.0)
    logp, old, ref, _, _ = _random_case(5, (3, 4))
    grad = jax.grad(lambda lp: losses.grpo(lp, old, ref, adv, kl_coef=0.0).sum())(
        jnp.asarray(logp, jnp.float32))
    np.testing.assert_array_equal(grad[:2], 0.0)
    assert np.all(np.asarray(grad[2]) != 0)


def test_group_advantages_are_constants_and_ignore_masked_garbage():
    r = jnp.array([[1.0, 2.0, jnp.nan, 4.0], [jnp.inf, -jnp.inf, 2.0, 5.0]])
    mask = jnp.array([[1, 1, 0, 1], [0, 0, 1, 1]], bool)
    adv = losses.group_advantages(r, where=mask)
    assert np.all(np.isfinite(adv))
    np.testing.assert_array_equal(np.asarray(adv)[~np.asarray(mask)], 0.0)
    clean = jnp.where(mask, r, 0.0)
    np.testing.assert_allclose(adv, np_group_advantages(np.asarray(clean), np.asarray(mask),
                                                        1e-6), rtol=1e-5)
    g = jax.grad(lambda x: losses.group_advantages(x, where=mask).sum())(r)
    np.testing.assert_array_equal(g, 0.0)


# ---------------------------------------------------------------- k3

def test_k3_non_negative_zero_at_reference_and_exact_expectation_is_kl():
    rng = np.random.default_rng(6)
    logp = -rng.uniform(0.0, 10.0, 1000)
    ref = -rng.uniform(0.0, 10.0, 1000)
    k3 = np.asarray(losses.k3_kl(logp, ref))
    assert np.all(k3 >= 0)
    np.testing.assert_array_equal(losses.k3_kl(logp, logp), 0.0)
    g = jax.grad(lambda x: losses.k3_kl(x, x + 0.0).sum())(jnp.asarray(logp, jnp.float32))
    np.testing.assert_array_equal(g, 0.0)
    # Tiny differences keep their precision (expm1): k3 ~ d^2 / 2.
    np.testing.assert_allclose(losses.k3_kl(jnp.float32(-1.0), jnp.float32(-1.0 + 1e-3)),
                               0.5e-6, rtol=1e-2)
    # Unbiased: sum_a pi(a) k3(a) = KL(pi || pi_ref) exactly, for full categorical distributions.
    with x64():
        for seed in range(3):
            r2 = np.random.default_rng(seed)
            lp = jax.nn.log_softmax(jnp.asarray(r2.normal(size=(5, 9)) * 2))
            lr = jax.nn.log_softmax(jnp.asarray(r2.normal(size=(5, 9)) * 2))
            expected_k3 = jnp.sum(jnp.exp(lp) * losses.k3_kl(lp, lr), -1)
            kl = jnp.sum(jnp.exp(lp) * (lp - lr), -1)
            np.testing.assert_allclose(expected_k3, kl, rtol=1e-10)


# ---------------------------------------------------------------- the loss

@pytest.mark.parametrize("seed,shape,clip_eps,kl_coef",
                         [(0, (4, 6), 0.2, 0.04), (1, (2, 3, 5), 0.1, 0.5), (2, (9,), 0.3, 0.0),
                          (3, (3, 2), 0.2, 1.0)])
def test_grpo_matches_numpy_and_hand_gradient(seed, shape, clip_eps, kl_coef):
    logp, old, ref, rewards, mask = _random_case(seed, shape)
    with x64():
        adv = losses.group_advantages(jnp.asarray(rewards), where=jnp.asarray(mask))
        a = np.asarray(adv)

        def f(lp):
            return losses.grpo(lp, jnp.asarray(old), jnp.asarray(ref), adv, clip_eps=clip_eps,
                               kl_coef=kl_coef, where=jnp.asarray(mask))

        np.testing.assert_allclose(f(jnp.asarray(logp)),
                                   np_grpo(logp, old, ref, a, mask, clip_eps, kl_coef),
                                   rtol=1e-10, atol=1e-12)
        grad = jax.grad(lambda lp: f(lp).sum())(jnp.asarray(logp))
        np.testing.assert_allclose(grad, np_grpo_grad(logp, old, ref, a, mask, clip_eps, kl_coef),
                                   rtol=1e-10, atol=1e-12)
        check_grads(f, (jnp.asarray(logp),), order=1, modes=("rev",), eps=1e-6, atol=1e-6,
                    rtol=1e-6)


def test_grpo_pinned_values():
    old = jnp.full((4,), -1.0)
    logp = old + jnp.log(jnp.array([1.5, 1.5, 0.5, 0.5]))
    adv = jnp.array([2.0, -2.0, 2.0, -2.0])
    ref = logp  # k3 = 0: pure PPO surrogate.
    np.testing.assert_allclose(losses.grpo(logp, old, ref, adv, clip_eps=0.2, kl_coef=1.0),
                               [-2.4, 3.0, -1.0, 1.6], rtol=1e-6)
    # rho = 1, A = 0 and ref - logp = log 2: L = kl_coef * (2 - log 2 - 1).
    np.testing.assert_allclose(
        losses.grpo(jnp.array([-2.0]), jnp.array([-2.0]), jnp.array([-2.0 + np.log(2.0)]),
                    jnp.array([0.0]), kl_coef=0.5),
        [0.5 * (1 - np.log(2.0))], rtol=1e-6)
    # The default equals PPO plus 0.04 * k3.
    logp, old, ref, _, _ = _random_case(7, (5,))
    adv = jnp.linspace(-1, 1, 5)
    np.testing.assert_allclose(losses.grpo(logp, old, ref, adv),
                               losses.ppo(logp, old, adv) + 0.04 * losses.k3_kl(logp, ref),
                               rtol=1e-6)


def test_grpo_only_logps_get_gradient_and_broadcasting():
    logp, old, ref, rewards, _ = _random_case(8, (3, 4))
    adv = losses.group_advantages(rewards)
    g_old, g_ref, g_adv = jax.grad(
        lambda o, r, a: losses.grpo(logp, o, r, a, kl_coef=0.3).sum(), argnums=(0, 1, 2))(
        jnp.asarray(old), jnp.asarray(ref), adv)
    for g in (g_old, g_ref, g_adv):
        np.testing.assert_array_equal(g, 0.0)
    # A per-state reference log-prob [3, 1] broadcasts over the group axis.
    out = losses.grpo(logp, old, ref[:, :1], adv, kl_coef=0.3)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, losses.grpo(logp, old, np.repeat(ref[:, :1], 4, 1), adv,
                                                kl_coef=0.3), rtol=1e-6)


def _corrupt(x, mask):
    return jnp.where(mask, x, jnp.where(jnp.arange(x.shape[0])[:, None] == 0, jnp.nan, -jnp.inf))


def test_masked_entries_zero_loss_zero_grad_with_garbage():
    logp, old, ref, rewards, _ = _random_case(9, (3, 4))
    mask = jnp.asarray(np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 1]], bool))
    adv = losses.group_advantages(rewards, where=mask)
    args = [jnp.asarray(x, jnp.float32) for x in (logp, old, ref, adv)]
    clean = losses.grpo(*args, kl_coef=0.2, where=mask)
    bad = [_corrupt(x, mask) for x in args]
    out = losses.grpo(*bad, kl_coef=0.2, where=mask)
    np.testing.assert_array_equal(np.asarray(out)[~np.asarray(mask)], 0.0)
    np.testing.assert_allclose(out, clean, rtol=1e-6)
    grads = jax.grad(lambda *a: losses.grpo(*a, kl_coef=0.2, where=mask).sum(),
                     argnums=(0, 1, 2, 3))(*bad)
    g = np.asarray(grads[0])
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    np.testing.assert_array_equal(g[~np.asarray(mask)], 0.0)
    for other in grads[1:]:
        np.testing.assert_array_equal(other, 0.0)
    # The k3 helper on its own, too.
    k = losses.k3_kl(bad[0], bad[2], where=mask)
    np.testing.assert_array_equal(np.asarray(k)[~np.asarray(mask)], 0.0)
    gk = jax.grad(lambda x: losses.k3_kl(x, bad[2], where=mask).sum())(bad[0])
    assert np.all(np.isfinite(gk))
    np.testing.assert_array_equal(np.asarray(gk)[~np.asarray(mask)], 0.0)


def test_where_all_false_float_mask_jit_and_vmap():
    logp, old, ref, rewards, _ = _random_case(10, (3, 4))
    adv = losses.group_advantages(rewards)
    args = [jnp.asarray(x, jnp.float32) for x in (logp, old, ref, adv)]
    np.testing.assert_array_equal(losses.grpo(*args, where=False), np.zeros((3, 4)))
    fmask = np.array([[1.0, 0.0, 2.0, 0.0]] * 3, np.float32)
    np.testing.assert_array_equal(losses.grpo(*args, where=fmask),
                                  losses.grpo(*args, where=fmask != 0))
    mask = jnp.asarray(np.array([[1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]], bool))

    def call(a, m):
        return losses.grpo(*a, clip_eps=0.25, kl_coef=0.1, where=m)

    eager = call(args, mask)
    np.testing.assert_allclose(jax.jit(call)(args, mask), eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(call)(args, mask), eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.jit(lambda r: losses.group_advantages(r, where=mask))(rewards),
                               losses.group_advantages(rewards, where=mask), rtol=1e-6)


def test_bad_hyper_parameters_raise():
    x = jnp.zeros((2, 3))
    for clip_eps in (0.0, -0.1):
        with pytest.raises(ValueError, match=r"clip_eps must be > 0"):
            losses.grpo(x, x, x, x, clip_eps=clip_eps)
    with pytest.raises(ValueError, match=r"kl_coef must be >= 0, got -0.01"):
        losses.grpo(x, x, x, x, kl_coef=-0.01)
    with pytest.raises(ValueError, match=r"kl_coef must be >= 0"):
        losses.grpo(x, x, x, x, kl_coef=float("nan"))
    for eps in (0.0, -1e-6):
        with pytest.raises(ValueError, match=r"eps must be > 0"):
            losses.group_advantages(x, eps=eps)
    with pytest.raises(ValueError, match=r"rewards must have a group axis"):
        losses.group_advantages(jnp.float32(1.0))


def test_registered_by_name():
    assert "grpo" in losses.available_losses()
    assert losses.get_loss("grpo") is losses.grpo
