"""Saying which addresses the direct stack ended up with: static, a DHCP lease, SLAAC.

The runner prints them once the stack is up; addresses that SLAAC forms later (router
advertisements come when they come) are printed as they appear.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from typing import Any

from ._options import Options

#: How often, and for how long after start-up, new IPv6 addresses are looked for.
_WATCH_EVERY = 0.25
_WATCH_FOR = 60.0


def _say(msg: str) -> None:
    print(f"miragekit: {msg}", file=sys.stderr, flush=True)


def ipv4_line(stack: Any, opts: Options) -> str:
    ip = stack.ipv4()
    nets = ip.get_ip_netmasks()
    addrs = [f"{a}/{nets[0].prefixlen}" if nets else str(a) for a in ip.get_ip()]
    gw = ip.get_ip_gateways()
    via = f", gateway {', '.join(map(str, gw))}" if gw else ""
    lease = getattr(getattr(stack, "dhcp", None), "lease", None)
    if lease is not None:
        secs = "infinite" if lease.lease_time is None else f"{lease.lease_time:g} s"
        how = f"DHCP lease from {lease.server_id}, {secs}"
    else:
        how = "static"
    return f"IPv4 {', '.join(addrs)} ({how}{via})"


def _v6_label(addr: ipaddress.IPv6Address, opts: Options) -> str:
    if addr.is_link_local:
        return "link-local"
    static = {ipaddress.IPv6Interface(c).ip for c in opts.ip6 if c != "slaac"}
    return "static" if addr in static else "SLAAC"


def ipv6_addresses(stack: Any) -> list[ipaddress.IPv6Address]:
    if not getattr(stack, "has_ipv6", False):
        return []
    return list(stack.ipv6().get_ip())


def report(stack: Any, opts: Options) -> asyncio.Task[None] | None:
    """Print the stack's addresses; with SLAAC, a task that prints later ones (the
    caller cancels it when the run ends)."""
    if not hasattr(stack, "dhcp"):
        return None  # host sockets: the host's addresses
    _say(f"the stack is up: {ipv4_line(stack, opts)}")
    seen = ipv6_addresses(stack)
    if seen:
        _say("IPv6 " + ", ".join(f"{a} ({_v6_label(a, opts)})" for a in seen))
    if "slaac" not in opts.ip6:
        return None
    return asyncio.ensure_future(_watch(stack, opts, set(seen)))


async def _watch(stack: Any, opts: Options, seen: set[ipaddress.IPv6Address]) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + _WATCH_FOR
    while loop.time() < end:
        await asyncio.sleep(_WATCH_EVERY)
        for a in ipv6_addresses(stack):
            if a not in seen:
                seen.add(a)
                _say(f"IPv6 {a} ({_v6_label(a, opts)})")
