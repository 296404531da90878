"""Multi-label thresholds (comp.decisions): fitted, applied and nested."""

import numpy as np
import pytest
from sklearn import metrics as skm

from comp import decisions, metrics
from comp.decisions import (MULTILABEL_DECISION_METRICS, apply_label_thresholds, fit_global_threshold,
                            fit_label_thresholds, nested_label_predictions)


def _data(seed, n=20, labels=4):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.1, 0.6, labels)).astype(int)
    probs = np.round(np.clip(0.35 * y + 0.65 * rng.random((n, labels)), 0, 1), 3)
    return probs, y


def _score(metric, y, probs, thresholds):
    """``metric`` as comp.metrics.multilabel_scores reports it, straight from scikit-learn."""
    pred = apply_label_thresholds(probs, thresholds)
    if metric == "f1_macro":
        return skm.f1_score(y, pred, average="macro", zero_division=np.nan)
    if metric == "f1_micro":
        return skm.f1_score(y, pred, average="micro", zero_division=1.0)
    beta = 2.0 if metric == "fbeta" else 1.0
    return skm.fbeta_score(y, pred, beta=beta, average="samples", zero_division=1.0)


def test_the_test_scorer_is_the_reported_metric():
    probs, y = _data(0)
    for t in (0.3, 0.5, 0.7):
        reported = metrics.multilabel_scores(y, probs, apply_label_thresholds(probs, t))
        assert [_score(m, y, probs, t) for m in MULTILABEL_DECISION_METRICS] == pytest.approx(
            [reported[m] for m in MULTILABEL_DECISION_METRICS])


@pytest.mark.parametrize("metric", MULTILABEL_DECISION_METRICS)
def test_global_threshold_is_the_best_single_cut(metric):
    for seed in (0,):
        probs, y = _data(seed, n=15, labels=3)  # 45 cells: every distinct cut is a candidate
        values = np.unique(probs)
        cuts = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [1.01]])
        best = max(_score(metric, y, probs, t) for t in cuts)
        fitted = fit_global_threshold(probs, y, metric)
        assert _score(metric, y, probs, fitted) == pytest.approx(best)


def test_global_threshold_ties_go_to_the_one_nearest_half():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.where(y == 1, 0.9, 0.1)  # every cut in (0.1, 0.9] is perfect
    assert fit_global_threshold(probs, y, "fbeta") == 0.5
    probs = np.where(y == 1, 0.3, 0.1)  # perfect cuts in (0.1, 0.3]: the one nearest 0.5 is 0.3's side
    t = fit_global_threshold(probs, y, "f1_micro")
    assert 0.1 < t <= 0.3 and _score("f1_micro", y, probs, t) == 1.0
    assert fit_global_threshold(np.zeros((0, 2)), np.zeros((0, 2)), "fbeta") == 0.5


@pytest.mark.parametrize("metric", MULTILABEL_DECISION_METRICS)
def test_label_thresholds_never_worse_than_the_global_one(metric):
    for seed in range(6):
        probs, y = _data(seed, n=60, labels=5)
        glob = fit_global_threshold(probs, y, metric)
        per_label = fit_label_thresholds(probs, y, metric)
        assert per_label.shape == (5,)
        assert _score(metric, y, probs, per_label) >= _score(metric, y, probs, glob) - 1e-12
    # Label 0 separates at 0.2, label 1 at 0.8: no single cut is perfect, one per label is.
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [0, 0], [1, 0]])
    probs = np.column_stack([np.where(y[:, 0] == 1, 0.3, 0.1), np.where(y[:, 1] == 1, 0.95, 0.7)])
    assert _score(metric, y, probs, fit_global_threshold(probs, y, metric)) < 1.0
    thresholds = fit_label_thresholds(probs, y, metric)
    assert _score(metric, y, probs, thresholds) == 1.0
    assert 0.1 < thresholds[0] <= 0.3 and 0.7 < thresholds[1] <= 0.95


def test_macro_label_thresholds_are_each_labels_best():
    probs, y = _data(7, n=30, labels=3)
    thresholds = fit_label_thresholds(probs, y, "f1_macro")
    for j in range(3):
        values = np.unique(probs[:, j])
        cuts = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [1.01]])
        best = max(skm.f1_score(y[:, j], probs[:, j] >= t, zero_division=1.0) for t in cuts)
        assert skm.f1_score(y[:, j], probs[:, j] >= thresholds[j]) == pytest.approx(best)
    # A label without positives is predicted nowhere.
    y0 = y.copy()
    y0[:, 2] = 0
    thresholds = fit_label_thresholds(probs, y0, "f1_macro")
    assert not (probs[:, 2] >= thresholds[2]).any()


def test_many_candidates_stay_bounded_and_fast():
    rng = np.random.default_rng(0)
    y = (rng.random((1500, 17)) < 0.2).astype(int)
    probs = np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1)
    assert len(decisions._candidates(probs.ravel())) <= decisions.MAX_CANDIDATES + 2
    for metric in MULTILABEL_DECISION_METRICS:
        glob, per_label = fit_global_threshold(probs, y, metric), fit_label_thresholds(probs, y, metric)
        assert _score(metric, y, probs, per_label) >= _score(metric, y, probs, glob) > _score(metric, y, probs, 0.99)


def test_apply_label_thresholds():
    probs = np.array([[0.9, 0.2, 0.4], [0.1, 0.3, 0.2], [0.5, 0.6, 0.7]])
    pred = apply_label_thresholds(probs, np.array([0.5, 0.5, 0.7]))
    assert pred.dtype == np.int8 and pred.tolist() == [[1, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert apply_label_thresholds(probs, 0.5).tolist() == [[1, 0, 0], [0, 0, 0], [1, 1, 1]]
    # At least one tag: the empty row gets its most probable label; the others are unchanged.
    assert apply_label_thresholds(probs, 0.5, at_least_one=True).tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    assert apply_label_thresholds(np.zeros((0, 3)), 0.5, at_least_one=True).shape == (0, 3)


def test_nested_label_predictions_fit_on_the_other_folds():
    probs, y = _data(3, n=60, labels=4)
    folds = np.arange(60) % 3
    assert nested_label_predictions(probs, y, np.zeros(60), "fbeta") is None
    for per_label in (True, False):
        nested = nested_label_predictions(probs, y, folds, "fbeta", per_label=per_label, at_least_one=True)
        assert nested.shape == (60, 4) and nested.dtype == np.int8
        assert nested.any(axis=1).all()
        for k in range(3):
            held = folds == k
            fit = fit_label_thresholds if per_label else fit_global_threshold
            expected = apply_label_thresholds(probs[held], fit(probs[~held], y[~held], "fbeta"), True)
            assert np.array_equal(nested[held], expected)


def test_bad_arguments():
    probs, y = _data(0)
    with pytest.raises(ValueError, match="decision metric"):
        fit_global_threshold(probs, y, "mean_auc")
    with pytest.raises(ValueError, match="shape"):
        fit_label_thresholds(probs, y[:, :2], "fbeta")
