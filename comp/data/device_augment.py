"""Training augmentation run batch-wise on the device, with the albumentations path's distributions.

Workers ship uint8 images; :class:`DeviceAugment` turns a batch into normalised float NCHW on the
batch's own device (GPU or CPU), drawing every random parameter per sample from a caller-seeded
``torch.Generator``, so a run is reproducible and a resumed one draws exactly as an uninterrupted
one. The ``[augment]`` keys mean what they mean in :func:`comp.data.augment.build_transform`
(albumentations 2.0.8, formulas read from its source):

* ``hflip`` / ``vflip``: probability of ``A.HorizontalFlip`` / ``A.VerticalFlip``.
* ``rot90``: probability of ``A.RandomRotate90``, ``k`` uniform in
  {0, 1, 2, 3} quarter turns counter-clockwise (``np.rot90``).
* ``rotate``, ``scale``, ``shift`` with ``rotate_p``: one warp (``A.Rotate`` / ``A.Affine``,
  ``keep_ratio=True``) with probability ``rotate_p``: angle ~ U(-rotate, rotate) degrees
  (counter-clockwise on screen), zoom ~ U(1 - scale, 1 + scale), translation
  ``int(U(-shift, shift) * size)`` pixels per axis, about the centre ``(size / 2 - 0.5)``;
  bilinear, ``BORDER_CONSTANT`` with fill 0.
* ``brightness_contrast``: probability of ``A.RandomBrightnessContrast(0.2, 0.2)``:
  ``clip(alpha * x + beta * 255, 0, 255)`` with alpha ~ 1 + U(-0.2, 0.2) and
  beta ~ U(-0.2, 0.2) (``brightness_by_max=True``).
* ``erasing``: probability of ``A.Erasing(scale=(0.02, 0.33), ratio=(0.3, 3.3))``, one rectangle
  filled with the mean colour (``255 mean``, so 0 after normalisation: timm's ``mode="const"``):
  area ``A ~ U(0.02 H W, A_max)`` (``A_max``: the largest area an allowed ratio fits, 0.3 H W on
  a square) and aspect ratio ``r = w / h`` uniform in the range that fits,
  ``h = round(sqrt(A / r))``, ``w = round(sqrt(A r))``, its corner uniform over the positions
  that keep it inside (``random.randint(0, H - h)``); see :func:`erasing_boxes`.
* ``mean`` / ``std``: ``A.Normalize(max_pixel_value=255)``: ``(x - 255 mean) / (255 std)``.

Steps run in the CPU path's order: flips, rot90, warp, brightness/contrast, erasing,
normalisation. The one difference is precision: here intermediate images stay float, where the
CPU path rounds to uint8 after the warp, truncates after the brightness/contrast LUT and truncates
the erasing fill to uint8 (each at most 1/255 of the range).
Mixup/CutMix are in :mod:`comp.data.mixing`; TTA views in :mod:`comp.predict.tta`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from comp.recipe import AugmentConfig

BRIGHTNESS_LIMIT = 0.2  # A.RandomBrightnessContrast(0.2, 0.2) in comp.data.augment
CONTRAST_LIMIT = 0.2
_DRAWS = 12  # uniforms per sample: drawn in one call, so the generator advances the same every batch
ERASING_SCALE = (0.02, 0.33)  # A.Erasing's defaults (torchvision's and timm's RandomErasing too): area share,
ERASING_RATIO = (0.3, 3.3)  # and aspect ratio w / h of the erased rectangle
_ERASING_DRAWS = 5  # drawn in a second call, so the first call's draws are those of recipes before erasing


def erasing_fill(cfg: AugmentConfig) -> tuple[float, float, float]:
    """The erased rectangle's colour on the 0..255 scale: the normalisation mean, 0 once normalised."""
    return tuple(255.0 * m for m in cfg.mean)


@dataclass(frozen=True)
class AugmentParams:
    """One batch's per-sample parameters (all shape ``(n,)``); identity values where not applied."""

    hflip: torch.Tensor  # bool
    vflip: torch.Tensor  # bool
    rot90: torch.Tensor  # int64 quarter turns counter-clockwise, 0..3
    warp: torch.Tensor  # bool: the rotate/scale/shift step applies
    angle: torch.Tensor  # degrees, counter-clockwise
    scale: torch.Tensor  # zoom factor
    tx: torch.Tensor  # translation in pixels (integers, as A.Affine's int(fraction * size))
    ty: torch.Tensor
    jitter: torch.Tensor  # bool: the brightness/contrast step applies
    alpha: torch.Tensor  # contrast factor
    beta: torch.Tensor  # brightness offset as a fraction of 255
    erase: torch.Tensor  # bool: a rectangle is erased
    box: torch.Tensor  # (n, 4) int64 left, top, right, bottom (exclusive), as A.Erasing's holes

    def to(self, device: torch.device | str) -> AugmentParams:
        """The same parameters on ``device``."""
        return AugmentParams(**{f.name: getattr(self, f.name).to(device, non_blocking=True)
                                for f in fields(self)})


class DeviceAugment:
    """``[augment]`` on a uint8 batch, on the batch's device: ``(images, generator) -> float NCHW``.

    ``images``: uint8 ``(N, H, W, C)`` as the default collate stacks OpenCV's HxWxC arrays. Images are expected at ``size`` x ``size`` (the
    worker's ``A.Resize``); others are resized here (:func:`resize_batch`). Returns float32
    ``(N, C, size, size)`` normalised by ``mean``/``std``, in ``channels_last`` memory format if
    asked. With ``train=False``, or every probability 0, it is ``ToFloat`` + ``A.Normalize`` only.
    """

    def __init__(self, cfg: AugmentConfig, train: bool, *, channels_last: bool = False) -> None:
        self.cfg = cfg
        self.train = train
        self.channels_last = channels_last
        self.rot90_p = cfg.rot90
        self.warp_on = cfg.rotate_p > 0 and (cfg.rotate > 0 or cfg.scale > 0 or cfg.shift > 0)
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        """Whether any random step can apply (training, some probability > 0)."""
        c = self.cfg
        return self.train and (c.hflip > 0 or c.vflip > 0 or self.rot90_p > 0 or self.warp_on
                               or c.brightness_contrast > 0 or c.erasing > 0)

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw ``n`` samples' parameters (on the generator's device) with the recipe's distributions.

        Always ``n x 12`` uniforms in one call, then ``n x 5`` for erasing, whatever the recipe turns
        on. A CPU generator gives the same draws whichever device the images are on (a CUDA one draws
        a different stream).
        """
        c = self.cfg
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand((n, _DRAWS), generator=generator, device=device, dtype=torch.float64)
        e = torch.rand((n, _ERASING_DRAWS), generator=generator, device=device, dtype=torch.float64)
        erase = e[:, 0] < c.erasing
        warp = u[:, 4] < c.rotate_p if self.warp_on else torch.zeros(n, dtype=torch.bool, device=device)
        jitter = u[:, 9] < c.brightness_contrast
        one, zero = torch.ones_like(u[:, 0]), torch.zeros_like(u[:, 0])

        def uniform(col: int, low: float, high: float) -> torch.Tensor:
            return low + (high - low) * u[:, col]

        return AugmentParams(
            hflip=u[:, 0] < c.hflip,
            vflip=u[:, 1] < c.vflip,
            rot90=torch.where(u[:, 2] < self.rot90_p, (u[:, 3] * 4).long().clamp_(max=3), 0),
            warp=warp,
            angle=torch.where(warp, uniform(5, -c.rotate, c.rotate), zero).float(),
            scale=torch.where(warp, uniform(6, 1 - c.scale, 1 + c.scale), one).float(),
            tx=torch.where(warp, torch.trunc(uniform(7, -c.shift, c.shift) * c.size), zero).float(),
            ty=torch.where(warp, torch.trunc(uniform(8, -c.shift, c.shift) * c.size), zero).float(),
            jitter=jitter,
            alpha=torch.where(jitter, uniform(10, 1 - CONTRAST_LIMIT, 1 + CONTRAST_LIMIT), one).float(),
            beta=torch.where(jitter, uniform(11, -BRIGHTNESS_LIMIT, BRIGHTNESS_LIMIT), zero).float(),
            erase=erase,
            box=torch.where(erase.view(-1, 1), erasing_boxes(e[:, 1:], c.size, c.size), 0),
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment (when training) and normalise a uint8 batch; see the class docstring."""
        x = self.to_float(images)
        if self.active:
            x = self.apply(x, self.sample_params(x.shape[0], generator).to(x.device))
        x = self.normalize(x)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last
                            else torch.contiguous_format)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> float32 NCHW in [0, 255], resized to ``size`` if it is not."""
        if images.ndim != 4:
            raise ValueError(f"expected a 4-d uint8 batch (NHWC), got shape {tuple(images.shape)}")
        return resize_batch(images.permute(0, 3, 1, 2).float(), self.cfg.size)

    def apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """The random steps with given parameters on a float NCHW batch in [0, 255].

        Steps the recipe turns off (probability 0) are skipped whatever ``params`` holds.
        """
        c = self.cfg

        def pick(mask: torch.Tensor, changed: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
            return torch.where(mask.view(-1, 1, 1, 1), changed, kept)

        if c.hflip > 0:
            x = pick(params.hflip, x.flip(-1), x)
        if c.vflip > 0:
            x = pick(params.vflip, x.flip(-2), x)
        if self.rot90_p > 0:
            if x.shape[-1] != x.shape[-2]:
                raise ValueError(f"rot90 needs square images, got {tuple(x.shape[-2:])}")
            rotated = x
            for k in (1, 2, 3):
                rotated = pick(params.rot90 == k, torch.rot90(x, k, (-2, -1)), rotated)
            x = rotated
        if self.warp_on:
            x = pick(params.warp, warp_affine(x, params.angle, params.scale, params.tx, params.ty), x)
        if c.brightness_contrast > 0:
            jittered = (x * params.alpha.view(-1, 1, 1, 1) + 255.0 * params.beta.view(-1, 1, 1, 1)).clamp_(0, 255)
            x = pick(params.jitter, jittered, x)
        if c.erasing > 0:
            rows = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1)
            cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1)
            left, top, right, bottom = (params.box[:, i].view(-1, 1, 1) for i in range(4))
            inside = params.erase.view(-1, 1, 1) & (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
            fill = torch.tensor(erasing_fill(c), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = torch.where(inside.unsqueeze(1), fill, x)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``A.Normalize(mean, std, max_pixel_value=255)`` on float [0, 255]: ``(x - 255 m) / (255 s)``."""
        if x.device not in self._norm:
            mean = torch.tensor(self.cfg.mean, dtype=torch.float32) * 255.0
            inv = 1.0 / (torch.tensor(self.cfg.std, dtype=torch.float32) * 255.0)
            self._norm[x.device] = (mean.view(1, -1, 1, 1).to(x.device), inv.view(1, -1, 1, 1).to(x.device))
        mean, inv = self._norm[x.device]
        return (x - mean) * inv


def erasing_boxes(u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A.Erasing's rectangle (albumentations 2.0.8's ``get_params_dependent_on_data``) from four
    uniforms per sample (area, aspect ratio, top, left): ``(n, 4)`` int64 left, top, right, bottom."""
    (s0, s1), (r0, r1) = ERASING_SCALE, ERASING_RATIO
    total = height * width
    # the largest area a rectangle of an allowed ratio can have and still fit
    max_area = min(total * s1, min(r0, r1) * height * height, width * width / max(r0, r1))
    area = total * s0 + (max_area - total * s0) * u[:, 0]
    low = torch.clamp(area / (height * height), min=r0)
    high = torch.clamp(width * width / area, max=r1)
    ratio = low + (high - low) * u[:, 1]
    h = torch.round(torch.sqrt(area / ratio)).long()
    w = torch.round(torch.sqrt(area * ratio)).long()
    top = torch.minimum((u[:, 2] * (height - h + 1)).long(), height - h)  # random.randint(0, H - h)
    left = torch.minimum((u[:, 3] * (width - w + 1)).long(), width - w)
    return torch.stack([left, top, left + w, top + h], 1)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """A float NCHW batch at ``size`` x ``size``: ``area`` down (``cv2.INTER_AREA``, exactly so
    for integer factors), bilinear up; unchanged when already there."""
    if x.shape[-2:] == (size, size):
        return x
    down = x.shape[-2] >= size and x.shape[-1] >= size
    return F.interpolate(x, size=(size, size), mode="area" if down else "bilinear",
                         **({} if down else {"align_corners": False}))


def warp_affine(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor,
                ty: torch.Tensor) -> torch.Tensor:
    """Per-sample rotate/zoom/translate of a float NCHW batch as ``cv2.warpAffine`` with A.Affine's matrix.

    albumentations' forward map (pixel coordinates, x right, y down, centre ``c = (W/2 - 0.5,
    H/2 - 0.5)``) is ``q = c + t + s R (p - c)`` with ``R = [[cos, sin], [-sin, cos]]`` of the angle
    in degrees; each output pixel samples the input at the inverse, ``p = c + R^T (q - c - t) / s``,
    bilinearly with zeros outside. With ``align_corners=False`` a pixel offset from ``c`` is the
    normalised coordinate times ``W/2`` (``H/2``), which gives ``theta`` below.
    """
    h, w = x.shape[-2:]
    rad = torch.deg2rad(angle.float() % 360)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    tx, ty = tx.float(), ty.float()
    theta = torch.stack([
        torch.stack([cos, -sin * (h / w), -(2.0 / w) * (cos * tx - sin * ty)], -1),
        torch.stack([sin * (w / h), cos, -(2.0 / h) * (sin * tx + cos * ty)], -1),
    ], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


__all__ = ["AugmentParams", "DeviceAugment", "resize_batch", "warp_affine", "erasing_boxes", "erasing_fill",
           "BRIGHTNESS_LIMIT", "CONTRAST_LIMIT", "ERASING_SCALE", "ERASING_RATIO"]
