#!/bin/sh
# comp blend on the demo competition (benchmarks/blend.md): three small variants of
# recipes/demo_digits.toml on the same 3 folds, blended, against the best single run and the plain
# mean, by the nested OOF figure and by the test score against solution.csv.
# Run from the repository root: sh benchmarks/blend_demo.sh   (W= names a scratch folder)
set -eu
W=${W:-/tmp/comp_blend_demo}
D=$W/digits R=$W/runs S=$W/subs
COMP=${COMP:-.venv/bin/comp}
# One thread per process: on a CPU shared with other jobs, torch's default threads spin against
# each other (measured here: 6 img/s with the default, 29 img/s with one thread).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$S"
[ -f "$D/train.csv" ] || $COMP demo --dest "$D"
# The digits are 8x8 pixels upscaled: 16 px loses nothing and costs a quarter of 32 px (a shared CPU).
common="--runs $R --set data.root=$D --set cv.scheme=kfold --set cv.folds=3 --set train.epochs=4 --set augment.size=16 --set train.workers=0 --no-report"
# Every variant keeps the recipe's seed: the kfold split follows it, and comp blend refuses runs
# whose folds differ. (model.source = "hand" is no variant: comp's ResNet18 trains bit for bit
# as timm's from the same seed, so it was left out.)
[ -f "$R/d_timm/oof.csv" ]  || nice -n 10 $COMP fit recipes/demo_digits.toml $common --set name=d_timm
[ -f "$R/d_lr4/oof.csv" ]   || nice -n 10 $COMP fit recipes/demo_digits.toml $common --set name=d_lr4 --set optim.lr=0.004
[ -f "$R/d_norot/oof.csv" ] || nice -n 10 $COMP fit recipes/demo_digits.toml $common --set name=d_norot --set augment.rotate=0 --set loss.label_smoothing=0
$COMP blend --runs "$R" --run d_timm --run d_lr4 --run d_norot --name demo3 --overwrite
for r in d_timm d_lr4 d_norot; do
  nice -n 10 $COMP predict --runs "$R" --run $r --out "$S/$r.csv" > /dev/null
  echo "== test score of $r"; $COMP score "$S/$r.csv" --solution "$D/solution.csv" --runs "$R" --run $r
done
nice -n 10 $COMP predict --runs "$R" --run d_timm --run d_lr4 --run d_norot --out "$S/mean3.csv" > /dev/null
echo "== test score of the plain mean of the three"; $COMP score "$S/mean3.csv" --solution "$D/solution.csv" --runs "$R" --run d_timm
nice -n 10 $COMP predict --runs "$R" --blend demo3 --out "$S/demo3.csv"
echo "== test score of blend demo3"; $COMP score "$S/demo3.csv" --solution "$D/solution.csv" --runs "$R" --run d_timm
