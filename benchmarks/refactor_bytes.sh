#!/bin/bash
# A refactor keeps behaviour: the demo's submission, OOF, folds and fitted cut points, byte for byte,
# between two code trees (e.g. a `git worktree add --detach /tmp/old <commit>` and this checkout).
# Usage: bash benchmarks/refactor_bytes.sh OLD_TREE NEW_TREE [SCRATCH]
# Each tree fits the demo twice (multiclass argmax; ordinal with ordinal_thresholds), 2 epochs,
# kfold 2, loader workers 0, then predicts with --tta; the files are compared with cmp.
set -euo pipefail
OLD=$1 NEW=$2 W=${3:-/tmp/comp_refactor_bytes}
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}  # absolute: each fit runs in its own folder
one() {  # code-tree out-folder
  local code=$1 out=$2 sets=(--set train.epochs=2 --set cv.scheme=kfold --set cv.folds=2 --set train.workers=0)
  rm -rf "$out"; mkdir -p "$out"
  (cd "$out" && export PYTHONPATH=$code &&
   $PY -m comp demo --dest "$out/digits" >/dev/null &&
   $PY -m comp fit "$code/recipes/demo_digits.toml" --runs "$out/runs" --set data.root="$out/digits" "${sets[@]}" \
       --no-report >/dev/null 2>&1 &&
   $PY -m comp predict --runs "$out/runs" --tta --out "$out/sub.csv" >/dev/null 2>&1 &&
   $PY -m comp fit "$code/recipes/demo_digits.toml" --runs "$out/runs" --set name=ord --set data.root="$out/digits" \
       --set data.task=ordinal --set predict.decision=ordinal_thresholds "${sets[@]}" --no-report >/dev/null 2>&1 &&
   $PY -m comp predict --runs "$out/runs" --run ord --tta --out "$out/sub_ord.csv" >/dev/null 2>&1)
}
one "$(cd "$OLD" && pwd)" "$W/old"
one "$(cd "$NEW" && pwd)" "$W/new"
for f in sub.csv sub_ord.csv runs/demo_digits/oof.csv runs/ord/oof.csv runs/ord/thresholds.json runs/demo_digits/folds.csv; do
  cmp "$W/old/$f" "$W/new/$f" && echo "same bytes: $f"
done
