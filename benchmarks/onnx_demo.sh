#!/bin/sh
# CPU predict time, torch against ONNX Runtime, of one bundle (benchmarks/onnx.md): the demo competition
# (and RetinaMNIST when RETINA= names its .npz), a short fit, `comp export --onnx`, then
# `comp predict --bundle --engine torch|onnx` timed in turns, N rounds each, and the CSVs compared.
# Run from the repository root: sh benchmarks/onnx_demo.sh   (W= scratch folder, EPOCHS=, N=, RETINA=, SIZE=, DEMO_SIZE=)
set -eu
W=${W:-/tmp/comp_onnx_demo}
COMP=${COMP:-.venv/bin/comp}
N=${N:-3}
# The same threads for both engines (comp sets ONNX Runtime's from OMP_NUM_THREADS): one, on a shared CPU.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$W"

bench() {  # name recipe data-root extra-sets...
  name=$1 recipe=$2 root=$3; shift 3
  R=$W/runs_$name B=$W/bundle_$name
  [ -f "$R/$name/oof.csv" ] || $COMP fit "$recipe" --runs "$R" --no-report --device cpu --set name=$name \
      --set data.root="$root" --set train.epochs=${EPOCHS:-2} --set train.workers=0 "$@" > /dev/null
  [ -f "$B/bundle.json" ] || $COMP export --runs "$R" --run $name --tta --onnx --out "$B"
  for i in $(seq "$N"); do
    for engine in torch onnx; do
      s=$(date +%s.%N)
      $COMP predict --bundle "$B" --engine $engine --device cpu --out "$W/${name}_$engine.csv" > /dev/null 2>&1
      echo "$name $engine round $i: $(echo "$(date +%s.%N) - $s" | bc) s"
    done
  done
  cmp "$W/${name}_torch.csv" "$W/${name}_onnx.csv" && echo "$name: the same CSV bytes"
}

[ -f "$W/digits/train.csv" ] || $COMP demo --dest "$W/digits" > /dev/null
bench demo recipes/demo_digits.toml "$W/digits" --set augment.size=${DEMO_SIZE:-32}
if [ -n "${RETINA:-}" ]; then
  [ -f "$W/retina/train.csv" ] || $COMP import medmnist "$RETINA" "$W/retina" > /dev/null
  bench retina recipes/retinamnist.toml "$W/retina" --set augment.size=${SIZE:-32} --set train.swa_epochs=0 \
      --set predict.checkpoints=best
fi
