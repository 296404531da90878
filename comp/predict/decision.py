"""Ordinal decisions: the expected grade, cutting it by fitted thresholds, and thresholds.json.

The cuts are fitted on out-of-fold predictions by :mod:`comp.evaluate.thresholds`; prediction
only reads and applies them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from comp import atomic
from comp.errors import CompError
from comp.train.rundir import RunDir

def expected_grade(probs: np.ndarray) -> np.ndarray:
    """Σ_k k·p_k for each row of an ``(n, num_classes)`` probability matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def apply_thresholds(scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Class k for ``cuts[k-1] <= score < cuts[k]`` (``np.digitize``; a score on a cut goes up)."""
    cuts = np.asarray(cuts, dtype=np.float64)
    return np.digitize(np.asarray(scores, dtype=np.float64), cuts).astype(np.int64)


def save_thresholds(run_dir: Path, cuts: np.ndarray) -> None:
    """Write ``thresholds.json`` ({"cuts": [...]}) into a run folder, atomically."""
    atomic.write_text(RunDir(Path(run_dir)).thresholds_path,
                      json.dumps({"cuts": [float(c) for c in cuts]}) + "\n")


def load_thresholds(run_dir: Path) -> np.ndarray:
    """The cuts saved by :func:`save_thresholds`; a missing or damaged file is a CompError."""
    path = RunDir(Path(run_dir)).thresholds_path
    if not path.is_file():
        raise CompError(f'{path} not found: [predict] decision = "ordinal_thresholds" needs thresholds '
                        f"fitted on out-of-fold predictions (run `comp fit` with validation folds)")
    try:
        cuts = np.asarray(json.loads(path.read_text(encoding="utf-8"))["cuts"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise CompError(f"{path} is damaged ({type(err).__name__}); re-run `comp fit` to refit it") from None
    if cuts.ndim != 1 or not np.isfinite(cuts).all() or np.any(np.diff(cuts) <= 0):
        raise CompError(f"{path}: cuts must be a list of increasing numbers, got {cuts.tolist()}")
    return cuts
