"""Advantages and baselines on hand-made tables."""
import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax import losses
from genrec_jax.losses import advantages as adv_lib

# Two users' rows, third entry of row 0 is padding.
REWARDS = jnp.array([[5.0, 3.0, 0.0], [4.0, 2.0, 1.0]])
WHERE = jnp.array([[True, True, False], [True, True, True]])
USERS = jnp.array([2, 0])[:, None]          # user 2 owns row 0, user 0 owns row 1
ITEMS = jnp.array([[1, 2, 3], [1, 3, 2]])


def test_user_mean_baseline():
    b = adv_lib.user_mean_baseline(REWARDS, USERS, num_users=3, where=WHERE)
    np.testing.assert_allclose(b, [[4.0] * 3, [7 / 3] * 3], rtol=1e-6)
    # Without a mask the padding's 0 counts: (5 + 3 + 0) / 3.
    b = adv_lib.user_mean_baseline(REWARDS, USERS, num_users=3)
    np.testing.assert_allclose(b[0], [8 / 3] * 3, rtol=1e-6)


def test_item_mean_baseline():
    b = adv_lib.item_mean_baseline(REWARDS, ITEMS, num_items=4, where=WHERE)
    # item 1: (5 + 4) / 2, item 2: (3 + 1) / 2, item 3: only the unmasked 2.
    np.testing.assert_allclose(b, [[4.5, 2.0, 2.0], [4.5, 2.0, 2.0]], rtol=1e-6)
    # Garbage ids under the mask neither crash nor leak into the means.
    items = ITEMS.at[0, 2].set(-1)
    b = adv_lib.item_mean_baseline(REWARDS, items, num_items=4, where=WHERE)
    np.testing.assert_allclose(b[WHERE], [4.5, 2.0, 4.5, 2.0, 2.0], rtol=1e-6)
    assert np.all(np.isfinite(b))


def test_group_without_entries_gets_zero():
    b = adv_lib.user_mean_baseline(jnp.array([3.0, 4.0]), jnp.array([1, 1]), num_users=3,
                                   where=jnp.array([False, False]))
    np.testing.assert_array_equal(b, [0.0, 0.0])


def test_batch_mean_baseline():
    b = adv_lib.batch_mean_baseline(REWARDS, where=WHERE)
    np.testing.assert_allclose(b, np.full((2, 3), 3.0), rtol=1e-6)  # (5+3+4+2+1) / 5
    np.testing.assert_allclose(adv_lib.batch_mean_baseline(REWARDS), np.full((2, 3), 2.5))
    np.testing.assert_array_equal(adv_lib.batch_mean_baseline(REWARDS, where=False), 0.0)


def test_value_baseline():
    logits = jnp.log(jnp.array([[1.0, 1.0, 2.0], [1.0, 1.0, 1.0]]))
    values = jnp.array([4.0, 2.0, 1.0])  # one reward vector shared by both states
    np.testing.assert_allclose(adv_lib.value_baseline(logits, values), [2.0, 7 / 3], rtol=1e-6)
    # Zero-probability items are ignored even with an infinite predicted reward.
    b = adv_lib.value_baseline(jnp.array([[0.0, -jnp.inf]]), jnp.array([[3.0, jnp.inf]]))
    np.testing.assert_allclose(b, [3.0])
    np.testing.assert_array_equal(
        adv_lib.value_baseline(logits, values, where=jnp.array([True, False])), [2.0, 0.0])
    g = jax.grad(lambda x: adv_lib.value_baseline(x, values).sum())(logits)
    np.testing.assert_array_equal(g, 0.0)


def test_advantages_plain_and_normalised():
    b = adv_lib.user_mean_baseline(REWARDS, USERS, num_users=3, where=WHERE)
    a = adv_lib.advantages(REWARDS, b, where=WHERE)
    np.testing.assert_allclose(a, [[1.0, -1.0, 0.0], [5 / 3, -1 / 3, -4 / 3]], rtol=1e-6)
    a_n = adv_lib.advantages(REWARDS, b, normalize=True, where=WHERE)
    raw = np.array([1.0, -1.0, 5 / 3, -1 / 3, -4 / 3])
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(np.asarray(a_n)[np.asarray(WHERE)], expected, rtol=1e-5)
    assert float(a_n[0, 2]) == 0.0
    vals = np.asarray(a_n)[np.asarray(WHERE)]
    assert abs(vals.mean()) < 1e-6 and abs(vals.std() - 1.0) < 1e-5
    # Scalar baseline broadcasts; constants for the optimiser.
    np.testing.assert_allclose(adv_lib.advantages(REWARDS, 3.0)[1], [1.0, -1.0, -2.0])
    g = jax.grad(lambda r: adv_lib.advantages(r, 3.0, normalize=True).sum())(REWARDS)
    np.testing.assert_array_equal(g, 0.0)
    # NaN garbage under the mask stays out.
    a = adv_lib.advantages(REWARDS.at[0, 2].set(jnp.nan), b, normalize=True, where=WHERE)
    np.testing.assert_allclose(a, a_n, rtol=1e-6)


def test_package_level_reexports():
    assert losses.compute_advantages is adv_lib.advantages
    assert losses.batch_mean_baseline is adv_lib.batch_mean_baseline
    assert losses.advantages is adv_lib  # the module keeps its name
