import math

import numpy as np
import pytest
from sklearn import metrics as skm

from comp import kinds, metrics

Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 2, 3])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 3, 3])


def test_confusion_and_basic_scores_by_hand():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1]]
    assert cm.tolist() == skm.confusion_matrix(Y_TRUE, Y_PRED, labels=range(4)).tolist()
    assert metrics.accuracy(Y_TRUE, Y_PRED) == 5 / 8
    p, r = metrics.per_class_precision_recall(Y_TRUE, Y_PRED, 4)
    np.testing.assert_allclose(p, [1 / 2, 2 / 3, 1, 1 / 2])
    np.testing.assert_allclose(r, [1 / 2, 1, 1 / 3, 1])
    np.testing.assert_allclose(metrics.row_normalise(cm)[2], [1 / 3, 0, 1 / 3, 1 / 3])


def test_scores_equal_sklearn():
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 4) == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert metrics.weighted_f1(Y_TRUE, Y_PRED, 4) == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="weighted"))
    qwk = skm.cohen_kappa_score(Y_TRUE, Y_PRED, weights="quadratic")
    assert metrics.quadratic_weighted_kappa(Y_TRUE, Y_PRED, 4) == pytest.approx(qwk)
    # Hand values: F1 per class = 1/2, 4/5, 1/2, 2/3.
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 4) == pytest.approx((1 / 2 + 4 / 5 + 1 / 2 + 2 / 3) / 4)
    assert metrics.weighted_f1(Y_TRUE, Y_PRED, 4) == pytest.approx((2 / 2 + 2 * 4 / 5 + 3 / 2 + 2 / 3) / 8)


def test_precision_recall_and_f1_with_classes_missing():
    # Class 3 is predicted but never true, class 4 appears nowhere.
    y, pred = np.array([0, 0, 1, 2, 2]), np.array([0, 3, 1, 2, 1])
    p, r = metrics.per_class_precision_recall(y, pred, 5)
    np.testing.assert_allclose(p, skm.precision_score(y, pred, labels=range(5), average=None, zero_division=0))
    np.testing.assert_allclose(r, skm.recall_score(y, pred, labels=range(5), average=None, zero_division=0))
    assert p[3] == 0 and r[3] == 0 and p[4] == 0 and r[4] == 0
    assert metrics.macro_f1(y, pred, 5) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert metrics.weighted_f1(y, pred, 5) == pytest.approx(skm.f1_score(y, pred, average="weighted"))


def test_qwk_by_hand():
    # y = [0, 1, 2, 2], pred = [0, 2, 2, 1], W[i, j] = (i - j)².
    # O = [[1,0,0],[0,0,1],[0,1,1]]: Σ W·O = 1 + 1 = 2.
    # Row and column totals are both (1, 1, 2), n = 4, so E = outer / 4 and
    # Σ W·E = (1·1 + 4·2 + 1·1 + 1·2 + 4·2 + 1·2) / 4 = 22 / 4 → kappa = 1 - 2 / 5.5 = 7/11.
    y, pred = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1])
    assert metrics.quadratic_weighted_kappa(y, pred, 3) == pytest.approx(7 / 11)
    assert skm.cohen_kappa_score(y, pred, weights="quadratic") == pytest.approx(7 / 11)
    # y = [0, 1], pred = [1, 1]: O = [[0, 1], [0, 1]], Σ W·O = 1; rows (1, 1), columns (0, 2),
    # n = 2 → E = [[0, 1], [0, 1]], Σ W·E = 1 → kappa = 0.
    assert metrics.quadratic_weighted_kappa(np.array([0, 1]), np.array([1, 1]), 2) == pytest.approx(0.0)
    assert metrics.quadratic_weighted_kappa(np.array([0, 1, 2]), np.array([0, 1, 2]), 3) == 1.0
    assert metrics.quadratic_weighted_kappa(np.array([0, 1, 2]), np.array([2, 1, 0]), 3) == pytest.approx(-1.0)


def test_qwk_uses_the_full_grade_range():
    # Grade 2 never occurs: sklearn re-indexes {0, 1, 3} unless told the labels; we do not.
    y, pred = np.array([0, 1, 3, 3, 1, 0]), np.array([0, 3, 3, 1, 1, 1])
    ours = metrics.quadratic_weighted_kappa(y, pred, 4)
    assert ours == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(4)))
    assert ours != pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))


def test_qwk_degenerate_cases():
    # All truth and predictions on one grade: Σ W·E = 0 → perfect agreement, 1.0 (sklearn: NaN).
    assert metrics.quadratic_weighted_kappa(np.array([1, 1]), np.array([1, 1]), 3) == 1.0
    assert metrics.quadratic_weighted_kappa(np.array([0, 0]), np.array([0, 0]), 1) == 1.0
    # One grade each but different ones: expected disagreement is non-zero, kappa 0.
    assert metrics.quadratic_weighted_kappa(np.array([0, 0]), np.array([2, 2]), 3) == 0.0
    assert math.isnan(metrics.quadratic_weighted_kappa(np.array([], int), np.array([], int), 3))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix(np.array([0, -1]), np.array([0, 0]), 2)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix(np.array([0, 2]), np.array([0, 0]), 2)
    with pytest.raises(ValueError, match="rows"):
        metrics.accuracy(np.array([0, 1]), np.array([0]))


def _probs(y, k, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=len(y))
    probs[np.arange(len(y)), y] += 0.3
    return probs / probs.sum(1, keepdims=True)


def test_auc_equals_sklearn_and_handles_missing_classes():
    y = np.array([0, 1, 2, 3] * 10)
    probs = _probs(y, 4)
    expected = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert metrics.ovr_auc(y, probs) == pytest.approx(expected)
    # Class 3 absent from y: skipped, the rest averaged one-vs-rest.
    keep = y != 3
    partial = np.mean([skm.roc_auc_score(y[keep] == c, probs[keep, c]) for c in range(3)])
    assert metrics.ovr_auc(y[keep], probs[keep]) == pytest.approx(partial)
    assert math.isnan(metrics.ovr_auc(np.zeros(5, dtype=int), probs[:5]))
    # Perfect ranking.
    assert metrics.ovr_auc(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])) == 1.0


def test_summarise():
    y = np.array([0, 1, 2, 3] * 10)
    probs = _probs(y, 4, seed=1)
    task = kinds.make_task("ordinal", 4)
    s = metrics.summarise(task, y, probs)
    assert set(s) == {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "ovr_auc", "top2_accuracy",
                      "qwk", "mae"}
    pred = probs.argmax(1)
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert s["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert s["qwk"] == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))
    assert s["ovr_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    # An explicit y_pred replaces the argmax; AUC still comes from the probabilities.
    t = metrics.summarise(task, y, probs, y_pred=y)
    assert t["accuracy"] == t["macro_f1"] == t["qwk"] == 1.0 and t["ovr_auc"] == s["ovr_auc"]
    # A nominal task has no QWK: the class indices of unordered classes are not grades.
    assert "qwk" not in metrics.summarise(kinds.make_task("multiclass", 4), y, probs)
    assert set(metrics.MONITOR_MODES) == set(metrics.METRIC_NAMES) | {"val_loss"}
    assert metrics.MONITOR_MODES["val_loss"] == "min" and metrics.MONITOR_MODES["qwk"] == "max"
