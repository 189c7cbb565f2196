"""Independent judges: the reward model post-training optimises and the judges train on
disjoint halves of the users; reward models train on the split's training events only."""

import numpy as np
import pytest

from experiments.configs import reward as reward_config
from genrec_jax.data import eval_arrays, leave_last_out, train_arrays, training_mask
from genrec_jax.train.reward.rows import reward_rows
from genrec_jax.train.reward.members import disjoint_masks
from genrec_jax.train.reward.training import member_masks


def test_disjoint_masks_split_the_users_between_the_training_member_and_the_judges():
    masks = disjoint_masks(11, 4, seed=3, train_member=1)
    assert masks.shape == (4, 11) and masks.dtype == np.float32
    trainer, judges = masks[1], np.delete(masks, 1, axis=0)
    assert trainer.sum() == 6  # ceil(U / 2)
    np.testing.assert_array_equal(trainer + judges[0], np.ones(11))  # disjoint, covering all
    assert all(np.array_equal(j, judges[0]) for j in judges)
    np.testing.assert_array_equal(masks, disjoint_masks(11, 4, seed=3, train_member=1))
    assert not np.array_equal(masks, disjoint_masks(11, 4, seed=4, train_member=1))
    with pytest.raises(ValueError, match="train_member 4 is not a member of an ensemble of 4"):
        disjoint_masks(11, 4, seed=0, train_member=4)


def test_member_masks_modes_and_errors():
    cfg = reward_config.get_config("reward.judge_users=disjoint")
    masks = member_masks(cfg.reward, 10, 3, seed=0)
    assert masks[0].sum() == 5 and (masks[0] * masks[1]).sum() == 0
    np.testing.assert_array_equal(member_masks(reward_config.get_config().reward, 10, 3, 0),
                                  np.ones((3, 10)))
    with pytest.raises(ValueError, match="judge_users must be one of"):
        member_masks(reward_config.get_config("reward.judge_users=half").reward, 10, 3, 0)
    with pytest.raises(ValueError, match="at least 2 members"):
        member_masks(cfg.reward, 10, 1, 0)
    both = reward_config.get_config("reward.judge_users=disjoint,reward.bootstrap=True")
    with pytest.raises(ValueError, match="both choose each member's users"):
        member_masks(both.reward, 10, 3, 0)


def test_reward_rows_never_train_on_validation_or_test_events():
    from tests.test_holdout import _dataset

    ds = _dataset([12, 7, 3])
    split = leave_last_out(ds, validation=True, holdout=2)
    rows = reward_rows(ds, max_len=20, train_len=split.train_len)
    ref = train_arrays(split, 20)
    for k in ref:
        np.testing.assert_array_equal(rows.train[k], ref[k], err_msg=k)
    # Its test event is the first held-out one (the validation target here).
    valid = eval_arrays(split, 20, which="validation")
    has = valid["valid"] != 0
    np.testing.assert_array_equal(rows.test["target"], valid["target"][has])
    keep = training_mask(split)
    assert keep.sum() == split.train_len.sum() == len(rows.fit_items)
    np.testing.assert_array_equal(np.sort(rows.fit_items), np.sort(ds.items[keep]))
