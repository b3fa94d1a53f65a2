"""DHCP server: leases addresses on its link to any DHCP client (RFC 2131).

The pool is the upper part of the stack's own network (``.100`` to ``.199`` of a /24,
its address excluded); this stack is the router and the server. The protocol is
miragekit's sans-I/O :class:`~miragekit.dhcp.DhcpServer`; this app only carries its
messages over the STACKV4's UDP (port 67 in, port 68 out) and says what changed: the
lease table after each change, and each malformed or hostile message it dropped.

    miragekit run examples/dhcp_server --net tap:tap0 --ip 10.78.0.1/24

Then ``udhcpc -i tap0`` or ``dhclient tap0`` on the kernel's side of the device.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from miragekit import v1
from miragekit.dhcp import DhcpServer, DhcpServerConfig
from miragekit.wire.dhcp import CLIENT_PORT, SERVER_PORT

LEASE_TIME = 3600
A4 = ipaddress.IPv4Address


def pool_config(
    ip: A4, net: ipaddress.IPv4Network, lease_time: int, renewal_time: int | None
) -> DhcpServerConfig:
    """Our network, the addresses from .100 (or the middle of a small network) up to
    99 more (the server skips its own); we are the router."""
    hosts = net.num_addresses - 2
    first = int(net.network_address) + (100 if hosts > 200 else max(1, hosts // 2))
    last = min(first + 99, int(net.broadcast_address) - 1)
    return DhcpServerConfig(
        server_ip=ip,
        network=net,
        pool_first=A4(first),
        pool_last=A4(last),
        lease_time=lease_time,
        renewal_time=renewal_time,
        routers=(ip,),
    )


def lease_table(server: DhcpServer, now: float) -> str:
    rows = [f"{x.address} {x.mac} {int(x.expires_at - now)}s" for x in server.leases(now)]
    return "dhcp_server: leases: " + (", ".join(rows) if rows else "none")


async def serve(
    console: v1.Console,
    stack: v1.StackV4,
    clock: v1.Clock,
    lease_time: int = LEASE_TIME,
    renewal_time: int | None = None,
) -> None:
    """Serve leases until the stack stops; ``renewal_time`` is T1 (default: half the lease)."""
    ip4 = stack.ipv4()
    cfg = pool_config(ip4.get_ip()[0], ip4.get_ip_netmasks()[0], lease_time, renewal_time)
    server = DhcpServer(cfg)
    udp = stack.udpv4()
    c = server.counters
    wrong_port = 0
    await console.log_s(
        f"dhcp_server: serving {cfg.pool_first}-{cfg.pool_last} of {cfg.network}"
        f" from {cfg.server_ip}, leases of {lease_time} s"
    )

    async def on_udp(src: Any, dst: Any, sport: int, buf: memoryview) -> None:
        nonlocal wrong_port
        now = clock.time()
        before = [(x.address, x.mac, x.expires_at) for x in server.leases(now)]
        dropped = c.rx_malformed + c.rx_not_request + c.rx_relayed + c.rx_ignored + wrong_port
        if sport == CLIENT_PORT:
            for reply in server.handle_message(now, buf):
                await udp.write(
                    reply.payload,
                    dest_ip=reply.dst,
                    dest_port=CLIENT_PORT,
                    source_port=SERVER_PORT,
                )
        else:
            wrong_port += 1  # clients send from port 68 only
        if c.rx_malformed + c.rx_not_request + c.rx_relayed + c.rx_ignored + wrong_port != dropped:
            await console.log_s(
                f"dhcp_server: dropped a message from {src}:{sport}"
                f" (malformed {c.rx_malformed}, not a request {c.rx_not_request},"
                f" relayed {c.rx_relayed}, ignored {c.rx_ignored}, wrong port {wrong_port})"
            )
        if [(x.address, x.mac, x.expires_at) for x in server.leases(now)] != before:
            await console.log_s(lease_table(server, now))

    stack.listen_udpv4(port=SERVER_PORT, callback=on_udp)
    await stack.listen()


async def start(console: v1.Console, stack: v1.StackV4, clock: v1.Clock) -> None:
    await serve(console, stack, clock)
