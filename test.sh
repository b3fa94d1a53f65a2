#!/usr/bin/env bash
# Run every test: on a fresh Debian machine as root, first install the Debian tools the
# tests drive (tests/debian-packages.txt), then set up .venv, then ruff, mypy --strict
# and pytest. As root every test runs. As another user the tests that need root
# (network namespaces, TAP devices: marker "kernel") are left out, and so are those that
# drive a tool that is missing (marker "tools"); the run says so at the start and the end.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t need < <(grep -v '^\s*#' tests/debian-packages.txt | awk 'NF {print $1}')
missing=()
if command -v dpkg >/dev/null; then
  for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
fi
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  missing=()
fi
# Rebuilt when a package is missing, or when the install predates the pytest plugin's
# entry point (an editable install registers it only when pip runs).
check='import miragekit, dns, pytest, hypothesis, mypy, aiohttp, httpx, websockets, trustme
from importlib.metadata import entry_points
assert any(e.name == "miragekit-sim" for e in entry_points(group="pytest11"))'
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "$check" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
fi
select=()
left_out=""
if [ "$(id -u)" != 0 ]; then
  left_out="tests marked 'kernel' (they need root: network namespaces, TAP devices, ports below 1024)"
  select=(-m "not kernel")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  why="tests marked 'tools' (missing Debian packages: ${missing[*]}; run as root to install them)"
  left_out="${left_out:+$left_out; }$why"
  if [ "$(id -u)" != 0 ]; then select=(-m "not kernel and not tools"); else select=(-m "not tools"); fi
fi
[ -n "$left_out" ] && echo "== left out: $left_out"
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"
rc=0
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-0}" -p no:cacheprovider "${select[@]}" "$@" || rc=$?
[ -n "$left_out" ] && echo "== left out: $left_out"
exit "$rc"
