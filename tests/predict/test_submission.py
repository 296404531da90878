"""Multilabel submissions laid out as the leaderboard's: tags, or one column per label holding
probabilities or 0/1 decisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp.data.table import ClassMap, SubmissionFormat
from comp.errors import CompError
from comp.predict.submission import build_label_submission, check_label_sample, label_layout, label_values
from comp.recipe import recipe_from_dict

CLASSES = ClassMap(("clear", "haze", "water"))
IDS = np.array(["a", "b", "c"])
PRED = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
PROBS = np.array([[0.9, 0.2, 0.7], [0.1, 0.3, 0.4], [0.2, 0.8, 0.1]])


def _recipe(**submission):
    return recipe_from_dict({"name": "r", "data": {"task": "multilabel", "label_col": "tags", "tag_sep": " "},
                             "loss": {"name": "bce"}, "submission": submission}, "test")


def _fmt(sample: pd.DataFrame, id_col="id", label_col="tags") -> SubmissionFormat:
    return SubmissionFormat(id_col, label_col, Path("sample_submission.csv"), sample)


def test_tags_in_the_samples_order_and_an_empty_cell_for_no_label():
    sample = pd.DataFrame({"id": ["c", "a", "b"], "tags": ["clear", "clear", "clear"]})
    out = build_label_submission(_recipe(), IDS, PRED, PROBS, CLASSES, _fmt(sample), proba=True)
    assert out.id.tolist() == ["c", "a", "b"]
    assert out.tags.tolist() == ["haze", "clear water", ""]
    assert out.prob_haze.tolist() == [0.8, 0.2, 0.3]


def test_one_column_per_label_holds_probabilities_or_decisions():
    sample = pd.DataFrame({"id": ["a", "b", "c"], "clear": 0.5, "haze": 0.5, "water": 0.5})
    fmt = _fmt(sample, label_col="clear")
    assert label_layout(_recipe(), fmt, CLASSES) == ["clear", "haze", "water"]
    assert label_values(_recipe(), fmt, ["clear", "haze", "water"]) == "probabilities"  # the sample's 0.5 cells
    assert label_values(_recipe(metric="fbeta"), fmt, ["clear"]) == "decisions"  # a metric of decisions
    assert label_values(_recipe(metric="mean_auc"), fmt, ["clear"]) == "probabilities"
    zeros = _fmt(sample.assign(clear=0, haze=0, water=0), label_col="clear")
    assert label_values(_recipe(), zeros, ["clear", "haze", "water"]) == "decisions"
    assert label_values(_recipe(values="probabilities"), zeros, ["clear"]) == "probabilities"
    out = build_label_submission(_recipe(metric="fbeta"), IDS, PRED, PROBS, CLASSES, fmt)
    assert out[["clear", "haze", "water"]].to_numpy().tolist() == PRED.tolist()
    out = build_label_submission(_recipe(metric="mean_auc"), IDS, PRED, PROBS, CLASSES, fmt)
    assert out[["clear", "haze", "water"]].to_numpy().tolist() == PROBS.tolist()


def test_a_sample_with_some_label_columns_or_unknown_tags_is_refused():
    partial = pd.DataFrame({"id": ["a"], "clear": 0.5, "haze": 0.5})
    with pytest.raises(CompError, match=r"none for \['water'\]"):
        label_layout(_recipe(), _fmt(partial, label_col="clear"), CLASSES)
    unknown = pd.DataFrame({"id": ["a", "b"], "tags": ["clear", "fog haze"]})
    with pytest.raises(CompError, match="row 'b': tag 'fog'"):
        check_label_sample(_recipe(), _fmt(unknown), CLASSES)
    check_label_sample(_recipe(), _fmt(unknown.assign(tags="haze")), CLASSES)  # known tags pass
