"""Device augmentation on CPU tensors: exact flips/rot90, the recipe's distributions (checked against
albumentations' own samplers), the warp against albumentations' matrix, and equality with the CPU path
when augmentation is off."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from comp.data.device_augment import DeviceAugment, erasing_fill, warp_affine
from comp.recipe import AugmentConfig

from comp.data.augment import build_transform
from tests.data.worker_reference import normalising_transform

import albumentations as A  # noqa: E402  (imported after comp, which silences its update check)
from albumentations.augmentations.geometric import functional as fgeometric  # noqa: E402

SIZE = 32
N = 4000  # samples for the statistical checks
ALPHA = 1e-3  # significance of each statistical check; the seeds are fixed, so no flakiness


def _cfg(**kw) -> AugmentConfig:
    base = dict(size=SIZE, hflip=0.0, vflip=0.0, rotate=0.0, rotate_p=0.0, scale=0.0, shift=0.0,
                brightness_contrast=0.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    return AugmentConfig(**{**base, **kw})


def _images(n=6, size=SIZE, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _float_nchw(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float()


def _binomial_ok(hits: int, n: int, p: float) -> bool:
    return stats.binomtest(hits, n, p).pvalue > ALPHA


# --- exact ops ---------------------------------------------------------------------------------

def test_flips_and_rot90_are_exact_per_sample():
    aug = DeviceAugment(_cfg(hflip=0.5, vflip=0.5, rot90=0.75), train=True)
    images = _images(n=32)
    params = aug.sample_params(32, _gen(3))
    out = aug.apply(_float_nchw(images), params)
    for i, img in enumerate(images.numpy()):
        want = img
        if params.hflip[i]:
            want = want[:, ::-1]
        if params.vflip[i]:
            want = want[::-1]
        want = np.rot90(want, int(params.rot90[i]))  # A.RandomRotate90: np.rot90 on H, W
        assert torch.equal(out[i], torch.from_numpy(want.copy()).permute(2, 0, 1).float())
    assert params.hflip.any() and (~params.hflip).any() and len(set(params.rot90.tolist())) == 4


def test_quarter_turns_match_albumentations_random_rotate90():
    # The CPU path's A.RandomRotate90 turns by np.rot90(image, k), k uniform in 0..3: as the device path.
    cfg = _cfg(rot90=1.0)
    step = _albu_step(cfg, A.RandomRotate90)
    applied = A.Compose([step], save_applied_params=True, seed=0)
    image = _images(n=1).numpy()[0]
    theirs = np.zeros(4, int)
    for _ in range(400):
        out = applied(image=image)
        k = out["applied_transforms"][0][1]["factor"]
        assert np.array_equal(out["image"], np.rot90(image, k))
        theirs[k] += 1
    mine = np.bincount(DeviceAugment(cfg, train=True).sample_params(400, _gen(5)).rot90.numpy(), minlength=4)
    assert stats.chi2_contingency([mine, theirs]).pvalue > ALPHA


def test_a_90_degree_warp_is_torch_rot90_in_the_interior():
    x = _float_nchw(_images(n=2))
    one = torch.ones(2)
    out = warp_affine(x, 90 * one, one, 0 * one, 0 * one)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.rot90(x, 1, (-2, -1))[..., 1:-1, 1:-1], atol=1e-3)
    out = warp_affine(x, -90 * one, one, 0 * one, 0 * one)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.rot90(x, 3, (-2, -1))[..., 1:-1, 1:-1], atol=1e-3)


@pytest.mark.parametrize("angle,scale,tx,ty", [(30.0, 1.1, 3, -5), (-73.0, 0.9, 0, 0), (12.0, 1.0, -6, 2)])
def test_warp_uses_albumentations_affine_matrix(angle, scale, tx, ty):
    """Against A.Affine's own matrix: exact bilinear resampling of it, and cv2.warpAffine (the CPU path,
    whose 1/32-pixel fixed-point coordinates differ slightly)."""
    rng = np.random.default_rng(0)
    img = cv2.resize((rng.random((8, 8, 3)) * 255).astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC)
    m = fgeometric.create_affine_transformation_matrix(
        {"x": tx, "y": ty}, {"x": 0, "y": 0}, {"x": scale, "y": scale}, angle, fgeometric.center((64, 64)))
    out = warp_affine(torch.from_numpy(img).permute(2, 0, 1)[None], torch.tensor([angle]), torch.tensor([scale]),
                      torch.tensor([float(tx)]), torch.tensor([float(ty)]))[0].permute(1, 2, 0).numpy()
    inv = np.linalg.inv(m)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    sx, sy = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2], inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    exact = np.stack([ndimage.map_coordinates(img[..., c].astype(np.float64), [sy, sx], order=1,
                                              mode="grid-constant", cval=0.0) for c in range(3)], -1)
    assert np.abs(out - exact).max() < 0.02
    cpu = cv2.warpAffine(img, m[:2], (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)
    assert np.abs(out - cpu).mean() < 0.5  # on a 0..255 scale


def test_brightness_contrast_is_albumentations_formula():
    aug = DeviceAugment(_cfg(brightness_contrast=1.0), train=True)
    images = _images(n=8)
    params = aug.sample_params(8, _gen(5))
    out = aug.apply(_float_nchw(images), params)
    t = A.RandomBrightnessContrast(0.2, 0.2, p=1.0)
    for i, img in enumerate(images.numpy()):
        ref = t.apply(img, alpha=float(params.alpha[i]), beta=float(params.beta[i]) * 255.0)
        diff = out[i].permute(1, 2, 0).numpy() - ref.astype(np.float32)
        assert diff.min() >= -1e-3 and diff.max() < 1.0 + 1e-3  # the CPU LUT truncates to uint8


# --- distributions -----------------------------------------------------------------------------

def _albu_step(cfg: AugmentConfig, kind: type) -> A.BasicTransform:
    steps = [s for s in build_transform(cfg, train=True).transforms if isinstance(s, kind)]
    assert len(steps) == 1, steps
    steps[0].set_random_seed(123)
    return steps[0]


def test_flip_and_warp_probabilities_match_the_recipe():
    cfg = _cfg(hflip=0.5, vflip=0.2, rotate=15, rotate_p=0.3, brightness_contrast=0.7)
    n = 10 * N  # vectorised draws are cheap: enough to tell 0.2 from 0.22
    p = DeviceAugment(dataclasses.replace(cfg, rot90=0.4), train=True).sample_params(n, _gen(0))
    for hits, prob in ((p.hflip, 0.5), (p.vflip, 0.2), (p.warp, 0.3), (p.jitter, 0.7), (p.rot90 > 0, 0.4 * 0.75)):
        assert _binomial_ok(int(hits.sum()), n, prob), (int(hits.sum()), prob)
    # identity parameters where a step does not apply
    assert torch.all(p.angle[~p.warp] == 0) and torch.all(p.scale[~p.warp] == 1)
    assert torch.all(p.alpha[~p.jitter] == 1) and torch.all(p.beta[~p.jitter] == 0)
    # the draws of different keys are independent
    assert _binomial_ok(int((p.hflip & p.vflip).sum()), n, 0.5 * 0.2)
    quarter_turns = np.bincount(p.rot90[p.rot90 > 0].numpy(), minlength=4)[1:]  # k uniform in 0..3
    assert stats.chisquare(quarter_turns).pvalue > ALPHA
    off = DeviceAugment(_cfg(), train=True).sample_params(N, _gen(0))
    assert not (off.hflip.any() or off.vflip.any() or off.warp.any() or off.jitter.any() or (off.rot90 > 0).any()
                or off.erase.any())


def test_rotation_angle_is_uniform_and_matches_a_rotate():
    cfg = _cfg(rotate=25, rotate_p=1.0)
    p = DeviceAugment(cfg, train=True).sample_params(N, _gen(1))
    angle = p.angle.numpy()
    assert p.warp.all() and angle.min() >= -25 and angle.max() <= 25
    assert stats.kstest(angle, stats.uniform(-25, 50).cdf).pvalue > ALPHA
    assert np.all(p.scale.numpy() == 1) and np.all(p.tx.numpy() == 0) and np.all(p.ty.numpy() == 0)
    rotate = _albu_step(cfg, A.Rotate)  # the CPU path's own sampler
    theirs = [rotate.get_params_dependent_on_data({"shape": (SIZE, SIZE, 3)}, {})["matrix"] for _ in range(N)]
    theirs = np.degrees([np.arctan2(m[0, 1], m[0, 0]) for m in theirs])  # R = [[cos, sin], [-sin, cos]]
    assert stats.ks_2samp(angle, theirs).pvalue > ALPHA


def test_scale_and_shift_match_a_affine():
    cfg = _cfg(rotate=10, rotate_p=1.0, scale=0.15, shift=0.25)  # shift * size = 8 pixels
    p = DeviceAugment(cfg, train=True).sample_params(N, _gen(2))
    scale, tx, ty = p.scale.numpy(), p.tx.numpy(), p.ty.numpy()
    assert scale.min() >= 0.85 and scale.max() <= 1.15
    assert stats.kstest(scale, stats.uniform(0.85, 0.3).cdf).pvalue > ALPHA
    # translation: int(U(-shift, shift) * size) pixels, each axis: 0 has twice the mass of +-1..7
    for t in (tx, ty):
        assert np.all(t == np.round(t)) and np.abs(t).max() <= 7
        counts = np.array([(t == k).sum() for k in range(-7, 8)])
        want = np.full(15, 1 / 16)
        want[7] = 2 / 16
        assert stats.chisquare(counts, want * N).pvalue > ALPHA
    affine = _albu_step(cfg, A.Affine)
    c = np.array(fgeometric.center((SIZE, SIZE)))
    drawn = [affine.get_params_dependent_on_data({"shape": (SIZE, SIZE, 3)}, {}) for _ in range(N)]
    their_scale = np.array([d["scale"]["x"] for d in drawn])
    their_angle = np.array([d["rotate"] for d in drawn])
    their_t = np.array([d["matrix"][:2, 2] - c + d["matrix"][:2, :2] @ c for d in drawn])  # q = c + t + sR(p - c)
    assert stats.ks_2samp(scale, their_scale).pvalue > ALPHA
    assert stats.ks_2samp(p.angle.numpy(), their_angle).pvalue > ALPHA
    for mine, theirs in ((tx, their_t[:, 0]), (ty, their_t[:, 1])):
        theirs = np.round(theirs)
        table = [[(mine == k).sum() for k in range(-7, 8)], [(theirs == k).sum() for k in range(-7, 8)]]
        assert stats.chi2_contingency(table).pvalue > ALPHA


def test_brightness_contrast_draws_match_a_random_brightness_contrast():
    cfg = _cfg(brightness_contrast=1.0)
    p = DeviceAugment(cfg, train=True).sample_params(N, _gen(4))
    alpha, beta = p.alpha.numpy(), p.beta.numpy()
    assert stats.kstest(alpha, stats.uniform(0.8, 0.4).cdf).pvalue > ALPHA
    assert stats.kstest(beta, stats.uniform(-0.2, 0.4).cdf).pvalue > ALPHA
    step = _albu_step(cfg, A.RandomBrightnessContrast)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    drawn = [step.get_params_dependent_on_data({"shape": image.shape}, {"image": image}) for _ in range(N)]
    assert stats.ks_2samp(alpha, [d["alpha"] for d in drawn]).pvalue > ALPHA
    assert stats.ks_2samp(beta, [d["beta"] / 255.0 for d in drawn]).pvalue > ALPHA


def test_erasing_draws_match_a_erasing():
    """Random erasing: the probability, and the rectangle's height, width and corner, against the CPU
    path's own A.Erasing sampler; the device path erases exactly the rectangle A.Erasing would."""
    cfg = _cfg(erasing=0.4)
    aug = DeviceAugment(cfg, train=True)
    p = aug.sample_params(10 * N, _gen(6))
    assert _binomial_ok(int(p.erase.sum()), 10 * N, 0.4)
    assert torch.all(p.box[~p.erase] == 0)
    mine = p.box[p.erase][:N].numpy()
    step = _albu_step(dataclasses.replace(cfg, erasing=1.0), A.Erasing)
    theirs = np.concatenate([step.get_params_dependent_on_data({"shape": (SIZE, SIZE, 3)}, {})["holes"]
                             for _ in range(N)])
    for boxes in (mine, theirs):  # inside the image, of the allowed areas and ratios
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= SIZE and boxes[:, 3].max() <= SIZE
        assert (w * h).min() >= 0.015 * SIZE * SIZE and (w * h).max() <= 0.34 * SIZE * SIZE
    for col in range(4):  # left, top, right, bottom: each value's frequency, one table per coordinate
        values = np.arange(SIZE + 1)
        table = np.array([[(b[:, col] == v).sum() for v in values] for b in (mine, theirs)])
        table = table[:, table.sum(0) > 0]
        assert stats.chi2_contingency(table).pvalue > ALPHA, col
    sizes = {name: boxes[:, 2:] - boxes[:, :2] for name, boxes in (("mine", mine), ("theirs", theirs))}
    for col in range(2):  # width and height
        assert stats.ks_2samp(sizes["mine"][:, col], sizes["theirs"][:, col]).pvalue > ALPHA
    # the area (what A.Erasing draws uniformly) and the aspect ratio w / h
    area = [s[:, 0] * s[:, 1] for s in sizes.values()]
    ratio = [s[:, 0] / s[:, 1] for s in sizes.values()]
    assert stats.ks_2samp(*area).pvalue > ALPHA and stats.ks_2samp(*ratio).pvalue > ALPHA


def test_erasing_fills_a_erasing_rectangle_with_the_mean_colour():
    cfg = _cfg(erasing=1.0)
    aug = DeviceAugment(cfg, train=True)
    images = _images(n=8)
    params = aug.sample_params(8, _gen(9))
    out = aug.apply(_float_nchw(images), params)
    step = A.Erasing(fill=erasing_fill(cfg), p=1.0)
    for i, img in enumerate(images.numpy()):
        ref = step.apply(img, holes=params.box[i : i + 1].numpy().astype(np.int32), seed=0)
        diff = out[i].permute(1, 2, 0).numpy() - ref.astype(np.float32)
        assert diff.min() >= 0 and diff.max() < 1.0  # the CPU path truncates the fill to uint8
        left, top, right, bottom = params.box[i].tolist()
        assert (ref[top:bottom, left:right] != img[top:bottom, left:right]).any()
    normalised = aug.normalize(out)  # the mean colour is 0 once normalised (timm's mode="const")
    left, top, right, bottom = params.box[0].tolist()
    assert normalised[0, :, top:bottom, left:right].abs().max() < 1e-5


# --- against the CPU path, memory format, reproducibility -----------------------------------------

def _cpu_path(cfg: AugmentConfig, images: torch.Tensor, train: bool) -> torch.Tensor:
    transform = normalising_transform(cfg, train=train)  # normalised in the worker, as before
    return torch.stack([transform(image=img)["image"] for img in images.numpy()])


@pytest.mark.parametrize("train,cfg", [
    (False, _cfg(hflip=0.5, vflip=0.5, rotate=30, rotate_p=0.5, scale=0.1, brightness_contrast=0.5, erasing=0.5)),
    (True, _cfg()),  # training with every probability 0
    (False, _cfg(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])),
])
def test_augmentation_off_equals_the_albumentations_path(train, cfg):
    images = _images(n=5)
    device = DeviceAugment(cfg, train=train)
    assert not device.active
    out = device(images, _gen(0))
    assert out.dtype == torch.float32 and out.shape == (5, 3, SIZE, SIZE)
    torch.testing.assert_close(out, _cpu_path(cfg, images, train), rtol=0, atol=1e-5)


def test_off_size_images_are_resized_as_the_cpu_path_does():
    cfg = _cfg()
    images = _images(n=3, size=SIZE * 2)
    want = _cpu_path(cfg, images, train=False)  # A.Resize(INTER_AREA), rounded to uint8
    out = DeviceAugment(cfg, train=False)(images)
    assert (out - want).abs().max() <= 0.5 / (255 * min(cfg.std)) + 1e-5


def test_memory_format_and_reproducibility():
    cfg = _cfg(hflip=0.5, vflip=0.5, rotate=45, rotate_p=0.5, scale=0.1, shift=0.1, brightness_contrast=0.5,
               erasing=0.5)
    images = _images(n=16)
    aug = DeviceAugment(cfg, train=True)
    first = aug(images, _gen(7))
    assert torch.equal(first, aug(images, _gen(7)))  # the same seed: identical (exact resume)
    assert not torch.equal(first, aug(images, _gen(8)))
    last = DeviceAugment(cfg, train=True, channels_last=True)(images, _gen(7))
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, first)
    assert first.is_contiguous()
    # a generator advanced by one batch draws the next batch's parameters, as a per-step seed would
    g = _gen(7)
    aug.sample_params(16, g)
    assert not torch.equal(aug(images, g), first)
    with pytest.raises(ValueError):
        aug(images[0], _gen(0))
