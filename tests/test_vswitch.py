"""VnetSwitch: learning, flooding, stats, MTU, listen/disconnect, impairments, partitions."""

from __future__ import annotations

import asyncio
import gc
import io
import itertools
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from miragekit import sim, v1
from miragekit.link import (
    FrameLink,
    LinkParams,
    PcapNetif,
    VnetIf,
    VnetSwitch,
    bridge,
    tap_bridge,
)
from miragekit.macaddr import MacAddr
from miragekit.result import Error, Ok, Unknown
from miragekit.testing import NETWORK_CHECKS, check_network_pair

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


def test_a_named_switch_is_forgotten_once_dropped_with_its_ports() -> None:
    """The registry of names holds no switch alive: one made outside any loop, with
    interfaces (each holds its switch) and a bridged port (which holds the interface),
    frees its name once nothing else refers to it."""
    sw = VnetSwitch("sw-test-forgotten", seed=1)
    a = sw.add_interface("a")
    peer = VnetSwitch(seed=2).add_interface("peer")
    port = bridge(sw, "b", peer)
    assert tap_bridge(port) is None and tap_bridge(a) is None  # not a TAP device
    assert VnetSwitch.named("sw-test-forgotten") is sw
    with pytest.raises(ValueError, match="already exists"):
        VnetSwitch("sw-test-forgotten")
    del sw, a, port, peer
    gc.collect()
    assert VnetSwitch.named("sw-test-forgotten") is None
    assert VnetSwitch("sw-test-forgotten").name == "sw-test-forgotten"


def test_works_on_a_real_time_loop() -> None:
    async def main() -> list[tuple[float, bytes]]:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b", link=LinkParams(latency=0.02))
        rb = Rx(b)
        t0 = asyncio.get_running_loop().time()
        a.send(udp(a, b))
        async with asyncio.timeout(10):  # on a busy machine the timer may fire late
            while not rb.frames:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and no second copy follows
        return [(round(t - t0, 9), f) for t, f in rb.frames]

    frames = asyncio.run(main())
    assert len(frames) == 1 and frames[0][0] >= 0.02  # never before the link's latency


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


# --- impairments (statistics from fixed seeds, on virtual time) --------------------------

N = 10_000


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """``count`` is a plausible Binomial(n, p) draw."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


async def blast(
    params_a: LinkParams | None,
    params_b: LinkParams | None,
    *,
    n: int = N,
    gap: float = 0.0001,
    seed: int | None = 42,
    size: int = 100,
) -> tuple[VnetIf, VnetIf, Rx, list[bytes]]:
    """Send ``n`` numbered frames a->b, one every ``gap`` seconds, and wait for them."""
    sw = VnetSwitch(seed=seed)
    a = sw.add_interface("a", link=params_a)
    b = sw.add_interface("b", link=params_b)
    rb = Rx(b)
    b.send(udp(b, a))  # learn b, so a's frames are unicast
    await asyncio.sleep(1)
    for port in (a, b):  # count the blast only (b's link may have lost the learning frame)
        port.reset_stats_counters()
    template = udp(a, b, size=size)
    sent = [numbered(template, i) for i in range(n)]
    for f in sent:
        a.send(f)
        if gap:
            await asyncio.sleep(gap)
    await asyncio.sleep(10)
    return a, b, rb, sent


def test_loss_rate() -> None:
    async def main() -> None:
        _, b, rb, sent = await blast(None, LinkParams(loss=0.1))
        lost = N - len(rb.data)
        assert within(lost, N, 0.1)
        assert b.counters.dropped_loss == lost
        assert [seq_of(f) for f in rb.data] == sorted(seq_of(f) for f in rb.data)
        assert set(rb.data) <= set(sent)
        assert b.get_stats_counters().rx_pkts == len(rb.data)

    run(main)


def test_loss_on_both_links_compounds() -> None:
    async def main() -> None:
        a, b, rb, _ = await blast(LinkParams(loss=0.2), LinkParams(loss=0.2))
        assert within(N - len(rb.data), N, 1 - 0.8 * 0.8)
        assert a.counters.dropped_loss + b.counters.dropped_loss == N - len(rb.data)
        assert within(a.counters.dropped_loss, N, 0.2)

    run(main)


def test_duplication_rate() -> None:
    async def main() -> None:
        _, b, rb, _ = await blast(None, LinkParams(duplicate=0.05))
        dups = len(rb.data) - N
        assert within(dups, N, 0.05)
        assert b.counters.duplicated == dups
        seqs = [seq_of(f) for f in rb.data]
        assert sorted(set(seqs)) == list(range(N))
        # a duplicate arrives right behind its original
        assert all(x <= y for x, y in itertools.pairwise(seqs))

    run(main)


def test_corruption_rate_flips_one_bit() -> None:
    async def main() -> None:
        _, b, rb, sent = await blast(None, LinkParams(corrupt=0.02))
        assert len(rb.data) == N
        bad = 0
        for got, want in zip(rb.data, sent, strict=True):
            if got != want:
                bad += 1
                diff = int.from_bytes(got, "big") ^ int.from_bytes(want, "big")
                assert diff.bit_count() == 1
        assert within(bad, N, 0.02)
        assert b.counters.corrupted == bad

    run(main)


def test_reordering_rate() -> None:
    async def main() -> None:
        _, b, rb, _ = await blast(None, LinkParams(reorder=0.1, reorder_delay=0.001))
        seqs = [seq_of(f) for f in rb.data]
        assert sorted(seqs) == list(range(N))
        # frames held back arrive after a later-sent frame
        late = sum(1 for i in range(1, N) if seqs[i] < max(seqs[:i][-20:]))
        held = b.counters.reordered
        assert within(held, N, 0.1)
        assert late >= held * 0.9  # (a held frame right before another held one may tie)

    run(main)


def test_latency_and_jitter() -> None:
    async def main() -> None:
        _, _, rb, _ = await blast(None, LinkParams(latency=0.05), n=100, gap=0.01)
        t_sent = [1.0 + i * 0.01 for i in range(100)]
        delays = [t - t_sent[seq_of(f)] for t, f in rb.frames]
        assert delays == pytest.approx([0.05] * 100)

    run(main)

    async def jitter() -> None:
        _, _, rb, _ = await blast(None, LinkParams(latency=0.01, jitter=0.02), n=2000, gap=0.05)
        seqs = [seq_of(f) for f in rb.data]
        assert seqs == list(range(2000))  # jitter alone keeps order
        delays = [t - (1.0 + seq_of(f) * 0.05) for t, f in rb.frames]
        assert min(delays) >= 0.01 - 1e-9 and max(delays) <= 0.03 + 1e-9
        mean = sum(delays) / len(delays)
        sd = math.sqrt(sum((d - mean) ** 2 for d in delays) / len(delays))
        assert mean == pytest.approx(0.02, abs=0.001)  # uniform on [0.01, 0.03]
        assert sd == pytest.approx(0.02 / math.sqrt(12), rel=0.1)

    run(jitter)


def test_bandwidth_cap_serialises_frames() -> None:
    async def main() -> None:
        # 1 Mbit/s: a 1250-byte frame takes 10 ms; ten sent at once arrive 10 ms apart.
        _, _, rb, _ = await blast(None, LinkParams(rate=1e6, latency=0.005), n=10, gap=0, size=1250)
        times = [t - 1.0 for t, _ in rb.frames]
        assert times == pytest.approx([0.005 + 0.01 * (i + 1) for i in range(10)])

    run(main)

    async def queue() -> None:
        p = LinkParams(rate=1e6, queue_frames=4)
        _, b, rb, _ = await blast(None, p, n=10, gap=0, size=1250)
        assert len(rb.data) == 4 and b.counters.dropped_queue == 6
        assert [seq_of(f) for f in rb.data] == [0, 1, 2, 3]

    run(queue)

    async def throughput() -> None:
        # sending at 2x the cap for 1 s: about half the frames fit, the queue bounds delay
        p = LinkParams(rate=8e6, queue_frames=50)
        _, _, rb, _ = await blast(None, p, n=2000, gap=0.0005, size=1000)
        assert 950 <= len(rb.data) <= 1060
        span = rb.frames[-1][0] - rb.frames[0][0]
        assert len(rb.data) * 1000 * 8 / span == pytest.approx(8e6, rel=0.02)

    run(throughput)


def test_same_seed_same_run_all_impairments() -> None:
    def params() -> LinkParams:
        return LinkParams(
            latency=0.002,
            jitter=0.003,
            loss=0.05,
            duplicate=0.05,
            reorder=0.05,
            corrupt=0.05,
            rate=5e7,
        )

    async def main() -> list[tuple[float, bytes]]:
        _, _, rb, _ = await blast(params(), params(), n=2000, seed=None)
        return rb.frames

    assert run(main, seed=1) == run(main, seed=1)
    assert run(main, seed=1) != run(main, seed=2)

    async def explicit(seed: int) -> list[tuple[float, bytes]]:
        t0 = sim.now()
        _, _, rb, _ = await blast(params(), None, n=500, seed=seed)
        return [(round(t - t0, 9), f) for t, f in rb.frames]

    async def twice() -> None:
        assert await explicit(5) == await explicit(5)
        assert await explicit(5) != await explicit(6)

    run(twice)


# --- partitions and link state --------------------------------------------------------


def test_partition_and_heal() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b, c, d = (sw.add_interface(n) for n in "abcd")
        ra, rb, rc, rd = (Rx(p) for p in (a, b, c, d))
        for p in (a, b, c, d):
            p.send(udp(p, BCAST, b"hello"))
        await asyncio.sleep(0.01)
        assert all(len(r.data) == 3 for r in (ra, rb, rc, rd))
        sw.partition({a, "b"}, {c})  # d is left in a group of its own (the rest)
        a.send(udp(a, BCAST, b"p1"))
        a.send(udp(a, c, b"p2"))
        c.send(udp(c, a, b"p3"))
        b.send(udp(b, a, b"p4"))
        await asyncio.sleep(0.01)
        assert rb.data[-1] == udp(a, BCAST, b"p1")
        assert ra.data[-1] == udp(b, a, b"p4")
        assert len(rc.data) == 3 and len(rd.data) == 3 and len(ra.data) == 4
        assert c.counters.dropped_partition == 2  # the broadcast and the unicast
        assert a.counters.dropped_partition == 1 and d.counters.dropped_partition == 1
        with pytest.raises(ValueError, match="two groups"):
            sw.partition({a}, {a, b})
        with pytest.raises(ValueError, match="no interface"):
            sw.partition({"zz"})
        sw.heal()
        a.send(udp(a, c, b"h"))
        await asyncio.sleep(0.01)
        assert rc.data[-1] == udp(a, c, b"h")

    run(main)


def test_link_down_drops_both_ways_and_in_flight() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a")
        b = sw.add_interface("b", link=LinkParams(latency=0.01))
        ra, rb = Rx(a), Rx(b)
        b.send(udp(b, a))
        await asyncio.sleep(0.1)
        assert len(ra.data) == 1
        b.link.up = False
        a.send(udp(a, b, b"1"))
        b.send(udp(b, a, b"2"))
        await asyncio.sleep(0.1)
        assert rb.data == [] and len(ra.data) == 1
        assert b.counters.dropped_down == 2
        b.link.up = True
        a.send(udp(a, b, b"3"))  # in flight for 10 ms...
        await asyncio.sleep(0.005)
        b.link.up = False  # ...when the cable is cut
        await asyncio.sleep(0.1)
        assert rb.data == [] and b.counters.dropped_down == 3
        b.link.up = True
        a.send(udp(a, b, b"4"))
        await asyncio.sleep(0.1)
        assert rb.data == [udp(a, b, b"4")]
        # an ideal link going down drops a batch that was about to be delivered
        a.link.up = False
        b.send(udp(b, a, b"5"))
        await asyncio.sleep(0.1)
        assert len(ra.data) == 1 and a.counters.dropped_down == 1

    run(main)


# --- large frames: copies into recycled buffers ---------------------------------------


def test_large_frames_are_private_copies() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a", mtu=65535)
        b = sw.add_interface("b", mtu=65535, link=LinkParams(latency=0.01, jitter=0.01))
        c = sw.add_interface("c", mtu=65535)
        rb = Rx(b)
        b.send(udp(b, BCAST))
        await asyncio.sleep(1)
        buf = bytearray(udp(a, BCAST, size=60000))

        async def burst(first: int) -> list[bytes]:
            sent = []
            for i in range(first, first + 150):  # many in flight at once on b's link
                buf[-4:] = i.to_bytes(4, "big")
                if i % 3 == 0:
                    a.send(buf)
                elif i % 3 == 1:
                    a.sendv([memoryview(buf)[:100], memoryview(buf)[100:]])
                else:
                    a.sendv([memoryview(buf).cast("H")])
                sent.append(bytes(buf))
                await asyncio.sleep(0.0005)
            await asyncio.sleep(1)
            return sent

        sent = await burst(0)
        assert rb.data == sent
        # buffers were recycled: far fewer than one per frame
        assert 0 < sw._fabric._pool._bytes <= 60 * 65553
        kept: list[memoryview] = []
        c.set_receiver(kept.append)  # keeps the views: against the contract, but safe
        sent2 = await burst(1000)
        assert rb.data == sent + sent2
        assert [bytes(v) for v in kept] == sent2
        assert b.get_stats_counters().rx_bytes == 300 * 60000

    run(main)


# --- fuzz: arbitrary bytes in, nothing raised out ---------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(st.binary(min_size=0, max_size=1600), max_size=40),
    loss=st.floats(0, 1),
    corrupt=st.floats(0, 1),
    duplicate=st.floats(0, 1),
    reorder=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_fuzz_frames_and_impairments(
    frames: list[bytes], loss: float, corrupt: float, duplicate: float, reorder: float, seed: int
) -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=seed)
        link = LinkParams(loss=loss, corrupt=corrupt, duplicate=duplicate, reorder=reorder)
        ports = [sw.add_interface(n, link=link) for n in "abc"]
        rx = [Rx(p) for p in ports]
        for i, f in enumerate(frames):
            ports[i % 3].send(f)
        await asyncio.sleep(1)
        ok = sum(1 for f in frames if 14 <= len(f) <= 1514)
        assert sum(p.get_stats_counters().tx_pkts for p in ports) == ok
        malformed = sum(p.counters.dropped_malformed for p in ports)
        assert malformed == sum(1 for f in frames if len(f) < 14)
        for p, r in zip(ports, rx, strict=True):
            assert p.get_stats_counters().rx_pkts == len(r.data)

    sim.run(main())


# --- the NETWORK conformance suite -------------------------------------------------------


def test_conformance_vnetif_and_pcap(tmp_path: Path) -> None:
    async def vnet_pair() -> tuple[v1.Network, v1.Network]:
        sw = VnetSwitch(seed=1)
        return sw.add_interface("a"), sw.add_interface("b", link=LinkParams(latency=0.01))

    pcaps = iter(range(100))

    async def pcap_pair() -> tuple[v1.Network, v1.Network]:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a", link=LinkParams(latency=0.001, jitter=0.002))
        path = tmp_path / f"a{next(pcaps)}.pcap"
        return PcapNetif(a, path), PcapNetif(sw.add_interface("b"), io.BytesIO())

    async def main() -> None:
        await check_network_pair(vnet_pair)
        await check_network_pair(pcap_pair)
        await check_network_pair(pcap_pair, only=["write_writev"])

    sim.run(main())
    asyncio.run(check_network_pair(vnet_pair))
    last = tmp_path / f"a{len(NETWORK_CHECKS)}.pcap"  # write and writev: frames of 72 and 79
    assert last.stat().st_size == 24 + 2 * 16 + 72 + 79


class _LazyWrite:
    """An interface whose ``write`` keeps the caller's buffer (a wrapper, not a patch:
    a compiled VnetIf's methods cannot be replaced on the instance)."""

    def __init__(self, port: VnetIf) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    async def write(self, buf: v1.Buffer) -> None:
        self._port._send(memoryview(buf))  # no copy: the caller's later change leaks through


def test_conformance_catches_a_device_that_keeps_the_callers_buffer() -> None:
    async def broken_pair() -> tuple[v1.Network, v1.Network]:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        return cast(v1.Network, _LazyWrite(a)), b

    with pytest.raises(AssertionError, match="unchanged"):
        sim.run(check_network_pair(broken_pair))


def test_one_switch_across_successive_runs() -> None:
    sw = VnetSwitch(seed=1)
    a = sw.add_interface("a", link=LinkParams(latency=0.01, rate=1e6))
    b = sw.add_interface("b")
    rb = Rx(b)

    async def phase(t_end: float) -> None:
        b.send(udp(b, a))
        for i in range(5):
            a.send(udp(a, b, bytes([i]), size=1250))  # 10 ms each at 1 Mbit/s
        a.send(udp(a, b))  # this one is still queued when the run ends
        await asyncio.sleep(t_end)

    sim.run(phase(1000.0))
    sim.run(phase(0.0555))
    times = [round(t, 6) for t, f in rb.frames]
    # the second run starts a fresh clock at 0: its frames are not held behind the first's
    assert times == [0.02, 0.03, 0.04, 0.05, 0.06, 0.060344, 0.02, 0.03, 0.04, 0.05]


def test_mirror_port_sees_every_frame_once() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n) for n in "abc")
        mon = sw.add_interface("mon", mirror=True)
        ra, rb, rc, rm = Rx(a), Rx(b), Rx(c), Rx(mon)
        frames = [
            udp(a, BCAST, b"1"),  # broadcast
            udp(b, a, b"2"),  # unicast to a learned port
            udp(a, b, b"3"),
            udp(c, "02:00:00:00:00:99", b"4"),  # unknown: flooded
        ]
        for f in frames:
            (a if f[6:12] == a.mac().packed else b if f[6:12] == b.mac().packed else c).send(f)
            await asyncio.sleep(0.001)
        sw.partition({a}, {b, c})
        blocked = udp(a, b, b"5")
        a.send(blocked)
        await asyncio.sleep(0.001)
        assert rm.data == [*frames, blocked]  # across the partition too
        assert rb.data == [frames[0], frames[2], frames[3]]
        assert ra.data == [frames[1], frames[3]] and rc.data == [frames[0]]
        # the mirror's own frames are switched normally and it is never flooded to
        sw.heal()
        mon.send(udp(mon, BCAST, b"m"))
        await asyncio.sleep(0.001)
        assert rc.data[-1] == udp(mon, BCAST, b"m") and len(rm.data) == 5
        c.send(udp(c, mon, b"to-mon"))  # addressed to the mirror: still one copy
        await asyncio.sleep(0.001)
        assert rm.data.count(udp(c, mon, b"to-mon")) == 1
        await mon.disconnect()
        a.send(udp(a, BCAST, b"after"))
        await asyncio.sleep(0.001)
        assert len(rm.data) == 6

    run(main)


def test_bursty_loss() -> None:
    async def main() -> None:
        n = 40_000
        _, b, rb, _ = await blast(None, LinkParams(loss=0.1, loss_burst=5), n=n)
        got = {seq_of(f) for f in rb.data}
        lost = [i not in got for i in range(n)]
        runs = [len(list(g)) for k, g in itertools.groupby(lost) if k]
        rate = sum(lost) / n
        assert b.counters.dropped_loss == sum(lost)
        assert 0.08 <= rate <= 0.12
        assert sum(runs) / len(runs) == pytest.approx(5, rel=0.1)  # mean burst length
        # the same average rate without bursts has runs of about 1/(1-p)
        _, _, rb2, _ = await blast(None, LinkParams(loss=0.1), n=n)
        got2 = {seq_of(f) for f in rb2.data}
        lost2 = [i not in got2 for i in range(n)]
        runs2 = [len(list(g)) for k, g in itertools.groupby(lost2) if k]
        assert sum(runs2) / len(runs2) == pytest.approx(1 / 0.9, rel=0.05)

    run(main)
    with pytest.raises(ValueError, match="loss_burst"):
        LinkParams(loss_burst=0.5)


def test_callback_exceptions_are_reported_not_raised() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx["message"]))
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n) for n in "abc")

        def bad_receiver(frame: memoryview) -> None:
            raise RuntimeError("receiver bug")

        async def bad_callback(frame: memoryview) -> None:
            raise RuntimeError("callback bug")

        b.set_receiver(bad_receiver)
        listener = asyncio.create_task(c.listen(bad_callback))
        await asyncio.sleep(0)
        a.send(udp(a, BCAST, b"1"))
        a.send(udp(a, BCAST, b"2"))
        await asyncio.sleep(0.01)
        assert b.get_stats_counters().rx_pkts == 2  # the second frame still arrived
        assert c.get_stats_counters().rx_pkts == 2
        assert sorted(reported) == sorted(
            ["exception in the receiver of <VnetIf b 02:6d:6b:00:00:02 mtu=1500>"] * 2
            + ["exception in a NETWORK.listen callback"] * 2
        )
        await c.disconnect()
        await listener

    run(main)


def test_a_learned_address_is_refreshed_in_place_and_moves_with_its_sender() -> None:
    # Every frame refreshes its sender's entry: the entry is updated, not remade (a
    # fresh tuple per frame freed an old one that was cold in a large simulation).
    async def main() -> None:
        sw = VnetSwitch(seed=1, aging=10.0)
        a, b, c = (sw.add_interface(n) for n in "abc")
        Rx(a), Rx(b), Rx(c)
        fdb = sw._fabric._fdb
        a.send(udp(a, BCAST))
        await asyncio.sleep(1)
        key = bytes(a.mac())
        first = fdb[key]
        assert (first.port, first.seen) == (a, 0.0)
        await asyncio.sleep(8)
        a.send(udp(a, b, b"again"))
        await asyncio.sleep(0.001)
        assert fdb[key] is first and first.seen == 9.0
        await asyncio.sleep(5)  # 14 s after the first frame, 5 after the last: still there
        assert sw.fdb() == {a.mac(): "a"}
        moved_at = asyncio.get_running_loop().time()
        c.send(udp(a, b, b"moved"))  # a's address now behind c: a new entry
        await asyncio.sleep(0.001)
        assert fdb[key] is not first and (fdb[key].port, fdb[key].seen) == (c, moved_at)
        assert sw.fdb() == {a.mac(): "c"}
        await c.disconnect()
        assert key not in fdb

    run(main)
