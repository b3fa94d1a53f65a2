"""The TCP driver and endpoint find a connection's flow and address by the connection
object, not by ``id()``: ``id()`` raises an audit event, a Python call per lookup in a
process with an audit hook (the simulator's escape watch installs one for good), several
times per segment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
sys.path[:0] = [{bench!r}, {src!r}]
calls = {{}}

def hook(event, args):
    if event == "builtins.id":
        f = sys._getframe(1)
        name = f.f_code.co_filename
        if name.endswith(("net/_tcp.py", "tcp/_endpoint.py")):
            key = f.f_code.co_name
            calls[key] = calls.get(key, 0) + 1

sys.addaudithook(hook)
import sim_cluster
echoes = sim_cluster.with_network(3, 6, 4.0, 0.0)
print(echoes, sorted(calls.items()))
"""


def test_no_id_call_on_the_drivers_path() -> None:
    code = SCRIPT.format(bench=str(ROOT / "bench"), src=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split(" ", 1)
    assert int(out[0]) >= 6 * 3  # the echoes ran: each connection, every second
    assert out[1].strip() == "[]"
