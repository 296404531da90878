"""Ordinal decision thresholds: cut a continuous grade into classes to maximise QWK.

This is how the 2015 and 2019 retinopathy competitions were won: predict a grade (a
regression output, or the expected grade under the class probabilities), then fit the cut
points between grades on out-of-fold predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from comp import atomic
from comp.errors import CompError
from comp.metrics import quadratic_weighted_kappa

THRESHOLDS_FILE = "thresholds.json"


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """Σ_k k·p_k for each row."""
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def apply_thresholds(scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Class k for scores between cut k-1 and cut k."""
    return np.digitize(scores, np.asarray(cuts, dtype=np.float64)).astype(np.int64)


def fit_thresholds(scores: np.ndarray, y_true: np.ndarray, num_classes: int,
                   rounds: int = 3, grid: int = 41) -> np.ndarray:
    """Increasing cut points maximising QWK on ``(scores, y_true)``.

    Coordinate ascent from the midpoints 0.5, 1.5, …: each cut is searched on a grid between
    its neighbours, keeping a change only when QWK strictly improves, so the result is never
    worse than the starting cuts on the data it was fitted on.
    """
    scores = np.asarray(scores, dtype=np.float64)
    cuts = np.arange(num_classes - 1, dtype=np.float64) + 0.5
    best = quadratic_weighted_kappa(y_true, apply_thresholds(scores, cuts), num_classes)
    lo_all, hi_all = min(scores.min(), 0.0) - 0.5, max(scores.max(), num_classes - 1.0) + 0.5
    for _ in range(rounds):
        improved = False
        for i in range(len(cuts)):
            lo = cuts[i - 1] if i > 0 else lo_all
            hi = cuts[i + 1] if i + 1 < len(cuts) else hi_all
            for value in np.linspace(lo, hi, grid)[1:-1]:
                trial = cuts.copy()
                trial[i] = value
                q = quadratic_weighted_kappa(y_true, apply_thresholds(scores, trial), num_classes)
                if q > best + 1e-12:
                    best, cuts, improved = q, trial, True
        if not improved:
            break
    return cuts


def save_thresholds(run_dir: Path, cuts: np.ndarray) -> None:
    atomic.write_text(run_dir / THRESHOLDS_FILE, json.dumps({"cuts": [float(c) for c in cuts]}) + "\n")


def load_thresholds(run_dir: Path) -> np.ndarray:
    path = run_dir / THRESHOLDS_FILE
    if not path.is_file():
        raise CompError(f'{path} not found: [predict] decision = "ordinal_thresholds" needs thresholds '
                        f"fitted on out-of-fold predictions (run `comp fit` with validation folds)")
    return np.asarray(json.loads(path.read_text())["cuts"], dtype=np.float64)
