"""Mixup and CutMix: what a mixed batch holds, its loss weight, and reproducible draws."""

import numpy as np
import pytest
import torch
from torch import nn

from comp.errors import CompError
from comp.recipe import AugmentConfig, load_recipe
from comp.data.mixing import cut_box, mix_batch, mix_rng, mixed_loss, mixing_on


def _batch(n=6, size=8):
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()


def test_mixup_is_a_convex_blend_with_the_permuted_batch():
    images = _batch()
    mixed, mix = mix_batch(images, AugmentConfig(mixup=0.4), mix_rng(1, 2, 3))
    assert mix is not None and 0.0 <= mix.lam <= 1.0
    assert sorted(mix.perm.tolist()) == list(range(6))
    want = mix.lam * images + (1 - mix.lam) * images[mix.perm]
    assert torch.allclose(mixed, want)
    assert torch.equal(images, _batch())  # the input is not changed in place


def test_cutmix_pastes_a_box_and_lam_is_the_area_kept():
    images = _batch(size=16)
    for step in range(20):
        mixed, mix = mix_batch(images, AugmentConfig(cutmix=1.0), mix_rng(0, 0, step))
        own, partner = mixed == images, mixed == images[mix.perm]
        assert bool((own | partner).all())  # every pixel is the image's own or its partner's
        moved = mix.perm != torch.arange(6)
        if moved.any():  # the partner's share of the pixels is 1 - lam
            share = (~own[moved]).float().mean().item()
            assert share == pytest.approx(1 - mix.lam, abs=1e-6)


def test_cut_box_is_clipped_to_the_image():
    rng = np.random.default_rng(0)
    for lam in (0.0, 0.3, 0.9, 1.0):
        for _ in range(50):
            y0, y1, x0, x1 = cut_box(10, 14, lam, rng)
            assert 0 <= y0 <= y1 <= 10 and 0 <= x0 <= x1 <= 14
    assert cut_box(10, 10, 1.0, rng)[0:2] in [(a, a) for a in range(11)]  # lam 1: an empty box


def test_draws_depend_on_seed_epoch_step_and_rank_only():
    images, cfg = _batch(), AugmentConfig(mixup=0.4, cutmix=1.0)
    a, ma = mix_batch(images, cfg, mix_rng(7, 1, 5, 0))
    b, mb = mix_batch(images, cfg, mix_rng(7, 1, 5, 0))
    c, mc = mix_batch(images, cfg, mix_rng(7, 1, 5, 1))
    assert torch.equal(a, b) and ma.lam == mb.lam and torch.equal(ma.perm, mb.perm)
    assert not (ma.lam == mc.lam and torch.equal(ma.perm, mc.perm))


def test_off_or_unlucky_batches_pass_through():
    images = _batch()
    assert not mixing_on(AugmentConfig())
    assert not mixing_on(AugmentConfig(mixup=0.4, mix_p=0.0))
    same, mix = mix_batch(images, AugmentConfig(), mix_rng(0, 0, 0))
    assert same is images and mix is None
    counted = sum(mix_batch(images, AugmentConfig(mixup=1.0, mix_p=0.3), mix_rng(0, 0, s))[1] is not None
                  for s in range(400))
    assert 80 < counted < 160  # about 30% of 400


def test_mixed_loss_blends_the_two_targets():
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    outputs = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    _, mix = mix_batch(_batch(), AugmentConfig(mixup=0.4), mix_rng(0, 0, 1))
    want = mix.lam * loss_fn(outputs, targets) + (1 - mix.lam) * loss_fn(outputs, targets[mix.perm])
    assert torch.allclose(mixed_loss(loss_fn, outputs, targets, mix), want)
    assert torch.equal(mixed_loss(loss_fn, outputs, targets, None), loss_fn(outputs, targets))


@pytest.mark.parametrize("line, key", [("mixup = -1", "[augment] mixup"), ("cutmix = nan", "[augment] cutmix"),
                                       ("mix_p = 1.5", "[augment] mix_p")])
def test_bad_mixing_settings_name_the_key(tmp_path, line, key):
    path = tmp_path / "r.toml"
    path.write_text(f'[data]\nroot = "{tmp_path}"\n[augment]\n{line}\n')
    with pytest.raises(CompError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(path)
