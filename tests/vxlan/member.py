"""A segment member driven over stdin, for multi-process tests (and, later, TCP ones):
``python -m tests.vxlan.member SPEC CIDR`` runs an IPv4Stack on a VxlanNetif built from
SPEC, answering UDP echo (port 7) and ICMP echo, prints ``ready``, then obeys one
command per line, answering one line each:

* ``udp IP`` -> ``ok IP`` or ``timeout IP`` (a UDP echo round trip);
* ``ping IP`` -> ``ok IP`` or ``timeout IP`` (an ICMP echo round trip);
* ``mac`` -> our MAC; ``counters`` -> the netif's counters as JSON;
* ``quit`` (or end of input) -> exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import sys

from tests.vxlan.overlay import Node

from miragekit.net import parse_vxlan_spec


async def main(spec: str, cidr: str) -> int:
    node = await Node.start(parse_vxlan_spec(spec), cidr)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    seq = 0
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd, _, arg = line.strip().partition(" ")
            if cmd in ("udp", "ping"):
                ip = ipaddress.IPv4Address(arg)
                seq += 1
                ok = await (node.udp_echo(ip) if cmd == "udp" else node.ping(ip, seq))
                print(f"{'ok' if ok else 'timeout'} {ip}", flush=True)
            elif cmd == "mac":
                print(node.netif.mac(), flush=True)
            elif cmd == "counters":
                print(json.dumps(dataclasses.asdict(node.netif.counters)), flush=True)
            elif cmd == "quit":
                break
            else:
                print(f"error unknown command {cmd!r}", flush=True)
    finally:
        await node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
