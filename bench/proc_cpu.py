"""CPU time of another process, for benchmarks that report CPU per unit of work.

A server's own utime and stime (``/proc/PID/stat``) move far less than its rates when
other work shares the machine; the benches here divide them by requests, connections
or bytes. Run ``ip netns exec NS python ...``: that execs its command, so the pid of the
``Popen`` is the pid of the process measured.
"""

from __future__ import annotations

import contextlib
import os

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


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and of its live descendants (e.g. the
    packet backend's transmit helper), so that work handed to a child is counted."""
    total = cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return total
    for kid in kids:
        with contextlib.suppress(OSError):  # it ended meanwhile
            total += tree_cpu_seconds(kid)
    return total
