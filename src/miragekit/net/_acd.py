"""IPv4 address conflict detection before a fixed address is used (RFC 5227 2.1).

Why: two stacks given the same static address would both answer for it and reset each
other's connections at random; IPv6 finds such a duplicate with DAD, and this is the IPv4
counterpart. Probes (ARP requests from 0.0.0.0) ask for the address while nothing answers
for it yet; any ARP packet from another host that claims the address, or probes for it
too, is a conflict.
"""

from __future__ import annotations

import asyncio
import ipaddress

from ..macaddr import MacAddr
from ._arp import Arp

PROBES = 3
"""Probes sent, spread over the probing time (RFC 5227's PROBE_NUM)."""


class AddressConflict(OSError):
    """Another host on the link uses (or is probing for) the address we wanted."""


async def probe_address(arp: Arp, ip: ipaddress.IPv4Address, duration: float) -> None:
    """Probe for ``ip`` for ``duration`` seconds; :class:`AddressConflict` names the MAC
    that claims it. The address must not be ours yet (we would answer for it)."""
    want = int(ip)
    loop = asyncio.get_running_loop()
    found: asyncio.Future[bytes] = loop.create_future()
    previous = arp.observer

    def watch(op: int, sha: bytes, spa: int, tpa: int) -> None:
        if previous is not None:
            previous(op, sha, spa, tpa)
        claims = spa == want or (op == 1 and spa == 0 and tpa == want)
        if claims and not found.done():
            found.set_result(sha)

    arp.observer = watch
    try:
        for _ in range(PROBES):
            arp.probe(want)
            try:
                sha = await asyncio.wait_for(asyncio.shield(found), duration / PROBES)
            except TimeoutError:
                continue
            arp.counters.conflicts += 1
            raise AddressConflict(f"IPv4: {ip} is already in use on the link by {MacAddr(sha)}")
    finally:
        arp.observer = previous
        found.cancel()
