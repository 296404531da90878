import numpy as np
import pytest
import torch

from comp.data.augment import build_transform
from comp.data.dataset import EpochSampler, ImageDataset, balanced_weights, make_loader
from comp.data.prepare import BatchPrep
from comp.data.table import load_test_table, load_train_table
from comp.recipe import AugmentConfig, TrainConfig, recipe_from_dict


def _tables(competition, **augment):
    recipe = recipe_from_dict({"name": "t", "data": {"root": str(competition)}, "augment": {"size": 24, **augment}})
    train, classes = load_train_table(recipe)
    return recipe, train, classes


def test_items_are_uint8_hwc_tensors_with_class_indices_normalised_on_the_device(competition):
    recipe, table, _ = _tables(competition, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    ds = ImageDataset(table, build_transform(recipe.augment, train=False))
    image, label = ds[1]
    assert image.shape == (24, 24, 3) and image.dtype == torch.uint8  # the workers ship uint8
    assert label == int(table.labels[1]) == 1  # "dog"
    # The raw image is green-dominant; after RGB normalisation channel 1 is the brightest.
    raw = ds.load(1)
    assert raw.dtype == np.uint8 and raw.shape == (16, 16, 3) and raw[..., 1].mean() > raw[..., 0].mean()
    model_input = BatchPrep(recipe.augment, device="cpu")(image[None])[0]
    assert model_input.shape == (3, 24, 24) and model_input.dtype == torch.float32
    assert model_input[1].mean() > model_input[0].mean()
    expected = (raw[..., 1].mean() / 255 - 0.5) / 0.25
    assert model_input[1].mean().item() == pytest.approx(expected, abs=0.05)
    test = ImageDataset(load_test_table(recipe), build_transform(recipe.augment, train=False))
    assert test[0][1] == -1


def test_training_augmentation_is_random_and_eval_is_not(competition):
    recipe, table, _ = _tables(competition, hflip=1.0)
    flip = ImageDataset(table, build_transform(recipe.augment, train=True))
    plain = ImageDataset(table, build_transform(recipe.augment, train=False))
    assert torch.equal(flip[0][0], plain[0][0].flip(1))  # p=1 horizontal flip (H x W x C)
    assert torch.equal(plain[0][0], plain[0][0])
    rot = AugmentConfig(size=24, hflip=0.0, rotate=45, rotate_p=1.0)
    rotated = ImageDataset(table, build_transform(rot, train=True))
    assert not torch.equal(rotated[0][0], rotated[0][0])


def test_loader_batches_and_balanced_sampler(competition):
    recipe, table, classes = _tables(competition)
    ds = ImageDataset(table, build_transform(recipe.augment, train=False))
    sampler = EpochSampler(len(ds), seed=0)
    loader = make_loader(ds, 8, train_cfg=TrainConfig(workers=0), device=torch.device("cpu"), sampler=sampler)
    images, labels = next(iter(loader))
    assert images.shape == (8, 24, 24, 3) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert len(loader) == len(table) // 8  # drop_last while training
    labels = np.array([0] * 90 + [1] * 10)
    drawn = np.array([i for i, _ in EpochSampler(100, seed=0, weights=balanced_weights(labels, 2))])
    share = (labels[drawn] == 1).mean()
    assert 0.35 < share < 0.65  # about half, although the class is 10% of the rows


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    b.set_epoch(1)
    first, second = list(a), list(b)
    assert sorted(i for i, _ in first) == list(range(10))
    assert first != second
    a.set_epoch(1)
    assert list(a) == second  # no hidden state carried between epochs
    # Two ranks share one permutation: disjoint shares (after padding) covering every row.
    ranks = [list(EpochSampler(9, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5
    assert {i for r in ranks for i, _ in r} == set(range(9))


def test_augmentation_depends_on_the_item_seed_only(competition):
    recipe, table, _ = _tables(competition, hflip=0.5, rotate=30, rotate_p=1.0)
    ds = ImageDataset(table, build_transform(recipe.augment, train=True))
    x1, x2 = ds[(0, 123)][0], ds[(0, 123)][0]
    assert torch.equal(x1, x2)
    assert not torch.equal(x1, ds[(0, 124)][0])
    cfg = TrainConfig(workers=2)
    batches = []
    for workers in (0, 2):
        sampler = EpochSampler(len(ds), seed=5)
        loader = make_loader(ds, 6, train_cfg=TrainConfig(workers=workers), device=torch.device("cpu"), sampler=sampler)
        batches.append(torch.cat([x for x, _ in loader]))
    assert torch.equal(batches[0], batches[1]) and cfg.workers == 2


def test_geometric_jitter_is_one_warp_and_rotation_alone_keeps_rotate():
    names = lambda cfg: [type(s).__name__ for s in build_transform(cfg, train=True).transforms]  # noqa: E731
    assert "Rotate" in names(AugmentConfig(size=8, rotate=30))
    warp = names(AugmentConfig(size=8, rotate=30, scale=0.1, shift=0.1))
    assert "Affine" in warp and "Rotate" not in warp
    assert not {"Affine", "Rotate"} & set(names(AugmentConfig(size=8, rotate=30, rotate_p=0.0)))
    assert "Affine" in names(AugmentConfig(size=8, scale=0.1))  # zoom without rotation
    # The zoom keeps the aspect ratio: a centred square stays a square.
    image = np.zeros((32, 32, 3), np.uint8)
    image[12:20, 12:20] = 255
    tf = build_transform(AugmentConfig(size=32, scale=0.5, rotate_p=1.0, mean=[0, 0, 0], std=[1, 1, 1]),
                         train=True)
    for _ in range(10):  # independent x/y zooms would differ by > 1 px in most draws
        rows, cols = np.nonzero(tf(image=image)["image"][..., 0] > 127)  # uint8 H x W x C
        assert abs((rows.max() - rows.min()) - (cols.max() - cols.min())) <= 1
