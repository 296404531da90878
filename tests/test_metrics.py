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


# --------------------------------------------------------------------------- multi-label and regression

ML_TRUE = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
ML_PROBS = np.array([[0.9, 0.2, 0.6, 0.1], [0.3, 0.7, 0.4, 0.2], [0.6, 0.4, 0.2, 0.1],
                     [0.1, 0.1, 0.3, 0.6], [0.8, 0.3, 0.2, 0.0]])
ML_PRED = (ML_PROBS >= 0.5).astype(int)


def test_multilabel_scores_equal_sklearn():
    s = metrics.multilabel_scores(ML_TRUE, ML_PROBS, ML_PRED, beta=2.0)
    assert list(s) == ["mean_auc", "f1_macro", "f1_micro", "f1_samples", "fbeta", "map", "exact_match", "log_loss"]
    # Label 3 is never true: left out of the AUC and AP means.
    aucs = [skm.roc_auc_score(ML_TRUE[:, j], ML_PROBS[:, j]) for j in range(3)]
    assert s["mean_auc"] == pytest.approx(np.mean(aucs))
    aps = [skm.average_precision_score(ML_TRUE[:, j], ML_PROBS[:, j]) for j in range(3)]
    assert s["map"] == pytest.approx(np.mean(aps))
    assert s["f1_micro"] == pytest.approx(skm.f1_score(ML_TRUE, ML_PRED, average="micro"))
    assert s["f1_samples"] == pytest.approx(skm.f1_score(ML_TRUE, ML_PRED, average="samples", zero_division=1.0))
    assert s["fbeta"] == pytest.approx(skm.fbeta_score(ML_TRUE, ML_PRED, beta=2, average="samples", zero_division=1.0))
    assert s["exact_match"] == pytest.approx(skm.accuracy_score(ML_TRUE, ML_PRED)) == pytest.approx(2 / 5)
    clipped = np.clip(ML_PROBS, 1e-7, 1 - 1e-7)
    assert s["log_loss"] == pytest.approx(np.mean([skm.log_loss(ML_TRUE[:, j], clipped[:, j], labels=[0, 1])
                                                   for j in range(4)]))
    # Label 3 is predicted once but never true: F1 0 counted in the macro mean.
    per_label = skm.f1_score(ML_TRUE, ML_PRED, average=None, zero_division=0)
    assert s["f1_macro"] == pytest.approx(per_label.mean())
    # Row 3 (no tag, tag 3 predicted) scores 0; by hand row 0: tp=2 → F2 = 1, row 1: 1, row 2: tp=1, fn=1 →
    # 5/(5+4) = 5/9, row 4: tp=1, fn=1 → 5/9.
    assert s["fbeta"] == pytest.approx((1 + 1 + 5 / 9 + 0 + 5 / 9) / 5)


def test_multilabel_scores_empty_rows_and_absent_labels():
    y = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    pred = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    s = metrics.multilabel_scores(y, pred.astype(float), pred)
    # A row with no true and no predicted tag is right (1); label 1, nowhere, is left out of the macro F1.
    assert s["fbeta"] == s["f1_samples"] == s["f1_macro"] == s["f1_micro"] == s["exact_match"] == 1.0
    assert s["mean_auc"] == 1.0 and s["map"] == 1.0
    assert s["log_loss"] == pytest.approx(-np.log(1 - 1e-7))
    none = metrics.multilabel_scores(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))
    assert all(math.isnan(v) for v in none.values())
    all_zero = metrics.multilabel_scores(np.zeros((2, 2)), np.full((2, 2), 0.2), np.zeros((2, 2)))
    assert math.isnan(all_zero["mean_auc"]) and math.isnan(all_zero["map"]) and all_zero["fbeta"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        metrics.multilabel_scores(y, np.zeros((3, 2)), pred)
    with pytest.raises(ValueError, match="0/1"):
        metrics.multilabel_scores(y * 2, pred.astype(float), pred)


def test_per_label_table():
    rows = metrics.per_label_table(ML_TRUE, ML_PROBS, ML_PRED)
    assert [r["label"] for r in rows] == [0, 1, 2, 3]
    assert [r["support"] for r in rows] == [3, 2, 2, 0] and [r["predicted"] for r in rows] == [3, 1, 1, 1]
    f1 = skm.f1_score(ML_TRUE, ML_PRED, average=None, zero_division=0)
    np.testing.assert_allclose([r["f1"] for r in rows], f1)
    assert rows[1]["precision"] == 1.0 and rows[1]["recall"] == 0.5
    assert rows[0]["auc"] == pytest.approx(skm.roc_auc_score(ML_TRUE[:, 0], ML_PROBS[:, 0]))
    assert rows[2]["ap"] == pytest.approx(skm.average_precision_score(ML_TRUE[:, 2], ML_PROBS[:, 2]))
    assert math.isnan(rows[3]["auc"]) and math.isnan(rows[3]["ap"])
    nowhere = metrics.per_label_table(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)))
    assert math.isnan(nowhere[0]["f1"])


def test_fbeta_from_counts_equals_sklearn():
    for beta in (0.5, 1.0, 2.0):
        rows = [metrics.fbeta_from_counts(((t == 1) & (p == 1)).sum(), ((t == 0) & (p == 1)).sum(),
                                          ((t == 1) & (p == 0)).sum(), beta) for t, p in zip(ML_TRUE, ML_PRED)]
        assert np.mean(rows) == pytest.approx(
            skm.fbeta_score(ML_TRUE, ML_PRED, beta=beta, average="samples", zero_division=1.0))


def test_regression_scores_equal_sklearn_and_scipy():
    from scipy import stats

    y, p = np.array([1.0, 2.0, 3.0, 4.0, 10.0]), np.array([1.5, 1.5, 3.5, 5.0, 8.0])
    s = metrics.regression_scores(y, p)
    assert list(s) == ["rmse", "mae", "r2", "pearson", "spearman"]
    assert s["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert s["rmse"] == pytest.approx(np.sqrt((0.25 * 3 + 1 + 4) / 5))
    assert s["mae"] == pytest.approx(skm.mean_absolute_error(y, p)) == pytest.approx(4.5 / 5)
    assert s["r2"] == pytest.approx(skm.r2_score(y, p))
    assert s["pearson"] == pytest.approx(stats.pearsonr(y, p)[0])
    assert s["spearman"] == pytest.approx(stats.spearmanr(y, p)[0])
    flat = metrics.regression_scores(np.array([2.0, 2.0]), np.array([1.0, 3.0]))
    assert flat["rmse"] == 1.0 and math.isnan(flat["pearson"]) and math.isnan(flat["spearman"])
    assert all(math.isnan(v) for v in metrics.regression_scores(np.array([]), np.array([])).values())
    with pytest.raises(ValueError, match="finite"):
        metrics.regression_scores(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
