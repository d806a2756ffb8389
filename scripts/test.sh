#!/usr/bin/env bash
# Quick start, command 2: install with the test tools, lint, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
. .venv/bin/activate
ruff check .
python -m pytest -q "$@"
