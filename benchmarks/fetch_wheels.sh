#!/usr/bin/env bash
# The wheels benchmarks/gpu_bench.sh installs on a bare GPU machine: Python 3.12 on x86-64 with torch,
# torchvision, timm, typer, pandas, scipy, PyYAML and OpenCV, but not albumentations and what it needs.
# Versions are constraints.txt's pins. Run where pip can reach PyPI, from anywhere:
#
#   benchmarks/fetch_wheels.sh [DEST]        # default DEST: wheels/ (git-ignored), about 8 MB
#
# then carry DEST (and a copy of retinamnist.npz, e.g. data/retinamnist.npz) to the GPU machine and run
#   WHEELS=wheels RETINAMNIST_NPZ=data/retinamnist.npz benchmarks/gpu_bench.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."

DEST="${1:-wheels}"
PACKAGES="albumentations albucore pydantic pydantic_core annotated-types typing-inspection typing_extensions
          stringzilla simsimd"
pins=()
for name in $PACKAGES; do
    pattern="^${name//[-_]/[-_]}=="
    pin="$(grep -i -E "$pattern" constraints.txt)" || { echo "$name is not pinned in constraints.txt" >&2; exit 2; }
    pins+=("$pin")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${pins[@]}"
ls "$DEST"
