"""The recipe keys of the new kinds (issue 30): what each is for, refused elsewhere."""

from __future__ import annotations

import pytest

from comp.data.table import load_train_table
from comp.errors import CompError
from comp.recipe import RecipeError, recipe_from_dict


@pytest.mark.parametrize("raw, message", [
    ({"data": {"task": "multilabel", "label_col": "tags", "label_cols": ["a", "b"]}, "loss": {"name": "bce"}},
     "both name the labels"),
    ({"data": {"label_cols": ["a", "b"]}}, "label_cols is for"),
    ({"loss": {"name": "bce"}}, '"bce" is for'),
    ({"loss": {"pos_weight": "sqrt"}}, "pos_weight is for"),
    ({"data": {"task": "multilabel"}, "loss": {"name": "ce"}}, "not a multilabel loss"),
    ({"data": {"task": "multilabel"}, "loss": {"name": "bce", "pos_weight": "half"}}, "pos_weight must be"),
    ({"predict": {"decision": "label_thresholds"}, "data": {"task": "ordinal"}}, "is not a decision of an ordinal task"),
    ({"submission": {"beta": 0}}, "beta must be positive"),
])
def test_new_keys_are_refused_where_they_do_not_apply(raw, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({"name": "r", **raw})


def test_a_multilabel_recipe_reads_the_tags_as_a_label_matrix(tmp_path):
    (tmp_path / "train.csv").write_text("id,tags\na,x y\nb,\nc,y\n")
    recipe = recipe_from_dict({"name": "r", "data": {"root": str(tmp_path), "task": "multilabel", "label_col": "tags"},
                               "loss": {"name": "bce", "pos_weight": {"x": 2.0}},
                               "predict": {"decision": "label_thresholds"}, "submission": {"metric": "fbeta"}})
    table, classes = load_train_table(recipe)
    assert classes.labels == ("x", "y")
    assert table.targets.tolist() == [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]  # an empty cell: no label
