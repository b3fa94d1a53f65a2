"""CPU time of another process, for benchmarks that report CPU per unit of work, and
bench cases run in a child process with the ``miragekit`` of another checkout.

A server's own utime and stime (``/proc/PID/stat``) move far less than its rates when
other work shares the machine; the benches here divide them by requests, connections
or bytes. Run ``ip netns exec NS python ...``: that execs its command, so the pid of the
``Popen`` is the pid of the process measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    user, system = cpu_times(pid)
    return user + system


def sched_waits(pid: int) -> tuple[float, int]:
    """Seconds process ``pid`` has spent runnable but not running (waiting on a run
    queue, ``/proc/PID/schedstat``), and how often it was switched out while it could
    have run on (``nonvoluntary_ctxt_switches``): where its wall time went besides its
    CPU time and its sleeps."""
    with open(f"/proc/{pid}/schedstat") as f:
        wait_ns = int(f.read().split()[1])
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return wait_ns / 1e9, int(line.split()[1])
    return wait_ns / 1e9, 0


def run_child(script: str, src: str, *args: object) -> dict[str, float]:
    """Run one case as ``python SCRIPT --child SRC ARGS...`` (SRC: the ``src`` directory
    of the checkout whose ``miragekit`` the child imports) and give the JSON object the
    child printed last (with :func:`child_result`). Its CPU time is its own."""
    out = subprocess.run(
        [sys.executable, script, "--child", src, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    r: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return r


def child_result(src: str, result: dict[str, float]) -> None:
    """The child's side of :func:`run_child`: check that the ``miragekit`` measured was
    the one of ``src``, and print ``result`` for the parent."""
    import miragekit

    assert Path(miragekit.__file__).is_relative_to(src), (miragekit.__file__, src)
    print(json.dumps(result))
