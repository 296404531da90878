"""The training loop for one fold: epochs of optimisation and validation, with checkpoints.

``train_fold`` takes everything it needs as arguments (recipe, table, indices, runtime) and
writes only into its own fold folder, so folds can run in sequence, in parallel processes, or
under DDP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from comp import atomic
from comp.augment import build_transform
from comp.checkpoint import TopK, load_checkpoint, save_checkpoint, unwrap
from comp.dataset import EpochSampler, ImageDataset, balanced_weights, make_loader
from comp.errors import CompError
from comp.inference import forward_views, outputs_to_probs
from comp.losses import build_loss
from comp.metrics import MONITOR_MODES, summarise
from comp.models import build_model, param_groups, train_mode
from comp.optim import build_optimizer
from comp.recipe import Recipe
from comp.runtime import Runtime
from comp.scheduler import build_scheduler
from comp.table import ClassMap, ImageTable

METRIC_COLUMNS = ["accuracy", "macro_f1", "weighted_f1", "qwk", "auc"]


class NonFiniteLoss(CompError):
    """The loss became NaN or infinite; the fold stops and its last good checkpoint stays."""


@dataclass(frozen=True)
class FoldResult:
    """What a finished fold hands back: its validation predictions at the best epoch."""

    fold: int
    best_epoch: int
    best_score: float
    valid_index: np.ndarray  # rows of the table validated in this fold
    valid_probs: np.ndarray  # (n_valid, num_classes) at the best epoch
    history: pd.DataFrame


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA); numpy and random draws in comp use their own seeded generators."""
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def train_fold(recipe: Recipe, table: ImageTable, classes: ClassMap, train_index: np.ndarray,
               valid_index: np.ndarray, fold_dir: Path, runtime: Runtime, *, fold: int = 0,
               resume: bool = False, progress: bool = True,
               log: Callable[[str], None] = print) -> FoldResult:
    """Train one fold; writes best.pt, last.pt and history.csv into ``fold_dir``."""
    t_cfg, a_cfg = recipe.train, recipe.augment
    seed = recipe.seed + fold
    seed_everything(seed, t_cfg.deterministic)
    num_classes = len(classes)
    batch_size = _batch_size(t_cfg.batch_size)

    train_table = table.subset(train_index)
    train_ds = ImageDataset(train_table, build_transform(a_cfg, train=True), a_cfg.preprocess)
    weights = (balanced_weights(train_table.labels, num_classes)
               if t_cfg.sampler == "balanced" else None)
    sampler = EpochSampler(len(train_ds), seed, weights=weights, rank=runtime.rank,
                           world_size=runtime.world_size)
    train_loader = make_loader(train_ds, batch_size, train_cfg=t_cfg, device=runtime.device,
                               sampler=sampler)
    valid_loader = None
    if len(valid_index):
        valid_ds = ImageDataset(table.subset(valid_index), build_transform(a_cfg, train=False),
                                a_cfg.preprocess)
        valid_loader = make_loader(valid_ds, batch_size * 2, train_cfg=t_cfg, device=runtime.device)

    model = build_model(recipe.model, num_classes, log=log)
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    groups = param_groups(model, recipe.model, recipe.optim.lr, recipe.optim.weight_decay)
    optimizer = build_optimizer(recipe.optim, groups)
    steps_per_epoch = max(1, math.ceil(len(train_loader) / t_cfg.accum_steps))
    mode = MONITOR_MODES[t_cfg.monitor]
    scheduler = build_scheduler(recipe.schedule, optimizer, t_cfg.epochs, steps_per_epoch, mode=mode)
    class_counts = np.bincount(train_table.labels, minlength=num_classes).tolist()
    loss_fn = build_loss(recipe.loss, class_counts).to(runtime.device)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype is torch.float16)
    step_model = torch.compile(model) if t_cfg.compile else model

    fold_dir.mkdir(parents=True, exist_ok=True)
    top_k = TopK(t_cfg.keep_top_k, mode)
    history: list[dict] = []
    start_epoch, updates = 0, 0
    best_probs: np.ndarray | None = None
    if resume and (fold_dir / "last.pt").is_file():
        state = load_checkpoint(fold_dir / "last.pt")
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        top_k.load_state_dict(state["top_k"])
        history = list(state["history"])
        start_epoch, updates = int(state["epoch"]), int(state["updates"])
        if state.get("best_probs") is not None:
            best_probs = state["best_probs"].numpy()
        torch.set_rng_state(state["rng"]["torch"])
        log(f"fold {fold}: resuming after epoch {start_epoch}")

    for epoch in range(start_epoch, t_cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss, updates = _train_epoch(step_model, model, train_loader, loss_fn, optimizer,
                                           scheduler, scaler, runtime, recipe, epoch, updates,
                                           desc=f"fold {fold} epoch {epoch + 1}/{t_cfg.epochs}",
                                           progress=progress)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}
        probs = None
        if valid_loader is not None:
            outputs, labels = forward_views(step_model, valid_loader, runtime)
            val_loss = _loss_on(outputs[0], labels, loss_fn, runtime)
            probs = outputs_to_probs(outputs[0], recipe.model.head, num_classes)
            row.update({"val_loss": val_loss, **summarise(labels, probs)})
        else:
            row.update({"val_loss": math.nan, **{k: math.nan for k in METRIC_COLUMNS}})
        row["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        score = row[t_cfg.monitor]
        scheduler.step_epoch(epoch + 1, None if math.isnan(score) else score)

        if valid_loader is None:  # without validation the latest weights are the ones to use
            is_best, kept, dropped = True, False, []
        else:
            kept, dropped = top_k.offer(score, epoch + 1)
            is_best = top_k.best is not None and top_k.best[1] == epoch + 1
        if is_best:
            best_probs = probs
            save_checkpoint(fold_dir / "best.pt", model=model, epoch=epoch + 1, score=score,
                            classes=list(classes.labels))
        if kept and t_cfg.keep_top_k > 1:
            save_checkpoint(fold_dir / f"epoch{epoch + 1:03d}.pt", model=model, epoch=epoch + 1,
                            score=score, classes=list(classes.labels))
        for e in dropped:
            (fold_dir / f"epoch{e:03d}.pt").unlink(missing_ok=True)
        save_checkpoint(
            fold_dir / "last.pt", model=model, optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), epoch=epoch + 1,
            updates=updates, top_k=top_k.state_dict(), history=history,
            best_probs=None if best_probs is None else torch.from_numpy(np.asarray(best_probs)),
            classes=list(classes.labels), rng={"torch": torch.get_rng_state()},
        )
        atomic.write_csv(fold_dir / "history.csv", pd.DataFrame(history))
        log(_epoch_line(fold, row, t_cfg.monitor, top_k))

    best = top_k.best
    best_epoch = best[1] if best and valid_loader is not None else t_cfg.epochs
    best_score = best[0] if best and valid_loader is not None else math.nan
    return FoldResult(fold=fold, best_epoch=best_epoch, best_score=best_score,
                      valid_index=np.asarray(valid_index),
                      valid_probs=np.zeros((0, num_classes)) if best_probs is None else best_probs,
                      history=pd.DataFrame(history))


def _train_epoch(step_model: nn.Module, model: nn.Module, loader, loss_fn: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                 runtime: Runtime, recipe: Recipe, epoch: int, updates: int, *, desc: str,
                 progress: bool) -> tuple[float, int]:
    """One pass over the training data; returns the mean loss and the optimiser-step count."""
    t_cfg = recipe.train
    train_mode(model, recipe.model)
    total, count = 0.0, 0
    accum = t_cfg.accum_steps
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress or None, dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar):
        images = runtime.to_device(images)
        targets = targets.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            loss = loss_fn(step_model(images).float(), targets)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                                f"the fold stopped and its last good checkpoint is kept "
                                f"(try a lower [optim] lr or [train] grad_clip)")
        scaler.scale(loss / accum).backward()
        last_in_epoch = step + 1 == len(loader)
        if (step + 1) % accum == 0 or last_in_epoch:
            if t_cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), t_cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            updates += 1
            scheduler.step_update(updates)
        total += loss.item() * len(images)
        count += len(images)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1), updates


@torch.no_grad()
def _loss_on(outputs: np.ndarray, labels: np.ndarray, loss_fn: nn.Module, runtime: Runtime) -> float:
    logits = torch.from_numpy(outputs).to(runtime.device)
    return float(loss_fn(logits, torch.from_numpy(labels).to(runtime.device)).item())


def _batch_size(value: int | str) -> int:
    if value == "auto":
        raise CompError('[train] batch_size = "auto" is not supported yet; give a number')
    return int(value)


def _epoch_line(fold: int, row: dict, monitor: str, top_k: TopK) -> str:
    parts = [f"fold {fold} epoch {row['epoch']:>3}", f"train_loss {row['train_loss']:.4f}"]
    if not math.isnan(row["val_loss"]):
        parts += [f"val_loss {row['val_loss']:.4f}", f"acc {row['accuracy']:.4f}",
                  f"f1 {row['macro_f1']:.4f}", f"qwk {row['qwk']:.4f}"]
        if top_k.best and top_k.best[1] == row["epoch"]:
            parts.append(f"* best {monitor}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
