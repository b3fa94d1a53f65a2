"""Echo: TCP and UDP echo on port 7 (RFC 862), TCP discard on port 9 (RFC 863).

The same code runs on the host's sockets (``--net socket``) and on miragekit's own stack.
With ``--ip6`` the direct stack is dual-stack: its listeners answer IPv6 too, and a UDP
reply to an IPv6 sender goes out through the stack's ``udpv6()``.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, cast

from miragekit import v1
from miragekit.result import Ok

ECHO_PORT = 7
DISCARD_PORT = 9


async def echo_tcp(flow: v1.TCPFlow[Any]) -> None:
    while True:
        match await flow.read():
            case Ok(data):
                if not isinstance(await flow.write(data), Ok):
                    return
            case _:
                return


async def discard_tcp(flow: v1.TCPFlow[Any]) -> None:
    while isinstance(await flow.read(), Ok):
        pass


async def start(console: v1.Console, stack: v1.StackV4) -> None:
    udp = stack.udpv4()

    async def echo_udp(src: IPv4Address, dst: IPv4Address, src_port: int, buf: memoryview) -> None:
        # A dual stack hands IPv6 datagrams to the same listener (STACKV4 has no udpv6).
        out = cast(Any, stack).udpv6() if src.version == 6 else udp
        await out.write(buf, dest_ip=src, dest_port=src_port, source_port=ECHO_PORT)

    stack.listen_tcpv4(port=ECHO_PORT, callback=echo_tcp)
    stack.listen_tcpv4(port=DISCARD_PORT, callback=discard_tcp)
    stack.listen_udpv4(port=ECHO_PORT, callback=echo_udp)
    ips = ", ".join(str(ip) for ip in stack.ipv4().get_ip())
    await console.log_s(
        f"echo: TCP+UDP echo on {ips} port {ECHO_PORT}, TCP discard on {DISCARD_PORT}"
    )
    await stack.listen()
