"""Training losses and class weighting, built from the ``[loss]`` section of a recipe.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` and averaged over the batch.
The classification losses (ce, focal, sord) take either integer class indices ``(N,)`` or class
probabilities ``(N, K)`` (soft labels: ``[data] extra_csv`` with ``prob_<class>`` columns), and
have one code path for both: indices become one-hot rows (:func:`target_matrix`), so a one-hot
row and its index give the same loss. With a soft target ``q`` and class weights ``w``:

* class weights weight each class's term, as :func:`torch.nn.functional.cross_entropy` does with
  probabilities: ``sum_c w_c q_c L_c``; the batch is normalised by ``sum_i w . q_i``, which for
  one-hot rows is cross-entropy's ``sum_i w[y_i]``, so hard labels keep its exact semantics;
* label smoothing mixes the target with uniform: ``(1 - eps) q + eps / K``;
* mixup/cutmix blend the loss (:mod:`comp.data.mixing`), which for these losses is the loss of
  the blended target vectors: the terms are linear in ``q`` and the normaliser is the batch's.

The regression losses take the integer grade only (soft rows are refused for a regression head
when the data is checked). Class weights are registered as buffers, so ``.to(device)`` moves
them with the module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from comp.recipe import LossConfig
from comp.recipe.task import class_weight_values


def class_weights(counts: Sequence[int], mode: str | list[float] | dict[str, float],
                  classes: Sequence[str] | None = None, names: Sequence[str] | None = None) -> torch.Tensor | None:
    """Per-class loss weights from the training class counts, or None for unweighted.

    ``"balanced"``: proportional to 1/n_c; ``"sqrt"``: proportional to 1/sqrt(n_c); both
    normalised to mean 1 over the classes, so the loss keeps its usual scale. A list is taken
    as given (one positive weight per class, in class order); a table by class name needs
    ``classes``, the class order, and ``names``, their display names (see
    :func:`comp.recipe.task.class_weight_values`).
    """
    values = class_weight_values(counts, mode, classes, names)
    return None if values is None else torch.tensor(values, dtype=torch.float32)


def target_matrix(targets: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Targets as ``(N, K)`` class probabilities: class indices one-hot, probabilities as given."""
    if targets.ndim == 2:
        return targets.to(dtype)
    return F.one_hot(targets.long(), num_classes).to(dtype)


def hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Targets as class indices: soft rows ``(N, K)`` by their most probable class."""
    return targets.argmax(dim=1) if targets.ndim == 2 else targets.long()


def soft_class_loss(per_class: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None,
                    label_smoothing: float) -> torch.Tensor:
    """``sum_i sum_c w_c q'_ic per_class_ic / sum_i w . q_i`` with ``q`` the targets as
    probabilities and ``q' = (1 - eps) q + eps / K`` (see the module's docstring)."""
    k = per_class.shape[1]
    q = target_matrix(targets, k, per_class.dtype)
    w = (torch.ones(k, device=per_class.device, dtype=per_class.dtype) if weight is None
         else weight.to(per_class.dtype))
    smoothed = (1.0 - label_smoothing) * q + label_smoothing / k if label_smoothing > 0 else q
    return (smoothed * w * per_class).sum() / (q @ w).sum()


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al., 2017) with class weights and label smoothing.

    Per sample, with ``L_c = -(1 - p_c)^gamma * log p_c`` and smoothing ``eps`` over K classes::

        loss_i = (1 - eps) * w[y_i] * L_{y_i} + eps / K * sum_c w[c] * L_c

    and the batch loss is ``sum_i loss_i / sum_i w[y_i]``. This is the same weighting and
    normalisation as :func:`torch.nn.functional.cross_entropy`, so with ``gamma = 0`` the two are
    equal for any weights and smoothing; the class weight acts as the per-target ``alpha``.
    Soft targets: :func:`soft_class_loss`.
    """

    def __init__(self, gamma: float, weight: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", None if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        # (1 - p)^0 is 1 even where p == 1, so gamma = 0 reduces exactly to cross-entropy.
        focus = (1.0 - log_p.exp()).clamp(min=0.0).pow(self.gamma)
        return soft_class_loss(-focus * log_p, targets, self.weight, self.label_smoothing)


def sord_targets(targets: torch.Tensor, num_classes: int, alpha: float) -> torch.Tensor:
    """Soft ordinal targets (SORD, Diaz & Marathe, 2019): ``softmax_c(-alpha * (c - y)^2)``.

    A grade-2 image then also teaches "near 1 and 3, far from 0 and 4", which one-hot targets
    cannot say; as ``alpha`` grows the targets approach one-hot.
    """
    grades = torch.arange(num_classes, device=targets.device, dtype=torch.float32)
    distance = (grades[None, :] - targets.float()[:, None]) ** 2
    return torch.softmax(-alpha * distance, dim=1)


class SordLoss(nn.Module):
    """Cross-entropy against :func:`sord_targets`, for ordered classes (grades).

    Per sample the loss is ``w[y] * H(q, p)`` with ``q`` the soft target, optionally smoothed
    towards uniform by ``label_smoothing``; the batch loss is ``sum_i loss_i / sum_i w[y_i]``,
    the normalisation :func:`torch.nn.functional.cross_entropy` uses. A soft row ``t`` (class
    probabilities) has the mixture ``sum_y t_y sord(y)`` as its target and ``w . t`` as its
    weight, which for a one-hot row is the grade's own.
    """

    def __init__(self, alpha: float, weight: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", None if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        t = target_matrix(targets, k, logits.dtype)
        grades = torch.arange(k, device=logits.device)
        soft = t @ sord_targets(grades, k, self.alpha).to(logits.dtype)
        if self.label_smoothing > 0:
            soft = (1.0 - self.label_smoothing) * soft + self.label_smoothing / k
        per_sample = -(soft * F.log_softmax(logits, dim=1)).sum(1)
        w = t.sum(1) if self.weight is None else t @ self.weight.to(logits.dtype)
        return (w * per_sample).sum() / w.sum()


class _CrossEntropy(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss``'s settings (``weight``, ``label_smoothing``) over class indices of
    any integer dtype or class probabilities, by :func:`soft_class_loss`; for indices it equals
    :func:`torch.nn.functional.cross_entropy`."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_class_loss(-F.log_softmax(logits, dim=1), targets, self.weight, self.label_smoothing)


class RegressionLoss(nn.Module):
    """MSE, smooth-L1 or Huber between a one-output head and the integer grade (a regression head)
    or the value (a regression task: ``(N, 1)`` float targets).

    ``logits`` is ``(N, 1)`` (or ``(N,)``); with class weights each sample is weighted by its
    grade's weight and the mean is taken over those weights, as cross-entropy does.
    """

    def __init__(self, kind: str, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.loss_name = kind  # "mse" or "smooth_l1": [loss] name, checked against the head when the recipe loaded
        self.register_buffer("weight", None if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # The shapes are checked here, at run time: they come from the model and the batch.
        if logits.ndim == 2:
            if logits.shape[1] != 1:
                raise ValueError(f"a regression loss needs one output per sample, got shape "
                                 f"{tuple(logits.shape)}")
            logits = logits[:, 0]
        if targets.ndim == 2 and targets.shape[1] == 1 and targets.is_floating_point():
            targets = targets[:, 0]  # a regression task's values (the table's targets)
        if targets.ndim != 1:
            raise ValueError("a regression loss trains on the grade, not on class probabilities")
        target = targets.to(logits.dtype)
        if self.loss_name == "mse":
            err = F.mse_loss(logits, target, reduction="none")
        elif self.loss_name == "huber":
            err = F.huber_loss(logits, target, reduction="none")
        else:
            err = F.smooth_l1_loss(logits, target, reduction="none")
        if self.weight is None:
            return err.mean()
        w = self.weight.to(logits.dtype)[targets.long()]
        return (w * err).sum() / w.sum()


def build_loss(loss_cfg: LossConfig, class_counts: Sequence[int],
               classes: Sequence[str] | None = None, names: Sequence[str] | None = None) -> nn.Module:
    """The loss named by ``[loss] name``; ``class_counts`` are the training counts per class,
    ``classes`` the class labels in order and ``names`` their display names (for class weights
    given by label or name).

    ``"ce"``/``"focal"``/``"sord"`` take logits ``(N, K)``; ``"mse"``/``"smooth_l1"`` take a regression
    head's ``(N, 1)`` output and compare it with the grade ``targets.float()``.
    """
    weight = class_weights(class_counts, loss_cfg.class_weights, classes, names)
    smoothing = loss_cfg.label_smoothing  # its range was checked when the recipe was loaded
    name = loss_cfg.name
    if name == "ce":
        return _CrossEntropy(weight=weight, label_smoothing=smoothing)
    if name == "focal":
        return FocalLoss(loss_cfg.gamma, weight=weight, label_smoothing=smoothing)
    if name == "sord":
        return SordLoss(loss_cfg.sord_alpha, weight=weight, label_smoothing=smoothing)
    return RegressionLoss(name, weight)
