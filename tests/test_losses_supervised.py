"""Pinned values and equivalences: log_prob_of, BC, RWBC, A-SFT, sampled softmax."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genrec_jax import losses

# softmax(log([1, 2, 3, 4])) = [0.1, 0.2, 0.3, 0.4]
LOGITS = jnp.log(jnp.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]))
ACTIONS = jnp.array([3, 0])
BC_VALUES = np.array([-np.log(0.4), -np.log(0.1)])  # [0.9162907, 2.3025851]


def _random(seed=0, shape=(4, 3), v=7):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=shape + (v,)), jnp.float32),
            jnp.asarray(rng.integers(0, v, shape)))


def test_log_prob_of_pinned():
    np.testing.assert_allclose(losses.log_prob_of(LOGITS, ACTIONS), -BC_VALUES, rtol=1e-6)


def test_bc_pinned_and_with_invalid_items():
    np.testing.assert_allclose(losses.bc(LOGITS, ACTIONS), [0.9162907318741551,
                                                             2.302585092994046], rtol=1e-6)
    # An item at -inf (padding / never valid) simply drops out of the softmax.
    logits = jnp.array([[0.0, -jnp.inf, 0.0]])
    np.testing.assert_allclose(losses.bc(logits, jnp.array([0])), [np.log(2)], rtol=1e-6)
    g = jax.grad(lambda x: losses.bc(x, jnp.array([0])).sum())(logits)
    np.testing.assert_allclose(g, [[-0.5, 0.0, 0.5]], atol=1e-7)


def test_bc_equals_optax_cross_entropy():
    logits, actions = _random()
    np.testing.assert_allclose(
        losses.bc(logits, actions),
        optax.softmax_cross_entropy_with_integer_labels(logits, actions), rtol=1e-5)
    np.testing.assert_allclose(losses.bc_from_logps(losses.log_prob_of(logits, actions)),
                               losses.bc(logits, actions), rtol=1e-6)


def test_bc_rejects_float_actions():
    with pytest.raises(TypeError):
        losses.bc(LOGITS, jnp.array([3.0, 0.0]))


@pytest.mark.parametrize("transform,expected", [
    ("linear", [1.0 * 0.9162907318741551, 0.2 * 2.302585092994046]),
    ("minmax", [0.9162907318741551, 0.0]),
    ("exp", [0.9162907318741551, np.exp(-4.0) * 2.302585092994046]),
])
def test_rwbc_pinned(transform, expected):
    rewards = jnp.array([5.0, 1.0])
    np.testing.assert_allclose(losses.rwbc(LOGITS, ACTIONS, rewards, transform=transform),
                               expected, rtol=1e-6)
    logps = losses.log_prob_of(LOGITS, ACTIONS)
    np.testing.assert_allclose(
        losses.rwbc_from_logps(logps, rewards, transform=transform), expected, rtol=1e-6)


def test_rwbc_weights():
    r = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(losses.rwbc_weights(r), [0.2, 0.4, 0.6, 0.8, 1.0], rtol=1e-6)
    np.testing.assert_allclose(losses.rwbc_weights(r, transform="minmax"),
                               [0.0, 0.25, 0.5, 0.75, 1.0], rtol=1e-6)
    np.testing.assert_allclose(losses.rwbc_weights(r, transform="minmax", r_min=0.5, r_max=4.5),
                               [0.125, 0.375, 0.625, 0.875, 1.125], rtol=1e-6)
    # exp: proportional to exp(beta * r), normalised to 1 at r_max.
    w = losses.rwbc_weights(r, transform="exp", beta=2.0)
    np.testing.assert_allclose(w, np.exp(2.0 * (np.arange(1, 6) - 5.0)), rtol=1e-6)
    np.testing.assert_allclose(w[1:] / w[:-1], np.exp(2.0), rtol=1e-5)
    # Integer ratings are fine; no gradient flows through the weights.
    np.testing.assert_allclose(losses.rwbc_weights(jnp.array([5, 1])), [1.0, 0.2], rtol=1e-6)
    assert jax.grad(lambda x: losses.rwbc_weights(x).sum())(r).tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="transform"):
        losses.rwbc_weights(r, transform="square")
    with pytest.raises(ValueError, match="r_max > r_min"):
        losses.rwbc_weights(r, transform="minmax", r_min=5.0, r_max=5.0)


def test_asft_pinned():
    adv = jnp.array([np.log(2.0), 0.0])  # weights 2 and 1 at lam = 1
    np.testing.assert_allclose(losses.asft(LOGITS, ACTIONS, adv, lam=1.0),
                               [2 * 0.9162907318741551, 2.302585092994046], rtol=1e-6)
    # lam = 0.5 -> weight 4, clipped at w_max = 3.
    np.testing.assert_allclose(losses.asft(LOGITS, ACTIONS, adv, lam=0.5, w_max=3.0),
                               [3 * 0.9162907318741551, 2.302585092994046], rtol=1e-6)
    np.testing.assert_allclose(losses.asft(LOGITS, ACTIONS, adv, lam=0.5, w_max=None),
                               [4 * 0.9162907318741551, 2.302585092994046], rtol=1e-6)


@pytest.mark.parametrize("lam", [jnp.inf, float("inf"), 1e9])
def test_asft_infinite_lambda_is_bc(lam):
    logits, actions = _random(1)
    adv = jnp.asarray(np.random.default_rng(2).normal(size=actions.shape) * 3, jnp.float32)
    np.testing.assert_allclose(losses.asft(logits, actions, adv, lam=lam),
                               losses.bc(logits, actions), rtol=1e-6)
    g_asft = jax.grad(lambda x: losses.asft(x, actions, adv, lam=lam).sum())(logits)
    g_bc = jax.grad(lambda x: losses.bc(x, actions).sum())(logits)
    np.testing.assert_allclose(g_asft, g_bc, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("c,lam", [(0.3, 0.5), (-1.0, 1.0), (2.0, 1.0)])
def test_asft_constant_advantage_scales_bc(c, lam):
    logits, actions = _random(3)
    scale = np.exp(c / lam)
    assert scale < 20.0
    np.testing.assert_allclose(
        losses.asft(logits, actions, jnp.full(actions.shape, c), lam=lam),
        scale * losses.bc(logits, actions), rtol=1e-5)
    # Advantages broadcast: a scalar works too.
    np.testing.assert_allclose(losses.asft(logits, actions, c, lam=lam),
                               scale * losses.bc(logits, actions), rtol=1e-5)


def test_asft_weights_clip_and_overflow():
    adv = jnp.array([-1e4, -1.0, 0.0, 1.0, 2.0, 1e4, 1e30])
    w = losses.asft_weights(adv, lam=1.0, w_max=5.0)
    np.testing.assert_allclose(w[:4], np.exp([-1e4, -1.0, 0.0, 1.0]), rtol=1e-6)
    np.testing.assert_array_equal(w[4:], [5.0, 5.0, 5.0])  # exactly w_max when clipped
    w = losses.asft_weights(adv, lam=1.0)  # default w_max = 20
    assert float(w[-1]) == 20.0
    w = losses.asft_weights(adv, lam=1.0, w_max=None)  # no clip, still no overflow
    assert np.all(np.isfinite(w)) and float(w[-1]) > 1e37
    w = losses.asft_weights(adv, lam=jnp.inf)
    np.testing.assert_array_equal(w, np.ones(7))
    g = jax.grad(lambda a: losses.asft_weights(a, lam=1.0).sum())(adv)
    np.testing.assert_array_equal(g, np.zeros(7))
    with pytest.raises(ValueError, match="lam"):
        losses.asft_weights(adv, lam=0.0)
    with pytest.raises(ValueError, match="w_max"):
        losses.asft_weights(adv, lam=1.0, w_max=-1.0)
    # A traced lam is accepted (no Python-side check possible).
    jax.jit(lambda a, lam: losses.asft_weights(a, lam=lam))(adv, 2.0)


def test_asft_clipping_in_loss():
    logits, actions = _random(4)
    adv = jnp.full(actions.shape, 10.0)
    np.testing.assert_allclose(losses.asft(logits, actions, adv, lam=1.0, w_max=7.0),
                               7.0 * losses.bc(logits, actions), rtol=1e-6)
    np.testing.assert_allclose(
        losses.asft_from_logps(losses.log_prob_of(logits, actions), adv, lam=1.0, w_max=7.0),
        7.0 * losses.bc(logits, actions), rtol=1e-6)


def test_sampled_softmax_pinned():
    pos = jnp.log(jnp.array([4.0, 4.0]))
    neg = jnp.log(jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(losses.sampled_softmax(pos, neg), [-np.log(0.4)] * 2, rtol=1e-6)
    mask = jnp.array([[True, True, False], [False, False, False]])
    np.testing.assert_allclose(losses.sampled_softmax(pos, neg, neg_mask=mask),
                               [-np.log(4 / 7), 0.0], atol=1e-7)  # 0.5596158, 0


def test_sampled_softmax_with_all_items_is_bc():
    logits, actions = _random(5, shape=(3, 4), v=9)
    pos = losses.log_prob_of(logits, actions) + jax.nn.logsumexp(logits, -1)  # logits[a]
    neg_mask = jnp.arange(9) != actions[..., None]
    np.testing.assert_allclose(losses.sampled_softmax(pos, logits, neg_mask=neg_mask),
                               losses.bc(logits, actions), rtol=1e-5)

    def via_sampled(x):
        p = jnp.take_along_axis(x, actions[..., None], -1)[..., 0]
        return losses.sampled_softmax(p, x, neg_mask=neg_mask).sum()

    np.testing.assert_allclose(jax.grad(via_sampled)(logits),
                               jax.grad(lambda x: losses.bc(x, actions).sum())(logits),
                               rtol=1e-5, atol=1e-7)
