#!/usr/bin/env bash
# Quick start, command 1: install, then explain demo images with the shipped demo classifiers.
# Results (PNG overlays, masks, summary.json) land in ./medcam-demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
medcam-dicom demo --out medcam-demo-output "$@"
