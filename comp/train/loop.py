"""The training loop for one fold: epochs of optimisation and validation, with checkpoints.

``build_parts`` assembles what a fold trains with (loaders, model, optimiser, schedule, loss),
``train_step`` is the one optimisation step that ``comp fit`` and ``comp bench`` both run, and
``train_fold`` drives epochs, validation, checkpoints and resumption. Everything comes in as
arguments and goes out into the fold's own folder, so folds can run in sequence, in parallel
processes, or under DDP.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from comp import atomic
from comp.data.augment import build_transform
from comp.data.dataset import EpochSampler, ImageDataset, balanced_weights, make_loader
from comp.data.table import ClassMap, ImageTable
from comp.errors import CompError
from comp.metrics import MONITOR_MODES, summarise
from comp.model import build_model, param_groups, train_mode
from comp.model.inference import combine_views, forward_views, identity, outputs_to_probs
from comp.model.losses import build_loss
from comp.model.optim import build_optimizer
from comp.model.runtime import Runtime
from comp.model.scheduler import Scheduler, build_scheduler
from comp.recipe import Recipe
from comp.train import distributed
from comp.train.checkpoint import TopK, load_checkpoint, save_checkpoint, unwrap
from comp.train.mixing import Mix, mix_batch, mix_rng, mixed_loss, mixing_on

METRIC_COLUMNS = ["accuracy", "macro_f1", "weighted_f1", "qwk", "auc"]
CPU_AUTO_BATCH = 32


class NonFiniteLoss(CompError):
    """The loss became NaN or infinite; the fold stops and its last good checkpoint stays."""


class Interrupted(CompError):
    """Ctrl-C or SIGTERM: the current step finished and last.pt was written."""

    exit_code = 130


@dataclass
class StopFlag:
    """Set by a signal handler; the loop checks it after every step."""

    reason: str = ""

    @property
    def requested(self) -> bool:
        return bool(self.reason)


@dataclass(frozen=True)
class FoldResult:
    """What a finished fold hands back: its validation predictions by the weights that
    ``comp predict`` uses (``[predict] checkpoints``), so OOF scores what gets submitted."""

    fold: int
    best_epoch: int
    best_score: float
    valid_index: np.ndarray  # rows of the table validated in this fold
    valid_probs: np.ndarray  # (n_valid, num_classes) from the weights [predict] checkpoints names
    history: pd.DataFrame
    checkpoints: str = "best"  # which weights valid_probs come from


@dataclass
class FoldParts:
    """Everything one fold trains with, built from the recipe."""

    model: nn.Module
    step_model: nn.Module  # the compiled model when [train] compile, else ``model``
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    loss_fn: nn.Module
    scaler: torch.amp.GradScaler
    sampler: EpochSampler
    train_loader: DataLoader
    valid_loader: DataLoader | None
    batch_size: int
    accum_steps: int


@dataclass
class TrainState:
    """Where a fold is: enough to resume mid-epoch exactly where it stopped."""

    epoch: int = 0  # completed epochs
    step: int = 0  # batches done in the current epoch
    updates: int = 0  # optimiser steps so far
    loss_sum: float = 0.0  # of the current epoch so far
    loss_count: int = 0
    history: list[dict] = field(default_factory=list)
    kept_probs: dict[int, np.ndarray] = field(default_factory=dict)  # validation probs of the top-k epochs
    last_probs: np.ndarray | None = None  # validation probs of the latest epoch
    swa: dict[str, torch.Tensor] | None = None  # running mean of the last epochs' weights
    swa_count: int = 0


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA); data order and augmentation draw from their own seeds."""
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def build_parts(recipe: Recipe, table: ImageTable, classes: ClassMap, train_index: np.ndarray,
                valid_index: np.ndarray, runtime: Runtime, *, seed: int,
                log: Callable[[str], None] = print) -> FoldParts:
    """Loaders, model, optimiser, schedule, loss and scaler for one fold."""
    t_cfg, a_cfg = recipe.train, recipe.augment
    num_classes = len(classes)
    model = build_model(recipe.model, num_classes, log=log)
    if runtime.world_size > 1 and recipe.train.sync_bn:
        if runtime.device.type != "cuda":
            raise CompError("[train] sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(recipe.loss, np.bincount(table.labels[train_index], minlength=num_classes).tolist())
    loss_fn.to(runtime.device)

    batch_size, accum = resolve_batch(recipe, model, loss_fn, runtime, log)
    if runtime.world_size > 1 or accum > 1:
        log(f"batch {batch_size} per process × {runtime.world_size} processes × {accum} accumulated "
            f"= {batch_size * runtime.world_size * accum} images per update")
    train_table = table.subset(train_index)
    train_ds = ImageDataset(train_table, build_transform(a_cfg, train=True), a_cfg.preprocess)
    weights = balanced_weights(train_table.labels, num_classes) if t_cfg.sampler == "balanced" else None
    sampler = EpochSampler(len(train_ds), seed, weights=weights, rank=runtime.rank,
                           world_size=runtime.world_size)
    train_loader = make_loader(train_ds, batch_size, train_cfg=t_cfg, device=runtime.device, sampler=sampler)
    valid_loader = None
    if len(valid_index):
        # Each rank validates every world_size-th row; _validate puts the shards back in order.
        shard = np.asarray(valid_index)[runtime.rank::runtime.world_size]
        valid_ds = ImageDataset(table.subset(shard), build_transform(a_cfg, train=False), a_cfg.preprocess)
        valid_loader = make_loader(valid_ds, batch_size * 2, train_cfg=t_cfg, device=runtime.device)

    optimizer = build_optimizer(recipe.optim, param_groups(model, recipe.model, recipe.optim.lr,
                                                           recipe.optim.weight_decay))
    steps_per_epoch = max(1, math.ceil(len(train_loader) / accum))
    scheduler = build_scheduler(recipe.schedule, optimizer, t_cfg.epochs, steps_per_epoch,
                                mode=MONITOR_MODES[t_cfg.monitor])
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype is torch.float16)
    step_model = _distribute(model, runtime)
    step_model = torch.compile(step_model) if t_cfg.compile else step_model
    return FoldParts(model, step_model, optimizer, scheduler, loss_fn, scaler, sampler, train_loader,
                     valid_loader, batch_size, accum)


def _distribute(model: nn.Module, runtime: Runtime) -> nn.Module:
    """DistributedDataParallel around the model under torchrun; the model itself otherwise."""
    if runtime.world_size == 1:
        return model
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def train_step(parts: FoldParts, images: torch.Tensor, targets: torch.Tensor, runtime: Runtime,
               *, update: bool, grad_clip: float = 0.0, mix: Mix | None = None) -> torch.Tensor:
    """Forward and backward one batch; with ``update``, step the optimiser (after
    ``accum_steps`` batches have accumulated). Returns the (detached) loss.

    ``mix``: the batch was mixed (:func:`comp.train.mixing.mix_batch`), so the loss is blended.
    """
    images = runtime.to_device(images)
    targets = targets.to(runtime.device, non_blocking=True)
    with runtime.autocast():
        loss = mixed_loss(parts.loss_fn, parts.step_model(images).float(), targets, mix)
    parts.scaler.scale(loss / parts.accum_steps).backward()
    if update:
        if grad_clip > 0:
            parts.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(parts.model.parameters(), grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def resolve_batch(recipe: Recipe, model: nn.Module, loss_fn: nn.Module, runtime: Runtime,
                  log: Callable[[str], None]) -> tuple[int, int]:
    """(batch size, accumulation steps). ``"auto"`` probes the GPU for the largest power of two
    that trains; ``effective_batch_size`` sets accumulation to keep the images per update."""
    t_cfg = recipe.train
    batch = t_cfg.batch_size
    if batch == "auto":
        if runtime.device.type == "cuda":
            batch = _probe_batch(recipe, model, loss_fn, runtime)
        else:
            batch = CPU_AUTO_BATCH
        log(f'batch_size "auto": {batch}')
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
            targets = torch.zeros(batch, dtype=torch.long, device=runtime.device)
            with runtime.autocast():
                loss = loss_fn(model(runtime.to_device(images)).float(), targets)
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


def train_fold(recipe: Recipe, table: ImageTable, classes: ClassMap, train_index: np.ndarray,
               valid_index: np.ndarray, fold_dir: Path, runtime: Runtime, *, fold: int = 0,
               resume: bool = False, progress: bool = True, stop: StopFlag | None = None,
               log: Callable[[str], None] = print) -> FoldResult:
    """Train one fold; writes best.pt, last.pt (and swa.pt, epochNNN.pt) and history.csv."""
    t_cfg = recipe.train
    seed = recipe.seed + fold
    seed_everything(seed, t_cfg.deterministic)
    stop = stop or StopFlag()
    parts = build_parts(recipe, table, classes, train_index, valid_index, runtime, seed=seed, log=log)
    top_k = TopK(t_cfg.keep_top_k, MONITOR_MODES[t_cfg.monitor])
    state = TrainState()
    if runtime.is_main:
        fold_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier(runtime)
    if resume and (fold_dir / "last.pt").is_file():
        state = _restore(fold_dir / "last.pt", parts, top_k)
        log(f"fold {fold}: resuming at epoch {state.epoch + 1}, step {state.step}")

    def save_last() -> None:
        if runtime.is_main:
            _save_last(fold_dir / "last.pt", parts, state, top_k, classes)

    try:
        while state.epoch < t_cfg.epochs:
            t0 = time.perf_counter()
            _train_epoch(parts, state, runtime, recipe, stop, save_last,
                         desc=f"fold {fold} epoch {state.epoch + 1}/{t_cfg.epochs}", progress=progress)
            row = _validate(parts, state, runtime, recipe, len(classes))
            row["seconds"] = round(time.perf_counter() - t0, 2)
            _end_epoch(parts, state, top_k, row, fold_dir, classes, recipe, write=runtime.is_main)
            save_last()
            if runtime.is_main:
                atomic.write_csv(fold_dir / "history.csv", pd.DataFrame(state.history))
            log(_epoch_line(fold, row, t_cfg.monitor, top_k))
    except torch.OutOfMemoryError:
        raise CompError(
            f"CUDA out of memory at batch_size {parts.batch_size}: set [train] batch_size lower "
            f"(e.g. {max(1, parts.batch_size // 2)}) with effective_batch_size = "
            f"{parts.batch_size * parts.accum_steps} to keep the images per update, or "
            f'batch_size = "auto"; {fold_dir / "last.pt"} holds the last finished epoch') from None

    swa_probs = None
    if t_cfg.swa_epochs and state.swa is not None:
        swa_model = _swa_model(parts, state, runtime, recipe)  # on every rank: all validate it
        if runtime.is_main:
            save_checkpoint(fold_dir / "swa.pt", model=swa_model, epoch=state.epoch, score=math.nan,
                            classes=list(classes.labels), swa_epochs=state.swa_count)
            log(f"swa.pt: the mean of the last {state.swa_count} epochs' weights, BatchNorm recomputed")
        if parts.valid_loader is not None:
            outputs, _ = _valid_outputs(swa_model, parts, runtime)
            swa_probs = outputs_to_probs(outputs[0], recipe.model.head, len(classes))
    distributed.barrier(runtime)
    best = top_k.best
    validated = parts.valid_loader is not None
    return FoldResult(
        fold=fold,
        best_epoch=best[1] if best and validated else t_cfg.epochs,
        best_score=best[0] if best and validated else math.nan,
        valid_index=np.asarray(valid_index),
        valid_probs=oof_probs(state, top_k, recipe, swa_probs, len(classes)),
        history=pd.DataFrame(state.history),
        checkpoints=recipe.predict.checkpoints,
    )


def oof_probs(state: TrainState, top_k: TopK, recipe: Recipe, swa_probs: np.ndarray | None,
              num_classes: int) -> np.ndarray:
    """The fold's validation probabilities from the weights ``[predict] checkpoints`` names,
    combined as ``comp predict`` combines them: best epoch, mean of the top-k epochs, last
    epoch, or the SWA weights. Empty without validation."""
    which = recipe.predict.checkpoints
    if which == "swa" and swa_probs is not None:
        return swa_probs
    if which == "last" and state.last_probs is not None:
        return state.last_probs
    kept = [state.kept_probs[e] for _, e in top_k.kept if e in state.kept_probs]
    if which == "top_k" and kept:
        return combine_views(np.stack(kept), recipe.predict.tta_mean)
    if kept:
        return kept[0]
    return np.zeros((0, num_classes))


def _train_epoch(parts: FoldParts, state: TrainState, runtime: Runtime, recipe: Recipe,
                 stop: StopFlag, save_last: Callable[[], None], *, desc: str, progress: bool) -> None:
    """Run the rest of the current epoch from ``state.step``, updating ``state`` as it goes."""
    train_mode(parts.model, recipe.model)
    parts.sampler.set_epoch(state.epoch, start=state.step * parts.batch_size)
    total_steps = state.step + len(parts.train_loader)
    parts.optimizer.zero_grad(set_to_none=True)
    bar = tqdm(parts.train_loader, desc=desc, leave=False, disable=not progress or None,
               dynamic_ncols=True, initial=state.step, total=total_steps)
    for images, targets in bar:
        stopping = train_batch(parts, state, images, targets, runtime, recipe,
                               total_steps=total_steps, stop=stop)
        bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}")
        # Stop only between whole updates, so a resume never splits an accumulated gradient.
        if stopping:
            stop.reason = stop.reason or "stop requested by another rank"
            save_last()
            raise Interrupted(f"{stop.reason}: stopped at epoch {state.epoch + 1}, step {state.step}; "
                              f"saved last.pt")


def train_batch(parts: FoldParts, state: TrainState, images: torch.Tensor, targets: torch.Tensor,
                runtime: Runtime, recipe: Recipe, *, total_steps: int, stop: StopFlag) -> bool:
    """One batch of the epoch loop: the step, the loss read back and checked on every rank, the
    running loss, the schedule stepped on updates. True when the fold must stop after it.

    ``total_steps`` is the number of batches in the epoch: its last batch always updates.
    """
    step = state.step + 1
    update = step % parts.accum_steps == 0 or step == total_steps
    mix = None
    if mixing_on(recipe.augment):
        images = runtime.to_device(images)
        images, mix = mix_batch(images, recipe.augment,
                                mix_rng(parts.sampler.seed, state.epoch, step, runtime.rank))
    loss = train_step(parts, images, targets, runtime, update=update, grad_clip=recipe.train.grad_clip,
                      mix=mix)
    value = loss.item()
    # Every rank must stop at the same step, so NaN and stop requests are voted on.
    bad, stopping = distributed.all_sum([float(not math.isfinite(value)),
                                         float(stop.requested and update)], runtime)
    if bad:
        shown = value if not math.isfinite(value) else "non-finite on another rank"
        raise NonFiniteLoss(f"the loss became {shown} at epoch {state.epoch + 1}, step {step}; "
                            f"the fold stopped and its last good checkpoint is kept "
                            f"(try a lower [optim] lr or [train] grad_clip)")
    state.step = step
    state.loss_sum += value * len(images)
    state.loss_count += len(images)
    if update:
        state.updates += 1
        parts.scheduler.step_update(state.updates)
    return bool(stopping)


def _validate(parts: FoldParts, state: TrainState, runtime: Runtime, recipe: Recipe,
              num_classes: int) -> dict:
    loss_sum, loss_count = distributed.all_sum([state.loss_sum, float(state.loss_count)], runtime)
    row = {"epoch": state.epoch + 1, "train_loss": loss_sum / max(loss_count, 1),
           "lr": parts.optimizer.param_groups[0]["lr"]}
    row["_probs"] = None
    if parts.valid_loader is None:
        row.update({"val_loss": math.nan, **{k: math.nan for k in METRIC_COLUMNS}})
        return row
    outputs, labels = _valid_outputs(unwrap(parts.step_model), parts, runtime)
    with torch.no_grad():
        logits = torch.from_numpy(outputs[0]).to(runtime.device)
        val_loss = float(parts.loss_fn(logits, torch.from_numpy(labels).to(runtime.device)).item())
    probs = outputs_to_probs(outputs[0], recipe.model.head, num_classes)
    row.update({"val_loss": val_loss, **summarise(labels, probs), "_probs": probs})
    return row


def _valid_outputs(model: nn.Module, parts: FoldParts, runtime: Runtime) -> tuple[np.ndarray, np.ndarray]:
    """``model``'s outputs on every validation row, in order, gathered from all ranks' shards."""
    outputs, labels = forward_views(model, parts.valid_loader, runtime, [identity])
    if runtime.world_size > 1:
        outputs, labels = _unshard(distributed.gather((outputs, labels), runtime))
    return outputs, labels


def _unshard(shards: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Interleave rank r's rows r, r+W, r+2W, ... back into the validation order."""
    world = len(shards)
    n = sum(len(labels) for _, labels in shards)
    outputs = np.empty((shards[0][0].shape[0], n, shards[0][0].shape[2]), dtype=shards[0][0].dtype)
    labels = np.empty(n, dtype=shards[0][1].dtype)
    for r, (o, lab) in enumerate(shards):
        outputs[:, r::world] = o
        labels[r::world] = lab
    return outputs, labels


def _end_epoch(parts: FoldParts, state: TrainState, top_k: TopK, row: dict, fold_dir: Path,
               classes: ClassMap, recipe: Recipe, write: bool = True) -> None:
    """Record the epoch, step the schedule, keep the best/top-k weights, update SWA.

    Every rank keeps the same bookkeeping; only the ``write`` rank saves files.
    """
    t_cfg = recipe.train
    probs = row.pop("_probs")
    epoch = state.epoch + 1
    score = row[t_cfg.monitor]
    state.history.append(row)
    parts.scheduler.step_epoch(epoch, None if math.isnan(score) else score)
    if parts.valid_loader is None:  # without validation the latest weights are the ones to use
        is_best, kept, dropped = True, False, []
    else:
        kept, dropped = top_k.offer(score, epoch)
        is_best = top_k.best is not None and top_k.best[1] == epoch
    meta = {"epoch": epoch, "score": score, "classes": list(classes.labels)}
    state.last_probs = probs
    if kept:
        state.kept_probs[epoch] = probs
    for e in dropped:
        state.kept_probs.pop(e, None)
    if is_best:
        if write:
            save_checkpoint(fold_dir / "best.pt", model=parts.model, **meta)
    if kept and t_cfg.keep_top_k > 1 and write:
        save_checkpoint(fold_dir / f"epoch{epoch:03d}.pt", model=parts.model, **meta)
    for e in dropped if write else ():
        (fold_dir / f"epoch{e:03d}.pt").unlink(missing_ok=True)
    if t_cfg.swa_epochs and epoch > t_cfg.epochs - t_cfg.swa_epochs:
        _swa_update(state, unwrap(parts.model))
    state.epoch, state.step, state.loss_sum, state.loss_count = epoch, 0, 0.0, 0


def _swa_update(state: TrainState, model: nn.Module) -> None:
    weights = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()
               if v.dtype.is_floating_point}
    state.swa_count += 1
    if state.swa is None:
        state.swa = weights
    else:
        for k, v in weights.items():
            state.swa[k] += (v - state.swa[k]) / state.swa_count


def _swa_model(parts: FoldParts, state: TrainState, runtime: Runtime, recipe: Recipe) -> nn.Module:
    """The mean of the last epochs' weights, BatchNorm statistics recomputed on the training
    images (without augmentation)."""
    model = copy.deepcopy(unwrap(parts.model))
    merged = model.state_dict()
    merged.update({k: v.to(merged[k].dtype) for k, v in state.swa.items()})
    model.load_state_dict(merged)
    train_ds = parts.train_loader.dataset
    plain = ImageDataset(train_ds.table, build_transform(recipe.augment, train=False), train_ds.preprocess)
    loader = make_loader(plain, parts.batch_size, train_cfg=recipe.train, device=runtime.device)
    with runtime.autocast():
        torch.optim.swa_utils.update_bn(((runtime.to_device(x),) for x, _ in loader), model,
                                        device=runtime.device)
    return model


def _save_last(path: Path, parts: FoldParts, state: TrainState, top_k: TopK, classes: ClassMap) -> None:
    save_checkpoint(
        path, model=parts.model, optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict(), scaler=parts.scaler.state_dict(),
        epoch=state.epoch, step=state.step, updates=state.updates, loss_sum=state.loss_sum,
        loss_count=state.loss_count, history=state.history, top_k=top_k.state_dict(),
        kept_probs={str(e): torch.from_numpy(np.asarray(p)) for e, p in state.kept_probs.items()},
        last_probs=None if state.last_probs is None else torch.from_numpy(np.asarray(state.last_probs)),
        swa=state.swa, swa_count=state.swa_count, classes=list(classes.labels),
        rng={"torch": torch.get_rng_state()},
    )


def _restore(path: Path, parts: FoldParts, top_k: TopK) -> TrainState:
    saved = load_checkpoint(path)
    unwrap(parts.model).load_state_dict(saved["model"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.scheduler.load_state_dict(saved["scheduler"])
    parts.scaler.load_state_dict(saved["scaler"])
    top_k.load_state_dict(saved["top_k"])
    torch.set_rng_state(saved["rng"]["torch"])
    last = saved.get("last_probs")
    return TrainState(epoch=int(saved["epoch"]), step=int(saved["step"]), updates=int(saved["updates"]),
                      loss_sum=float(saved["loss_sum"]), loss_count=int(saved["loss_count"]),
                      history=list(saved["history"]),
                      kept_probs={int(e): p.numpy() for e, p in saved.get("kept_probs", {}).items()},
                      last_probs=None if last is None else last.numpy(),
                      swa=saved.get("swa"), swa_count=int(saved.get("swa_count", 0)))


def _epoch_line(fold: int, row: dict, monitor: str, top_k: TopK) -> str:
    parts = [f"fold {fold} epoch {row['epoch']:>3}", f"train_loss {row['train_loss']:.4f}"]
    if not math.isnan(row["val_loss"]):
        parts += [f"val_loss {row['val_loss']:.4f}", f"acc {row['accuracy']:.4f}",
                  f"f1 {row['macro_f1']:.4f}", f"qwk {row['qwk']:.4f}"]
        if top_k.best and top_k.best[1] == row["epoch"]:
            parts.append(f"* best {monitor}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
