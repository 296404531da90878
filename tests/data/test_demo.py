import hashlib

import cv2
import pandas as pd

from comp.data.demo import build_demo


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
