"""VnetSwitch: learning, flooding, stats, MTU, listen/disconnect, impairments, partitions."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from miragekit import sim, v1
from miragekit.macaddr import MacAddr
from miragekit.net import FrameLink, LinkParams, VnetIf, VnetSwitch
from miragekit.result import Error, Ok, Unknown

BCAST = "ff:ff:ff:ff:ff:ff"

_check_net: type[v1.Network] = VnetIf
_check_link: type[FrameLink] = VnetIf


class Rx:
    """Records (time, frame bytes) for every frame handed to the receiver."""

    def __init__(self, port: VnetIf) -> None:
        self.frames: list[tuple[float, bytes]] = []
        port.set_receiver(self)

    def __call__(self, frame: memoryview) -> None:
        self.frames.append((asyncio.get_running_loop().time(), bytes(frame)))

    @property
    def data(self) -> list[bytes]:
        return [f for _, f in self.frames]


def udp(src: VnetIf | str, dst: VnetIf | str, payload: bytes = b"x", size: int = 0) -> bytes:
    s = str(src.mac()) if isinstance(src, VnetIf) else src
    d = str(dst.mac()) if isinstance(dst, VnetIf) else dst
    pkt = Ether(src=s, dst=d) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    pad = max(0, size - 14 - 20 - 8 - len(payload))
    return bytes(pkt / Raw(payload + b"\0" * pad))


def numbered(template: bytes, i: int) -> bytes:
    return template[:-4] + i.to_bytes(4, "big")


def seq_of(frame: bytes) -> int:
    return int.from_bytes(frame[-4:], "big")


def run(fn: Callable[[], Awaitable[Any]], seed: int = 0) -> Any:
    async def main() -> Any:
        return await fn()

    return sim.run(main(), seed=seed)


# --- basics --------------------------------------------------------------------------------


def test_learning_and_flooding() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n) for n in "abc")
        ra, rb, rc = Rx(a), Rx(b), Rx(c)
        arp = bytes(
            Ether(src=str(a.mac()), dst=BCAST)
            / ARP(op=1, hwsrc=str(a.mac()), psrc="10.0.0.1", pdst="10.0.0.2")
        )
        a.send(arp)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert rb.data == [arp] and rc.data == [arp] and ra.data == []
        # b answers a: a is learned, so only a gets it (and b becomes learned)
        reply = udp(b, a, b"reply")
        b.send(reply)
        await asyncio.sleep(0.001)
        assert ra.data == [reply] and rc.data == [arp]
        # a to b: unicast to b only
        f = udp(a, b, b"to-b")
        await a.write(f)
        await asyncio.sleep(0.001)
        assert rb.data == [arp, f] and rc.data == [arp]
        # an unknown unicast destination is flooded
        unk = udp(a, "02:00:00:00:00:99", b"who")
        a.send(unk)
        await asyncio.sleep(0.001)
        assert rb.data[-1] == unk and rc.data[-1] == unk
        # multicast is flooded
        mc = udp(b, "01:00:5e:00:00:01", b"mc")
        b.send(mc)
        await asyncio.sleep(0.001)
        assert ra.data[-1] == mc and rc.data[-1] == mc and rb.data[-1] == unk
        assert sw.fdb() == {a.mac(): "a", b.mac(): "b"}
        # a frame addressed to its own sender's port is filtered, not reflected
        a.send(udp(b, a, b"spoof"))  # src b's MAC from port a moves b's entry to a
        await asyncio.sleep(0.001)
        assert sw.fdb()[b.mac()] == "a"

    run(main)


def test_mac_aging_floods_again() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1, aging=10.0)
        a, b, c = (sw.add_interface(n) for n in "abc")
        _, rb, rc = Rx(a), Rx(b), Rx(c)
        b.send(udp(b, BCAST))
        await asyncio.sleep(1)
        a.send(udp(a, b, b"1"))
        await asyncio.sleep(1)
        assert len(rc.data) == 1  # only the broadcast
        await asyncio.sleep(20)
        assert sw.fdb() == {}
        a.send(udp(a, b, b"2"))
        await asyncio.sleep(1)
        assert len(rc.data) == 2 and len(rb.data) == 2

    run(main)


def test_stats_counters() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        Rx(b)
        frames = [udp(a, b, b"p" * n) for n in (10, 100, 1000)]
        for f in frames:
            a.send(f)
        a.sendv([frames[0][:5], memoryview(frames[0])[5:]])
        await asyncio.sleep(0.001)
        total = sum(map(len, frames)) + len(frames[0])
        sa, sb = a.get_stats_counters(), b.get_stats_counters()
        assert (sa.tx_pkts, sa.tx_bytes, sa.rx_pkts, sa.rx_bytes) == (4, total, 0, 0)
        assert (sb.tx_pkts, sb.tx_bytes, sb.rx_pkts, sb.rx_bytes) == (0, 0, 4, total)
        # a has no receiver: b's frame to a is dropped and counted, not counted as rx
        b.send(udp(b, a))
        await asyncio.sleep(0.001)
        assert sa.rx_pkts == 0 and a.counters.dropped_no_receiver == 1
        a.reset_stats_counters()
        assert a.get_stats_counters() == v1.Stats()
        assert a.counters.dropped_no_receiver == 0

    run(main)


def test_mtu_drops_and_large_mtu() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a", mtu=1500)
        b = sw.add_interface("b", mtu=9000)
        big = sw.add_interface("big", mtu=65535)
        ra, rb, rbig = Rx(a), Rx(b), Rx(big)
        a.send(udp(a, b, size=1514))  # exactly the MTU: passes
        a.send(udp(a, b, size=1515))  # one byte over: dropped at the sender
        vlan = bytes(Ether(src=str(a.mac()), dst=str(b.mac())) / Dot1Q(vlan=5) / Raw(b"v" * 1500))
        assert len(vlan) == 1518
        a.send(vlan)  # a tagged frame may carry 4 more bytes
        a.send(b"\x01\x02")  # shorter than a header
        await asyncio.sleep(0.001)
        assert [len(f) for f in rb.data] == [1514, 1518]
        assert a.counters.dropped_mtu == 1 and a.counters.dropped_malformed == 1
        assert a.get_stats_counters().tx_pkts == 2
        # 9000-byte MTU to a 1500-byte MTU: dropped on a's link, counted there
        b.send(udp(b, a, size=9014))
        await asyncio.sleep(0.001)
        assert ra.data == [] and a.counters.dropped_mtu == 2
        # 64 KiB frames
        jumbo = udp(b, big, size=65535 + 14)
        b.send(jumbo)  # over b's MTU
        big.send(udp(big, b, size=9014))
        big.send(udp(big, BCAST, size=65549))
        await asyncio.sleep(0.001)
        assert b.counters.dropped_mtu == 2  # its own jumbo, and the 64 KiB broadcast
        assert len(rb.data[-1]) == 9014
        big2 = sw.add_interface("big2", mtu=65535)
        r2 = Rx(big2)
        big.send(udp(big, big2, size=65549))
        await asyncio.sleep(0.001)
        assert [len(f) for f in r2.data] == [65549]
        assert [len(f) for f in rbig.data] == [1514, 1518]  # flooded before b was learned
        with pytest.raises(ValueError, match="mtu"):
            sw.add_interface("bad", mtu=65536)
        with pytest.raises(ValueError, match="name"):
            sw.add_interface("a")

    run(main)


def test_listen_disconnect_and_connect_by_name() -> None:
    async def main() -> None:
        sw = VnetSwitch("sw-test-listen", seed=1)
        match await VnetIf.connect("sw-test-listen/a"):
            case Ok(a):
                pass
            case _:
                raise AssertionError("connect failed")
        match await VnetIf.connect("sw-test-listen/a"):
            case Error(Unknown()):
                pass
            case other:
                raise AssertionError(other)
        assert await VnetIf.connect("nope/a") == Error(Unknown("no virtual switch named 'nope'"))
        assert isinstance(await VnetIf.connect("noslash"), Error)
        b = sw.add_interface("b", mac=MacAddr("02:00:00:00:00:0b"))
        assert b.mac() == MacAddr("02:00:00:00:00:0b")
        assert a.id() == "sw-test-listen/a"
        got: list[bytes] = []

        async def on_frame(frame: memoryview) -> None:
            await asyncio.sleep(0.5)  # a slow callback does not hold up the others
            got.append(bytes(frame))

        listener = asyncio.create_task(b.listen(on_frame))
        await asyncio.sleep(0)
        for i in range(3):
            await a.write(udp(a, b, bytes([i])))
        await a.writev([udp(a, b, b"v")[:20], udp(a, b, b"v")[20:]])
        await asyncio.sleep(0.6)
        assert got == [udp(a, b, bytes([i])) for i in range(3)] + [udp(a, b, b"v")]
        assert sim.now() == pytest.approx(0.6)
        assert not listener.done()
        await b.disconnect()
        await asyncio.wait_for(listener, 1)
        assert sw.interfaces() == [a] and b.mac() not in sw.fdb()
        a.send(udp(a, b))
        await b.write(udp(b, a))
        assert b.counters.dropped_disconnected == 1
        await b.listen(on_frame)  # returns at once once disconnected
        await b.disconnect()  # idempotent

    run(main)


def test_works_on_a_real_time_loop() -> None:
    async def main() -> list[tuple[float, bytes]]:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b", link=LinkParams(latency=0.02))
        rb = Rx(b)
        t0 = asyncio.get_running_loop().time()
        a.send(udp(a, b))
        await asyncio.sleep(0.1)
        return [(t - t0, f) for t, f in rb.frames]

    frames = asyncio.run(main())
    assert len(frames) == 1 and 0.02 <= frames[0][0] < 0.09


def test_link_params_validation() -> None:
    with pytest.raises(ValueError, match="loss"):
        LinkParams(loss=1.5)
    with pytest.raises(ValueError, match="latency"):
        LinkParams(latency=-1)
    with pytest.raises(ValueError, match="rate"):
        LinkParams(rate=0)
    with pytest.raises(ValueError, match="queue_frames"):
        LinkParams(queue_frames=0)
    p = LinkParams()
    assert p.ideal
    with pytest.raises(TypeError, match="up"):
        p.up = "no"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="jitter"):
        p.jitter = math.nan
    assert p.ideal and p.jitter == 0
    p.loss = 0.5
    assert not p.ideal
    p.loss = 0
    assert p.ideal
    p.up = False
    assert not p.ideal
