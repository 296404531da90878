"""The recipe's schema: one frozen dataclass per TOML section, and :class:`RecipeError`.

Every field has a type annotation and a default; :mod:`comp.recipe.load` checks each value
against its annotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from comp.errors import CompError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RecipeError(CompError):
    """A recipe that cannot be read or does not validate."""


@dataclass(frozen=True)
class DataConfig:
    """Where the competition lives and how its CSVs are laid out."""

    root: str = "data/digits"
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    valid_csv: str = ""  # optional extra labelled rows (the train.csv + valid.csv layout)
    sample_submission: str = "sample_submission.csv"
    solution_csv: str = "solution.csv"
    id_col: str = "id"
    label_col: str = "label"
    path_col: str = ""  # a column holding image paths relative to root; else image_dir/<id><ext>
    image_dir: str = "train"
    valid_image_dir: str = ""  # defaults to image_dir
    test_image_dir: str = "test"
    ext: str = ".png"
    classes: list[str] = field(default_factory=list)  # class order; default: sorted labels found


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and its head."""

    source: Literal["timm", "hand"] = "timm"
    name: str = "resnet18"
    pretrained: bool | str = False  # true: timm's weights; a string: a state-dict file
    drop_rate: float = 0.0
    head: Literal["classification", "regression"] = "classification"
    stem: Literal["default", "small"] = "default"  # small: 3x3 stride-1 conv, no max-pool (<= 64 px)
    freeze: str | int = "none"  # "none", "backbone", or a number of stages
    backbone_lr_mult: float = 1.0


@dataclass(frozen=True)
class AugmentConfig:
    """The albumentations pipeline: preprocessing, resize, flips, rotation, normalisation."""

    size: int = 224
    preprocess: Literal["none", "ben_graham"] = "none"
    hflip: float = 0.5  # probability
    vflip: float = 0.0
    rotate: float = 0.0  # maximum angle in degrees
    rotate_p: float = 0.5  # probability of the geometric step (rotation, scale, shift)
    scale: float = 0.0  # zoom by a factor in [1 - scale, 1 + scale]
    shift: float = 0.0  # translate by up to this fraction of the size, each axis
    brightness_contrast: float = 0.0  # probability of a +-0.2 brightness/contrast jitter
    mixup: float = 0.0  # Beta(alpha, alpha) of batch mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of batch cutmix; 0 = off (both on: half the batches each)
    mix_p: float = 1.0  # probability that a batch is mixed at all
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


@dataclass(frozen=True)
class LossConfig:
    """The training loss and its class weighting."""

    name: Literal["ce", "focal", "sord", "mse", "smooth_l1"] = "ce"
    class_weights: str | list[float] = "none"  # "none", "balanced", "sqrt", or one per class
    label_smoothing: float = 0.0
    gamma: float = 2.0  # focal loss focusing parameter
    sord_alpha: float = 2.0  # sord: target of class c for grade y is softmax(-alpha * (c - y)^2)


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser."""

    name: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule. Epoch counts may be fractional where stepped per iteration."""

    name: Literal["constant", "step", "multistep", "cosine", "onecycle", "plateau"] = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    step_size: int = 10  # step: epochs between decays
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which to decay
    gamma: float = 0.1  # step/multistep/plateau decay factor
    pct_start: float = 0.3  # onecycle: fraction of the run spent increasing the LR
    patience: int = 2  # plateau: epochs without improvement before decaying


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    epochs: int = 10
    batch_size: int | str = 32  # or "auto": the largest power of two that fits on the GPU
    effective_batch_size: int = 0  # >0: accumulate gradients to this many images per step
    workers: int = -1  # DataLoader workers; -1: the machine's cores
    monitor: Literal["accuracy", "macro_f1", "qwk", "val_loss", "auc"] = "qwk"
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 on CUDA, off on CPU
    channels_last: bool = True  # CUDA only
    compile: bool = False
    grad_clip: float = 0.0  # max grad norm; 0 disables
    accum_steps: int = 1
    deterministic: bool = False
    sampler: Literal["none", "balanced"] = "none"
    keep_top_k: int = 1  # checkpoints kept per fold, by the monitor metric
    swa_epochs: int = 0  # average the weights of the last N epochs into swa.pt
    sync_bn: bool = False  # DDP on CUDA: BatchNorm statistics over the global batch


@dataclass(frozen=True)
class CVConfig:
    """How training rows are split into folds."""

    scheme: Literal["holdout", "kfold", "predefined", "full"] = "holdout"
    folds: int = 5
    valid_fraction: float = 0.2  # holdout
    group_col: str = ""  # rows sharing a group never straddle train and validation
    split_col: str = ""  # predefined: a column in train.csv naming each row's fold or "valid"


@dataclass(frozen=True)
class PredictConfig:
    """Inference, test-time augmentation and ensembling."""

    tta: list[str] = field(default_factory=lambda: ["identity", "hflip", "vflip"])
    tta_mean: Literal["arithmetic", "geometric"] = "arithmetic"
    decision: Literal["argmax", "ordinal_thresholds"] = "argmax"
    checkpoints: Literal["best", "top_k", "last", "swa"] = "best"
    batch_size: int = 0  # 0: twice the training batch size


@dataclass(frozen=True)
class SubmissionConfig:
    """The submission's columns; empty means: take them from sample_submission.csv."""

    id_col: str = ""
    label_col: str = ""


@dataclass(frozen=True)
class Provenance:
    """Where a recipe came from: its file and the ``--set`` overrides applied to it."""

    file: str = ""
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A whole experiment. ``name`` defaults to the recipe file's stem and names runs/<name>/."""

    name: str = ""
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    # Where the recipe came from; set by load_recipe, never read from or written to TOML.
    source: Provenance = field(default_factory=lambda: Provenance(), compare=False,
                               metadata={"toml": False})
