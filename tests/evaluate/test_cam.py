"""Class activation maps (comp.evaluate.cam, `comp cam`, cv-report's cam.jpg)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from comp.evaluate.cam import METHODS, compute_cams, gallery_rows, label_gallery_rows, target_layer
from comp.model.resnet import resnet18
from tests.conftest import run_comp, write_recipe

pytestmark = pytest.mark.xdist_group("test_cam")  # one worker makes the module's fixtures (conftest)

SIZE = 128  # test_resnet's last block sees a 4 x 4 map
SQUARE = 40


def square_image(rng: np.random.Generator, corner: str) -> np.ndarray:
    """Dark noise with a bright square in the top-left ("tl") or bottom-right ("br") corner, or none
    ("no": so that each corner class needs its own square as evidence, not the other's absence)."""
    img = rng.integers(0, 60, size=(SIZE, SIZE, 3)).astype(np.uint8)
    if corner == "tl":
        img[1:1 + SQUARE, 1:1 + SQUARE] = 250
    elif corner == "br":
        img[-1 - SQUARE:-1, -1 - SQUARE:-1] = 250
    return img


def write_corners(root, n_train: int = 36, seed: int = 0):
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    labels = [("tl", "br", "no")[i % 3] for i in range(n_train)]
    ids = [f"r{i:03d}" for i in range(n_train)]
    for i, lab in zip(ids, labels):
        cv2.imwrite(str(root / "train" / f"{i}.png"), square_image(rng, lab))
    for k, lab in enumerate(("tl", "br")):
        cv2.imwrite(str(root / "test" / f"t{k}.png"), square_image(rng, lab))
    pd.DataFrame({"id": ids, "label": labels}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ["t0", "t1"]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": ["t0", "t1"], "label": "tl"}).to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.fixture(scope="module")
def corner_run(tmp_path_factory):
    """test_resnet trained to tell a top-left square from a bottom-right one."""
    tmp = tmp_path_factory.mktemp("corners")
    data = write_corners(tmp / "data")
    recipe = write_recipe(tmp / "corners.toml", data, extra="""
        [cv]
        scheme = "holdout"
        valid_fraction = 0.25
        """).read_text().replace("size = 32", f"size = {SIZE}").replace(
        "epochs = 2", "epochs = 4").replace("hflip = 0.5", "hflip = 0.0")
    (tmp / "corners.toml").write_text(recipe)
    code, out, err = run_comp(["fit", "corners.toml", "--runs", "runs", "--device", "cpu", "--no-report"], tmp)
    assert code == 0, err
    return tmp


def quadrant_shares(cam: np.ndarray) -> dict[str, float]:
    """The share of the map's mass in each image quarter: top-left, top-right, bottom-left, bottom-right."""
    h, w = cam.shape
    parts = {"tl": cam[: h // 2, : w // 2], "tr": cam[: h // 2, w // 2:], "bl": cam[h // 2:, : w // 2],
             "br": cam[h // 2:, w // 2:]}
    total = max(float(cam.sum()), 1e-12)
    return {k: float(v.sum()) / total for k, v in parts.items()}


def assert_in_corner(cam: np.ndarray, corner: str) -> None:
    """Most of the map's mass (more than any other quarter's, and well above a flat map's 1/4) lies
    in ``corner``, and so does its peak."""
    shares = quadrant_shares(cam)
    assert max(shares, key=shares.get) == corner, shares
    assert shares[corner] > 0.35, shares
    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    assert (peak[0] < SIZE // 2) == (corner == "tl") and (peak[1] < SIZE // 2) == (corner == "tl"), peak


def test_a_cam_puts_its_mass_where_the_class_is(corner_run):
    """comp cam on each test image: the map of the class predicted lies in the square's corner."""
    tmp = corner_run
    from comp.evaluate.cam import fold_models, model_input, read_images
    from comp.run.folder import RunDir

    run = RunDir(tmp / "runs" / "tiny")
    recipe = run.recipe()
    models = [m for ms in fold_models(run, recipe, "best").values() for m in ms]
    x, _ = model_input(recipe, read_images([tmp / "data" / "test" / "t0.png", tmp / "data" / "test" / "t1.png"]))
    with torch.inference_mode():
        pred = models[0](x).argmax(1).tolist()
    labels = run.classes()
    assert [labels[p] for p in pred] == ["tl", "br"]  # learnt
    for method in ("gradcam", "layercam"):
        cams = compute_cams(models, x, pred, method)
        assert cams.shape == (2, SIZE, SIZE) and cams.max() <= 1.0 + 1e-6
        assert_in_corner(cams[0], "tl")
        assert_in_corner(cams[1], "br")

    code, out, err = run_comp(["cam", "--runs", "runs", "--run", "tiny", "--image", "data/test/t0.png",
                               "--image", "data/test/t1.png", "--out", "cams", "--method", "gradcam++"], tmp)
    assert code == 0, err
    assert sorted(os.listdir(tmp / "cams")) == ["t0_gradcampp.jpg", "t1_gradcampp.jpg"]
    pic = cv2.imread(str(tmp / "cams" / "t0_gradcampp.jpg"))
    assert pic is not None and pic.shape[1] > 2 * 100  # two tiles side by side


def test_cv_report_draws_right_and_wrong_per_class(corner_run):
    tmp = corner_run
    code, out, err = run_comp(["cv-report", "--runs", "runs", "--run", "tiny"], tmp)
    assert code == 0, err
    cam = tmp / "runs" / "tiny" / "cam.jpg"
    assert cam.is_file()
    assert "![cam](cam.jpg)" in (tmp / "runs" / "tiny" / "report.md").read_text()
    cam.unlink()
    code, out, err = run_comp(["cv-report", "--runs", "runs", "--run", "tiny", "--no-cam"], tmp)
    assert code == 0, err
    assert not cam.exists()


def test_bad_input_is_one_message_and_exit_2(corner_run, tmp_path):
    tmp = corner_run
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    for args, words in (
        (["--image", str(bad)], "cannot read image"),
        (["--image", str(tmp_path / "missing.png")], "image not found"),
        (["--image", "data/test/t0.png", "--class", "zebra"], "'zebra' is not a class of tiny"),
        (["--image", "data/test/t0.png", "--method", "scorecam"], "--method 'scorecam'"),
        (["--image", "data/test/t0.png", "--out", "runs/tiny/cams"], "lies in the run folder"),
    ):
        code, out, err = run_comp(["cam", "--runs", "runs", "--run", "tiny", *args], tmp)
        assert code == 2, (args, err)
        assert words in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_a_run_without_oof_or_weights_is_refused_and_long_names_are_cut(corner_run, tmp_path):
    """A run with no finished fold (no OOF rows, no weights) is one message; an image with a long
    name gets a picture whose name is cut."""
    import shutil

    tmp = corner_run
    bare = tmp / "runs" / "bare"
    bare.mkdir(exist_ok=True)
    for name in ("run.json", "recipe.toml"):
        shutil.copyfile(tmp / "runs" / "tiny" / name, bare / name)
    code, out, err = run_comp(["cam", "--runs", "runs", "--run", "bare", "--image", "data/test/t0.png"], tmp)
    assert code == 2 and "no finished fold" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    shutil.rmtree(bare)
    long = tmp_path / ("x" * 240 + ".png")
    shutil.copyfile(tmp / "data" / "test" / "t0.png", long)
    code, out, err = run_comp(["cam", "--runs", "runs", "--run", "tiny", "--image", str(long), "--out",
                               str(tmp_path / "out")], tmp)
    assert code == 0, err
    assert os.listdir(tmp_path / "out") == ["x" * 100 + "_gradcam.jpg"]


def test_target_layers_by_family():
    torch.manual_seed(0)  # an unseeded random net can give an all-zero map (every gradient negative)
    hand = resnet18(num_classes=3)
    assert target_layer(hand).name == "layer4.1"
    # At 32 px the last block sees 1 x 1 (no "where"): the last stage that sees 4 x 4 is read instead.
    assert target_layer(hand, 32).name == "layer2.1"
    assert target_layer(hand, 224).name == "layer4.1"
    cams = compute_cams([hand.eval()], torch.randn(2, 3, 32, 32), [0, 1])
    assert cams.shape == (2, 32, 32) and cams.max() == pytest.approx(1.0)
    import timm

    assert target_layer(timm.create_model("test_resnet", num_classes=3)).name.startswith("layer4.")
    assert target_layer(timm.create_model("test_convnext", num_classes=3)).name.startswith("stages.")
    assert target_layer(timm.create_model("test_efficientnet", num_classes=3)).name == "conv_head"
    vit = timm.create_model("test_vit", num_classes=3)
    target = target_layer(vit)
    assert target.name.endswith(".norm1") and target.reshape is not None
    cams = compute_cams([vit.eval()], torch.randn(2, 3, *vit.default_cfg["input_size"][1:]), [0, 1], "gradcam")
    assert cams.shape[0] == 2 and np.isfinite(cams).all()
    odd = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert target_layer(odd).name == "2"
    assert set(METHODS) == {"gradcam", "gradcam++", "eigencam", "layercam"}


def test_gallery_rows_pick_the_most_confident_right_and_the_worst_wrong():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]])
    assert gallery_rows(y, p) == [(0, 0, 2), (1, 3, None)]


def test_label_gallery_rows_pick_per_label_the_surest_hit_and_the_worst_miss():
    y = np.array([[1, 0], [1, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.3, 0.6], [0.1, 0.4], [0.8, 0.9]])
    # label 0: hit rows 0 (0.9); misses rows 1 (0.3) and 2 (0.1) -> 2. label 1: hit row 1; miss row 2.
    # Row 3 is a false positive of both labels and never picked (it has neither).
    assert label_gallery_rows(y, p) == [(0, 0, 2), (1, 1, 2)]


def test_without_the_grad_cam_package_one_message(monkeypatch):
    import sys

    from comp.errors import CompError

    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(CompError, match=r"need the grad-cam package"):
        compute_cams([resnet18(num_classes=2)], torch.zeros(1, 3, 32, 32), [0])
