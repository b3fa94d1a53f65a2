#!/usr/bin/env bash
# The main job: set up .venv (if needed) and run the demo application.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import miragekit' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[http]'
fi
exec .venv/bin/miragekit run examples/hello "$@"
