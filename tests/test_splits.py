import numpy as np
import pytest

from comp.errors import CompError
from comp.splits import fold_ids, full_folds, holdout_folds, kfold_folds, predefined_folds


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(5, size=203, p=[0.45, 0.25, 0.15, 0.1, 0.05])


def test_kfold_stratification_within_one_sample_per_class():
    labels, k = _labels(), 5
    folds = kfold_folds(labels, k, seed=1)
    assert fold_ids(folds) == list(range(k)) and (folds >= 0).all()
    for c in range(5):
        n_c = (labels == c).sum()
        for f in range(k):
            assert abs(((folds == f) & (labels == c)).sum() - n_c / k) <= 1


def test_holdout_stratification_and_size():
    labels = _labels()
    folds = holdout_folds(labels, 0.2, seed=1)
    assert set(folds) == {-1, 0} and abs((folds == 0).sum() - 0.2 * len(labels)) <= 1
    for c in range(5):
        assert abs(((folds == 0) & (labels == c)).sum() - 0.2 * (labels == c).sum()) <= 1


def test_deterministic_for_a_seed():
    labels = _labels()
    assert np.array_equal(kfold_folds(labels, 4, 7), kfold_folds(labels, 4, 7))
    assert not np.array_equal(kfold_folds(labels, 4, 7), kfold_folds(labels, 4, 8))
    assert np.array_equal(holdout_folds(labels, 0.3, 7), holdout_folds(labels, 0.3, 7))


@pytest.mark.parametrize("scheme", ["kfold", "holdout"])
def test_no_group_in_two_folds(scheme):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 2)  # one patient, two eyes
    labels = np.repeat(rng.integers(0, 3, 60), 2)
    labels[::7] = (labels[::7] + 1) % 3  # eyes of one patient may differ in grade
    folds = kfold_folds(labels, 5, 0, groups=groups) if scheme == "kfold" else holdout_folds(labels, 0.25, 0, groups=groups)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    assert (folds >= 0).any() and (scheme == "kfold" or (folds == -1).any())


def test_rare_classes_do_not_crash():
    labels = np.array([0] * 20 + [1] * 2 + [2])
    folds = kfold_folds(labels, 5, 0)
    assert (folds >= 0).all() and len(fold_ids(folds)) == 5
    assert (holdout_folds(labels, 0.2, 0) == 0).sum() == 5


def test_predefined_and_full():
    assert list(predefined_folds(np.array(["train", "valid", "val", "2"]))) == [-1, 0, 0, 2]
    with pytest.raises(CompError, match="split value 'tst'"):
        predefined_folds(np.array(["train", "tst"]))
    with pytest.raises(CompError, match="no validation rows"):
        predefined_folds(np.array(["train", "train"]))
    assert list(full_folds(3)) == [-1, -1, -1] and fold_ids(full_folds(3)) == []
