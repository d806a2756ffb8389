#!/usr/bin/env bash
# The package as a user installs it from a wheel: build the wheel, install it into a fresh virtual environment
# (base dependencies only, the pinned CPU torch), then, outside the source tree, run the command line and
# explain the example DICOM files (which needs the demo checkpoints and model descriptions inside the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$root"
"$py" -m pip install --quiet -c "$root/constraints.txt" torch
"$py" -m pip install --quiet -c "$root/constraints.txt" "$work"/dist/medcam_dicom-*.whl
cd "$work"
"$work/venv/bin/medcam-dicom" --version
"$work/venv/bin/medcam-dicom" --help > /dev/null
"$work/venv/bin/medcam-dicom" explain --examples --out "$work/explained"
echo "check_wheel: $(basename "$work"/dist/medcam_dicom-*.whl) installs and runs"
