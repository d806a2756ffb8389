#!/usr/bin/env bash
# Quick start, command 1: install, explain demo images with the shipped demo classifiers, then explain
# bundled DICOM examples (CT, MR, ultrasound) into SEG / Secondary Capture / SR.
# Results land in ./medcam-demo-output/ (PNG overlays, summary.json) and ./medcam-demo-output/dicom/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
medcam-dicom demo --out medcam-demo-output "$@"
medcam-dicom explain --examples --out medcam-demo-output/dicom
