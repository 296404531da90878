import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest

from comp.data.demo import DIGIT_WORDS, build_demo
from comp.data.labels import parse_label_columns, parse_numeric, parse_tags
from comp.errors import CompError


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_demo_competition_layout_and_determinism(tmp_path):
    s = build_demo(tmp_path / "a", seed=3)
    assert (s.n_train + s.n_test, s.num_classes) == (1797, 10)
    root = tmp_path / "a"
    train, test = pd.read_csv(root / "train.csv", dtype=str), pd.read_csv(root / "test.csv", dtype=str)
    sample, solution = pd.read_csv(root / "sample_submission.csv", dtype=str), pd.read_csv(root / "solution.csv", dtype=str)
    assert list(train.columns) == ["id", "label"] and list(test.columns) == ["id"]
    assert list(sample.columns) == ["id", "label"] and list(solution.columns) == ["id", "label"]
    assert len(train) == s.n_train and len(test) == s.n_test == 360  # sklearn rounds the test share up
    assert set(train.id).isdisjoint(test.id)
    assert list(sample.id) == list(test.id) == list(solution.id)
    assert sorted(train.label.unique(), key=int) == [str(i) for i in range(10)]
    image = cv2.imread(str(root / "train" / f"{train.id[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (32, 32, 3) and image.dtype == "uint8"
    assert len(list((root / "test").glob("*.png"))) == s.n_test

    build_demo(tmp_path / "b", seed=3)
    build_demo(tmp_path / "c", seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def _read(root, name):
    return pd.read_csv(root / name, dtype=str, keep_default_na=False)


def test_mosaic_demos_multilabel_cols_and_regression(tmp_path):
    tags = build_demo(tmp_path / "tags", seed=1, kind="multilabel")
    cols = build_demo(tmp_path / "cols", seed=1, kind="multilabel_cols")
    reg = build_demo(tmp_path / "reg", seed=1, kind="regression")
    assert (tags.n_train, tags.n_test, tags.num_classes, tags.kind) == (1437, 360, 10, "multilabel")
    assert (cols.num_classes, reg.num_classes) == (10, 0) and reg.what.startswith("a numeric target")

    # Planet's layout: image_name,tags; an empty cell is a mosaic whose four tiles are blank.
    root = tmp_path / "tags"
    train, test, sample, solution = (_read(root, f) for f in ("train.csv", "test.csv", "sample_submission.csv",
                                                               "solution.csv"))
    assert list(train.columns) == list(sample.columns) == list(solution.columns) == ["image_name", "tags"]
    assert list(test.columns) == ["image_name"] and list(sample.image_name) == list(test.image_name)
    assert set(train.image_name).isdisjoint(test.image_name) and len(test) == 360
    names, Y = parse_tags(train.tags, train.image_name)
    assert names == [str(d) for d in range(10)] and 1 <= Y.sum(axis=1).max() <= 4
    assert 0.2 < Y.mean(axis=0).min() and Y.mean(axis=0).max() < 0.4  # every digit in about a quarter of rows
    assert (Y.sum(axis=1) == 0).sum() > 0  # a few rows without a tag
    parse_tags(sample.tags, sample.image_name, tags=names)  # the sample's tags are known ones
    image = cv2.imread(str(root / "train" / f"{train.image_name[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (32, 32, 3) and image.dtype == "uint8"

    # Plant Pathology's layout: the same mosaics and labels, one 0/1 column per digit.
    root = tmp_path / "cols"
    train_cols, sample_cols = _read(root, "train.csv"), _read(root, "sample_submission.csv")
    assert list(train_cols.columns) == ["image_id", *DIGIT_WORDS] == list(sample_cols.columns)
    assert list(train_cols.image_id) == list(train.image_name)
    assert np.array_equal(parse_label_columns(train_cols, DIGIT_WORDS, train_cols.image_id), Y)
    assert set(sample_cols.iloc[:, 1:].to_numpy().ravel()) == {"0.5"}
    first = f"{train.image_name[0]}.png"
    assert (tmp_path / "tags" / "train" / first).read_bytes() == (root / "train" / first).read_bytes()

    # Pawpularity's layout: Id,target, the sum of four digits (no blank tiles here).
    root = tmp_path / "reg"
    train_reg, sample_reg, solution_reg = (_read(root, f) for f in ("train.csv", "sample_submission.csv",
                                                                   "solution.csv"))
    assert list(train_reg.columns) == list(sample_reg.columns) == list(solution_reg.columns) == ["Id", "target"]
    target = parse_numeric(train_reg.target, train_reg.Id, "target")
    assert target.min() >= 0 and target.max() <= 36 and 15 < target.mean() < 21 and len(np.unique(target)) > 20
    assert float(sample_reg.target[0]) == round(target.mean(), 1)
    assert list(train_reg.Id) == list(train.image_name)  # the same tiles drawn, none left blank

    build_demo(tmp_path / "tags2", seed=1, kind="multilabel")
    assert _digest(tmp_path / "tags") == _digest(tmp_path / "tags2")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_demo_kind(tmp_path):
    with pytest.raises(CompError, match="unknown demo kind 'ordinal'"):
        build_demo(tmp_path / "x", kind="ordinal")
    assert not (tmp_path / "x").exists()
