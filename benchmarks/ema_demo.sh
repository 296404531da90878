#!/bin/sh
# EMA of the weights against none on the demo competition (benchmarks/ema.md): the same recipe, split
# and seed, once without and once with [train] ema_decay; validation (holdout) and test scores.
# Run from the repository root: sh benchmarks/ema_demo.sh   (W= names a scratch folder, SEED= another seed)
set -eu
W=${W:-/tmp/comp_ema_demo}
D=$W/digits R=$W/runs S=$W/subs
COMP=${COMP:-.venv/bin/comp}
DECAY=${DECAY:-0.99}
# One thread per process: on a CPU shared with other jobs, torch's default threads spin against each other.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$S"
[ -f "$D/train.csv" ] || $COMP demo --dest "$D"
sets="--set data.root=$D --set seed=${SEED:-42} --set train.epochs=${EPOCHS:-6} --set augment.size=16 --set train.workers=0"
common="--runs $R --no-report $sets"
for run in none ema; do
  extra=""; [ "$run" = ema ] && extra="--set train.ema_decay=$DECAY"
  [ -f "$R/$run/oof.csv" ] || nice -n 10 $COMP fit recipes/demo_digits.toml $common $extra --set name=$run
  nice -n 10 $COMP predict --runs "$R" --run $run --out "$S/$run.csv" > /dev/null
  echo "== test score, $run"; $COMP score "$S/$run.csv" --solution "$D/solution.csv" --runs "$R" --run $run
done
echo "== validation (the same held-out train rows in both runs)"
$COMP cv-report --runs "$R" --run none --run ema
