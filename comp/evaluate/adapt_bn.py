"""``comp cv-report --adapt-bn``: would test-time BatchNorm adaptation help this run? A nested
estimate: each fold's models predict that fold's own validation rows twice, as trained and with
their BatchNorm statistics re-estimated on those rows (:mod:`comp.predict.adapt`); the two
out-of-fold figures stand side by side. Rows from the training distribution show what the
adaptation costs when there is no shift (often a little: fewer images than training); a shifted
test set is where it pays, which only a held-out shifted set can measure (benchmarks/shift.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from comp.data.table import ClassMap, load_train_table
from comp.errors import CompError
from comp.kinds import activation_of, kind_of
from comp.model.inference import combine_views, outputs_to_probs
from comp.model.runtime import resolve_runtime
from comp.predict.adapt import adapt_runs
from comp.predict.predict import load_run, predict_pass, shared_loader
from comp.run.folder import ID_COLUMN, RunDir
from comp.run.oof import read_oof

logger = logging.getLogger(__name__)


def adapt_bn_figures(run_dir: Path, device: str | None = None) -> dict[str, dict[str, float]]:
    """``{"plain": metrics, "adapt_bn": metrics}`` over the run's out-of-fold rows (identity view,
    the run's ``[predict] checkpoints``), each fold predicting its own validation rows."""
    run = RunDir(run_dir)
    recipe, task = run.recipe(), run.task()
    classes = ClassMap(tuple(run.classes()))
    oof = read_oof(run_dir, classes)
    table, _ = load_train_table(recipe)
    where = {str(i): k for k, i in enumerate(table.ids)}
    ids = oof.frame[ID_COLUMN].astype(str).to_numpy()
    missing = [i for i in ids if i not in where]
    if missing:
        raise CompError(f"{run.name}: out-of-fold row {missing[0]!r} is not in the competition's training rows "
                        f"any more; --adapt-bn needs the images the folds validated")
    runtime = resolve_runtime(recipe.train, device)
    probs = {"plain": np.zeros_like(oof.probs), "adapt_bn": np.zeros_like(oof.probs)}
    for fold in sorted(set(int(f) for f in oof.folds)):
        rows = np.flatnonzero(oof.folds == fold)
        fold_table = table.subset(np.array([where[i] for i in ids[rows]]))
        paths = RunDir(run_dir).fold(fold).checkpoints(recipe.predict.checkpoints)
        models = load_run(run_dir, runtime, tta=False, weight_files=paths)
        loader, spec_of = shared_loader([recipe], fold_table, runtime)
        for how in probs:  # plain first: adapt_runs then swaps in the adapted copies
            if how == "adapt_bn":
                adapt_runs([models], True, loader, spec_of, runtime)
            (per_model,) = predict_pass([models], loader, spec_of, runtime)
            per_checkpoint = [combine_views(outputs_to_probs(o, activation_of(task, recipe.model.head), len(classes)),
                                            recipe.predict.tta_mean) for o in per_model]
            probs[how][rows] = combine_views(np.stack(per_checkpoint), recipe.predict.tta_mean)
    return {how: kind_of(task).summarise(task, oof.y_true, p) for how, p in probs.items()}


__all__ = ["adapt_bn_figures"]
