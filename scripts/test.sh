#!/usr/bin/env bash
# Quick start, command 2: install (system tools, then the package with its test tools), lint, run the tests.
# The tests run in a random order (pytest-randomly): the seed is printed; RANDOMLY_SEED=N repeats an order.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash scripts/install.sh test
. .venv/bin/activate
ruff check .
seed="${RANDOMLY_SEED:-$(date +%s)}"
echo "test order seed $seed (the same order again: RANDOMLY_SEED=$seed bash scripts/test.sh)"
python -m pytest -q -p randomly --randomly-seed="$seed" --durations=15 "$@"
