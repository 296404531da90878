from pathlib import Path

import cv2
import numpy as np
import pytest

from comp.data.images import ImageReadError, ben_graham, read_image, reduce_factor
from comp.errors import CompError


def _check_rgb8(image: np.ndarray, h: int, w: int) -> None:
    assert image.dtype == np.uint8
    assert image.shape == (h, w, 3)
    assert image.flags["C_CONTIGUOUS"]


def _rgb(h: int = 12, w: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- read_image -------------------------------------------------------------------------------

def test_colour_png_is_rgb_in_order(tmp_path):
    rgb = _rgb()
    rgb[0, 0] = (255, 0, 0)  # a pure red pixel, to make the channel order unmistakable
    path = tmp_path / "c.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(path)
    _check_rgb8(out, 12, 17)
    np.testing.assert_array_equal(out, rgb)
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    grey = _rgb()[:, :, 0]
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), grey)
    out = read_image(path)
    _check_rgb8(out, 12, 17)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_16bit_png_scales_to_8bit(tmp_path):
    values = np.array([[0, 128, 129, 257, 257 * 100, 65535 - 129, 65535]], dtype=np.uint16)
    path = tmp_path / "d.png"
    cv2.imwrite(str(path), values)
    out = read_image(path)
    _check_rgb8(out, 1, 7)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 100, 254, 255])
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    # The full range is covered with round(v / 257).
    ramp = np.linspace(0, 65535, 40 * 50).astype(np.uint16).reshape(40, 50)
    colour = np.stack([ramp, ramp // 2, 65535 - ramp], axis=2)  # BGR as written
    cv2.imwrite(str(path), colour)
    out = read_image(path)
    expected = np.rint(colour[:, :, ::-1] / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255


def test_bgra_png_is_composited_onto_black(tmp_path):
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[:, :, :3] = (10, 100, 200)  # B, G, R
    bgra[0, :, 3] = (255, 0, 128)
    bgra[1, :, 3] = 255
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), bgra)
    out = read_image(path)
    _check_rgb8(out, 2, 3)
    assert tuple(out[0, 0]) == (200, 100, 10)  # opaque: the colour, RGB
    assert tuple(out[0, 1]) == (0, 0, 0)  # transparent: black
    assert tuple(out[0, 2]) == (100, 50, 5)  # half: half the colour
    assert (out[1] == (200, 100, 10)).all()


def test_float_tiff_is_clipped_and_scaled(tmp_path):
    data = np.array([[[-0.5, 0.0, 0.5], [1.0, 2.0, 0.25]]], dtype=np.float32)  # BGR
    path = tmp_path / "f.tiff"
    assert cv2.imwrite(str(path), data)
    out = read_image(path)
    _check_rgb8(out, 1, 2)
    np.testing.assert_array_equal(out[0], [[128, 0, 0], [64, 255, 255]])


def test_jpeg_reduced_decoding(tmp_path):
    rgb = np.zeros((120, 160, 3), dtype=np.uint8)
    rgb[:, :80] = (200, 30, 30)
    path = tmp_path / "x.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    full = read_image(path)
    _check_rgb8(full, 120, 160)
    half = read_image(path, reduce=2)
    _check_rgb8(half, 60, 80)
    _check_rgb8(read_image(path, reduce=8), 15, 20)
    # Same picture, RGB order: the left half is red.
    assert abs(int(half[30, 10, 0]) - 200) < 10 and half[30, 10, 2] < 50
    assert half[30, 70].max() < 10


def test_reduce_also_shrinks_png(tmp_path):
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), _rgb(40, 60))
    _check_rgb8(read_image(path, reduce=4), 10, 15)


def test_bad_reduce_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="reduce"):
        read_image(tmp_path / "any.png", reduce=3)


def test_jpeg_exif_orientation_agrees_with_reduced_read(tmp_path):
    image_mod = pytest.importorskip("PIL.Image")
    im = image_mod.fromarray(_rgb(40, 60))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif)
    _check_rgb8(read_image(path), 60, 40)
    _check_rgb8(read_image(path, reduce=2), 30, 20)


def test_non_ascii_path(tmp_path):
    rgb = _rgb()
    folder = tmp_path / "données_眼底"
    folder.mkdir()
    path = folder / "œil.png"
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())
    np.testing.assert_array_equal(read_image(str(path)), rgb)


@pytest.mark.parametrize("content", [
    b"\xff\xd8\xff" + np.random.default_rng(1).bytes(500),  # JPEG magic, then noise
    b"",
    b"this is not an image at all",
], ids=["random", "empty", "text"])
def test_corrupt_file_cannot_be_decoded(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="decode") as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, CompError)
    with pytest.raises(ImageReadError, match="decode"):
        read_image(path, reduce=2)


def test_truncated_jpeg_cannot_be_decoded(tmp_path):
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), _rgb(64, 64))
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ImageReadError, match="decode") as info:
        read_image(bad)
    assert str(bad) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="missing") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path)


# --- reduce_factor ----------------------------------------------------------------------------

@pytest.mark.parametrize("hw, target, expected", [
    ((2000, 3000), 224, 8),   # 250 >= 224
    ((1700, 3000), 224, 4),   # 1700 // 8 = 212 < 224, 425 >= 224
    ((1792, 2000), 224, 8),   # exactly 224
    ((1791, 2000), 224, 4),
    ((448, 448), 224, 2),
    ((447, 600), 224, 1),
    ((100, 100), 224, 1),     # already smaller than the target
    ((3000, 500), 224, 2),    # the shorter side decides, whichever axis it is
    ((512, 512), 0, 8),
])
def test_reduce_factor(hw, target, expected):
    assert reduce_factor(hw, target) == expected


# --- ben_graham -------------------------------------------------------------------------------

def _fundus(h=200, w=240, centre=(120, 100), radius=80, flat=None):
    """Black with a bright disc; by default lit by a left-to-right gradient."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.circle(mask, centre, radius, 255, thickness=-1)
    if flat is None:
        ramp = np.linspace(60, 220, w)[None, :, None] * np.array([1.0, 0.6, 0.35])
        fill = np.broadcast_to(ramp, (h, w, 3))
    else:
        fill = np.broadcast_to(np.array(flat, dtype=np.float64), (h, w, 3))
    image[mask > 0] = np.rint(fill[mask > 0]).astype(np.uint8)
    return image


def _disc_interior(out: np.ndarray, fraction: float) -> np.ndarray:
    h, w = out.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    r = w / 2.0
    return (xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2 <= (fraction * r) ** 2


def test_ben_graham_crops_to_the_disc_and_greys_the_border():
    image = _fundus()
    out = ben_graham(image)
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    # The disc spans 161 pixels (centre +-80) each way.
    assert abs(out.shape[0] - 161) <= 2 and abs(out.shape[1] - 161) <= 2 and out.shape[2] == 3
    for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert tuple(corner) == (128, 128, 128)
    outside = ~_disc_interior(out, 0.9)
    assert (out[outside] == 128).all()


def test_ben_graham_removes_flat_colour_and_smooth_lighting():
    for image in (_fundus(flat=(180, 90, 40)), _fundus()):
        out = ben_graham(image)
        inner = out[_disc_interior(out, 0.6)].astype(int)
        assert np.abs(inner - 128).max() <= 2


def test_ben_graham_keeps_local_detail():
    image = _fundus(flat=(180, 90, 40))
    cv2.circle(image, (120, 100), 3, (60, 30, 10), thickness=-1)  # a dark "lesion"
    out = ben_graham(image)
    h, w = out.shape[:2]
    # Every channel far below the grey background; red, the largest drop, hits the floor.
    assert (out[h // 2, w // 2] < 90).all() and out[h // 2, w // 2, 0] == 0
    assert abs(int(out[h // 2, w // 2 + 30, 0]) - 128) <= 2


def test_ben_graham_scale_resizes_to_the_radius():
    out = ben_graham(_fundus(), scale=50)
    assert out.shape[1] == 100 and abs(out.shape[0] - 100) <= 2


def test_ben_graham_ignores_faint_noise_and_handles_black():
    image = _fundus()
    noise = np.random.default_rng(0).integers(0, 6, image.shape, dtype=np.uint8)
    out = ben_graham(np.maximum(image, noise))
    assert abs(out.shape[0] - 161) <= 2 and abs(out.shape[1] - 161) <= 2
    black = np.zeros((30, 40, 3), dtype=np.uint8)
    out = ben_graham(black)
    assert out.shape == (30, 40, 3) and (out == 128).all()


def test_ben_graham_is_deterministic_and_leaves_input_alone():
    image = _fundus()
    before = image.copy()
    np.testing.assert_array_equal(ben_graham(image), ben_graham(image))
    np.testing.assert_array_equal(image, before)


def test_ben_graham_rejects_non_rgb8():
    with pytest.raises(ValueError):
        ben_graham(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        ben_graham(np.zeros((10, 10, 3), dtype=np.float32))


def test_read_then_ben_graham(tmp_path):
    path = Path(tmp_path) / "eye.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(_fundus(), cv2.COLOR_RGB2BGR))
    out = ben_graham(read_image(path))
    assert abs(out.shape[0] - 161) <= 3 and out.dtype == np.uint8
