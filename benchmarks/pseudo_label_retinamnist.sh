#!/bin/sh
# One pseudo-labelling round on RetinaMNIST (benchmarks/pseudo_label.md): recipes/retinamnist.toml
# (15 epochs, SWA of the last 5) validated on the official 120 valid rows (split column), predict the 400 test images with --proba,
# fit again from scratch with every test row as a soft-labelled extra row, score both against the
# test labels. Run from the repository root: sh benchmarks/pseudo_label_retinamnist.sh
# (W= names a scratch folder; the data is imported there, never into the repository).
set -eu
W=${W:-/tmp/comp_pl_retinamnist}
D=$W/data R=$W/runs S=$W/subs
COMP=${COMP:-.venv/bin/comp}
NPZ=${RETINAMNIST_NPZ:-../shared/data/retinamnist.npz}
MIN_PROB=${MIN_PROB:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$S"
[ -f "$D/train.csv" ] || $COMP import medmnist "$NPZ" "$D"
# Validated on the given valid rows in both runs: no model behind the pseudo-labels saw them.
# 15 epochs with SWA of the last 5 (the recipe: 30 and 10) to fit a shared 2-core CPU.
sets="--set data.root=$D --set cv.scheme=predefined --set cv.split_col=split --set train.epochs=15 --set train.swa_epochs=5"
common="--runs $R --no-report $sets"
[ -f "$R/plr_base/oof.csv" ] || nice -n 10 $COMP fit recipes/retinamnist.toml $common --set name=plr_base
# The pseudo-labels are the first run's --proba submission (its prob_ columns also give comp score the AUC).
nice -n 10 $COMP predict --runs "$R" --run plr_base --proba --out "$D/pseudo.csv" > /dev/null
echo "== test score before (plr_base)"; $COMP score "$D/pseudo.csv" --solution "$D/solution.csv" --runs "$R" --run plr_base
extra="--set data.extra_csv=pseudo.csv --set data.extra_image_dir=test --set data.extra_min_prob=$MIN_PROB"
$COMP check recipes/retinamnist.toml $sets $extra 2>&1 | grep -E "^extra rows|warning" || true
[ -f "$R/plr_round1/oof.csv" ] || nice -n 10 $COMP fit recipes/retinamnist.toml $common $extra --set name=plr_round1
nice -n 10 $COMP predict --runs "$R" --run plr_round1 --proba --out "$S/plr_round1.csv" > /dev/null
echo "== test score after (plr_round1: + the 400 test rows with a class probability >= $MIN_PROB, soft labels)"
$COMP score "$S/plr_round1.csv" --solution "$D/solution.csv" --runs "$R" --run plr_round1
echo "== validation (the same 120 valid rows in both runs)"
$COMP cv-report --runs "$R" --run plr_base --run plr_round1
