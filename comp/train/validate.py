"""Validation of one fold's model: loss, metrics and probabilities on the validation rows,
gathered in order from every rank's shard."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from comp.errors import CompError
from comp.kinds import kind_of
from comp.metrics import Task
from comp.model.inference import forward_views, identity, outputs_to_probs
from comp.model.runtime import Runtime
from comp.train import distributed
from comp.run.checkpoint import unwrap
from comp.train.parts import FoldParts


class NonFiniteLoss(CompError):
    """The loss, or the model's outputs, became NaN or infinite; the fold stops and its last good
    checkpoint stays."""


@dataclass(frozen=True)
class Validation:
    """One validation pass: the loss, the task's metrics, and the probabilities (None: no
    validation rows, every figure NaN)."""

    loss: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)
    probs: np.ndarray | None = None

    @classmethod
    def none(cls, task: Task) -> Validation:
        """No validation rows: the task's columns, all NaN."""
        return cls(metrics={k: math.nan for k in task.metric_names})

    def score(self, monitor: str) -> float:
        """The monitored figure: ``val_loss`` or one of the metrics."""
        return self.loss if monitor == "val_loss" else self.metrics[monitor]

    def row(self) -> dict[str, float]:
        """The history.csv columns: val_loss, then the metrics."""
        return {"val_loss": self.loss, **self.metrics}


def validate(parts: FoldParts, runtime: Runtime, head: str, task: Task, *, where: str = "",
             desc: str | None = None, model: nn.Module | None = None) -> Validation:
    """Validate the fold's model, or ``model`` (the EMA weights), on every rank under DDP: the
    task's metrics.
    ``where`` (e.g. "fold 0, epoch 3") names the pass in the NonFiniteLoss raised when the
    model's outputs are not finite (weights blown up by the epoch's last update). ``desc``: show
    the pass's progress under that name."""
    if parts.valid_loader is None:
        return Validation.none(task)
    model = unwrap(parts.step_model) if model is None else model
    outputs, labels = valid_outputs(model, parts, runtime, where=where, desc=desc)
    with torch.no_grad():
        logits = torch.from_numpy(outputs[0]).to(runtime.device)
        loss = float(parts.loss_fn(logits, torch.from_numpy(labels).to(runtime.device)).item())
    kind = kind_of(task)
    probs = outputs_to_probs(outputs[0], kind.activation(head, task), task.num_classes)
    return Validation(loss, kind.summarise(task, labels, probs), probs)


def valid_probs(model: nn.Module, parts: FoldParts, runtime: Runtime, head: str,
                num_classes: int, *, where: str = "") -> np.ndarray:
    """``model``'s probabilities on the validation rows (e.g. the SWA weights)."""
    outputs, _ = valid_outputs(model, parts, runtime, where=where)
    return outputs_to_probs(outputs[0], head, num_classes)


def valid_outputs(model: nn.Module, parts: FoldParts, runtime: Runtime, *, where: str = "",
                  desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``model``'s outputs on every validation row, in order, gathered from all ranks' shards
    (so every rank sees the same outputs, and raises the same NonFiniteLoss when they are not
    finite: no loss, metric or checkpoint is made of NaN)."""
    outputs, labels = forward_views(model, parts.valid_loader, runtime, [identity], desc=desc,
                                    prepare=parts.pipeline.eval_batch)
    if runtime.world_size > 1:
        outputs, labels = _unshard(distributed.gather((outputs, labels), runtime))
    bad = ~np.isfinite(outputs)
    if bad.any():
        kind = "NaN" if np.isnan(outputs).any() else "infinite"
        raise NonFiniteLoss(f"{where + ': ' if where else ''}the model's outputs on the validation rows "
                            f"became {kind} ({int(bad.any(axis=-1).sum())} of {bad.shape[-2]} rows): its "
                            f"weights are no longer finite after the last update; the fold stopped and its "
                            f"last good checkpoint is kept (try a lower [optim] lr or [train] grad_clip)")
    return outputs, labels


def _unshard(shards: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Interleave rank r's rows r, r+W, r+2W, ... back into the validation order."""
    world = len(shards)
    n = sum(len(labels) for _, labels in shards)
    outputs = np.empty((shards[0][0].shape[0], n, shards[0][0].shape[2]), dtype=shards[0][0].dtype)
    labels = np.empty((n,) + shards[0][1].shape[1:], dtype=shards[0][1].dtype)  # (a multilabel task: rows of labels)
    for r, (o, lab) in enumerate(shards):
        outputs[:, r::world] = o
        labels[r::world] = lab
    return outputs, labels
