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
