import numpy as np
import pandas as pd
import pytest

from comp.data.table import ClassMap, load_test_table, load_train_table, natural_sort
from comp.errors import CompError
from comp.recipe import recipe_from_dict


def _recipe(root, **data):
    return recipe_from_dict({"name": "t", "data": {"root": str(root), **data}})


def test_train_table_maps_labels_and_paths(competition):
    table, classes = load_train_table(_recipe(competition))
    assert classes.labels == ("cat", "dog", "eel")
    assert table.labels.dtype == np.int64 and set(table.labels) == {0, 1, 2}
    assert table.paths[0].endswith("train/tr000.png")
    assert list(classes.decode(table.labels[:3])) == ["cat", "dog", "eel"]
    test = load_test_table(_recipe(competition))
    assert len(test) == 9 and test.labels is None


def test_real_layouts_by_column_names(tmp_path):
    root = tmp_path / "dr"
    (root / "train").mkdir(parents=True)
    pd.DataFrame({"image": ["10_left", "10_right"], "level": [0, 4]}).to_csv(root / "train.csv", index=False)
    r = _recipe(root, id_col="image", label_col="level", ext=".jpeg", classes=["0", "1", "2", "3", "4"])
    table, classes = load_train_table(r)
    assert classes.labels == ("0", "1", "2", "3", "4") and list(table.labels) == [0, 4]
    assert table.paths[1].endswith("train/10_right.jpeg")
    pd.DataFrame({"Path": ["imgs/a.bmp", "imgs/b.bmp"], "label": ["hem", "ALL"]}).to_csv(root / "train.csv", index=False)
    table, classes = load_train_table(_recipe(root, id_col="Path", path_col="Path"))
    assert classes.labels == ("ALL", "hem") and table.paths[0].endswith("imgs/a.bmp")


def test_natural_class_order():
    assert natural_sort({"10", "9", "1"}) == ["1", "9", "10"]
    assert ClassMap.from_labels(["b", "a"]).labels == ("a", "b")
    with pytest.raises(CompError, match=r"outside the class set.*\['z'\]"):
        ClassMap(("a", "b")).encode(["a", "z"])


@pytest.mark.parametrize("frame, declared, message", [
    ({"id": ["a", "b"]}, [], "missing column 'label'"),
    ({"id": ["a", "a"], "label": ["x", "y"]}, [], "duplicate ids: a"),
    ({"id": ["a", "b"], "label": ["x", "q"]}, ["x", "y"], "labels outside the class set ['x', 'y']: q"),
])
def test_bad_tables(tmp_path, frame, declared, message):
    pd.DataFrame(frame).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(CompError) as err:
        load_train_table(_recipe(tmp_path, classes=declared))
    assert message in str(err.value)


def test_missing_data_folder(tmp_path):
    with pytest.raises(CompError, match="data folder not found"):
        load_train_table(_recipe(tmp_path / "nowhere"))


def test_problems_are_collected_not_raised_one_by_one(tmp_path):
    """A missing column does not hide the other problems: one error lists them all."""
    pd.DataFrame({"id": ["a", "a", ""]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"id": ["a", "b"], "label": ["x", ""]}).to_csv(tmp_path / "valid.csv", index=False)
    with pytest.raises(CompError) as err:
        load_train_table(_recipe(tmp_path, valid_csv="valid.csv"))
    message = str(err.value)
    for part in ("1 missing column 'label': train.csv (columns: id)", "1 empty ids: train.csv line 4",
                 "1 duplicate ids: a", "1 empty labels: b"):
        assert part in message, message
