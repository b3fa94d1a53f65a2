"""A segment of many hosts starting: what a broadcast costs at each port it reaches.

At 500 hosts every ARP request is carried to 499 ports while the cluster starts (~5
million deliveries): what each of them allocates and touches is the start-up's cost.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import dataclasses
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.link._impair import Flood, ImpairCounters, _Direction
from miragekit.net import _arp
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig, Stats


def test_a_flood_puts_one_entry_on_all_its_links() -> None:
    """The links a flooded frame is due on at the same time hold one (time, frame)
    entry between them, not one each (a tracked tuple per port for the collector); a
    link whose frame is due later gets its own."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        dirs = [_Direction(lambda f: got.append(bytes(f)), random.Random(i)) for i in range(4)]
        near = LinkParams(latency=0.001)
        far = LinkParams(latency=0.002)
        flood = Flood()
        now = loop.time()
        for d in dirs[:3]:
            flood.carry(d, near, ImpairCounters(), b"x", now, loop)
        flood.carry(dirs[3], far, ImpairCounters(), b"x", now, loop)
        entries = [d.fifo[0] for d in dirs]
        assert entries[0] is entries[1] is entries[2]
        assert entries[3] is not entries[0] and entries[3][0] == now + 0.002
        await asyncio.sleep(0.01)
        assert got == [b"x"] * 4

    sim.run(main())


def test_a_switch_flood_shares_its_entry_across_ports() -> None:
    async def main() -> set[int]:
        sw = VnetSwitch(seed=1)
        link = LinkParams(latency=0.001, loss=1e-9)
        src = sw.add_interface("src")  # ideal: at the switch at once
        ports = [sw.add_interface(f"p{i}", link=link) for i in range(6)]
        for p in ports:
            p.set_receiver(lambda f: None)
        src.send(b"\xff" * 6 + src.mac().packed + b"\x08\x06" + bytes(46))
        entries = {id(p._down.fifo[0]) for p in ports}
        await asyncio.sleep(0.01)
        return entries

    assert len(sim.run(main())) == 1


class _Unwritable(Stats):
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AssertionError(f"the frame path wrote Stats.{name}")


def test_a_port_counts_its_frames_without_writing_a_stats_object() -> None:
    """A port counts the frames it sends and hands on in fields of its own (at 500
    hosts ~5 million broadcasts at start-up; each Stats update was two look-ups and two
    stores by name): the frame path never writes the Stats object."""

    async def main() -> tuple[Stats, Stats]:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a", link=LinkParams(loss=1e-9))
        b = sw.add_interface("b", link=LinkParams(loss=1e-9))
        b.set_receiver(lambda f: None)
        live_a, live_b = a.get_stats_counters(), b.get_stats_counters()
        a._stats = _Unwritable.__new__(_Unwritable)  # its __init__ would write
        b._stats = _Unwritable.__new__(_Unwritable)
        for n in (60, 70, 80):
            a.send(b"\xff" * 6 + a.mac().packed + b"\x08\x06" + bytes(n - 14))
        await asyncio.sleep(0.01)
        return live_a, live_b

    live_a, live_b = sim.run(main())
    assert live_a == Stats(tx_bytes=210, tx_pkts=3)  # and still live
    assert live_b == Stats(rx_bytes=210, rx_pkts=3)


def test_a_ports_stats_are_live_and_writable() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        b.set_receiver(lambda f: None)
        st = b.get_stats_counters()
        assert isinstance(st, Stats) and st == Stats() and Stats() == st
        a.send(b"\xff" * 6 + a.mac().packed + b"\x08\x06" + bytes(46))
        await asyncio.sleep(0.01)
        assert (st.rx_pkts, st.rx_bytes, st.tx_pkts) == (1, 60, 0)
        assert st != Stats() and repr(st) == repr(Stats(rx_bytes=60, rx_pkts=1))
        assert a.get_stats_counters() == Stats(tx_bytes=60, tx_pkts=1)
        st.rx_pkts += 4
        assert b.get_stats_counters().rx_pkts == 5
        kept = copy.copy(st)
        assert type(kept) is Stats and kept == Stats(rx_bytes=60, rx_pkts=5)
        assert dataclasses.asdict(st) == dataclasses.asdict(kept)
        b.reset_stats_counters()
        assert st == Stats() and kept.rx_pkts == 5  # the copy is of the counts then

    sim.run(main())


def _arp_frame(dst: bytes, etype: bytes, target: int) -> memoryview:
    sha = b"\x02\0\0\0\0\x02"
    arp = bytes.fromhex("0001080006040001") + sha + bytes([10, 0, 0, 2]) + bytes(6)
    return memoryview(dst + sha + etype + arp + target.to_bytes(4, "big"))


def test_passes_by_reads_the_destination_and_the_ethertype_itself() -> None:
    """:meth:`Arp.passes_by` answers for any frame, not only for broadcasts the caller
    checked (each byte the interface read of a broadcast was a call, for each of the
    499 hosts it reaches): a unicast request, or the same bytes under another
    ethertype, never passes by; a multicast request does, as a broadcast."""
    arp = _arp.Arp(b"\x02\0\0\0\0\x01", lambda bufs: None)
    arp.ips.add(0x0A000001)
    other = 0x0A000099
    assert arp.passes_by(_arp_frame(b"\xff" * 6, b"\x08\x06", other))
    assert arp.passes_by(_arp_frame(b"\x01\0\x5e\0\0\x01", b"\x08\x06", other))
    assert not arp.passes_by(_arp_frame(b"\x02\0\0\0\0\x03", b"\x08\x06", other))
    assert not arp.passes_by(_arp_frame(b"\xff" * 6, b"\x08\x00", other))
    assert not arp.passes_by(_arp_frame(b"\xff" * 6, b"\x09\x06", other))
    assert arp.counters.rx_packets == 2


def test_an_interface_counts_a_unicast_request_for_another_mac_as_not_for_it() -> None:
    """A request unicast to another MAC (a switch that has not learnt it yet floods it)
    is not ARP's to count: the Ethernet layer drops it as not for us."""

    async def main() -> tuple[int, int, int]:
        sw = VnetSwitch(seed=1)
        src = sw.add_interface("src")
        vif = sw.add_interface("h", link=LinkParams(loss=1e-9))
        r = await DirectStackV4.connect(StackConfig("h", None, vif, Static("10.0.0.1/24")))
        assert isinstance(r, Ok)
        await asyncio.sleep(1)
        stack = r.value
        arp, eth = stack.ipv4().arp, stack._ip.ethif.counters
        before = arp.counters.rx_packets, eth.rx_not_for_us, eth.rx_frames
        src.send(bytes(_arp_frame(b"\x02\0\0\0\0\x03", b"\x08\x06", 0x0A000099)))
        src.send(bytes(_arp_frame(b"\xff" * 6, b"\x08\x06", 0x0A000099)))
        await asyncio.sleep(0.01)
        return (
            arp.counters.rx_packets - before[0],
            eth.rx_not_for_us - before[1],
            eth.rx_frames - before[2],
        )

    assert sim.run(main()) == (1, 1, 2)


def test_a_links_fifo_methods_are_found_once_and_survive_a_clear() -> None:
    """A direction keeps its fifo's ``append`` and ``popleft`` (a flood calls each once
    per port: a look-up by name each time, compiled): cleared, the direction still
    carries into its fifo and delivers from it."""

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        d = _Direction(lambda f: got.append(bytes(f)), random.Random(1))
        assert d.append.__self__ is d.fifo  # type: ignore[attr-defined]
        assert d.popleft.__self__ is d.fifo  # type: ignore[attr-defined]
        link = LinkParams(latency=0.001)
        d.carry(link, ImpairCounters(), b"a", loop.time(), loop)
        d.clear()
        Flood().carry(d, link, ImpairCounters(), b"b", loop.time(), loop)
        assert [f for _, f in d.fifo] == [b"b"]
        await asyncio.sleep(0.01)
        return got

    assert sim.run(main()) == [b"b"]


def test_passes_by_knows_a_frame_by_its_contents(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame whose bytes are those of a broadcast already read is answered from what was
    read (its buffer is asked of only when it is not known); a view of a mutable buffer
    (a device's, which has no hash) is read each time; only views of bytes are kept."""
    reads = [0]
    real = _arp._FRAME_FIELDS

    class Counting:
        def unpack_from(self, buf: Any, offset: int = 0) -> tuple[Any, ...]:
            reads[0] += 1
            return real.unpack_from(buf, offset)

    _arp._READ.clear()
    monkeypatch.setattr(_arp, "_FRAME_FIELDS", Counting())
    arp = _arp.Arp(b"\x02\0\0\0\0\x01", lambda bufs: None)
    arp.ips.add(0x0A000001)
    kept = _arp_frame(b"\xff" * 6, b"\x08\x06", 0x0A000099)
    assert arp.passes_by(kept) and reads[0] == 1
    assert arp.passes_by(memoryview(bytes(kept))) and reads[0] == 1  # known by its bytes
    for mutable in (memoryview(bytearray(kept)), memoryview(bytearray(kept)).toreadonly()):
        assert arp.passes_by(mutable)
    assert reads[0] == 3
    writable = memoryview(bytearray(kept))
    writable[41] = 1  # now for us
    assert not arp.passes_by(writable) and reads[0] == 4
    assert list(_arp._READ) == [kept]
    assert arp.counters.rx_packets == 4


def test_the_flood_bench_floods_every_request_to_the_other_hosts() -> None:
    """``bench/sim_flood.py`` measures what it says: each request reaches the other
    hosts' ARP (a few lost on the 1% lossy links)."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "sim_flood.py"

    def counted(requests: int) -> int:
        out = subprocess.run(
            [sys.executable, str(bench), "--hosts", "6", "--requests", str(requests)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        n: int = ast.literal_eval(out.strip().splitlines()[-1])["arp_rx_packets"]
        return n

    assert 45 <= counted(10) - counted(0) <= 50
