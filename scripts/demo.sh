#!/usr/bin/env bash
# Quick start, command 1: install, explain demo images with the shipped demo classifiers, then explain
# bundled DICOM examples (CT, MR, ultrasound) into SEG / Secondary Capture / SR, then run the MONAI
# bundle's inference on its sample data.
# Results land in ./medcam-demo-output/ (PNG overlays, summary.json) and ./medcam-demo-output/dicom/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
medcam-dicom demo --out medcam-demo-output "$@"
medcam-dicom explain --examples --out medcam-demo-output/dicom
# the MONAI bundle: amortised Med-CAM on its sample NIfTI slices and DICOM file (one forward pass each)
python -m monai.bundle run --config_file monai_bundle/configs/inference.json --output_dir medcam-demo-output/bundle
