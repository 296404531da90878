#!/bin/sh
# benchmarks/tune.md: `comp tune` on the demo, with and without pruning, against the shipped recipe.
# Small on purpose (a shared 2-core CPU): 3 epochs at 16 px, 10 trials a study.
# Usage: W=/tmp/tune sh benchmarks/tune_demo.sh   (from the repository root)
set -eu
W=${W:-/tmp/tune_demo}
REPO=$(pwd)
mkdir -p "$W" && cd "$W"
export OMP_NUM_THREADS=1
SETS="--set train.epochs=3 --set augment.size=16 --set train.workers=0"
comp demo --dest data/digits --overwrite
cp "$REPO/recipes/demo_digits.toml" demo_digits.toml
cat > space.toml <<'SPACE'
[optim.lr]
low = 0.0003
high = 0.01
log = true
[optim.weight_decay]
low = 0.0001
high = 0.1
log = true
[loss.label_smoothing]
low = 0.0
high = 0.2
[augment.rotate]
low = 0.0
high = 20.0
SPACE
t() { s=$(date +%s); "$@"; echo "$(( $(date +%s) - s ))s: $*" >> times.txt; }
t comp fit demo_digits.toml $SETS --no-report --overwrite                     # the shipped recipe, same budget
t comp tune demo_digits.toml --space space.toml $SETS --trials 10 --study noprune --pruner none --no-report
t comp tune demo_digits.toml --space space.toml $SETS --trials 10 --study median --startup 3 --no-report
comp tune --report --study noprune
comp tune --report --study median
t comp fit runs/median/best.toml --no-report --overwrite                       # best.toml refits to its trial's figure
cat times.txt
