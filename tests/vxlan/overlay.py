"""Helpers for stacks on VXLAN overlays, shared by the tests and the peer subprocess."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from dataclasses import dataclass, field

from miragekit import tcp
from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.net import IPv4Stack
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig
from miragekit.wire import checksum

ECHO_PORT = 7


@dataclass
class Node:
    """One DirectStackV4 on one VxlanNetif, answering UDP echo on port 7 and ICMP echo;
    ``stack`` is its layers below TCP, ``direct`` the whole stack (with TCP)."""

    netif: VxlanNetif
    direct: DirectStackV4
    stack: IPv4Stack
    ip: ipaddress.IPv4Address
    _replies: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    _udp_waiters: dict[bytes, asyncio.Future[ipaddress.IPv4Address]] = field(default_factory=dict)

    @classmethod
    async def start(
        cls, config: VxlanConfig, cidr: str, *, tcp_config: tcp.Config | None = None
    ) -> Node:
        r = await VxlanNetif.connect(config)
        assert isinstance(r, Ok), r
        s = await DirectStackV4.connect(
            StackConfig("vxlan", None, r.value, Static(cidr)), tcp_config=tcp_config
        )
        assert isinstance(s, Ok), s
        stack = s.value.ip_stack
        node = cls(r.value, s.value, stack, ipaddress.IPv4Interface(cidr).ip)
        stack.listen_udpv4(port=ECHO_PORT, callback=node._echo)
        stack.listen_udpv4(port=ECHO_PORT + 1, callback=node._answer)
        stack.ipv4.set_handler(1, node._icmp)
        return node

    async def _echo(
        self, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
    ) -> None:
        await self.stack.udp.write(buf, dest_ip=src, dest_port=sport, source_port=ECHO_PORT)

    async def _answer(
        self, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
    ) -> None:
        fut = self._udp_waiters.pop(bytes(buf), None)
        if fut is not None and not fut.done():
            fut.set_result(src)

    def _icmp(
        self, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, msg: memoryview, _v: bool
    ) -> None:
        if len(msg) >= 8 and msg[0] == 0:  # echo reply
            seq = struct.unpack_from("!H", msg, 6)[0]
            fut = self._replies.pop(seq, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def udp_echo(self, dst: ipaddress.IPv4Address, timeout: float = 1.0) -> bool:
        """Send a datagram to ``dst``'s echo port (resending until answered)."""
        token = os.urandom(8)
        fut = asyncio.get_running_loop().create_future()
        self._udp_waiters[token] = fut
        try:
            for _ in range(max(1, int(timeout / 0.1))):
                self.stack.udp.send(
                    token, dest_ip=dst, dest_port=ECHO_PORT, source_port=ECHO_PORT + 1
                )
                done, _ = await asyncio.wait([fut], timeout=0.1)
                if done:
                    return bool(fut.result() == dst)
            return False
        finally:
            self._udp_waiters.pop(token, None)

    async def ping(self, dst: ipaddress.IPv4Address, seq: int, timeout: float = 1.0) -> bool:
        """One ICMP echo request to ``dst`` (resent until answered)."""
        body = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x6D6B, seq) + b"miragekit")
        body[2:4] = checksum(body).to_bytes(2, "big")
        fut = asyncio.get_running_loop().create_future()
        self._replies[seq] = fut
        try:
            for _ in range(max(1, int(timeout / 0.1))):
                self.stack.ipv4._send_proto(int(dst), 1, body)
                done, _ = await asyncio.wait([fut], timeout=0.1)
                if done:
                    return True
            return False
        finally:
            self._replies.pop(seq, None)

    async def stop(self) -> None:
        await self.direct.disconnect()
        await self.netif.disconnect()
