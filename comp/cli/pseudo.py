"""``comp fit RECIPE --pseudo-from RUN``: one pseudo-labelling round as one command.

It is what README's five hand-typed commands do ("Pseudo-labels and external data"): RUN predicts
the test set (its ``[predict] tta`` views and its decision, ``--proba``; ``--adapt-bn``: with its
BatchNorm statistics re-estimated on the test images), the rows whose largest probability is at
least ``--min-prob`` are kept, and the recipe is fitted with them as ``[data] extra_csv`` (soft
labels, the test images). The kept rows live in the new run's folder (``pseudo_labels.csv``, which
its recipe.toml names, so ``--resume`` reads them there) with ``pseudo.json``: the run they came
from, the threshold, the count per class. Nothing is written into the competition or into RUN
(but RUN's predict.log line). Chaining rounds: the same command with the last round's run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pandas as pd

from comp import atomic
from comp.errors import CompError
from comp.kinds import kind_of
from comp.recipe import Recipe

logger = logging.getLogger(__name__)

PSEUDO_CSV = "pseudo_labels.csv"
PSEUDO_JSON = "pseudo.json"


def pseudo_recipe(recipe: Recipe, csv: Path, min_prob: float) -> Recipe:
    """``recipe`` training on the rows of ``csv`` (test images, ``comp predict --proba`` columns)."""
    d = recipe.data
    data = dataclasses.replace(d, extra_csv=str(Path(csv).resolve()), extra_image_dir=d.test_image_dir,
                               extra_ext=d.ext, extra_min_prob=min_prob)
    return dataclasses.replace(recipe, data=data)


def predict_confident(source: Path, recipe: Recipe, scratch: Path, *, min_prob: float, adapt_bn: bool,
                      device: str | None) -> dict:
    """RUN's test-set predictions (TTA, its decision, probabilities) into ``scratch``, less the rows
    below ``min_prob``; returns the provenance record (pseudo.json)."""
    from comp.predict.predict import predict
    from comp.run.folder import RunDir

    src = RunDir(source)
    if src.recipe().data.test_csv != recipe.data.test_csv or \
            Path(src.recipe().data.root).resolve() != Path(recipe.data.root).resolve():
        logger.info(f"--pseudo-from {src.name}: predicting this recipe's test set ({recipe.data.root})")
    where = [f"data.root={recipe.data.root}", f"data.test_csv={recipe.data.test_csv}",
             f"data.test_image_dir={recipe.data.test_image_dir}"]
    predict([source], out=scratch, tta=True, proba=True, device=device, data=where, adapt_bn=adapt_bn,
            logs_under=source.parent)
    frame = pd.read_csv(scratch, dtype=str, keep_default_na=False)
    probs = frame[[c for c in frame.columns if c.startswith("prob_")]].apply(pd.to_numeric).to_numpy()
    kind = kind_of(src.task())  # how sure a row is: its largest probability (multilabel: its least sure label)
    keep = kind.confidence(probs) >= min_prob
    kept = frame[keep]
    atomic.write_text(scratch, kept.to_csv(index=False))
    classes = [c[len("prob_"):] for c in frame.columns if c.startswith("prob_")]
    counts = kind.decided_counts(probs[keep])
    record = {"from_run": src.name, "from_path": str(Path(source).resolve()), "min_prob": min_prob,
              "adapt_bn": adapt_bn, "tta": list(src.recipe().predict.tta), "decision": src.recipe().predict.decision,
              "test_rows": int(len(frame)), "kept_rows": int(keep.sum()),
              "per_class": {c: int(n) for c, n in zip(classes, counts)}}
    logger.info(f"--pseudo-from {src.name}: {record['kept_rows']} of {record['test_rows']} test rows at "
                f"probability >= {min_prob:g} (" + ", ".join(f"{c} {n}" for c, n in record["per_class"].items()) + ")")
    if not keep.any():
        raise CompError(f"--pseudo-from {src.name}: no test row has a probability >= {min_prob:g}; lower --min-prob")
    return record


def fit_pseudo(recipe: Recipe, request, *, source_name: str, min_prob: float, adapt_bn: bool):
    """Predict with the source run, keep the confident rows, fit ``recipe`` with them (see the module)."""
    from comp.run.folder import RunDir, resolve_runs
    from comp.train.fit import fit as run_fit

    if not 0.0 <= min_prob <= 1.0:
        raise CompError(f"--min-prob is a probability in [0, 1], got {min_prob:g}")
    if request.fold is not None:
        raise CompError("--pseudo-from with --fold: run the round as one command (its fold jobs would each "
                        "predict the test set again)")
    runs = Path(request.runs_root)
    home = RunDir.under(runs, recipe.name)
    if request.resume:
        if not (home.path / PSEUDO_CSV).is_file():
            raise CompError(f"--resume with --pseudo-from: {home.path} holds no {PSEUDO_CSV}; resume "
                            f"without --pseudo-from or start again with --overwrite")
        return run_fit(recipe, request)  # its recipe.toml names its own pseudo_labels.csv
    (source,) = resolve_runs(runs, [source_name])
    if Path(source).resolve() == home.path.resolve():
        raise CompError(f"--pseudo-from {source_name}: the new run has the same name; give it another "
                        f"(--set name=...)")
    if home.exists() and not request.overwrite:
        raise CompError(f"{home.path} already exists: use --overwrite to start again")
    runs.mkdir(parents=True, exist_ok=True)
    scratch = runs / f".{recipe.name}.pseudo-{os.getpid()}.csv"
    try:
        record = predict_confident(source, recipe, scratch, min_prob=min_prob, adapt_bn=adapt_bn,
                                   device=request.device)
        final = (home.path / PSEUDO_CSV).resolve()
        fitted = None
        try:
            fitted = run_fit(pseudo_recipe(recipe, scratch, min_prob), request)
        finally:
            _keep(home, scratch, final, record, min_prob)
        return fitted
    finally:
        if scratch.exists():
            scratch.unlink()


def _keep(home, scratch: Path, final: Path, record: dict, min_prob: float) -> None:
    """Move the kept rows into the run (once it is in place) and point its recipe at them."""
    if not home.exists() or home.recipe().data.extra_csv != str(scratch.resolve()):
        return  # the fit stopped before its run got into place (an --overwrite: the old run stays as it was)
    os.replace(scratch, final)
    home.write_recipe(pseudo_recipe(home.recipe(), final, min_prob))
    atomic.write_text(home.path / PSEUDO_JSON, json.dumps(record, indent=2) + "\n")
    logger.info(f"kept {record['kept_rows']} pseudo-labelled rows in {final} ({PSEUDO_JSON}: where from)")


__all__ = ["PSEUDO_CSV", "PSEUDO_JSON", "fit_pseudo", "pseudo_recipe"]
