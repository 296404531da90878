#!/bin/sh
# One pseudo-labelling round on the demo competition (benchmarks/pseudo_label.md): fit, predict the
# test set with --proba, keep the confident rows as [data] extra_csv, fit again from scratch with
# them, and score both submissions against solution.csv (and compare their OOF on the same folds).
# Run from the repository root: sh benchmarks/pseudo_label_demo.sh   (W= names a scratch folder)
set -eu
W=${W:-/tmp/comp_pl_demo}
D=$W/digits R=$W/runs S=$W/subs
COMP=${COMP:-.venv/bin/comp}
MIN_PROB=${MIN_PROB:-0.9}
# One thread per process: on a CPU shared with other jobs, torch's default threads spin against each other.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$S"
[ -f "$D/train.csv" ] || $COMP demo --dest "$D"
# The digits are 8x8 pixels upscaled: 16 px loses nothing and costs a quarter of 32 px (a shared CPU).
# The recipe's holdout (the same 20 % validated in both runs, seed 42): no model behind the pseudo-labels
# saw a validated row, so the two runs' validation figures compare honestly. SEED= picks another split and init.
sets="--set data.root=$D --set seed=${SEED:-42} --set train.epochs=6 --set augment.size=16 --set train.workers=0"
common="--runs $R --no-report $sets"
[ -f "$R/pl_base/oof.csv" ] || nice -n 10 $COMP fit recipes/demo_digits.toml $common --set name=pl_base
nice -n 10 $COMP predict --runs "$R" --run pl_base --out "$S/pl_base.csv" > /dev/null
echo "== test score before (pl_base)"; $COMP score "$S/pl_base.csv" --solution "$D/solution.csv" --runs "$R" --run pl_base
# The pseudo-labels: the test set's class probabilities, exactly as predict --proba writes them.
nice -n 10 $COMP predict --runs "$R" --run pl_base --proba --out "$D/pseudo.csv" > /dev/null
extra="--set data.extra_csv=pseudo.csv --set data.extra_image_dir=test --set data.extra_min_prob=$MIN_PROB"
$COMP check recipes/demo_digits.toml $sets $extra 2>&1 | grep -E "^extra rows|warning" || true
[ -f "$R/pl_round1/oof.csv" ] || nice -n 10 $COMP fit recipes/demo_digits.toml $common $extra --set name=pl_round1
nice -n 10 $COMP predict --runs "$R" --run pl_round1 --out "$S/pl_round1.csv" > /dev/null
echo "== test score after (pl_round1: + test rows with a class probability >= $MIN_PROB, soft labels)"
$COMP score "$S/pl_round1.csv" --solution "$D/solution.csv" --runs "$R" --run pl_round1
echo "== validation (the same 288 held-out train rows in both runs)"
$COMP cv-report --runs "$R" --run pl_base --run pl_round1
