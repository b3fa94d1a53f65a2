"""CPU time of another process, for benchmarks that report CPU per unit of work.

A server's own utime and stime (``/proc/PID/stat``) move far less than its rates when
other work shares the machine; the benches here divide them by requests, connections
or bytes. Run ``ip netns exec NS python ...``: that execs its command, so the pid of the
``Popen`` is the pid of the process measured.
"""

from __future__ import annotations

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
