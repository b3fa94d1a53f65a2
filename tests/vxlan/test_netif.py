"""VxlanNetif over loopback UDP: forwarding, learning, expiry, flooding, drops, stats."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.macaddr import MacAddr
from miragekit.result import Error, Ok, Unknown
from miragekit.wire import vxlan

T = TypeVar("T")
VNI = 4242
BCAST = b"\xff" * 6


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Tap:
    """Collects what one netif's fast-path receiver is handed."""

    def __init__(self, dev: VxlanNetif) -> None:
        self.dev = dev
        self.frames: list[bytes] = []
        dev.set_receiver(lambda f: self.frames.append(bytes(f)))

    async def wait(self, n: int, timeout: float = 2.0) -> list[bytes]:
        for _ in range(int(timeout / 0.005)):
            if len(self.frames) >= n:
                break
            await asyncio.sleep(0.005)
        return self.frames


async def open_netif(*remotes: tuple[str, int], **kw: Any) -> VxlanNetif:
    r = await VxlanNetif.connect(VxlanConfig(VNI, local=("127.0.0.1", 0), remotes=remotes, **kw))
    assert isinstance(r, Ok), r
    return r.value


@asynccontextmanager
async def netifs(n: int, **kw: Any) -> AsyncIterator[list[VxlanNetif]]:
    devs = [await open_netif(**kw) for _ in range(n)]
    try:
        yield devs
    finally:
        for d in devs:
            await d.disconnect()


def frame(dst: bytes | MacAddr, src: MacAddr, payload: bytes = b"hello") -> bytes:
    return bytes(dst) + src.packed + b"\x88\xb5" + payload


async def settle() -> None:
    await asyncio.sleep(0.05)


def test_two_netifs_exchange_and_learn() -> None:
    async def main() -> None:
        async with netifs(2) as (a, b):
            a.add_remote(b.local_addr)
            b.add_remote(a.local_addr)
            ta, tb = Tap(a), Tap(b)
            f1 = frame(BCAST, a.mac(), b"x" * 100)
            a.send(f1)
            assert await tb.wait(1) == [f1]
            assert b.fdb() == {a.mac(): a.local_addr}
            f2 = frame(a.mac(), b.mac(), b"reply")
            b.sendv([f2[:14], f2[14:]])  # known unicast: straight to a
            assert await ta.wait(1) == [f2]
            assert a.fdb() == {b.mac(): b.local_addr}
            sa, sb = a.get_stats_counters(), b.get_stats_counters()
            assert (sa.tx_pkts, sa.tx_bytes, sa.rx_pkts, sa.rx_bytes) == (1, 114, 1, 19)
            assert (sb.tx_pkts, sb.tx_bytes, sb.rx_pkts, sb.rx_bytes) == (1, 19, 1, 114)
            assert a.counters.learned == b.counters.learned == 1
            assert a.counters.tx_datagrams == b.counters.tx_datagrams == 1
            a.reset_stats_counters()
            assert a.get_stats_counters().tx_pkts == 0

    run(main())


def test_head_end_replication_and_learned_flood_targets() -> None:
    async def main() -> None:
        async with netifs(3) as (a, b, c):
            a.add_remote(b.local_addr)
            a.add_remote(c.local_addr)
            b.add_remote(a.local_addr)  # b and c know only a, as a hub
            c.add_remote(a.local_addr)
            ta, tb, tc = Tap(a), Tap(b), Tap(c)
            f = frame(BCAST, a.mac())
            a.send(f)
            assert await tb.wait(1) == [f] and await tc.wait(1) == [f]
            assert a.counters.tx_datagrams == 2 and a.get_stats_counters().tx_pkts == 1
            # c announces itself to a; a learns where c's MAC lives.
            c.send(frame(BCAST, c.mac(), b"c here"))
            await ta.wait(1)
            # Unknown unicast from a floods to every static remote (b and c).
            unknown = MacAddr("02:00:00:00:99:99")
            a.send(frame(unknown, a.mac(), b"who?"))
            await tb.wait(2)
            await tc.wait(2)
            assert tb.frames[-1].endswith(b"who?") and tc.frames[-1].endswith(b"who?")
            # Known unicast from a to c goes to c only.
            a.send(frame(c.mac(), a.mac(), b"only c"))
            await tc.wait(3)
            await settle()
            assert tc.frames[-1].endswith(b"only c")
            assert not any(f.endswith(b"only c") for f in tb.frames)
            # b learned nothing of c, but a, once it knows b by learning only, floods to it.
            a.remove_remote(b.local_addr)
            a.remove_remote(c.local_addr)
            assert a.remotes() == []
            assert a.flood_targets() == [c.local_addr]  # learned from c's broadcast
            b.send(frame(BCAST, b.mac(), b"b here"))
            await ta.wait(2)
            assert sorted(a.flood_targets()) == sorted([b.local_addr, c.local_addr])

    run(main())


def test_learning_expiry_moves_and_bound() -> None:
    async def main() -> None:
        async with netifs(3, learn_ttl=0.3, learn_limit=2) as (a, b, c):
            a.add_remote(b.local_addr)
            b.add_remote(a.local_addr)
            tb = Tap(b)
            Tap(a)
            a.send(frame(BCAST, a.mac()))
            await tb.wait(1)
            assert b.fdb() == {a.mac(): a.local_addr}
            # The same MAC now speaks from c's endpoint: the entry moves.
            c.add_remote(b.local_addr)
            c.send(frame(BCAST, a.mac(), b"moved"))
            await tb.wait(2)
            assert b.fdb() == {a.mac(): c.local_addr} and b.counters.moved == 1
            # Two more MACs: the table holds two entries at most.
            c.send(frame(BCAST, MacAddr("02:00:00:00:00:77")))
            c.send(frame(BCAST, MacAddr("02:00:00:00:00:78")))
            await tb.wait(4)
            assert len(b.fdb()) == 2 and b.counters.learn_full == 1
            assert b.counters.learned == 2
            # Multicast source MACs are never learned (but the frame is delivered).
            c.send(frame(BCAST, MacAddr("03:00:00:00:00:01")))
            await tb.wait(5)
            assert b.counters.learned == 2 and b.counters.learn_full == 1
            await asyncio.sleep(0.35)
            assert b.fdb() == {}  # expired: unicast floods again, to static a only
            assert b.flood_targets() == [a.local_addr]
            assert b.counters.expired == 2
            b.send(frame(a.mac(), b.mac()))
            assert b.counters.tx_datagrams == 1

    run(main())


def test_learning_off() -> None:
    async def main() -> None:
        async with netifs(2, learn_ttl=0) as (a, b):
            a.add_remote(b.local_addr)
            tb = Tap(b)
            a.send(frame(BCAST, a.mac()))
            await tb.wait(1)
            assert len(tb.frames) == 1 and b.fdb() == {} and b.counters.learned == 0

    run(main())


def test_malformed_dropped_and_counted() -> None:
    async def main() -> None:
        async with netifs(1) as (a,):
            ta = Tap(a)
            peer = MacAddr("02:00:00:00:00:42")
            inner = frame(BCAST, peer, b"payload")
            good = vxlan.header(VNI) + inner
            bad = [
                b"",  # empty
                b"\x08\x00\x00",  # shorter than the header
                good[:8],  # header, no frame
                good[:21],  # header and a truncated Ethernet header
                b"\x00" + good[1:],  # I flag not set
                b"\x0c" + good[1:],  # a reserved flag (GPE's P bit) set
                b"\x88" + good[1:],  # GBP's G bit set
                vxlan.header(VNI + 1) + inner,  # another segment
                vxlan.header(0) + inner,
                vxlan.header(VNI) + frame(BCAST, a.mac()),  # our own MAC echoed
                # scapy's default flags over Ethernet are GPE-flavoured (0x0c)
                bytes(VXLAN(vni=VNI) / Ether(src=str(peer), dst=str(MacAddr(BCAST)))),
            ]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for d in bad:
                    s.sendto(d, a.local_addr)
                s.sendto(good, a.local_addr)
                s.sendto(good[:4] + b"\x00\x10\x92\xff" + inner, a.local_addr)  # reserved=ff
                await ta.wait(2)
                await settle()
                sender = ("127.0.0.1", s.getsockname()[1])
            assert ta.frames == [inner, inner]
            c = a.counters
            assert (c.rx_short, c.rx_bad_flags, c.rx_bad_vni, c.rx_looped) == (4, 4, 2, 1)
            st = a.get_stats_counters()
            assert st.rx_pkts == 2 and st.rx_bytes == 2 * len(inner)
            assert a.fdb() == {peer: sender}

    run(main())


def test_mtu_accounting() -> None:
    async def main() -> None:
        async with netifs(2) as (a, b):
            assert a.mtu == 1450 == 1500 - vxlan.OVERHEAD_V4
            a.add_remote(b.local_addr)
            tb = Tap(b)
            ok = frame(BCAST, a.mac(), bytes(1450))
            a.send(ok)
            a.sendv([ok[:14], ok[14:], b"!"])  # one byte too many
            a.send(ok + b"!")
            assert await tb.wait(1) == [ok]
            await settle()
            assert len(tb.frames) == 1
            assert a.counters.tx_oversize == 2 and a.get_stats_counters().tx_pkts == 1
            a.send(b"short")
            assert a.counters.tx_dropped == 1
        async with netifs(2, mtu=9000) as (a, b):
            a.add_remote(b.local_addr)
            tb = Tap(b)
            jumbo = frame(BCAST, a.mac(), bytes(range(256)) * 35 + bytes(40))
            a.send(jumbo)
            assert await tb.wait(1) == [jumbo] and a.counters.tx_oversize == 0

    run(main())


def test_no_remote_counted() -> None:
    async def main() -> None:
        async with netifs(1) as (a,):
            a.send(frame(BCAST, a.mac()))
            assert a.counters.tx_no_remote == 1 and a.get_stats_counters().tx_pkts == 0

    run(main())


def test_seed_api_listen_write_disconnect() -> None:
    async def main() -> None:
        async with netifs(2) as (a, b):
            a.add_remote(b.local_addr)
            got: list[bytes] = []

            async def fn(f: memoryview) -> None:
                got.append(bytes(f))
                if len(got) == 3:
                    await b.disconnect()

            listener = asyncio.create_task(b.listen(fn))
            await asyncio.sleep(0)
            sent = [frame(BCAST, a.mac(), b"%d" % i) for i in range(3)]
            await a.write(sent[0])
            await a.writev([sent[1][:6], sent[1][6:]])  # a short first buffer
            await a.write(sent[2])
            await asyncio.wait_for(listener, 5)  # returns because of disconnect
            assert got == sent and not b.connected
            await b.write(sent[0])
            assert b.counters.tx_dropped == 1
            await b.listen(fn)  # after disconnect: returns at once

    run(main())


def test_ipv6_loopback() -> None:
    async def main() -> None:
        devs = []
        for _ in range(2):
            r = await VxlanNetif.connect(VxlanConfig(7, local=("::1", 0)))
            assert isinstance(r, Ok)
            devs.append(r.value)
        a, b = devs
        try:
            a.add_remote(b.local_addr)
            tb = Tap(b)
            f = frame(BCAST, a.mac())
            a.send(f)
            assert await tb.wait(1) == [f]
            assert b.fdb() == {a.mac(): a.local_addr} and a.id().startswith("vxlan:7@[::1]:")
            with pytest.raises(ValueError, match="family"):
                a.add_remote(("127.0.0.1", 4789))
            with pytest.raises(ValueError, match="multicast"):
                a.add_remote(("ff02::1", 4789))
            a.add_remote(("0:0::1", b.local_addr[1]))  # the same endpoint, spelt otherwise
            a.add_remote(a.local_addr)  # ourselves: ignored
            assert a.remotes() == [b.local_addr]
        finally:
            await a.disconnect()
            await b.disconnect()

    run(main())


def test_connect_errors() -> None:
    async def main() -> None:
        async with netifs(1) as (a,):
            port = a.local_addr[1]
            r = await VxlanNetif.connect(f"vxlan:1@127.0.0.1:{port}")
            assert isinstance(r, Error) and isinstance(r.error, Unknown)
            assert "in use" in r.error.msg
            assert a.id() == f"vxlan:{VNI}@127.0.0.1:{port}"
        r2 = await VxlanNetif.connect(VxlanConfig(1, local=("127.0.0.1", 0), netns="mk-none"))
        assert isinstance(r2, Error) and isinstance(r2.error, Unknown)
        assert "mk-none" in r2.error.msg
        with pytest.raises(TypeError, match="id"):
            await VxlanNetif.connect(42)  # type: ignore[arg-type]

    run(main())


def test_learned_endpoint_is_sender_ip_and_segment_port() -> None:
    """Members on 127.0.0.x share one port, as VTEPs do; a kernel-like sender uses a
    random source port, yet replies must go to the segment's port."""

    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        devs = []
        for host in ("127.0.0.2", "127.0.0.3"):
            r = await VxlanNetif.connect(f"vxlan:{VNI}@{host}:{port},127.0.0.2,127.0.0.3")
            assert isinstance(r, Ok), r
            devs.append(r.value)
        a, b = devs
        try:
            ta, tb = Tap(a), Tap(b)
            peer = MacAddr("02:00:00:00:00:33")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.3", 0))  # b's address, another source port
                s.sendto(vxlan.header(VNI) + frame(BCAST, peer), a.local_addr)
                await ta.wait(1)
            assert a.fdb() == {peer: ("127.0.0.3", port)}
            a.send(frame(peer, a.mac(), b"to the segment port"))
            assert (await tb.wait(1))[0].endswith(b"to the segment port")
            # A fixed dstport overrides; port 0 on the local side means "source port".
            assert VxlanConfig(1, local=("127.0.0.1", 0), dstport=8472).dstport == 8472
        finally:
            await a.disconnect()
            await b.disconnect()

    run(main())


def test_random_datagrams_are_all_accounted_for() -> None:
    """Mutated and random datagrams never escape as errors; each is either delivered or
    counted under exactly one drop reason."""

    async def main() -> None:
        rng = random.Random(9)
        async with netifs(1) as (a,):
            got: list[bytes] = []
            a.set_receiver(lambda f: got.append(bytes(f)))
            base = vxlan.header(VNI) + frame(BCAST, MacAddr("02:00:00:00:00:42"), bytes(30))
            sent = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(400):
                    d = bytearray(rng.randbytes(rng.randrange(0, 64)))
                    if i % 4:
                        d = bytearray(base[: rng.randrange(0, len(base) + 1)])
                        for _ in range(rng.randrange(0, 3)):
                            if d:
                                d[rng.randrange(min(len(d), 20))] = rng.randrange(256)
                    s.sendto(bytes(d), a.local_addr)
                    sent += 1
                    if i % 50 == 0:
                        await asyncio.sleep(0.01)
                for _ in range(100):
                    c = a.counters
                    n = c.rx_short + c.rx_bad_flags + c.rx_bad_vni + c.rx_looped + len(got)
                    if n == sent:
                        break
                    await asyncio.sleep(0.01)
            assert n == sent and c.rx_errors == 0
            assert a.get_stats_counters().rx_pkts == len(got) > 0
            assert c.rx_short > 0 and c.rx_bad_flags > 0 and c.rx_bad_vni > 0

    run(main())
