#!/usr/bin/env bash
# Issue 19's table, redone on the current code: run on a GPU machine from the repository root.
#
#   benchmarks/gpu_bench.sh [OUT]            # default OUT: runs/gpu_bench
#
# 1. Brings what a bare GPU machine lacks: albumentations and its dependencies from $WHEELS (default
#    wheels/, made by benchmarks/fetch_wheels.sh where pip reaches PyPI) when they do not import,
#    installed into $SITE (default /tmp/comp_site), and comp from this checkout (PYTHONPATH).
# 2. Writes the 512-px fundus-like JPEG folder with benchmarks/make_fundus_jpegs.py from the
#    RetinaMNIST .npz ($RETINAMNIST_NPZ, else ../shared/data/ or shared/data/retinamnist.npz).
# 3. Runs `comp bench --augment-on both` (the CPU and the device augmentation path in one run) for
#    each row of the issue's table, writing OUT/<row>.json and OUT/<row>.txt:
#      r18_512          ResNet18 @512, batch 128, flips + rotation 180 (recipes/fundus512_bench.toml)
#      r18_512_compile  the same with [train] compile = true
#      r50_224          ResNet50 @224 from the 512-px JPEGs, batch 256
#      r50_512          ResNet50 @512, batch 64
#      r50_scratch      recipes/r50_scratch.toml as shipped (ben_graham, 384 px, batch 32)
#      r50_scratch_cache  the same after `comp cache` (preprocessed, resized .npy copies)
# 4. Writes OUT/table.md (benchmarks/bench_table.py) and prints it.
#
# Settings (environment): PYTHON (default .venv/bin/python, else python3), DEVICE (cuda), ROWS (a
# space-separated subset of the rows above), TRAIN/TEST/SIZE (the folder: 4096/1024/512), DATA
# (data/fundus512), STEPS/WARMUP/ROUNDS/EPOCHS/INFER (bench: 60/10/3/1/2000), EXTRA (--set overrides
# for every `comp bench` and `comp cache`, e.g. "--set train.workers=8"). A CPU dry run with tiny sizes
# (what tests/data/test_feed.py runs):
#   DEVICE=cpu TRAIN=24 TEST=8 SIZE=48 STEPS=1 WARMUP=0 ROUNDS=1 EPOCHS=0 INFER=4 \
#     EXTRA="--set augment.size=32 --set train.batch_size=4 --set train.workers=0" benchmarks/gpu_bench.sh /tmp/dry
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-runs/gpu_bench}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
DEVICE="${DEVICE:-cuda}"
DATA="${DATA:-data/fundus512}"
TRAIN="${TRAIN:-4096}"; TEST="${TEST:-1024}"; SIZE="${SIZE:-512}"
STEPS="${STEPS:-60}"; WARMUP="${WARMUP:-10}"; ROUNDS="${ROUNDS:-3}"; EPOCHS="${EPOCHS:-1}"; INFER="${INFER:-2000}"
ROWS="${ROWS:-r18_512 r18_512_compile r50_224 r50_512 r50_scratch r50_scratch_cache}"
WHEELS="${WHEELS:-wheels}"
read -ra extra <<< "${EXTRA:-}"

# 1. Packages: the wheels benchmarks/fetch_wheels.sh fetched, into a folder of their own (the machine's
#    site-packages may not be writable), and comp itself from this checkout.
if ! "$PYTHON" -c "import albumentations, timm, typer, pandas, cv2, torchvision" 2>/dev/null; then
    if [ ! -d "$WHEELS" ]; then
        echo "albumentations/timm/typer/... do not import and there is no $WHEELS/ to install them from" \
             "(benchmarks/fetch_wheels.sh)" >&2
        exit 2
    fi
    SITE="${SITE:-/tmp/comp_site}"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c "import comp.cli" 2>/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. Data.
if [ ! -f "$DATA/train.csv" ]; then
    NPZ="${RETINAMNIST_NPZ:-}"
    for candidate in ../shared/data/retinamnist.npz shared/data/retinamnist.npz data/retinamnist.npz; do
        if [ -z "$NPZ" ] && [ -f "$candidate" ]; then NPZ="$candidate"; fi
    done
    if [ -z "$NPZ" ]; then
        echo "no RetinaMNIST .npz: set RETINAMNIST_NPZ" >&2
        exit 2
    fi
    "$PYTHON" benchmarks/make_fundus_jpegs.py "$NPZ" "$DATA" --train "$TRAIN" --test "$TEST" --size "$SIZE"
fi

# 3. One `comp bench` per row, both augmentation paths each.
mkdir -p "$OUT"
"$PYTHON" - <<'EOF' > "$OUT/machine.txt" || true
import platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"{gpu}; torch {torch.__version__}; python {platform.python_version()}")
EOF
fundus=(recipes/fundus512_bench.toml --set "data.root=$DATA")
scratch=(recipes/r50_scratch.toml --set "data.root=$DATA")
done_rows=()
for row in $ROWS; do
    case "$row" in
        r18_512) args=("${fundus[@]}") ;;
        r18_512_compile) args=("${fundus[@]}" --set train.compile=true) ;;
        r50_224) args=("${fundus[@]}" --set model.name=resnet50 --set augment.size=224 --set train.batch_size=256) ;;
        r50_512) args=("${fundus[@]}" --set model.name=resnet50 --set train.batch_size=64) ;;
        r50_scratch)
            args=("${scratch[@]}")
            rm -rf "$DATA/.cache" ;;  # as shipped: the sources decoded and preprocessed every epoch
        r50_scratch_cache)
            args=("${scratch[@]}")
            "$PYTHON" -m comp cache "${args[@]}" "${extra[@]}" ;;
        *) echo "unknown row $row" >&2; exit 2 ;;
    esac
    echo "== $row: comp bench ${args[*]} ${extra[*]}"
    "$PYTHON" -m comp bench "${args[@]}" --device "$DEVICE" --augment-on both --steps "$STEPS" \
        --warmup "$WARMUP" --rounds "$ROUNDS" --epochs "$EPOCHS" --infer-images "$INFER" \
        --out "$OUT/$row.json" "${extra[@]}" | tee "$OUT/$row.txt"
    done_rows+=("$OUT/$row.json")
done

# 4. The table.
{ cat "$OUT/machine.txt"; "$PYTHON" benchmarks/bench_table.py "${done_rows[@]}"; } > "$OUT/table.md"
cat "$OUT/table.md"
