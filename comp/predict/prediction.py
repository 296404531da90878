"""What a prediction hands on, shared by the torch path (:mod:`comp.predict.predict`) and ONNX
Runtime's (:mod:`comp.predict.onnx`): the probabilities with their ids, and the batch size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comp.data.table import ClassMap
from comp.recipe import Recipe


@dataclass(frozen=True)
class Prediction:
    """Test-set probabilities of one run or an ensemble, with the ids they belong to."""

    ids: np.ndarray
    probs: np.ndarray  # (n_test, num_classes)
    classes: ClassMap


def predict_batch_size(recipe: Recipe) -> int:
    """``[predict] batch_size``, else twice the training batch (64 when it is "auto")."""
    b = recipe.train.batch_size
    return recipe.predict.batch_size or 2 * (b if isinstance(b, int) else 64)
