"""Timers on the event loop (ARP retries, reassembly timeout) and eager UDP callbacks."""

from __future__ import annotations

import asyncio
import ipaddress
import random

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from tests.ipstack.memlink import OUR_MAC, PEER, PEER_MAC, US, MemLink

from miragekit.net import ArpConfig, IPv4Stack, ReassemblyConfig

A = ipaddress.IPv4Address


def test_arp_retries_then_fails_on_the_loop_clock() -> None:
    async def main() -> None:
        link = MemLink()
        stack = await IPv4Stack.connect(
            link, cidr=f"{US}/24", arp=ArpConfig(retry_interval=0.02, retries=3)
        )
        link.take()
        await stack.udp.write(b"lost", dest_ip=A("10.0.0.9"), dest_port=9)
        await stack.udp.write(b"lost too", dest_ip=A("10.0.0.9"), dest_port=9)
        await asyncio.sleep(0.15)
        reqs = link.take()
        assert len(reqs) == 3 and all(r[ARP].pdst == "10.0.0.9" for r in reqs)
        c = stack.ipv4.arp.counters
        assert c.resolution_failed == 1 and c.dropped_unresolved == 2
        await stack.disconnect()

    asyncio.run(main())


def test_reassembly_times_out_on_the_loop_clock() -> None:
    async def main() -> None:
        stack = await IPv4Stack.connect(
            MemLink(), cidr=f"{US}/24", reassembly=ReassemblyConfig(timeout=0.05)
        )
        frag = Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src=PEER, dst=US, id=3, flags="MF", proto=17)
        stack.receive_frame(memoryview(bytearray(bytes(frag / bytes(64)))))
        r = stack.ipv4.reassembler
        assert len(r) == 1 and r.bytes_held == 64
        await asyncio.sleep(0.12)
        assert len(r) == 0 and r.bytes_held == 0 and r.counters.timed_out == 1
        await stack.disconnect()

    asyncio.run(main())


def test_eager_callbacks_suspend_and_fail_safely() -> None:
    async def main() -> None:
        stack = await IPv4Stack.connect(MemLink(), cidr=f"{US}/24", rng=random.Random(2))
        log: list[str] = []

        async def quick(src: A, dst: A, sport: int, buf: memoryview) -> None:
            log.append(f"quick {bytes(buf).decode()}")

        async def slow(src: A, dst: A, sport: int, buf: memoryview) -> None:
            log.append(f"slow start {bytes(buf).decode()}")
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            log.append(f"slow end {bytes(buf).decode()}")  # the copy outlived the frame

        async def bad_now(src: A, dst: A, sport: int, buf: memoryview) -> None:
            raise RuntimeError("at once")

        async def bad_later(src: A, dst: A, sport: int, buf: memoryview) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("later")

        for port, cb in ((1, quick), (2, slow), (3, bad_now), (4, bad_later)):
            stack.listen_udpv4(port=port, callback=cb)

        def send(port: int, data: bytes) -> None:
            frame = bytearray(
                bytes(
                    Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src=PEER, dst=US) / UDP(dport=port) / data
                )
            )
            stack.receive_frame(memoryview(frame))
            frame[:] = bytes(len(frame))  # the device reuses its buffer

        send(1, b"a")
        assert log == ["quick a"]  # ran synchronously, no task
        send(2, b"b")
        send(1, b"c")
        assert log == ["quick a", "slow start b", "quick c"]
        send(3, b"x")
        send(4, b"y")
        await asyncio.sleep(0.05)
        assert log[-1] == "slow end b"
        assert stack.udp.counters.callback_errors == 2
        assert stack.internal_errors == 0

    asyncio.run(main())
