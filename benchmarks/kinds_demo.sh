#!/bin/sh
# The multi-label demos as a new user runs them (benchmarks/kinds.md): comp demo, check, fit, cv-report,
# predict --tta, score, blend over two runs, export + predict --bundle; then the one-column-per-label
# layout (mean AUC). Run from the repository root: sh benchmarks/kinds_demo.sh   (W= a scratch folder)
set -eu
W=${W:-/tmp/comp_kinds_demo}
COMP=${COMP:-.venv/bin/comp}
R=$W/runs S=$W/subs
mkdir -p "$S"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
D=$W/digits_multilabel
[ -f "$D/train.csv" ] || $COMP demo --kind multilabel --dest "$D"
$COMP check recipes/demo_multilabel.toml --set data.root=$D
sets="--runs $R --set data.root=$D --set train.workers=0"
[ -f "$R/demo_multilabel/oof.csv" ] || $COMP fit recipes/demo_multilabel.toml $sets
[ -f "$R/ml_asl/oof.csv" ] || $COMP fit recipes/demo_multilabel.toml $sets --set name=ml_asl --set loss.name=asl \
    --set loss.pos_weight=none --set train.epochs=${ASL_EPOCHS:-12}
$COMP predict --runs "$R" --run demo_multilabel --tta --out "$S/ml.csv"
echo "== test, label thresholds fitted on the OOF"; $COMP score "$S/ml.csv" --solution "$D/solution.csv" --runs "$R" --run demo_multilabel
$COMP predict --runs "$R" --run demo_multilabel --tta --decision argmax --out "$S/ml_half.csv"
echo "== test, 0.5 per label"; $COMP score "$S/ml_half.csv" --solution "$D/solution.csv" --runs "$R" --run demo_multilabel
$COMP blend --runs "$R" --run demo_multilabel --run ml_asl --name ml_blend --overwrite
$COMP predict --runs "$R" --blend ml_blend --tta --out "$S/ml_blend.csv"
echo "== test, blend"; $COMP score "$S/ml_blend.csv" --solution "$D/solution.csv" --runs "$R" --run demo_multilabel
rm -rf "$W/bundle"; $COMP export --runs "$R" --run demo_multilabel --out "$W/bundle"
$COMP predict --bundle "$W/bundle" --data "$D" --tta --out "$S/ml_bundle.csv"
cmp "$S/ml_bundle.csv" "$S/ml.csv" && echo "bundle submission identical to the run's"
C=$W/digits_multilabel_cols
[ -f "$C/train.csv" ] || $COMP demo --kind multilabel_cols --dest "$C"
[ -f "$R/demo_multilabel_cols/oof.csv" ] || $COMP fit recipes/demo_multilabel_cols.toml --runs "$R" --set data.root=$C --set train.workers=0 \
    --set train.epochs=${COLS_EPOCHS:-12}
$COMP predict --runs "$R" --run demo_multilabel_cols --tta --out "$S/ml_cols.csv"
echo "== test, one probability column per label"; $COMP score "$S/ml_cols.csv" --solution "$C/solution.csv" --runs "$R" --run demo_multilabel_cols
