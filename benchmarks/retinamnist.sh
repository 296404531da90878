#!/usr/bin/env bash
# RetinaMNIST benchmark: import (once), fit, predict with TTA, score on the held-out test set.
#   benchmarks/retinamnist.sh [SEED] [RECIPE[,RECIPE...]] [extra comp fit args, e.g. --overwrite]
# Run from the repository root. Several comma-separated recipes are fitted one after another
# (each with the same seed) and predicted as one ensemble (`comp predict --run a --run b`).
# Prints the scores and the wall time of fit + predict.
set -euo pipefail
cd "$(dirname "$0")/.."

SEED="${1:-0}"
RECIPES="${2:-recipes/retinamnist.toml}"
shift $(( $# > 2 ? 2 : $# ))
COMP="${COMP:-.venv/bin/comp}"
NPZ="${RETINAMNIST_NPZ:-../shared/data/retinamnist.npz}"
DATA=data/retinamnist

if [ ! -f "$DATA/train.csv" ]; then
    "$COMP" import medmnist "$NPZ" "$DATA"
fi
mkdir -p submissions

start=$(date +%s)
runs=()
names=()
IFS=',' read -ra recipe_list <<< "$RECIPES"
for recipe in "${recipe_list[@]}"; do
    name="$(basename "$recipe" .toml)_s${SEED}"
    "$COMP" fit "$recipe" --set seed="$SEED" --set name="$name" "$@"
    runs+=(--run "$name")
    names+=("$name")
done
fit_end=$(date +%s)
NAME="$(IFS=+; echo "${names[*]}")"
SUB="submissions/${NAME}.csv"
"$COMP" predict "${runs[@]}" --tta --proba --out "$SUB"
end=$(date +%s)

echo "== $NAME: test scores (solution: $DATA/solution.csv)"
"$COMP" score "$SUB" --solution "$DATA/solution.csv"
echo "== $NAME: fit $((fit_end - start)) s, predict $((end - fit_end)) s, fit + predict $((end - start)) s wall on $(getconf _NPROCESSORS_ONLN) cores (OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset})"
echo "== CPU time (user system): this shell, then its children (fit + predict):"
times
