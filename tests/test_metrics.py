import math

import numpy as np
import pytest
from sklearn import metrics as skm

from comp import metrics

Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 2, 3])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 3, 3])


def test_confusion_and_basic_scores_by_hand():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1]]
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


def test_qwk_by_hand():
    # Two classes, y = [0, 1], pred = [1, 1]: observed disagreement 1/2 (weight 1),
    # expected: rows (1, 1)/2 × cols (0, 2)/2 → cell (0, 1) = 1/2 · 1 = 1/2 → kappa = 0.
    assert metrics.quadratic_weighted_kappa(np.array([0, 1]), np.array([1, 1]), 2) == pytest.approx(0.0)
    assert metrics.quadratic_weighted_kappa(np.array([0, 1, 2]), np.array([0, 1, 2]), 3) == 1.0
    assert metrics.quadratic_weighted_kappa(np.array([1, 1]), np.array([1, 1]), 3) == 1.0


def test_auc_equals_sklearn_and_handles_missing_classes():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 3] * 10)
    probs = rng.dirichlet(np.ones(4), size=len(y))
    probs[np.arange(len(y)), y] += 0.3
    probs /= probs.sum(1, keepdims=True)
    expected = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert metrics.ovr_auc(y, probs) == pytest.approx(expected)
    assert math.isnan(metrics.ovr_auc(np.zeros(5, dtype=int), probs[:5]))
    s = metrics.summarise(y, probs)
    assert s["accuracy"] == pytest.approx((probs.argmax(1) == y).mean()) and s["auc"] == pytest.approx(expected)
