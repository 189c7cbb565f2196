"""Pinned values and equivalences: DPO, IPO, PPO, CQL."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genrec_jax import losses


def _logps(seed, n=6):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(-rng.uniform(0.2, 4.0, n), jnp.float32) for _ in range(4)]


# ---------------------------------------------------------------- DPO / IPO

def test_dpo_pinned():
    c, r, rc, rr = jnp.array([-1.0]), jnp.array([-2.0]), jnp.array([-1.5]), jnp.array([-1.5])
    # z = 1; -log sigmoid(0.1) = log(1 + exp(-0.1)).
    np.testing.assert_allclose(losses.dpo(c, r, rc, rr, beta=0.1), [0.6443966600735709],
                               rtol=1e-6)
    # eps = 0.2: 0.8 * log(1 + e^-0.1) + 0.2 * log(1 + e^0.1) = log(1 + e^-0.1) + 0.2 * 0.1
    np.testing.assert_allclose(losses.dpo(c, r, rc, rr, beta=0.1, label_smoothing=0.2),
                               [0.6643966600735709], rtol=1e-6)
    np.testing.assert_allclose(losses.dpo_margin(c, r, rc, rr), [1.0], rtol=1e-6)
    np.testing.assert_allclose(losses.dpo_margin(c, r, rc, rr, beta=0.1), [0.1], rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_dpo_equals_optax_sigmoid_bce(eps):
    c, r, rc, rr = _logps(0)
    beta = 0.7
    z = (c - r) - (rc - rr)
    expected = optax.sigmoid_binary_cross_entropy(beta * z, jnp.full_like(z, 1.0 - eps))
    np.testing.assert_allclose(losses.dpo(c, r, rc, rr, beta=beta, label_smoothing=eps),
                               expected, rtol=1e-5, atol=1e-6)


def test_dpo_reference_is_constant():
    c, r, rc, rr = _logps(1)
    g_rc, g_rr = jax.grad(lambda a, b: losses.dpo(c, r, a, b).sum(), argnums=(0, 1))(rc, rr)
    np.testing.assert_array_equal(g_rc, 0.0)
    np.testing.assert_array_equal(g_rr, 0.0)
    # Gradient pushes chosen up and rejected down.
    g_c, g_r = jax.grad(lambda a, b: losses.dpo(a, b, rc, rr).sum(), argnums=(0, 1))(c, r)
    assert np.all(g_c < 0) and np.all(g_r > 0)


def test_ipo_pinned_and_minimum():
    c, r, rc, rr = jnp.array([-1.0]), jnp.array([-2.0]), jnp.array([-1.5]), jnp.array([-1.5])
    np.testing.assert_allclose(losses.ipo(c, r, rc, rr, beta=0.1), [16.0], rtol=1e-6)  # (1-5)^2
    np.testing.assert_allclose(losses.ipo(c, r, rc, rr, beta=0.5), [0.0], atol=1e-7)   # z = 1/(2b)

    beta = 0.25  # minimum at z = 2
    rc, rr = jnp.array([-0.7]), jnp.array([-1.9])

    def loss_at(chosen):
        return losses.ipo(chosen, jnp.array([-3.0]), rc, rr, beta=beta).sum()

    c_star = jnp.array([-3.0 + (rc - rr)[0] + 2.0])  # makes z = 2 exactly
    assert abs(float(jax.grad(loss_at)(c_star)[0])) < 1e-5
    assert float(loss_at(c_star)) < 1e-10
    assert float(loss_at(c_star + 0.1)) > float(loss_at(c_star))
    assert float(loss_at(c_star - 0.1)) > float(loss_at(c_star))
    assert float(jax.grad(loss_at)(c_star + 0.5)[0]) > 0
    assert float(jax.grad(loss_at)(c_star - 0.5)[0]) < 0
    with pytest.raises(ValueError, match="beta"):
        losses.ipo(c_star, c_star, c_star, c_star, beta=0.0)


# ---------------------------------------------------------------- PPO

def test_ppo_pinned_values_and_clipped_gradients():
    old = jnp.array([-1.0, -1.0, -1.0, -1.0])
    logps = old + jnp.log(jnp.array([1.5, 1.5, 0.5, 0.5]))
    adv = jnp.array([2.0, -2.0, 2.0, -2.0])
    # rho=1.5,A=2: min(3, 2.4); rho=1.5,A=-2: min(-3, -2.4); rho=.5,A=2: min(1, 1.6);
    # rho=.5,A=-2: min(-1, -1.6).
    np.testing.assert_allclose(losses.ppo(logps, old, adv, clip_eps=0.2),
                               [-2.4, 3.0, -1.0, 1.6], rtol=1e-6)
    g = jax.grad(lambda lp: losses.ppo(lp, old, adv, clip_eps=0.2).sum())(logps)
    # d/dlogp of -rho*A is -rho*A where the unclipped term is active; 0 past the trust region
    # in the direction the advantage favours (rho > 1+eps with A > 0, rho < 1-eps with A < 0).
    np.testing.assert_allclose(g, [0.0, 3.0, -1.0, 0.0], atol=1e-6)


def test_ppo_ratio_one_is_policy_gradient():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(5, 8)), jnp.float32)
    actions = jnp.asarray(rng.integers(0, 8, 5))
    adv = jnp.asarray(rng.normal(size=5), jnp.float32)

    def ppo_loss(x):
        lp = losses.log_prob_of(x, actions)
        return losses.ppo(lp, jax.lax.stop_gradient(lp), adv).sum()

    def pg_loss(x):
        return (-adv * losses.log_prob_of(x, actions)).sum()

    np.testing.assert_allclose(jax.grad(ppo_loss)(logits), jax.grad(pg_loss)(logits),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ppo_loss(logits), -adv.sum(), rtol=1e-5)


def test_ppo_value_loss_and_kl_rewards():
    np.testing.assert_allclose(
        losses.ppo_value_loss(jnp.array([1.0, 3.0]), jnp.array([2.0, 0.0])), [0.5, 4.5])
    g = jax.grad(lambda r: losses.ppo_value_loss(jnp.array([1.0, 3.0]), r).sum())(
        jnp.array([2.0, 0.0]))
    np.testing.assert_array_equal(g, 0.0)  # returns are targets
    r = losses.kl_penalized_rewards(jnp.array([4.0, 2.0]), jnp.array([-1.0, -3.0]),
                                    jnp.array([-2.0, -1.0]), kl_coef=0.5)
    np.testing.assert_allclose(r, [3.5, 3.0])
    g = jax.grad(lambda lp: losses.kl_penalized_rewards(
        jnp.array([4.0, 2.0]), lp, jnp.array([-2.0, -1.0]), kl_coef=0.5).sum())(
            jnp.array([-1.0, -3.0]))
    np.testing.assert_array_equal(g, 0.0)


def test_ppo_objective_combines_terms():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32).at[:, 5].set(-jnp.inf)
    actions = jnp.array([0, 1, 2, 3])
    old = jnp.asarray(-rng.uniform(1, 2, 4), jnp.float32)
    adv = jnp.asarray(rng.normal(size=4), jnp.float32)
    values = jnp.asarray(rng.normal(size=4), jnp.float32)
    returns = jnp.asarray(rng.normal(size=4), jnp.float32)
    p = np.asarray(jax.nn.softmax(logits))
    entropy = -np.sum(p[:, :5] * np.log(p[:, :5]), axis=-1)
    expected = (losses.ppo(losses.log_prob_of(logits, actions), old, adv, clip_eps=0.1)
                + 0.5 * 0.5 * (values - returns) ** 2 - 0.01 * entropy)
    got = losses.ppo_objective(logits, actions, old, adv, values=values, returns=returns,
                               clip_eps=0.1, value_coef=0.5, entropy_coef=0.01)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.all(np.isfinite(jax.grad(lambda x: losses.ppo_objective(
        x, actions, old, adv, entropy_coef=0.01).sum())(logits)))
    with pytest.raises(ValueError, match="both"):
        losses.ppo_objective(logits, actions, old, adv, values=values)


# ---------------------------------------------------------------- CQL

def test_cql_pinned():
    q = jnp.log(jnp.array([[1.0, 2.0, 3.0, 4.0]]))
    expected = (np.log(10.0) - np.log(4.0)) + 0.5 * (np.log(4.0) - 1.0) ** 2
    np.testing.assert_allclose(losses.cql(q, jnp.array([3]), jnp.array([1.0])), [expected],
                               rtol=1e-6)
    np.testing.assert_allclose(
        losses.cql(q, jnp.array([3]), jnp.array([1.0]), alpha=2.0),
        [2 * (np.log(10.0) - np.log(4.0)) + 0.5 * (np.log(4.0) - 1.0) ** 2], rtol=1e-6)


def test_cql_penalty_vanishes_when_q_concentrates_on_logged_item():
    q = jnp.array([[50.0, 0.0, 0.0, 0.0]])
    loss = losses.cql(q, jnp.array([0]), jnp.array([50.0]), alpha=1.0)
    assert 0.0 <= float(loss[0]) < 1e-6
    # Penalty alone equals alpha * bc(Q, a).
    logits = jnp.asarray(np.random.default_rng(5).normal(size=(3, 7)), jnp.float32)
    a = jnp.array([1, 4, 6])
    y = losses.log_prob_of(logits, a) + jax.nn.logsumexp(logits, -1)  # y = Q(s, a): no TD term
    np.testing.assert_allclose(losses.cql(logits, a, y, alpha=0.3),
                               0.3 * losses.bc(logits, a), rtol=1e-5, atol=1e-6)


def test_cql_from_lse_equals_cql():
    rng = np.random.default_rng(6)
    q = jnp.asarray(rng.normal(size=(4, 3, 9)), jnp.float32)
    a = jnp.asarray(rng.integers(0, 9, (4, 3)))
    y = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    lse = jax.nn.logsumexp(q, -1)
    q_taken = jnp.take_along_axis(q, a[..., None], -1)[..., 0]
    np.testing.assert_allclose(losses.cql_from_lse(lse, q_taken, y, alpha=0.7),
                               losses.cql(q, a, y, alpha=0.7), rtol=1e-6)
    g = jax.grad(lambda t: losses.cql(q, a, t).sum())(y)
    np.testing.assert_array_equal(g, 0.0)  # targets are constants


def test_cql_targets():
    r = jnp.array([1.0, 2.0])
    np.testing.assert_array_equal(losses.cql_targets(r), r)
    next_q = jnp.log(jnp.array([[1.0, 3.0], [1.0, 3.0]]))  # Boltzmann probs [1/4, 3/4]
    np.testing.assert_allclose(losses.cql_targets(r, next_q, gamma=0.5),
                               r + 0.5 * 0.75 * np.log(3.0), rtol=1e-6)
    uniform = jnp.zeros((2, 2))
    np.testing.assert_allclose(losses.cql_targets(r, next_q, uniform, gamma=0.5),
                               r + 0.5 * 0.5 * np.log(3.0), rtol=1e-6)
    # Never-valid items (-inf logits and Q) do not poison the expectation; done stops bootstrap.
    q_inf = jnp.array([[1.0, -jnp.inf], [2.0, -jnp.inf]])
    np.testing.assert_allclose(
        losses.cql_targets(r, q_inf, gamma=0.9, dones=jnp.array([False, True])),
        [1.0 + 0.9, 2.0], rtol=1e-6)
    g = jax.grad(lambda x: losses.cql_targets(r, x, gamma=0.5).sum())(next_q)
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="next_q_values"):
        losses.cql_targets(r, gamma=0.9)


def test_cql_of_an_affine_q_map_and_its_gradients():
    """``Q = a·z + b`` through ``cql_from_lse`` (``lse = b + lse(a·z)``): the loss by hand, and
    ``∂L/∂b = Q_a − y`` (``b`` cancels in the penalty), ``∂L/∂a = α(E_softmax(az)[z] − z_a)
    + (Q_a − y)·z_a``."""
    z = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    acts, y, alpha = np.array([2, 0]), np.array([4.0, 2.0]), 0.5

    def loss(a, b):
        zj = jnp.asarray(z, jnp.float32)
        q_taken = a * jnp.take_along_axis(zj, jnp.asarray(acts)[:, None], 1)[:, 0] + b
        lse = b + jax.nn.logsumexp(a * zj, -1)
        return losses.cql_from_lse(lse, q_taken, jnp.asarray(y), alpha=alpha).sum()

    a, b = 2.0, 3.0
    z_a = z[np.arange(2), acts]
    q_a = a * z_a + b
    lse = b + np.log(np.exp(a * z).sum(-1))
    p = np.exp(a * z + b - lse[:, None])
    np.testing.assert_allclose(float(loss(a, b)),
                               (alpha * (lse - q_a) + 0.5 * (q_a - y) ** 2).sum(), rtol=1e-6)
    ga, gb = jax.grad(loss, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(float(gb), (q_a - y).sum(), rtol=1e-6)
    np.testing.assert_allclose(
        float(ga), (alpha * ((p * z).sum(-1) - z_a) + (q_a - y) * z_a).sum(), rtol=1e-5)
