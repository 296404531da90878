"""The task kinds (comp.kinds): one object per kind, one per decision rule, and no dispatch on a
kind's name anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from comp import kinds
from comp.decisions import (expected_grade, fit_binary_threshold, fit_thresholds, nested_binary_predictions,
                            nested_threshold_predictions)
from comp.kinds import KINDS, RULES, Decision, kind_of, make_task, rule_of


def _probs(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, y, np.arange(n) % 3


def test_registry_names_each_kind_and_rule_once():
    assert set(KINDS) == {"binary", "multiclass", "ordinal", "multilabel", "regression"}
    assert set(RULES) == {"argmax", "threshold", "ordinal_thresholds", "value", "clip", "half", "label_thresholds",
                          "global_threshold"}
    assert kind_of(make_task("ordinal", 5)) is KINDS["ordinal"]
    assert [r.name for r in KINDS["binary"].rules] == ["threshold"]
    assert KINDS["multiclass"].merge_rule is None
    with pytest.raises(ValueError, match="unknown task kind"):
        kind_of("regressionish")
    with pytest.raises(ValueError, match="unknown decision"):
        rule_of("vote")


def test_kinds_metrics_and_defaults():
    assert kinds.metric_names("multiclass", 3)[-1] == "top2_accuracy"
    assert "top3_accuracy" not in kinds.metric_names("ordinal", 4)
    assert kinds.metric_names("ordinal", 5)[-2:] == ("qwk", "mae")
    assert make_task("multiclass", 4).monitor == "accuracy"
    assert make_task("binary", 2).monitor == "roc_auc" and make_task("binary", 2, positive=0).positive == 0
    assert make_task("ordinal", 4, positive=0).positive == -1  # only a binary task has a positive class
    assert kinds.auto_kind(2).name == "binary" and kinds.auto_kind(3).name == "multiclass"
    assert "needs two classes" in KINDS["binary"].check_classes(["a", "b", "c"])
    assert KINDS["ordinal"].check_classes(["a", "b", "c"]) == ""


def test_ordinal_rule_is_the_cut_point_maths():
    probs, y, folds = _probs(90, 4)
    task, rule = make_task("ordinal", 4), rule_of("ordinal_thresholds")
    fitted = rule.fit(probs, y, task)
    np.testing.assert_array_equal(fitted.cuts, fit_thresholds(expected_grade(probs), y, 4))
    np.testing.assert_array_equal(rule.nested(probs, y, folds, task),
                                  nested_threshold_predictions(expected_grade(probs), y, folds, 4))
    back = rule.from_json(rule.to_json(fitted, ["0", "1", "2", "3"]), ["0", "1", "2", "3"])
    np.testing.assert_array_equal(back.apply(probs), fitted.apply(probs))
    assert rule.owns({"cuts": [0.5]}) and not rule.owns({"threshold": 0.3})
    assert rule.values(fitted, []).startswith("cuts ")


def test_binary_rule_is_the_threshold_maths_and_records_its_metric():
    probs, y, folds = _probs(80, 2, seed=3)
    task, rule = make_task("binary", 2, positive=0, metric="f1"), rule_of("threshold")
    fitted = rule.fit(probs, y, task)
    assert fitted.positive == 0
    assert fitted.threshold == fit_binary_threshold(probs[:, 0], y == 0, "f1")
    nested = nested_binary_predictions(probs[:, 0], y == 0, folds, "f1")
    np.testing.assert_array_equal(rule.nested(probs, y, folds, task), np.where(nested, 0, 1))
    assert rule.to_json(fitted, ["no", "yes"], rule.fitted_for(task)) == {
        "threshold": fitted.threshold, "positive": "no", "metric": "f1"}
    assert rule.fit(probs, y, task, "roc_auc").threshold == fitted.threshold  # AUC: tuned for f1 instead
    with pytest.raises(ValueError, match="positive class 'maybe'"):
        rule.from_json({"threshold": 0.4, "positive": "maybe"}, ["no", "yes"])


def test_a_rule_of_another_kind_names_what_the_kind_offers():
    assert rule_of("threshold").misuse("[predict] decision", KINDS["ordinal"]) == (
        '[predict] decision = "threshold" is for binary tasks and this is an ordinal task '
        '(use "argmax" or "ordinal_thresholds")')
    assert "declare [data] task" in rule_of("ordinal_thresholds").misuse("--decision", KINDS["binary"])
    assert Decision().apply(np.array([[0.2, 0.8], [0.9, 0.1]])).tolist() == [1, 0]


def test_no_dispatch_on_a_kind_name_outside_the_kinds():
    """Adding a kind touches no `if kind == ...` elsewhere: the kinds answer for themselves."""
    root = Path(kinds.__file__).parents[1]
    pattern = re.compile(r"kind (==|!=|in) |\.kind (==|!=|in) |\"(binary|ordinal|multiclass|multilabel)\" (==|!=|in)"
                         r"|task (==|!=) \"(?!auto\")")
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if "kinds" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
