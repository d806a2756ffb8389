#!/usr/bin/env bash
# Install medcam-dicom into ./.venv (created if missing) with the pinned CPU torch.
# Usage: bash scripts/install.sh [extra]   e.g. "bash scripts/install.sh test" adds the test tools,
# "benchmark" the quantus cross-check, "redis" the client for a Redis queue.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first, exactly pinned: anything unpinned would pull a multi-GB CUDA build
python -m pip install --quiet -c constraints.txt torch
if [ -n "${1:-}" ]; then
  python -m pip install --quiet -c constraints.txt -e ".[$1]"
else
  python -m pip install --quiet -c constraints.txt -e .
fi
