#!/usr/bin/env bash
# The main job: set up .venv (if needed) and serve examples/static_website through
# miragekit's own TCP/IP stack (behind a virtual switch), reachable from the host with curl
# or a browser. The port is $PORT (default 8080, or the next free one up to 8099).
# Extra arguments go to `miragekit run` (e.g. --pcap demo.pcap).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import miragekit, h11' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[http]'
fi
port_free() {
  .venv/bin/python - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
if [ -n "${PORT:-}" ]; then
  port_free "$PORT" || { echo "demo.sh: port $PORT on 127.0.0.1 is in use; set PORT to another" >&2; exit 1; }
else
  PORT=8080
  while ! port_free "$PORT"; do
    PORT=$((PORT + 1))
    if [ "$PORT" -gt 8099 ]; then
      echo "demo.sh: ports 8080-8099 on 127.0.0.1 are all in use; set PORT" >&2
      exit 1
    fi
  done
fi
echo "serving http://127.0.0.1:$PORT/ through miragekit's TCP/IP stack; Ctrl-C to stop"
exec .venv/bin/miragekit run examples/static_website --net vnet --forward "$PORT:80" \
  --kv examples/static_website/site "$@"
