#!/usr/bin/env bash
# Run every test: sets up .venv (if needed), then ruff, mypy --strict and pytest.
# Tests that need root (network namespaces, TAP) run when this is run as root, as CI does.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import miragekit, pytest, hypothesis, mypy' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
fi
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-0}" -p no:cacheprovider "$@"
