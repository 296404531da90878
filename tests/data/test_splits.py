import numpy as np
import pytest

from comp.data.splits import (fold_ids, full_folds, holdout_folds, kfold_folds, multilabel_folds, predefined_folds,
                              quantile_bins)
from comp.errors import CompError


def _labels(seed=0, n=203):
    rng = np.random.default_rng(seed)
    return rng.choice(5, size=n, p=[0.45, 0.25, 0.15, 0.1, 0.05])


def _assert_kfold_stratified(labels, folds, k):
    assert fold_ids(folds) == list(range(k)) and (folds >= 0).all()
    for c in np.unique(labels):
        n_c = (labels == c).sum()
        for f in range(k):
            assert abs(((folds == f) & (labels == c)).sum() - n_c / k) <= 1, (c, f)
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_kfold_stratification_within_one_sample_per_class(k):
    labels = _labels()
    _assert_kfold_stratified(labels, kfold_folds(labels, k, seed=1), k)


def test_kfold_string_labels():
    labels = np.array(["cat", "dog", "eel"] * 10 + ["cat"] * 5)
    _assert_kfold_stratified(labels, kfold_folds(labels, 4, seed=0), 4)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.5])
def test_holdout_stratification_and_size(fraction):
    labels = _labels()
    folds = holdout_folds(labels, fraction, seed=1)
    assert set(folds) == {-1, 0} and abs((folds == 0).sum() - fraction * len(labels)) <= 1
    for c in range(5):
        assert abs(((folds == 0) & (labels == c)).sum() - fraction * (labels == c).sum()) <= 1


def test_deterministic_for_a_seed():
    labels = _labels()
    groups = np.arange(len(labels)) // 3
    for make in (lambda s: kfold_folds(labels, 4, s), lambda s: holdout_folds(labels, 0.3, s),
                 lambda s: kfold_folds(labels, 4, s, groups=groups),
                 lambda s: holdout_folds(labels, 0.3, s, groups=groups)):
        assert np.array_equal(make(7), make(7))
        assert not np.array_equal(make(7), make(8))


def _patients(seed=0, n=60):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n), 2)  # one patient, two eyes
    labels = np.repeat(rng.integers(0, 3, n), 2)
    labels[::7] = (labels[::7] + 1) % 3  # eyes of one patient may differ in grade
    return labels, groups


@pytest.mark.parametrize("scheme", ["kfold", "holdout"])
def test_no_group_in_two_folds(scheme):
    labels, groups = _patients()
    groups = np.array([f"p{g}" for g in groups])  # ids as strings, as they come from a CSV
    if scheme == "kfold":
        folds = kfold_folds(labels, 5, 0, groups=groups)
        assert fold_ids(folds) == list(range(5)) and (folds >= 0).all()
    else:
        folds = holdout_folds(labels, 0.25, 0, groups=groups)
        assert set(folds) == {-1, 0}
        assert abs((folds == 0).mean() - 0.25) < 0.05
        for c in range(3):  # stratified as nearly as whole groups allow
            assert abs(((folds == 0) & (labels == c)).sum() - 0.25 * (labels == c).sum()) <= 2
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1


def test_groups_of_uneven_size_and_rare_classes_never_split():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 25, 200)
    labels = rng.choice(4, 200, p=[0.7, 0.2, 0.08, 0.02])
    for folds in (kfold_folds(labels, 5, 1, groups=groups), holdout_folds(labels, 0.2, 1, groups=groups)):
        for g in np.unique(groups):
            assert len(set(folds[groups == g])) == 1
    # Every class rarer than the folds: sklearn refuses to stratify; whole groups still dealt.
    labels, groups = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 2, 3, 4])
    folds = kfold_folds(labels, 3, 0, groups=groups)
    assert fold_ids(folds) == [0, 1, 2] and folds[0] == folds[1]


def test_rare_classes_do_not_crash():
    labels = np.array([0] * 20 + [1] * 2 + [2])
    folds = kfold_folds(labels, 5, 0)
    _assert_kfold_stratified(labels, folds, 5)
    holdout = holdout_folds(labels, 0.2, 0)
    assert (holdout == 0).sum() == 5 and ((holdout == 0) & (labels == 0)).sum() == 4
    assert holdout[labels == 2] == -1  # a singleton class is kept for training
    # Every class rarer than the folds (StratifiedKFold refuses): a seeded round-robin deal.
    labels = np.array([0, 0, 1, 1, 2, 2, 3])
    folds = kfold_folds(labels, 3, 0)
    _assert_kfold_stratified(labels, folds, 3)
    assert np.array_equal(folds, kfold_folds(labels, 3, 0))


def test_split_errors():
    with pytest.raises(CompError, match="folds = 5 but there are only 4 rows"):
        kfold_folds(np.array([0, 1, 0, 1]), 5, 0)
    with pytest.raises(CompError, match="only 2 groups"):
        kfold_folds(np.array([0, 1, 0, 1]), 3, 0, groups=np.array([1, 1, 2, 2]))
    with pytest.raises(CompError, match="at least 2"):
        kfold_folds(np.array([0, 1, 0, 1]), 1, 0)
    with pytest.raises(CompError, match="valid_fraction"):
        holdout_folds(np.array([0, 1, 0, 1]), 1.0, 0)
    with pytest.raises(CompError, match="at least 2 groups"):
        holdout_folds(np.array([0, 1, 0, 1]), 0.5, 0, groups=np.zeros(4))


def test_predefined_and_full():
    assert list(predefined_folds(np.array(["train", "valid", "val", "2"]))) == [-1, 0, 0, 2]
    assert list(predefined_folds(["Train ", "VALID", "validation", "1.0", 3, -1])) == [-1, 0, 0, 1, 3, -1]
    for bad in ("tst", "2.5", "-2", ""):
        with pytest.raises(CompError, match=f"split value '{bad}'"):
            predefined_folds(np.array(["train", bad, "valid"]))
    with pytest.raises(CompError, match="no validation rows"):
        predefined_folds(np.array(["train", "train"]))
    assert list(full_folds(3)) == [-1, -1, -1] and fold_ids(full_folds(3)) == []
    assert fold_ids(np.array([2, -1, 0, 2, 0])) == [0, 2]


def _multilabel_rows(n=300, labels=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, labels)) < np.linspace(0.05, 0.5, labels)).astype(np.int8)


def test_multilabel_folds_stratify_every_label():
    Y = _multilabel_rows()
    folds = multilabel_folds(Y, 5, seed=1)
    assert folds.shape == (300,) and sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 3
    for j in range(Y.shape[1]):
        per_fold = np.bincount(folds[Y[:, j] == 1], minlength=5)
        assert per_fold.max() - per_fold.min() <= 2, (j, per_fold)  # random folds would differ by ~10
    assert np.array_equal(folds, multilabel_folds(Y, 5, seed=1))
    assert not np.array_equal(folds, multilabel_folds(Y, 5, seed=2))
    # One label (stratified with its complement), rows without any label, no label at all.
    one = multilabel_folds(Y[:, :1], 3, seed=0)
    assert np.ptp(np.bincount(one[Y[:, 0] == 1])) <= 1 and np.ptp(np.bincount(one)) <= 1
    assert np.ptp(np.bincount(multilabel_folds(np.zeros((10, 3)), 2, seed=0))) == 0
    assert np.ptp(np.bincount(multilabel_folds(np.zeros((10, 0)), 2, seed=0))) == 0


def test_multilabel_folds_keep_groups_whole():
    Y = _multilabel_rows(240, 4, seed=3)
    groups = np.arange(240) // 3  # 80 groups of 3 rows
    folds = multilabel_folds(Y, 4, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    sizes = np.bincount(folds)  # 60 rows each, give or take a few groups (labels come first)
    assert len(sizes) == 4 and sizes.min() >= 45 and sizes.max() <= 75
    assert np.array_equal(folds, multilabel_folds(Y, 4, seed=0, groups=groups))
    with pytest.raises(CompError, match="only 3 groups"):
        multilabel_folds(Y[:9], 4, seed=0, groups=groups[:9])
    with pytest.raises(CompError, match="only 3 rows"):
        multilabel_folds(Y[:3], 4, seed=0)
    with pytest.raises(CompError, match="at least 2"):
        multilabel_folds(Y, 1, seed=0)


def test_quantile_bins():
    values = np.random.default_rng(0).permutation(100).astype(float)
    codes = quantile_bins(values, bins=4)
    assert np.bincount(codes).tolist() == [25, 25, 25, 25]
    order = np.argsort(values)
    assert (np.diff(codes[order]) >= 0).all()  # codes increase with the value
    assert np.array_equal(quantile_bins(values, 4), codes)
    # Ties share a bin; fewer distinct values than bins: at most one bin per value.
    tied = np.array([0.0] * 50 + list(range(1, 51)))
    tied_codes = quantile_bins(tied, bins=10)
    assert len(np.unique(tied_codes[:50])) == 1 and tied_codes.max() <= 9
    few = np.array([3.0, 1.0, 2.0, 1.0, 3.0, 2.0])
    assert quantile_bins(few, bins=10).tolist() == [2, 0, 1, 0, 2, 1]
    assert quantile_bins(np.full(7, 5.0), bins=10).tolist() == [0] * 7
    assert quantile_bins(values, bins=1).tolist() == [0] * 100
    assert quantile_bins(np.array([]), bins=3).shape == (0,)
    with pytest.raises(ValueError, match="finite"):
        quantile_bins(np.array([1.0, np.nan]))
    with pytest.raises(CompError, match="bins"):
        quantile_bins(values, bins=0)
    # Stratifying k-fold on the bins spreads the target's range over the folds.
    folds = kfold_folds(codes, 5, seed=0)
    assert all(np.ptp(np.bincount(folds[codes == c])) <= 1 for c in range(4))
