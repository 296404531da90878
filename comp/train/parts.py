"""What one fold trains with: model, loss, loaders, optimiser, schedule and scaler, built from the
recipe (:func:`build_parts`), and the batch-size probe behind ``batch_size = "auto"``."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from comp.data.dataset import EpochSampler, balanced_weights
from comp.data.extra import training_rows
from comp.data.pipeline import InputPipeline, input_pipeline
from comp.data.table import ClassMap, ImageTable
from comp.errors import CompError
from comp.kinds import kind_of
from comp.metrics import Task
from comp.model import build_model, param_groups
from comp.model.losses import build_loss
from comp.model.optim import build_optimizer
from comp.model.runtime import Runtime
from comp.model.scheduler import Scheduler, build_scheduler
from comp.recipe import Recipe
from comp.run.checkpoint import load_checkpoint, unwrap

logger = logging.getLogger(__name__)

CPU_AUTO_BATCH = 32


@dataclass(frozen=True)
class FoldSplit:
    """One fold's rows: the table, its classes, and which rows train and which validate; ``extra``
    rows (``[data] extra_csv``) train in every fold besides ``train_index`` and are never validated."""

    fold: int
    table: ImageTable
    classes: ClassMap
    train_index: np.ndarray
    valid_index: np.ndarray
    task: Task  # the recipe's task for these classes, resolved once by the data check
    extra: ImageTable | None = None

    def training_table(self) -> ImageTable:
        """The rows the fold trains on: its training rows, then the extra rows."""
        return training_rows(self.table, self.train_index, self.extra)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class FoldParts:
    """Everything one fold trains with, built from the recipe."""

    model: nn.Module
    step_model: nn.Module  # the compiled/DDP-wrapped model when [train] compile or DDP, else ``model``
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    loss_fn: nn.Module
    scaler: torch.amp.GradScaler
    sampler: EpochSampler  # the training loader's
    train_loader: DataLoader
    valid_loader: DataLoader | None
    # Loader batches to model input, mixing, and the loaders' datasets: one owner (comp.data.pipeline).
    pipeline: InputPipeline
    batch_size: int
    accum_steps: int
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA); data order and augmentation draw from their own seeds."""
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def build_parts(recipe: Recipe, split: FoldSplit, runtime: Runtime, *,
                init: Path | None = None) -> FoldParts:
    """Loaders, model, optimiser, schedule, loss and scaler for one fold.

    ``init``: a checkpoint of another run (``[model] init_from``) the model starts from instead of
    its initialisation or pretrained weights; its classes must be the fold's.
    """
    t_cfg = recipe.train
    table, num_classes = split.table, split.num_classes
    if init is None:
        model = build_model(recipe.model, num_classes)
    else:
        model = build_model(dataclasses.replace(recipe.model, pretrained=False), num_classes)
        load_init(model, init, list(split.classes.labels))
    if runtime.world_size > 1 and recipe.train.sync_bn:
        if runtime.device.type != "cuda":
            raise CompError("[train] sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    # Extra rows count for their label (a soft row: its most probable class), here and in the sampler.
    train_table = split.training_table()
    counts = kind_of(split.task).class_counts(train_table.labels, train_table.targets, num_classes).tolist()
    loss_fn = build_loss(recipe.loss, counts, split.classes.labels, split.task.names, rows=len(train_table),
                         scale=split.task.scale)
    loss_fn.to(runtime.device)

    batch_size, accum = resolve_batch(recipe, model, loss_fn, runtime)
    if runtime.world_size > 1 or accum > 1:
        logger.info(f"batch {batch_size} per process × {runtime.world_size} processes × {accum} accumulated "
                    f"= {batch_size * runtime.world_size * accum} images per update")
    pipeline = input_pipeline(recipe, runtime, table.paths, fold=split.fold)
    weights = balanced_weights(train_table.labels, num_classes) if t_cfg.sampler == "balanced" else None
    train_loader = pipeline.train_loader(train_table, batch_size, weights=weights, rank=runtime.rank,
                                         world_size=runtime.world_size)
    valid_loader = None
    if len(split.valid_index):
        # Each rank validates every world_size-th row; validation puts the shards back in order.
        shard = np.asarray(split.valid_index)[runtime.rank::runtime.world_size]
        valid_loader = pipeline.eval_loader(table.subset(shard), batch_size * 2)

    optimizer = build_optimizer(recipe.optim, param_groups(model, recipe.model, recipe.optim.lr,
                                                           recipe.optim.weight_decay))
    steps_per_epoch = max(1, math.ceil(len(train_loader) / accum))
    scheduler = build_scheduler(recipe.schedule, optimizer, t_cfg.epochs, steps_per_epoch,
                                mode=split.task.mode)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype is torch.float16)
    step_model = _distribute(model, runtime)
    step_model = torch.compile(step_model) if t_cfg.compile else step_model
    return FoldParts(model, step_model, optimizer, scheduler, loss_fn, scaler, train_loader.sampler, train_loader,
                     valid_loader, pipeline, batch_size, accum, t_cfg.grad_clip)


def load_init(model: nn.Module, path: Path, classes: list[str]) -> None:
    """Load another run's checkpoint into ``model`` (``[model] init_from``); its classes must match."""
    state = load_checkpoint(path)
    saved = [str(c) for c in state.get("classes", [])]
    if saved and saved != classes:
        raise CompError(f"[model] init_from: {path} was trained on classes {saved}, this run has {classes}; "
                        f"the class lists must match")
    try:
        unwrap(model).load_state_dict(state["model"])
    except RuntimeError as err:
        raise CompError(f"[model] init_from: {path} does not fit this [model] "
                        f"({str(err).splitlines()[0]}); the architecture must match") from None


def _distribute(model: nn.Module, runtime: Runtime) -> nn.Module:
    """DistributedDataParallel around the model under torchrun; the model itself otherwise."""
    if runtime.world_size == 1:
        return model
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def resolve_batch(recipe: Recipe, model: nn.Module, loss_fn: nn.Module, runtime: Runtime) -> tuple[int, int]:
    """(batch size, accumulation steps). ``"auto"`` probes the GPU for the largest power of two
    that trains; ``effective_batch_size`` sets accumulation to keep the images per update."""
    t_cfg = recipe.train
    batch = t_cfg.batch_size
    if batch == "auto":
        if runtime.device.type == "cuda":
            batch = _probe_batch(recipe, model, loss_fn, runtime)
        else:
            batch = CPU_AUTO_BATCH
        logger.info(f'batch_size "auto": {batch}')
    accum = t_cfg.accum_steps
    if t_cfg.effective_batch_size:
        accum = max(1, math.ceil(t_cfg.effective_batch_size / (batch * runtime.world_size)))
    return int(batch), accum


def _probe_batch(recipe: Recipe, model: nn.Module, loss_fn: nn.Module, runtime: Runtime,
                 largest: int = 1024) -> int:
    size = recipe.augment.size
    batch = largest
    state = copy.deepcopy(unwrap(model).state_dict())
    while batch >= 1:
        try:
            images = torch.randn(batch, 3, size, size, device=runtime.device)
            with runtime.autocast():
                outputs = model(runtime.to_device(images)).float()
                # A multilabel loss takes a 0/1 row per image, the others a class index.
                targets = (torch.zeros_like(outputs) if getattr(loss_fn, "multilabel", False)
                           else torch.zeros(batch, dtype=torch.long, device=runtime.device))
                loss = loss_fn(outputs, targets)
            loss.backward()
            model.zero_grad(set_to_none=True)
            break
        except torch.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            batch //= 2
    unwrap(model).load_state_dict(state)  # the probe's forward passes moved BatchNorm statistics
    torch.cuda.empty_cache()
    if batch < 1:
        raise CompError("not even a batch of 1 fits on the GPU at this [augment] size")
    return max(1, batch // 2) if batch > 1 else 1  # headroom for the optimiser state
