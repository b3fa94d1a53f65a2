"""A segment member driven over stdin, for multi-process tests:
``python -m tests.vxlan.member SPEC CIDR`` runs a DirectStackV4 on a VxlanNetif built
from SPEC, answering UDP echo (port 7) and ICMP echo, prints ``ready``, then obeys one
command per line, answering one line each:

* ``udp IP`` -> ``ok IP`` or ``timeout IP`` (a UDP echo round trip);
* ``ping IP`` -> ``ok IP`` or ``timeout IP`` (an ICMP echo round trip);
* ``mac`` -> our MAC; ``counters`` -> the netif's counters as JSON;
* ``tcp-listen PORT`` -> ``ok``: a TCP echo server on PORT;
* ``tcp-connect IP PORT`` -> ``ok N`` (flow number N) or ``error <the error>``;
* ``tcp-send N TEXT`` -> ``ok TEXT`` once the echo of TEXT came back on flow N, or what
  ended it: ``eof``, ``error <the error>`` or ``timeout`` (after ``WAIT`` seconds);
* ``tcp-status`` -> JSON: the TCP endpoint's ``connections``, the driver's ``flows``,
  the flows the echo server ``served`` and how those ``ended``, and the TCP ``stats``;
* ``quit`` (or end of input) -> exits 0.

TCP runs with short timers (:data:`TCP_CONFIG`) so that a vanished peer is noticed in
bounded time: a few quick retransmissions, keepalive after ten idle seconds (longer than
a kill and restart, so an idle old connection still exists when its peer is back, and
its probe meets RST), short TIME_WAIT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import sys
from collections import Counter
from typing import Any

from tests.vxlan.overlay import Node

from miragekit import tcp
from miragekit.link import parse_vxlan_spec
from miragekit.result import EOF, Error, Ok

WAIT = 10.0
TCP_CONFIG = tcp.Config(
    mss=1410,
    initial_rto=0.3,
    min_rto=0.1,
    max_rto=0.5,
    max_retransmits=4,
    syn_retries=3,
    keepalive_idle=10.0,
    keepalive_interval=0.5,
    keepalive_probes=2,
    msl=0.5,
    fin_wait_2_timeout=2.0,
)


def outcome(r: Any) -> str:
    """A result as one line: ``ok <data>``, ``eof`` or ``error <the error>``."""
    if r is EOF:
        return "eof"
    if isinstance(r, Error):
        return f"error {r.error!r}"
    return f"ok {bytes(r.value).decode(errors='replace')}"


class TcpCommands:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.flows: dict[int, Any] = {}
        self.served = 0
        self.ended: Counter[str] = Counter()

    async def _echo(self, flow: Any) -> None:
        self.served += 1
        while isinstance(r := await flow.read(), Ok):
            w = await flow.write(r.value)
            if not isinstance(w, Ok):
                r = w
                break
        self.ended[outcome(r)] += 1
        await flow.close()

    async def run(self, cmd: str, arg: str) -> str:
        args = arg.split(" ")
        if cmd == "tcp-listen":
            self.node.direct.listen_tcpv4(port=int(args[0]), callback=self._echo)
            return "ok"
        if cmd == "tcp-connect":
            dest = (ipaddress.IPv4Address(args[0]), int(args[1]))
            r = await self.node.direct.tcpv4().create_connection(dest)
            if not isinstance(r, Ok):
                return outcome(r)
            n = len(self.flows) + 1
            self.flows[n] = r.value
            return f"ok {n}"
        if cmd == "tcp-send":
            flow, text = self.flows[int(args[0])], " ".join(args[1:]).encode()
            w = await flow.write(text)
            if not isinstance(w, Ok):
                return outcome(w)
            got = b""
            try:
                while len(got) < len(text):
                    rd = await asyncio.wait_for(flow.read(), WAIT)
                    if not isinstance(rd, Ok):
                        return outcome(rd)
                    got += bytes(rd.value)
            except TimeoutError:
                return "timeout"
            return outcome(Ok(got))
        if cmd == "tcp-status":
            t = self.node.direct.tcpv4()
            return json.dumps(
                {
                    "connections": t.connections(),
                    "flows": t.flow_count(),
                    "served": self.served,
                    "ended": dict(self.ended),
                    "stats": t.stats,
                }
            )
        return f"error unknown command {cmd!r}"


async def main(spec: str, cidr: str) -> int:
    node = await Node.start(parse_vxlan_spec(spec), cidr, tcp_config=TCP_CONFIG)
    tcp_cmds = TcpCommands(node)
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
            elif cmd.startswith("tcp-"):
                print(await tcp_cmds.run(cmd, arg), flush=True)
            elif cmd == "quit":
                break
            else:
                print(f"error unknown command {cmd!r}", flush=True)
    finally:
        await node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
