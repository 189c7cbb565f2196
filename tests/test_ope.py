"""Off-policy estimators: naive loops, and bias / unbiasedness on a bandit with a known value."""
import math

import numpy as np
import pytest

from genrec_jax.eval import ope


def _random_log(seed, n=15, num_items=4):
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, num_items, n)
    rewards = rng.uniform(0, 5, n)
    mu = rng.uniform(0.05, 1.0, n)
    pi = rng.dirichlet(np.ones(num_items), n)
    r_hat = rng.normal(2.5, 1.0, (n, num_items))
    return actions, rewards, mu, pi, r_hat


def test_estimators_match_naive_loops():
    actions, rewards, mu, pi, r_hat = _random_log(0)
    n, num_items = pi.shape
    dm = ips = cips = dr = num = den = 0.0
    dm_terms, ips_terms, dr_terms = [], [], []
    for i in range(n):
        a = actions[i]
        w = pi[i, a] / mu[i]
        v = sum(pi[i, b] * r_hat[i, b] for b in range(num_items))
        dm += v / n
        ips += w * rewards[i] / n
        cips += min(w, 1.5) * rewards[i] / n
        dr += (v + w * (rewards[i] - r_hat[i, a])) / n
        num += w * rewards[i]
        den += w
        dm_terms.append(v)
        ips_terms.append(w * rewards[i])
        dr_terms.append(v + w * (rewards[i] - r_hat[i, a]))
    sn = num / den
    sn_se = math.sqrt(sum((pi[i, actions[i]] / mu[i]) ** 2 * (rewards[i] - sn) ** 2
                          for i in range(n))) / den

    def se(terms):
        m = sum(terms) / n
        return math.sqrt(sum((t - m) ** 2 for t in terms) / (n - 1) / n)

    out = ope.estimate_all(actions, rewards, mu, target_probs=pi, reward_model=r_hat,
                           max_weight=1.5)
    assert out["dm"]["value"] == pytest.approx(dm) and out["dm"]["se"] == pytest.approx(
        se(dm_terms))
    assert out["ips"]["value"] == pytest.approx(ips) and out["ips"]["se"] == pytest.approx(
        se(ips_terms))
    assert out["clipped_ips"]["value"] == pytest.approx(cips)
    assert out["snips"]["value"] == pytest.approx(sn) and out["snips"]["se"] == pytest.approx(
        sn_se)
    assert out["dr"]["value"] == pytest.approx(dr) and out["dr"]["se"] == pytest.approx(
        se(dr_terms))
    w = pi[np.arange(n), actions] / mu
    assert out["diagnostics"] == pytest.approx(
        {"num_events": n, "mean_weight": w.mean(), "max_weight": w.max(),
         "ess": w.sum() ** 2 / (w ** 2).sum()})
    # The single estimators and the [N]-only input agree with estimate_all.
    assert ope.direct_method(pi, r_hat) == out["dm"]
    assert ope.doubly_robust(actions, rewards, mu, pi, r_hat) == out["dr"]
    only = ope.estimate_all(actions, rewards, mu, target_action_probs=pi[np.arange(n), actions])
    assert set(only) == {"ips", "snips", "diagnostics"}
    assert only["ips"] == out["ips"] and only["snips"] == out["snips"]


# ---------------------------------------------------------------- a bandit with a known value

S, V = 4, 5
Q = np.array([[0.9, 0.1, 0.2, 0.3, 0.5],      # E[r | s, a]: Bernoulli rewards
              [0.1, 0.8, 0.3, 0.2, 0.4],
              [0.2, 0.3, 0.9, 0.1, 0.3],
              [0.3, 0.2, 0.1, 0.8, 0.6]])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


MU = _softmax(3.0 * Q)                       # logging policy: state-dependent, full support
PI = _softmax(5.0 * Q + np.linspace(0, 1, V))  # target policy: greedier, another tilt
TRUTH = float(np.mean(np.sum(PI * Q, axis=1)))  # states uniform


def _simulate(rng, reps, n):
    states = rng.integers(0, S, (reps, n))
    cdf = np.cumsum(MU[states], axis=-1)
    u = rng.uniform(size=(reps, n, 1))
    actions = np.minimum((u > cdf).sum(-1), V - 1)
    rewards = (rng.uniform(size=(reps, n)) < Q[states, actions]).astype(np.float64)
    return states, actions, rewards


def test_unbiased_with_true_propensities_biased_dm_and_popularity_ips():
    reps, n = 300, 400
    rng = np.random.default_rng(2024)
    states, actions, rewards = _simulate(rng, reps, n)
    # A training log of the same logging policy, for context-free popularity propensities.
    _, train_actions, _ = _simulate(rng, 1, 20000)
    pop = ope.popularity_propensities(train_actions[0], V, smoothing=1.0)
    biased_model = 0.5 * Q + 0.2              # shrunk and shifted: a wrong reward model
    results = {k: [] for k in ("ips", "snips", "dr", "dm", "dr_biased_model", "ips_pop",
                               "ips_se", "mean_weight")}
    for i in range(reps):
        s, a, r = states[i], actions[i], rewards[i]
        est = ope.estimate_all(a, r, MU[s, a], target_probs=PI[s], reward_model=biased_model[s])
        results["ips"].append(est["ips"]["value"])
        results["ips_se"].append(est["ips"]["se"])
        results["snips"].append(est["snips"]["value"])
        results["dm"].append(est["dm"]["value"])
        results["dr_biased_model"].append(est["dr"]["value"])
        results["mean_weight"].append(est["diagnostics"]["mean_weight"])
        results["dr"].append(ope.doubly_robust(a, r, MU[s, a], PI[s], Q[s])["value"])
        results["ips_pop"].append(ope.ips(r, PI[s, a], pop[a])["value"])
    res = {k: np.array(v) for k, v in results.items()}

    def z(name, target=TRUTH):
        x = res[name]
        return (x.mean() - target) / (x.std(ddof=1) / math.sqrt(reps))

    for name in ("ips", "snips", "dr", "dr_biased_model"):
        assert abs(z(name)) < 3.5, (name, res[name].mean(), TRUTH)
    assert abs(res["mean_weight"].mean() - 1) < 0.01
    # The reported standard error matches the spread over replications.
    assert 0.85 < res["ips_se"].mean() / res["ips"].std(ddof=1) < 1.15
    # DM inherits the reward model's bias: its expectation is the model's value, not the truth.
    dm_expect = float(np.mean(np.sum(PI * biased_model, axis=1)))
    assert abs(dm_expect - TRUTH) > 0.05
    assert abs(z("dm")) > 20 and abs(z("dm", dm_expect)) < 3.5
    # Popularity propensities ignore the state: IPS converges to sum_s,a mu pi / mu^ Q / S.
    ips_pop_expect = float(np.mean(np.sum(MU * PI / pop * Q, axis=1)))
    assert abs(ips_pop_expect - TRUTH) > 0.05
    assert abs(z("ips_pop")) > 10 and abs(z("ips_pop", ips_pop_expect)) < 3.5


def test_clipping_biases_down_and_reduces_spread():
    rng = np.random.default_rng(7)
    states, actions, rewards = _simulate(rng, 200, 200)
    plain, clipped = [], []
    for i in range(200):
        s, a, r = states[i], actions[i], rewards[i]
        plain.append(ope.ips(r, PI[s, a], MU[s, a])["value"])
        clipped.append(ope.ips(r, PI[s, a], MU[s, a], max_weight=1.1)["value"])
    plain, clipped = np.array(plain), np.array(clipped)
    assert np.all(clipped <= plain + 1e-12)   # rewards >= 0
    assert clipped.std() < plain.std()
    expect = float(np.mean(np.sum(MU * np.minimum(PI / MU, 1.1) * Q, axis=1)))
    assert abs(clipped.mean() - expect) < 3.5 * clipped.std(ddof=1) / math.sqrt(200)
    assert expect < TRUTH - 0.05


# ---------------------------------------------------------------- propensities

def test_popularity_propensities_hand_values():
    train = np.array([1, 1, 2])
    np.testing.assert_allclose(ope.popularity_propensities(train, 4), [1 / 7, 3 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(ope.popularity_propensities(train, 4, smoothing=0.0),
                               [0, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(
        ope.popularity_propensities(train, 4, support=[False, True, True, True]),
        [0, 3 / 6, 2 / 6, 1 / 6])
    np.testing.assert_allclose(ope.popularity_propensities(np.array([], int), 3), [1 / 3] * 3)
    with pytest.raises(ValueError, match="smoothing must be a finite number >= 0"):
        ope.popularity_propensities(train, 4, smoothing=-1.0)
    with pytest.raises(ValueError, match=r"train_actions must lie in \[0, 2\)"):
        ope.popularity_propensities(train, 2)
    with pytest.raises(ValueError, match="1 events outside the support"):
        ope.popularity_propensities(np.array([0, 1]), 3, support=[False, True, True])
    with pytest.raises(ValueError, match="every item at probability 0"):
        ope.popularity_propensities(np.array([], int), 3, smoothing=0.0)


def test_model_propensities_gather_floor_and_errors():
    probs = np.array([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(ope.model_propensities(probs, np.array([1, 3])), [0.2, 0.25])
    np.testing.assert_allclose(ope.model_propensities(probs, np.array([3, 0]),
                                                      min_propensity=0.01), [0.01, 0.25])
    mu = ope.model_propensities(probs, np.array([3, 0]))
    with pytest.raises(ValueError, match=r"propensities must be in \(0, 1\].*event 0 has 0.0"):
        ope.ips(np.ones(2), np.array([0.5, 0.5]), mu)
    with pytest.raises(ValueError, match=r"logging_probs rows must sum to 1.*row 1 sums to 2"):
        ope.model_propensities(probs * np.array([[1.0], [2.0]]), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 4\)"):
        ope.model_propensities(probs, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"logging_probs must be a 2-D \[N, V\] array with N = 3"):
        ope.model_propensities(probs, np.array([0, 1, 2]))


def test_errors_name_the_argument():
    actions, rewards, mu, pi, r_hat = _random_log(1)
    kw = dict(target_probs=pi, reward_model=r_hat)
    with pytest.raises(ValueError, match=r"propensities must be in \(0, 1\].*event 3 has -0.2"):
        ope.estimate_all(actions, rewards, np.where(np.arange(15) == 3, -0.2, mu), **kw)
    with pytest.raises(ValueError, match=r"propensities must be in \(0, 1\].*event 0 has 1.5"):
        ope.estimate_all(actions, rewards, np.where(np.arange(15) == 0, 1.5, mu), **kw)
    with pytest.raises(ValueError, match=r"rewards must have N = 15 entries like actions, got 14"):
        ope.estimate_all(actions, rewards[:-1], mu, **kw)
    with pytest.raises(ValueError, match=r"propensities must have N = 15"):
        ope.estimate_all(actions, rewards, mu[:-1], **kw)
    with pytest.raises(ValueError, match=r"target_probs must be a 2-D \[N, V\] array with N = 15"):
        ope.estimate_all(actions, rewards, mu, target_probs=pi[:-1], reward_model=r_hat)
    with pytest.raises(ValueError, match=r"reward_model must have V = 4 columns, got 3"):
        ope.estimate_all(actions, rewards, mu, target_probs=pi, reward_model=r_hat[:, :3])
    with pytest.raises(ValueError, match=r"target_probs rows must sum to 1"):
        ope.estimate_all(actions, rewards, mu, target_probs=pi * 1.1)
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 4\)"):
        ope.estimate_all(actions + 1, rewards, mu, target_probs=pi)
    with pytest.raises(ValueError, match=r"rewards must be finite"):
        ope.estimate_all(actions, np.where(np.arange(15) == 2, np.nan, rewards), mu, **kw)
    with pytest.raises(ValueError, match="max_weight must be > 0"):
        ope.estimate_all(actions, rewards, mu, max_weight=0.0, **kw)
    with pytest.raises(ValueError, match="pass target_probs"):
        ope.estimate_all(actions, rewards, mu)
    with pytest.raises(ValueError, match="reward_model needs target_probs"):
        ope.estimate_all(actions, rewards, mu, target_action_probs=pi[np.arange(15), actions],
                         reward_model=r_hat)
    with pytest.raises(ValueError, match="target_action_probs disagree with target_probs"):
        ope.estimate_all(actions, rewards, mu, target_probs=pi,
                         target_action_probs=np.full(15, 0.5))
    with pytest.raises(ValueError, match="actions must be integer item ids"):
        ope.estimate_all(actions.astype(float), rewards, mu, **kw)
