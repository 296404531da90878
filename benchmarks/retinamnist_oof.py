"""OOF figures behind benchmarks/retinamnist.md, from runs/<name>/oof.csv files only.

    .venv/bin/python benchmarks/retinamnist_oof.py RUN [RUN ...]

For each run: OOF AUC, and ACC / macro-F1 / QWK for argmax, for ordinal thresholds fitted on
the whole OOF (in-sample, what `comp fit` reports) and for thresholds fitted on the other
folds' OOF and applied to the held-out fold (nested). With several runs, also the per-row
average of their OOF probabilities (each row predicted only by models that never saw it) and
the runs' mean ± sd (seeds of one recipe: how far apart its candidates must be to count).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from comp import metrics
from comp.errors import CompError
from comp.decisions import expected_grade, fit_thresholds
from comp.run.oof import Decisions, ordinal_decisions, read_oof


def load(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Decisions]:
    """A run's OOF sorted by id: ids, folds, true class indices, probabilities, and the ordinal
    decisions (argmax, thresholds fitted on the whole OOF, nested) as comp fit and cv-report make them."""
    oof = read_oof(Path("runs") / run)
    cuts = fit_thresholds(expected_grade(oof.probs), oof.y_true, oof.probs.shape[1])
    decided = ordinal_decisions(oof, cuts)
    order = np.argsort(oof.frame["id"].to_numpy(), kind="stable")
    nested = None if decided.nested is None else decided.nested[order]
    return (oof.frame["id"].to_numpy()[order], oof.folds[order], oof.y_true[order], oof.probs[order],
            Decisions(decided.argmax[order], decided.in_sample[order], nested))


def line(name: str, y: np.ndarray, pred: np.ndarray, n: int) -> str:
    return (f"  {name:<18} acc {metrics.accuracy(y, pred):.4f}  f1 {metrics.macro_f1(y, pred, n):.4f}"
            f"  qwk {metrics.quadratic_weighted_kappa(y, pred, n):.4f}")


def main(runs: list[str]) -> None:
    all_probs = []
    for run in runs:
        ids, folds, y, probs, decided = load(run)
        n = probs.shape[1]
        all_probs.append((ids, y, probs))
        per_class = " ".join(f"{roc_auc_score(y == c, probs[:, c]):.3f}" for c in range(n))
        print(f"{run}: {len(y)} rows, {len(np.unique(folds))} folds, auc {metrics.ovr_auc(y, probs):.4f}"
              f"  (per class {per_class})")
        print(line("argmax", y, decided.argmax, n))
        print(line("thr in-sample", y, decided.in_sample, n))
        if decided.nested is not None:  # None for one validated fold: no other folds to fit the cuts on
            print(line("thr nested", y, decided.nested, n))
    if len(all_probs) > 1:
        runs_auc = [metrics.ovr_auc(y, p) for _, y, p in all_probs]
        runs_acc = [metrics.accuracy(y, p.argmax(1)) for _, y, p in all_probs]
        runs_qwk = [metrics.quadratic_weighted_kappa(y, p.argmax(1), p.shape[1]) for _, y, p in all_probs]
        print(f"mean ± sd of the {len(all_probs)} runs: auc {np.mean(runs_auc):.4f} ± {np.std(runs_auc, ddof=1):.4f}"
              f"  acc {np.mean(runs_acc):.4f} ± {np.std(runs_acc, ddof=1):.4f}"
              f"  qwk {np.mean(runs_qwk):.4f} ± {np.std(runs_qwk, ddof=1):.4f}")
        ids, y, _ = all_probs[0]
        if not all(np.array_equal(ids, other[0]) for other in all_probs[1:]):
            sys.exit("the runs' OOF cover different rows")
        mean = np.mean([p for _, _, p in all_probs], axis=0)
        print(f"per-row mean of {len(all_probs)} runs: auc {metrics.ovr_auc(y, mean):.4f}")
        print(line("argmax", y, mean.argmax(1), mean.shape[1]))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CompError as err:  # a missing run or oof.csv: comp's one-line message, exit 2
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
