#!/usr/bin/env bash
# Quick start, command 2: install (system tools, then the package with its test tools), lint, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash scripts/install.sh test
. .venv/bin/activate
ruff check .
python -m pytest -q "$@"
