"""Reading images as RGB uint8 arrays, and Ben Graham's fundus preprocessing."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np

from comp.errors import CompError

_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageReadError(CompError):
    """An image file that is missing, unreadable or not decodable."""


def check_regular(path: str | os.PathLike) -> None:
    """An image must be a regular file (through links): a FIFO or a device is refused before it
    is opened, since reading one would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageReadError(f"image file missing: {path}") from None
    except OSError as err:
        raise ImageReadError(f"cannot read image {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ImageReadError(f"cannot read image {path}: it is {kind}, not an image file")


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")  # file names read as JPEG (reduced decoding, nvjpeg)


class JpegFrame(NamedTuple):
    height: int
    width: int
    components: int  # 1 grey, 3 colour, 4 CMYK


def jpeg_frame(path: str | os.PathLike) -> JpegFrame | None:
    """Size and component count from a JPEG's frame header, or None if not a readable JPEG.

    Walks the segment headers (seeking over their bodies), never the compressed data, so it
    costs a few small reads whatever the image size.
    """
    try:
        check_regular(path)
        with open(path, "rb") as f:
            frame, _ = _read_header(f, orientation=False)
    except (OSError, ImageReadError):
        return None
    return frame if frame is not None and frame.height and frame.width else None


def jpeg_decodable_as_is(data: bytes) -> bool:
    """Whether a JPEG's bytes decode to what :func:`read_image` returns with no conversion left:
    one or three components and no EXIF orientation other than 1 (OpenCV applies the tag,
    nvjpeg does not). Walks the headers in memory, up to the frame header."""
    if data[:3] != _JPEG_MAGIC:
        return False
    frame, rotated = _read_header(io.BytesIO(data), orientation=True)
    return frame is not None and frame.components in (1, 3) and not rotated


def _read_header(f: BinaryIO, *, orientation: bool) -> tuple[JpegFrame | None, bool]:
    """(the frame header, or None if the stream ends or breaks first; with ``orientation``, whether
    an EXIF block before it sets an orientation other than 1), reading a JPEG stream from its start."""
    rotated = False
    for marker, size in _segments(f):
        if marker in _JPEG_SOF:
            body = f.read(6)  # precision, height, width, number of components
            if len(body) < 6:
                return None, rotated
            h, w = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            return JpegFrame(h, w, body[5]), rotated
        if orientation and marker == 0xE1:
            body = f.read(size)
            if len(body) < size:
                return None, rotated
            if body[:6] == b"Exif\x00\x00" and _exif_orientation(body[6:]) not in (None, 1):
                rotated = True
    return None, rotated


def _segments(f: BinaryIO) -> Iterator[tuple[int, int]]:
    """(marker, body size) of each segment with a length, up to the start of scan, the stream
    left at the body's start; whatever the caller reads of it, the walk goes on after it."""
    if f.read(2) != b"\xff\xd8":
        return
    for _ in range(10_000):  # a bound, so a malformed file cannot keep us here
        byte = f.read(1)
        while byte and byte != b"\xff":  # tolerate stray bytes between segments
            byte = f.read(1)
        code = f.read(1)
        while code == b"\xff":  # fill bytes may pad a marker
            code = f.read(1)
        if not code:
            return
        marker = code[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers carry no length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame
            return
        length = int.from_bytes(f.read(2), "big")
        if length < 2:
            return
        body = f.tell()
        yield marker, length - 2
        f.seek(body + length - 2)


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of an EXIF block's first IFD, or None if absent or unreadable."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for i in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return None


def read_image(path: str | Path, reduce: int = 1) -> np.ndarray:
    """Read an image as a contiguous uint8 HxWx3 RGB array, whatever its format.

    ``reduce`` in {2, 4, 8} decodes at 1/reduce of the size (JPEG decodes that way natively,
    which is much faster; other formats are decoded then shrunk by OpenCV).

    Conversions: grey → three equal channels; 16-bit → 8-bit (``round(v / 257)``); float →
    ``clip(v, 0, 1) * 255``; an alpha channel is composited onto black, because black is what
    surrounds the subject in fundus and most medical photos, so transparency reads as background.
    With ``reduce`` > 1 OpenCV drops alpha before we see it.
    """
    if reduce != 1 and reduce not in _REDUCED_FLAGS:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, not {reduce!r}")
    path = Path(path)
    check_regular(path)
    try:
        # np.fromfile + imdecode instead of cv2.imread: imread cannot open non-ASCII paths on
        # Windows, and it returns None without saying whether the file was missing or bad.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"cannot read image {path}: {err.strerror or err}") from None
    if reduce != 1:
        flags = _REDUCED_FLAGS[reduce]
    elif data[:3].tobytes() == _JPEG_MAGIC:
        # IMREAD_UNCHANGED ignores the EXIF orientation tag, but the reduced flags honour it;
        # JPEG has no alpha or 16-bit, so IMREAD_COLOR keeps reduce=1 and reduce>1 in agreement.
        flags = cv2.IMREAD_COLOR
    else:
        flags = cv2.IMREAD_UNCHANGED  # keeps 16-bit depth and alpha for us to convert
    image = None
    if data.size:
        try:
            image = cv2.imdecode(data, flags)
        except cv2.error:
            image = None
    if image is None or image.size == 0:
        raise ImageReadError(f"cannot decode image {path}: not a supported image or corrupt")
    try:
        return _to_rgb8(image)
    except ValueError as err:
        raise ImageReadError(f"cannot decode image {path}: {err}") from None


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (BGR/BGRA/grey, any depth) → contiguous uint8 RGB."""
    image = _to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    channels = image.shape[2]
    if channels == 2:  # grey + alpha
        grey = _over_black(image[:, :, :1], image[:, :, 1:])[:, :, 0]
        return np.ascontiguousarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
    if channels == 3:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if channels == 4:
        bgr = _over_black(image[:, :, :3], image[:, :, 3:])
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    raise ValueError(f"{channels} channels")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # (v + 128) // 257 is round(v / 257) exactly: 65535 → 255, and no ties exist.
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return np.rint(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported pixel type {image.dtype}")


def _over_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour * alpha / 255, rounded."""
    mixed = (colour.astype(np.uint32) * alpha.astype(np.uint32) + 127) // 255
    return mixed.astype(np.uint8)


def reduce_factor(src_hw: tuple[int, int], target: int) -> int:
    """The largest of 1, 2, 4, 8 whose reduced image keeps its shorter side >= ``target``.

    For ``read_image(reduce=...)``: decode no larger than the model's input needs. Sizes are
    rounded down: OpenCV rounds JPEG's up but other formats' down, so the bound holds for both.
    """
    short = min(int(src_hw[0]), int(src_hw[1]))
    best = 1
    for factor in (2, 4, 8):
        if short // factor >= target:
            best = factor
    return best


def decode_reduction(path: str | Path, size: int, preprocess: str = "none") -> int:
    """The ``read_image`` reduction of ``path`` for a model input of ``size``: 1 unless it is a
    JPEG at least twice that (twice again with ``ben_graham``, whose crop to the eye may drop much
    of the frame), whose header alone is read."""
    # By extension first: opening every PNG to look for a JPEG header would cost more than
    # the shortcut saves on small images.
    if not str(path).lower().endswith(JPEG_SUFFIXES):
        return 1
    frame = jpeg_frame(path)
    if frame is None:
        return 1
    return reduce_factor((frame.height, frame.width), size * (2 if preprocess == "ben_graham" else 1))


def decode_preprocessed(path: str | Path, reduce: int = 1, preprocess: str = "none") -> np.ndarray:
    """An image as the loaders take it before any resize: decoded (``reduce``: libjpeg's native
    1/2, 1/4, 1/8) and ``ben_graham``-preprocessed when the recipe asks."""
    image = read_image(path, reduce)
    return ben_graham(image) if preprocess == "ben_graham" else image


def ben_graham(image: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Ben Graham's preprocessing (Kaggle Diabetic Retinopathy, 2015 winner) for fundus photos.

    1. Crop to the eye: the bounding box of pixels whose channel mean exceeds
       ``max(7, 10% of the brightest)`` (the floor keeps JPEG noise in the black surround out);
       an image with no such pixel is kept whole. With ``scale``, the crop is then resized so
       that the eye's radius (half the crop's width) is ``scale`` pixels.
    2. Subtract the local average colour, which evens out illumination and camera tint:
       ``4 * img - 4 * GaussianBlur(img, sigma=radius / 30) + 128``, in float, clipped to uint8.
    3. Set everything outside a circle of 90% of the radius, centred on the crop, to grey 128:
       the rim, where step 2 rings against the black surround.

    Input and output are uint8 HxWx3 RGB; the output has the crop's size.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"ben_graham expects a non-empty uint8 HxWx3 image, got {image.dtype} "
                         f"{image.shape}")
    brightness = image.mean(axis=2)
    bright = brightness > max(7.0, 0.1 * float(brightness.max()))
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    if rows.size:
        image = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, not {scale}")
        factor = scale / (image.shape[1] / 2.0)
        new_w = max(1, round(image.shape[1] * factor))
        new_h = max(1, round(image.shape[0] * factor))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)

    h, w = image.shape[:2]
    radius = w / 2.0
    pixels = image.astype(np.float32)
    blurred = cv2.GaussianBlur(pixels, (0, 0), sigmaX=radius / 30.0)
    out = np.clip(np.rint(4.0 * pixels - 4.0 * blurred + 128.0), 0, 255).astype(np.uint8)

    yy, xx = np.ogrid[:h, :w]
    outside = (xx - (w - 1) / 2.0) ** 2 + (yy - (h - 1) / 2.0) ** 2 > (0.9 * radius) ** 2
    out[outside] = 128
    return np.ascontiguousarray(out)
