"""Rating baselines on hand-made tables with answers worked out by hand."""

import numpy as np
import pytest

from genrec_jax.models import rating_baselines as rb

# 3 users x 3 items, 7 observed events (user, item, rating):
#   user 0: item 0 -> 5, item 1 -> 3, item 2 -> 4      user mean 4
#   user 1: item 0 -> 4, item 1 -> 2                   user mean 3
#   user 2: item 1 -> 1, item 2 -> 3                   user mean 2
# item means: item 0 (5+4)/2 = 4.5, item 1 (3+2+1)/3 = 2, item 2 (4+3)/2 = 3.5; global mean 22/7.
USERS = np.array([0, 0, 0, 1, 1, 2, 2])
ITEMS = np.array([0, 1, 2, 0, 1, 1, 2])
RATINGS = np.array([5.0, 3.0, 4.0, 4.0, 2.0, 1.0, 3.0])
MU = 22.0 / 7.0


def _fit(name, **kw):
    return rb.make_baseline(name, **kw).fit(USERS, ITEMS, RATINGS)


def test_global_mean():
    model = _fit("global_mean")
    pred = model.predict(np.array([0, 2, 9]), np.array([1, 0, 7]))
    assert pred.dtype == np.float32
    np.testing.assert_allclose(pred, [MU, MU, MU], rtol=1e-6)


def test_user_mean_and_unseen_user_fallback():
    model = _fit("user_mean")
    pred = model.predict(np.array([0, 1, 2, 0, 3, 100]), np.array([0, 0, 0, 2, 0, 1]))
    np.testing.assert_allclose(pred, [4.0, 3.0, 2.0, 4.0, MU, MU], rtol=1e-6)


def test_user_mean_gap_in_ids_falls_back():
    # User 1 has no training event although ids 0 and 2 do.
    model = rb.UserMean().fit(np.array([0, 2]), np.array([0, 0]), np.array([5.0, 1.0]))
    np.testing.assert_allclose(model.predict(np.array([0, 1, 2]), np.array([0, 0, 0])), [5, 3, 1])


def test_item_mean_and_unseen_item_fallback():
    model = _fit("item_mean")
    pred = model.predict(np.array([0, 0, 0, 5, 1]), np.array([0, 1, 2, 1, 3]))
    np.testing.assert_allclose(pred, [4.5, 2.0, 3.5, 2.0, MU], rtol=1e-6)


def _regularised_lstsq(users, items, ratings, reg_user, reg_item):
    """argmin Σ(r-μ-b_u-b_i)² + λ_u|b_u|² + λ_i|b_i|²: lstsq on the augmented one-hot design."""
    n_u, n_i = users.max() + 1, items.max() + 1
    x = np.zeros((len(ratings), n_u + n_i))
    x[np.arange(len(ratings)), users] = 1.0
    x[np.arange(len(ratings)), n_u + items] = 1.0
    penalty = np.diag(np.r_[np.full(n_u, np.sqrt(reg_user)), np.full(n_i, np.sqrt(reg_item))])
    design = np.vstack([x, penalty])
    target = np.r_[ratings - ratings.mean(), np.zeros(n_u + n_i)]
    sol, *_ = np.linalg.lstsq(design, target, rcond=None)
    return sol[:n_u], sol[n_u:]


@pytest.mark.parametrize("reg_user,reg_item", [(2.0, 3.0), (0.5, 0.5), (5.0, 5.0)])
def test_user_item_bias_converges_to_regularised_least_squares(reg_user, reg_item):
    model = rb.UserItemBias(reg_user=reg_user, reg_item=reg_item, iterations=500, clip=None)
    model.fit(USERS, ITEMS, RATINGS)
    b_user, b_item = _regularised_lstsq(USERS, ITEMS, RATINGS, reg_user, reg_item)
    np.testing.assert_allclose(model.user_bias_, b_user, atol=1e-8)
    np.testing.assert_allclose(model.item_bias_, b_item, atol=1e-8)
    assert model.global_mean_ == pytest.approx(MU)
    pred = model.predict(USERS, ITEMS)
    np.testing.assert_allclose(pred, MU + b_user[USERS] + b_item[ITEMS], rtol=1e-6)
    # Block coordinate descent never increases the objective.
    hist = model.objective_history_
    assert hist.shape == (500,)
    assert np.all(np.diff(hist) <= 1e-12)


def test_user_item_bias_first_sweep_by_hand():
    model = rb.UserItemBias(reg_user=1.0, reg_item=2.0, iterations=1, clip=None)
    model.fit(USERS, ITEMS, RATINGS)
    # Items first with b_u = 0: b_i = Σ(r - μ) / (λ_i + n_i).
    b_i = np.array([
        (5 + 4 - 2 * MU) / (2 + 2),
        (3 + 2 + 1 - 3 * MU) / (2 + 3),
        (4 + 3 - 2 * MU) / (2 + 2),
    ])
    # Then users with those item biases: b_u = Σ(r - μ - b_i) / (λ_u + n_u).
    b_u = np.array([
        (5 - MU - b_i[0] + 3 - MU - b_i[1] + 4 - MU - b_i[2]) / (1 + 3),
        (4 - MU - b_i[0] + 2 - MU - b_i[1]) / (1 + 2),
        (1 - MU - b_i[1] + 3 - MU - b_i[2]) / (1 + 2),
    ])
    np.testing.assert_allclose(model.item_bias_, b_i, rtol=1e-12)
    np.testing.assert_allclose(model.user_bias_, b_u, rtol=1e-12)


def test_user_item_bias_defaults_and_unseen_ids():
    model = rb.make_baseline("user_item_bias")
    assert (model.reg_user, model.reg_item, model.iterations) == (5.0, 5.0, 10)
    assert model.clip == (1.0, 5.0)
    model.fit(USERS, ITEMS, RATINGS)
    pred = model.predict(np.array([7, 0, 7]), np.array([1, 9, 9]))
    np.testing.assert_allclose(
        pred, [MU + model.item_bias_[1], MU + model.user_bias_[0], MU], rtol=1e-6
    )


def test_clipping():
    model = rb.UserMean(clip=(2.5, 3.5)).fit(USERS, ITEMS, RATINGS)
    pred = model.predict(np.array([0, 1, 2]), np.zeros(3, int))
    np.testing.assert_allclose(pred, [3.5, 3.0, 2.5])

    # Ratings that are exactly additive, r = a_u + c_i with a = (3, 1), c = (3, 1), but
    # (user 0, item 0) unobserved: with λ = 0 the fit is exact and predicts
    # r(0,0) = r(0,1) + r(1,0) - r(1,1) = 6.
    u, i, r = np.array([0, 1, 1]), np.array([1, 0, 1]), np.array([4.0, 4.0, 2.0])
    kw = dict(reg_user=0.0, reg_item=0.0, iterations=200)
    raw = rb.UserItemBias(clip=None, **kw).fit(u, i, r).predict(np.array([0, 1]), np.array([0, 1]))
    np.testing.assert_allclose(raw, [6.0, 2.0], atol=1e-5)
    clipped = rb.UserItemBias(**kw).fit(u, i, r).predict(np.array([0, 1]), np.array([0, 1]))
    np.testing.assert_allclose(clipped, [5.0, 2.0], atol=1e-5)
    low = rb.UserItemBias(clip=(2.5, 5.0), **kw).fit(u, i, r).predict(np.array([1]), np.array([1]))
    np.testing.assert_allclose(low, [2.5])


@pytest.mark.parametrize("clip", [(5.0, 1.0), (1.0, np.inf)])
def test_bad_clip(clip):
    with pytest.raises(ValueError, match="clip"):
        rb.GlobalMean(clip=clip)


def test_registry_and_protocol():
    assert set(rb.BASELINES) == {"global_mean", "user_mean", "item_mean", "user_item_bias"}
    for name in rb.BASELINES:
        model = rb.make_baseline(name, clip=None)
        assert model.name == name
        assert isinstance(model, rb.RatingPredictor)
        assert model.fit(USERS, ITEMS, RATINGS) is model
        assert model.predict(USERS, ITEMS).shape == (7,)
    with pytest.raises(ValueError, match="global_mean, item_mean, user_item_bias, user_mean"):
        rb.make_baseline("matrix_factorization")


def test_bad_inputs():
    model = rb.UserMean()
    with pytest.raises(RuntimeError, match="fitted"):
        model.predict(USERS, ITEMS)
    with pytest.raises(ValueError, match=r"users \(7\), items \(6\), ratings \(7\)"):
        model.fit(USERS, ITEMS[:-1], RATINGS)
    with pytest.raises(ValueError, match=r"ratings \(6\)"):
        model.fit(USERS, ITEMS, RATINGS[:-1])
    model.fit(USERS, ITEMS, RATINGS)
    with pytest.raises(ValueError, match=r"users \(2\), items \(3\)"):
        model.predict(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        model.fit(USERS.astype(float), ITEMS, RATINGS)
    with pytest.raises(ValueError, match="non-negative"):
        model.predict(np.array([-1]), np.array([0]))
    with pytest.raises(ValueError, match="finite"):
        model.fit(USERS, ITEMS, np.r_[RATINGS[:-1], np.nan])
    with pytest.raises(ValueError, match="zero events"):
        model.fit(np.array([], int), np.array([], int), np.array([]))
    with pytest.raises(ValueError, match="1-D"):
        model.fit(USERS[:, None], ITEMS, RATINGS)
    with pytest.raises(ValueError, match="reg_user"):
        rb.UserItemBias(reg_user=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        rb.UserItemBias(iterations=0)
