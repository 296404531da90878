#!/bin/sh
# comp blend on RetinaMNIST (benchmarks/blend.md): recipes/retinamnist.toml and two of its
# one-change variants (_sord, _aff), cut short for a shared 2-core CPU (3 folds, 3 epochs, SWA of
# the last one), on the same folds; blended for QWK (the task's headline; ordinal cuts fitted on the
# blend) and, with --rank, for ovr_auc; against each run and the plain mean, by the nested OOF
# figure and the test score against solution.csv.
# Run from the repository root: sh benchmarks/blend_retinamnist.sh   (W= names a scratch folder;
# the data set stays outside the repository)
set -eu
W=${W:-/tmp/comp_blend_retinamnist}
D=$W/data R=$W/runs S=$W/subs
NPZ=${RETINAMNIST_NPZ:-../shared/data/retinamnist.npz}
COMP=${COMP:-.venv/bin/comp}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # see blend_demo.sh
mkdir -p "$S"
[ -f "$D/train.csv" ] || $COMP import medmnist "$NPZ" "$D"
common="--runs $R --set data.root=$D --set cv.folds=3 --set train.epochs=3 --set train.swa_epochs=1 --no-report"
for r in retinamnist retinamnist_sord retinamnist_aff; do
  [ -f "$R/$r/oof.csv" ] || nice -n 10 $COMP fit recipes/$r.toml $common
done
$COMP blend --runs "$R" --run retinamnist --run retinamnist_sord --run retinamnist_aff --name retina3 --overwrite
$COMP blend --runs "$R" --run retinamnist --run retinamnist_sord --run retinamnist_aff --name retina3_auc \
  --metric ovr_auc --rank --overwrite
for r in retinamnist retinamnist_sord retinamnist_aff; do
  nice -n 10 $COMP predict --runs "$R" --run $r --proba --out "$S/$r.csv" > /dev/null
  echo "== test score of $r"; $COMP score "$S/$r.csv" --solution "$D/solution.csv" --runs "$R" --run $r
done
nice -n 10 $COMP predict --runs "$R" --run retinamnist --run retinamnist_sord --run retinamnist_aff --proba \
  --out "$S/mean3.csv" > /dev/null
echo "== test score of the plain mean of the three"
$COMP score "$S/mean3.csv" --solution "$D/solution.csv" --runs "$R" --run retinamnist
for b in retina3 retina3_auc; do
  nice -n 10 $COMP predict --runs "$R" --blend $b --proba --out "$S/$b.csv"
  echo "== test score of blend $b"; $COMP score "$S/$b.csv" --solution "$D/solution.csv" --runs "$R" --run retinamnist
done
