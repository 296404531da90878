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

from comp.errors import CompError
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


def pos_weights(positives: Sequence[int], rows: int, mode: str | dict[str, float],
                labels: Sequence[str] | None = None, names: Sequence[str] | None = None) -> torch.Tensor | None:
    """Each label's weight on its positive rows (``[loss] pos_weight``), or None for unweighted.

    ``"balanced"``: negatives / positives (BCE's ``pos_weight`` as PyTorch documents it: a label
    on 1 % of the rows gets 99); ``"sqrt"``: its square root, gentler; a table by label (or
    display name) as given, 1 for a label it leaves out. A label without positive (or without
    negative) training rows keeps weight 1.
    """
    if isinstance(mode, dict):
        labels = [str(c) for c in labels or ()]
        index = {c: i for i, c in enumerate(labels)}
        for i, n in enumerate(names or ()):
            index.setdefault(str(n), i)
        unknown = [k for k in mode if k not in index]
        if unknown:
            raise CompError(f"[loss] pos_weight names {', '.join(repr(k) for k in unknown)}, which "
                            f"{'is not a label' if len(unknown) == 1 else 'are not labels'}; the labels are "
                            f"{labels[:10]}{' ...' if len(labels) > 10 else ''}")
        values = [1.0] * len(labels)
        for key, w in mode.items():
            values[index[key]] = float(w)
        return torch.tensor(values, dtype=torch.float32)
    if mode == "none":
        return None
    pos = torch.tensor([float(p) for p in positives], dtype=torch.float64)
    ratio = torch.where((pos > 0) & (pos < rows), (rows - pos) / pos.clamp(min=1), torch.ones_like(pos))
    return (ratio if mode == "balanced" else ratio.sqrt()).float()


class MultilabelBCE(nn.Module):
    """Binary cross-entropy of each label's sigmoid, averaged over rows and labels (a multilabel
    task). Targets are ``(N, L)`` in [0, 1] (soft rows: probabilities); label smoothing pulls
    them toward 1/2: ``(1 - eps) t + eps / 2``; ``pos_weight`` weights each label's positive term."""

    multilabel = True

    def __init__(self, pos_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = smooth_binary(targets, logits, self.label_smoothing)
        return F.binary_cross_entropy_with_logits(logits, t, pos_weight=None if self.pos_weight is None
                                                  else self.pos_weight.to(logits.dtype))


class ScaledBCE(nn.Module):
    """Binary cross-entropy between the sigmoid of a one-output head and a regression target
    scaled to [0, 1] by its training range ``[low, high]`` (PetFinder Pawpularity's favourite):
    the prediction is ``low + (high - low) * sigmoid(output)``, so it stays within the range."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.reshape(len(logits))
        t = ((targets.reshape(len(targets)).to(logits.dtype) - self.low) / (self.high - self.low)).clamp(0.0, 1.0)
        return F.binary_cross_entropy_with_logits(logits, t)


class AsymmetricLoss(nn.Module):
    """timm's asymmetric loss for multi-label training (Ridnik et al. 2021: positives focused with
    ``gamma_pos``, negatives with ``gamma_neg`` and shifted by ``clip``, so the many easy negatives
    stop dominating), averaged over rows and labels like :class:`MultilabelBCE` (timm's sums;
    the mean keeps the learning rate that suits BCE)."""

    multilabel = True

    def __init__(self, label_smoothing: float = 0.0, gamma_neg: float = 4.0, gamma_pos: float = 1.0,
                 clip: float = 0.05) -> None:
        super().__init__()
        from timm.loss import AsymmetricLossMultiLabel  # noqa: PLC0415

        self.label_smoothing = label_smoothing
        self.asl = AsymmetricLossMultiLabel(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = smooth_binary(targets, logits, self.label_smoothing)
        return self.asl(logits.float(), t.float()) / max(1, logits.numel())


def smooth_binary(targets: torch.Tensor, logits: torch.Tensor, eps: float) -> torch.Tensor:
    """``(N, L)`` float targets with label smoothing toward 1/2."""
    if targets.shape != logits.shape:
        raise ValueError(f"a multilabel loss needs targets of the outputs' shape {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}")
    t = targets.to(logits.dtype)
    return t * (1.0 - eps) + 0.5 * eps if eps else t


def build_loss(loss_cfg: LossConfig, class_counts: Sequence[int],
               classes: Sequence[str] | None = None, names: Sequence[str] | None = None,
               rows: int = 0, scale: Sequence[float] = ()) -> nn.Module:
    """The loss named by ``[loss] name``; ``class_counts`` are the training counts per class,
    ``classes`` the class labels in order and ``names`` their display names (for class weights
    given by label or name).

    ``"ce"``/``"focal"``/``"sord"`` take logits ``(N, K)``; ``"mse"``/``"smooth_l1"`` take a regression
    head's ``(N, 1)`` output and compare it with the grade ``targets.float()``; ``"bce"``/``"asl"``
    take ``(N, L)`` logits and 0/1 targets (a multilabel task: ``class_counts`` are each label's
    positive rows out of ``rows``).
    """
    name = loss_cfg.name
    if name == "bce" and scale:
        return ScaledBCE(*scale)
    if name == "bce":
        return MultilabelBCE(pos_weights(class_counts, rows, loss_cfg.pos_weight, classes, names),
                             loss_cfg.label_smoothing)
    if name == "asl":
        return AsymmetricLoss(loss_cfg.label_smoothing)
    weight = class_weights(class_counts, loss_cfg.class_weights, classes, names)
    smoothing = loss_cfg.label_smoothing  # its range was checked when the recipe was loaded
    if name == "ce":
        return _CrossEntropy(weight=weight, label_smoothing=smoothing)
    if name == "focal":
        return FocalLoss(loss_cfg.gamma, weight=weight, label_smoothing=smoothing)
    if name == "sord":
        return SordLoss(loss_cfg.sord_alpha, weight=weight, label_smoothing=smoothing)
    return RegressionLoss(name, weight)
