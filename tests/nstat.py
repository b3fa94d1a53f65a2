"""The Linux kernel's own counters as evidence in interop tests.

A byte-exact transfer proves little about the segments that carried it: a peer that
sends a bad checksum on one segment in a hundred still finishes, by retransmission. The
kernel counts what it dropped and what it had to resend; ``kernel_clean(ns)`` snapshots
``nstat`` in the namespace around a transfer and fails the test when the kernel saw a
bad checksum, or retransmitted (or received duplicates) beyond a small bound.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: Checksum failures the kernel counts, per protocol: each must stay 0.
CHECKSUM_ERRORS = (
    "IpExtInCsumErrors",
    "TcpInCsumErrors",
    "UdpInCsumErrors",
    "IcmpInCsumErrors",
    "Udp6InCsumErrors",
    "Icmp6InCsumErrors",
)
#: Segments the kernel sent again, or received twice (a duplicate-SACK it sent back).
RESENT = ("TcpRetransSegs", "TcpExtTCPDSACKOldSent", "TcpExtTCPDSACKOfoSent")
SHOWN = ("TcpOutSegs", "TcpInSegs", *RESENT, "TcpExtTCPOFOQueue")
#: On the offload tests: retransmissions lost again, and data that arrived out of order.
OFFLOAD_ORDER = ("TcpExtTCPLostRetransmit", "TcpExtTCPOFOQueue", "TcpExtTCPOFODrop")

#: The stated bound for a lossless link: a handful of resends (a SYN or a tail probe
#: that raced the first ACK), plus one per thousand segments the kernel sent (a burst
#: that overflowed the TAP device's queue while our reader was busy: a real drop, seen
#: in the device's own counters, not a fault of the segments).
LOSSLESS_RESENDS = 8
PER_MILLE = 1000


def snapshot(ns: str) -> dict[str, int]:
    """Every kernel counter of namespace ``ns`` (absolute values; nstat's history untouched)."""
    p = subprocess.run(
        ["ip", "netns", "exec", ns, "nstat", "-asz", "--json"],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return {k: int(v) for k, v in json.loads(p.stdout)["kernel"].items()}


@dataclass
class Counted:
    """What changed in the kernel's counters between two snapshots."""

    ns: str
    before: dict[str, int]
    delta: dict[str, int] = field(default_factory=dict)

    def take(self) -> dict[str, int]:
        after = snapshot(self.ns)
        self.delta = {k: v - self.before.get(k, 0) for k, v in after.items()}
        return self.delta

    def problems(self, max_resent: int | None, offload: bool) -> list[str]:
        """Each broken expectation as ``name=value``; empty when the kernel saw no fault."""
        d = self.delta
        bad = [f"{k}={d[k]}" for k in CHECKSUM_ERRORS if d.get(k, 0)]
        resent = sum(d.get(k, 0) for k in RESENT)
        if max_resent is not None:
            bound = max_resent + d.get("TcpOutSegs", 0) // PER_MILLE
            if resent > bound:
                parts = " + ".join(f"{k}={d.get(k, 0)}" for k in RESENT)
                bad.append(f"{parts} > {bound} resends (of {d.get('TcpOutSegs', 0)} sent)")
        if offload:
            bad += [f"{k}={d[k]}" for k in OFFLOAD_ORDER if d.get(k, 0)]
        return bad


@contextmanager
def kernel_clean(
    ns: str, max_resent: int | None = LOSSLESS_RESENDS, offload: bool = False
) -> Iterator[Counted]:
    """Around a transfer on a lossless link to the kernel in ``ns``: afterwards no
    checksum error, at most ``max_resent`` resends plus one per thousand segments sent
    (``None``: a lossy link, any number), and with ``offload`` nothing lost again nor
    out of order. (Checked only when the body finished without an error.)"""
    c = Counted(ns, snapshot(ns))
    yield c
    c.take()
    bad = c.problems(max_resent, offload)
    assert not bad, f"the kernel in {ns} counted: {', '.join(bad)}"
    print(f"kernel counters in {ns}: " + ", ".join(f"{k}={c.delta.get(k, 0)}" for k in SHOWN))
