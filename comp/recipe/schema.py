"""The recipe's schema: one frozen dataclass per TOML section, and :class:`RecipeError`.

Every field has a type annotation and a default; :mod:`comp.recipe.load` checks each value
against its annotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from comp.errors import CompError
from comp.metrics import METRIC_NAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RecipeError(CompError):
    """A recipe that cannot be read or does not validate."""


def opt(default: Any, help: str) -> Any:
    """A field with its default and the one line of help the recipe reference prints for it
    (``comp recipe --defaults``); a list default is copied per instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# The names [train] monitor and [submission] metric accept.
MonitorName = Literal[("auto", "val_loss") + METRIC_NAMES]  # type: ignore[valid-type]
MetricName = Literal[("",) + METRIC_NAMES]  # type: ignore[valid-type]


@dataclass(frozen=True)
class DataConfig:
    """Where the competition lives, how its CSVs are laid out, and what kind of task it is."""

    root: str = opt("data/digits", "the competition folder")
    train_csv: str = opt("train.csv", "labelled rows: an id column and a label column")
    test_csv: str = opt("test.csv", "the rows to predict: the id column")
    valid_csv: str = opt("", "optional extra labelled rows (the train.csv + valid.csv layout); "
                             "[cv] scheme = \"predefined\" validates on them")
    sample_submission: str = opt("sample_submission.csv", "the leaderboard's format, copied exactly "
                                 "when the file exists; without it: test.csv's id column and the label column")
    solution_csv: str = opt("solution.csv", "optional test labels, for local scoring with `comp score`")
    id_col: str = opt("id", "the id column of the CSVs")
    label_col: str = opt("label", "the label column of the training CSVs")
    path_col: str = opt("", "a column of image paths relative to root (e.g. \"Path\"); "
                            "empty: images are <image_dir>/<id><ext>")
    image_dir: str = opt("train", "folder of the training images, relative to root")
    valid_image_dir: str = opt("", "folder of valid.csv's images; empty: image_dir")
    extra_csv: str = opt("", "rows that only train (pseudo-labels, external data): added to every "
                             "fold's training, never validated or scored; hard labels (the label "
                             "column) or soft (prob_<class> columns, as `comp predict --proba` writes)")
    extra_image_dir: str = opt("", "folder of extra_csv's images, relative to root; empty: image_dir")
    extra_ext: str = opt("", "extension of extra_csv's images; empty: ext")
    extra_min_prob: float = opt(0.0, "keep only the extra rows whose largest class probability is at "
                                     "least this (confident pseudo-labels); 0 keeps all")
    test_image_dir: str = opt("test", "folder of the test images, relative to root")
    ext: str = opt(".png", "image file extension appended to the id")
    classes: list[str] = opt([], "the class order; empty: the labels found, sorted "
                                 "(numerically when all are numbers)")
    task: Literal["auto", "binary", "multiclass", "ordinal", "regression", "multilabel"] = opt(
        "auto", "auto: binary with two classes, else multiclass; \"ordinal\" only when declared "
                "(grades: adds qwk and mae, ordinal thresholds); \"regression\": a numeric label "
                "column, one output (rmse, mae, r2, pearson, spearman); \"multilabel\": any number of "
                "labels per image (tags in label_col, or label_cols)")
    label_cols: list[str] = opt([], "multilabel: one 0/1 column per label (Plant Pathology, RANZCR) instead "
                                    "of a tags column in label_col")
    tag_sep: str = opt(" ", "multilabel: what separates the tags in label_col (Planet, HPA: a space)")
    positive: str = opt("", "a binary task's positive class (sensitivity, precision, F1, AUC, the "
                            "tuned threshold), by label or name; empty: the second class in class order")
    class_names: dict[str, str] = opt({}, "display names of the labels, e.g. { 0 = \"hem\", 1 = \"ALL\" }: "
                                          "logs, reports, positive, class weights; the submission keeps the labels")
    numeric_classes: bool = opt(False, "true: numbers as labels are class ids even when most classes hold one or "
                                       "two images (else such labels stop comp check and comp fit as a likely "
                                       "regression target; task = \"multiclass\" must be declared)")


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and its head."""

    source: Literal["timm", "hand"] = opt("timm", "\"timm\": any timm model name; \"hand\": comp's own "
                                                  "ResNet18..152")
    name: str = opt("resnet18", "the model name")
    pretrained: bool | str = opt(False, "true: timm's weights (needs the internet); a string: a "
                                        "state-dict file (.pth/.pt/.bin/.safetensors)")
    init_from: str = opt("", "start from a finished run's weights: a run name under --runs or a run "
                             "folder; each fold loads that run's same fold, else its best fold")
    drop_rate: float = opt(0.0, "dropout before the classifier")
    drop_path_rate: float = opt(0.0, "stochastic depth: the last residual block is skipped with this "
                                     "probability, earlier blocks linearly less (timm's rule)")
    head: Literal["classification", "regression"] = opt("classification", "regression: one output, "
                                                        "the grade (with [loss] mse or smooth_l1)")
    stem: Literal["default", "small"] = opt("default", "small: 3x3 stride-1 conv, no max-pool "
                                                      "(for 28-64 px images)")
    freeze: str | int = opt("none", "\"none\", \"backbone\" (train the head only), or a number of "
                                    "stages to freeze")
    backbone_lr_mult: float = opt(1.0, "the backbone's LR as a multiple of [optim] lr")


@dataclass(frozen=True)
class AugmentConfig:
    """Preprocessing, resize, flips, rotation, normalisation: in the loader workers
    (albumentations) or batch-wise on the device."""

    on: Literal["auto", "cpu", "device"] = opt(
        "auto", "where training augmentation runs: cpu (albumentations in the loader workers), "
                "device (batch-wise after the transfer, per-sample draws; workers only decode and "
                "resize), auto (device on CUDA, cpu otherwise); normalisation is always on the device")
    size: int = opt(224, "images are resized to size x size")
    preprocess: Literal["none", "ben_graham"] = opt("none", "ben_graham: the 2015 winner's fundus "
                                                            "preprocessing")
    hflip: float = opt(0.5, "probability of a horizontal flip")
    vflip: float = opt(0.0, "probability of a vertical flip")
    rot90: float = opt(0.0, "probability of a random quarter turn (0, 90, 180 or 270 degrees, "
                            "uniform)")
    rotate: float = opt(0.0, "maximum rotation in degrees")
    rotate_p: float = opt(0.5, "probability of the geometric step (rotation, scale, shift)")
    scale: float = opt(0.0, "zoom by a factor in [1 - scale, 1 + scale]")
    shift: float = opt(0.0, "translate by up to this fraction of the size, each axis")
    brightness_contrast: float = opt(0.0, "probability of a +-0.2 brightness/contrast jitter")
    erasing: float = opt(0.0, "probability of random erasing: one rectangle of 2-30% of the image, "
                              "aspect ratio 0.3-3.3, filled with the mean colour (A.Erasing)")
    mixup: float = opt(0.0, "Beta(alpha, alpha) of batch mixup; 0 = off")
    cutmix: float = opt(0.0, "Beta(alpha, alpha) of batch cutmix; 0 = off (both on: half the "
                             "batches each)")
    mix_p: float = opt(1.0, "probability that a batch is mixed at all")
    pipeline: str | list[dict[str, Any]] = opt(
        [], "albumentations transforms as A.to_dict writes them ([[augment.pipeline]] tables: "
            "__class_fullname__ and its arguments), or a .json/.yaml file A.save wrote (relative to the "
            "recipe); run on training images after resize and the keys above, before erasing")
    preset: Literal["", "fundus", "microscopy", "xray"] = opt(
        "", "a documented starting pipeline (`comp recipe --preset NAME` prints it to edit); "
            "with pipeline empty, the pipeline is the preset's")
    auto_augment: str = opt("", "timm's auto-augment string (\"rand-m9-mstd0.5\", \"augmix-m5\", "
                                "\"original\") or \"trivialaugment\": after the pipeline, in the loader workers")
    mean: list[float] = opt(list(IMAGENET_MEAN), "normalisation mean per channel")
    std: list[float] = opt(list(IMAGENET_STD), "normalisation standard deviation per channel")


@dataclass(frozen=True)
class LossConfig:
    """The training loss and its class weighting."""

    name: Literal["ce", "focal", "sord", "mse", "smooth_l1", "huber", "bce", "asl"] = opt(
        "ce", "ce, focal or sord; mse/smooth_l1 with a regression head or a regression task; huber "
              "(delta 1) for a regression task; bce or asl (asymmetric loss) for a multilabel task")
    pos_weight: str | dict[str, float] = opt("none", "multilabel: each label's positives weighted: \"none\", "
                                                     "\"balanced\" (negatives/positives), \"sqrt\", or by label name")
    class_weights: str | list[float] | dict[str, float] = opt(
        "none", "\"none\", \"balanced\", \"sqrt\", a list in class order, or by name: "
                "{ ALL = 1.2, hem = 1.0 }")
    label_smoothing: float = opt(0.0, "cross-entropy label smoothing")
    gamma: float = opt(2.0, "focal loss focusing parameter")
    sord_alpha: float = opt(2.0, "sord: target of class c for grade y is softmax(-alpha * (c - y)^2)")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser."""

    name: Literal["sgd", "adam", "adamw"] = opt("adamw", "the optimiser")
    lr: float = opt(1e-3, "learning rate")
    weight_decay: float = opt(1e-4, "weight decay")
    momentum: float = opt(0.9, "sgd momentum")
    nesterov: bool = opt(False, "sgd: Nesterov momentum")
    betas: list[float] = opt([0.9, 0.999], "adam/adamw betas")


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule. Epoch counts may be fractional where stepped per iteration."""

    name: Literal["constant", "step", "multistep", "cosine", "onecycle", "plateau"] = opt(
        "cosine", "constant, step, multistep (two-phase LR), cosine, onecycle or plateau")
    warmup_epochs: float = opt(0.0, "linear warmup, in epochs")
    min_lr: float = opt(0.0, "cosine: the final LR")
    step_size: int = opt(10, "step: epochs between decays")
    milestones: list[int] = opt([], "multistep: epochs at which to decay")
    gamma: float = opt(0.1, "step/multistep/plateau decay factor")
    pct_start: float = opt(0.3, "onecycle: fraction of the run spent increasing the LR")
    patience: int = opt(2, "plateau: epochs without improvement before decaying")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    epochs: int = opt(10, "training epochs")
    batch_size: int | str = opt(32, "images per step, or \"auto\": the largest power of two that "
                                    "fits on the GPU")
    effective_batch_size: int = opt(0, ">0: accumulate gradients to this many images per step")
    workers: int = opt(-1, "DataLoader workers; -1: one per core")
    monitor: MonitorName = opt("auto", "the validation metric that picks best.pt (or val_loss); "
                                       "auto: [submission] metric, else binary roc_auc, "
                                       "multiclass accuracy, ordinal qwk")
    device: str = opt("auto", "auto, cpu, cuda, cuda:1, ...")
    amp: Literal["auto", "bf16", "fp16", "off"] = opt("auto", "mixed precision; auto: bf16 on CUDA, "
                                                              "off on CPU")
    channels_last: bool = opt(True, "channels-last memory format (CUDA only)")
    compile: bool = opt(False, "torch.compile the model")
    grad_clip: float = opt(0.0, "max gradient norm; 0 disables")
    accum_steps: int = opt(1, "batches per optimiser step (gradient accumulation)")
    deterministic: bool = opt(False, "repeatable runs (deterministic algorithms)")
    sampler: Literal["none", "balanced"] = opt("none", "balanced: draw classes equally often")
    keep_top_k: int = opt(1, "checkpoints kept per fold, by the monitor")
    swa_epochs: int = opt(0, "average the weights of the last N epochs into swa.pt")
    ema_decay: float = opt(0.0, "exponential moving average of the weights and BatchNorm buffers "
                                "(e.g. 0.999; 0 = off), its decay warmed up over the first updates; "
                                "every epoch is then validated, kept and scored with the EMA weights")
    patience: int = opt(0, "early stopping: end the fold after this many epochs without a better "
                           "monitor (0 = off)")
    sync_bn: bool = opt(False, "DDP on CUDA: BatchNorm statistics over the global batch")


@dataclass(frozen=True)
class CVConfig:
    """How training rows are split into folds."""

    scheme: Literal["holdout", "kfold", "predefined", "full"] = opt(
        "holdout", "holdout, kfold, predefined (split_col or [data] valid_csv) or full (train on "
                   "everything, no validation)")
    folds: int = opt(5, "kfold: number of folds")
    valid_fraction: float = opt(0.2, "holdout: share of rows validated")
    group_col: str = opt("", "rows sharing a group never straddle train and validation")
    split_col: str = opt("", "predefined: a column in train.csv naming each row's fold or \"valid\"")
    bins: int = opt(10, "regression tasks: folds are stratified on this many quantile bins of the target")


@dataclass(frozen=True)
class PredictConfig:
    """Inference, test-time augmentation and ensembling."""

    tta: list[str] = opt(["identity", "hflip", "vflip"], "views for --tta: identity, hflip, vflip, "
                                                         "hvflip, rot90/180/270, scale<f>")
    tta_mean: Literal["arithmetic", "geometric"] = opt("arithmetic", "how views and checkpoints "
                                                                     "are averaged")
    decision: Literal["argmax", "ordinal_thresholds", "threshold", "label_thresholds"] = opt(
        "argmax", "argmax; ordinal_thresholds (ordinal tasks: OOF-fitted cuts); threshold "
                  "(binary tasks: the OOF-tuned probability threshold; multilabel: one fitted threshold "
                  "for all labels); label_thresholds (multilabel: one per label)")
    at_least_one: bool = opt(False, "multilabel: a row with no label above its threshold gets its most "
                                    "probable one")
    checkpoints: Literal["best", "top_k", "last", "swa", "ema"] = opt(
        "best", "the weights each fold predicts with: best.pt, the top-k epochs, last.pt, swa.pt, or "
                "ema.pt (the EMA weights at the fold's end; with EMA on, best and top-k are EMA weights too)")
    batch_size: int = opt(0, "0: twice the training batch size")
    adapt_bn: bool = opt(False, "re-estimate each model's BatchNorm statistics on the test images before "
                                "predicting (as `comp predict --adapt-bn`; never saved into the run)")
    clip: bool = opt(True, "regression tasks: clip predictions to the training range (fitted on the "
                           "out-of-fold rows, thresholds.json)")


@dataclass(frozen=True)
class SubmissionConfig:
    """The submission's columns and the competition's metric."""

    id_col: str = opt("", "the id column; empty: sample_submission's first, else [data] id_col")
    label_col: str = opt("", "the label column; empty: sample_submission's second, else [data] "
                             "label_col")
    metric: MetricName = opt("", "the leaderboard's metric: the default monitor, what a binary "
                                 "threshold is tuned for, the first figure of `comp score`")
    beta: float = opt(2.0, "multilabel: the beta of fbeta (Planet's F2)")
    values: Literal["auto", "probabilities", "decisions"] = opt(
        "auto", "multilabel with one column per label: probabilities (AUC competitions) or 0/1 decisions; auto: "
                "probabilities when the metric ranks (mean_auc, map, log_loss) or the sample's cells are not all 0/1")


@dataclass(frozen=True)
class LogConfig:
    """What a fit records beside the console, fit.log and the run's pictures."""

    tensorboard: bool = opt(False, "TensorBoard event files in runs/<name>/tb/fold<K>: per-step loss and "
                                   "LR, per-epoch metrics, the confusion matrix, image mosaics "
                                   "(needs `pip install comp[tensorboard]`)")


@dataclass(frozen=True)
class TrackConfig:
    """An experiment tracker the fit reports to besides its run folder (``comp fit --track``)."""

    tracker: Literal["none", "mlflow", "wandb"] = opt(
        "none", "mlflow (pip install comp[mlflow]), wandb (pip install comp[wandb]) or none; a tracker "
                "that fails warns once and the fit goes on")
    tracking_uri: str = opt("", "mlflow: a server (http://host:5000) or database URI; empty: the SQLite "
                                "database <runs>/mlflow.db, artifacts in <runs>/mlflow-artifacts")
    experiment: str = opt("comp", "the MLflow experiment (W&B project) the runs go in")
    wandb_mode: Literal["auto", "online", "offline"] = opt("auto", "wandb: auto is offline unless an API key "
                                                                   "is configured (WANDB_API_KEY)")


@dataclass(frozen=True)
class Provenance:
    """Where a recipe came from: its file and the ``--set`` overrides applied to it."""

    file: str = ""
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A whole experiment. ``name`` defaults to the recipe file's stem and names runs/<name>/."""

    name: str = opt("", "the run's name (runs/<name>/); default: the recipe file's stem")
    seed: int = opt(42, "seed of folds, data order, augmentation and initialisation")
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
    log: LogConfig = field(default_factory=LogConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    # Where the recipe came from; set by load_recipe, never read from or written to TOML.
    source: Provenance = field(default_factory=lambda: Provenance(), compare=False,
                               metadata={"toml": False})
