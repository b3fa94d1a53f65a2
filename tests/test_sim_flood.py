"""A broadcast on a simulated segment of many hosts: what each port it reaches costs.

At 500 hosts every ARP request is delivered to 499 ports, ~5 million deliveries while a
cluster starts. These tests pin the thin path: one call per port on the switch's side,
one view of the frame for all the ports, and ARP reading the frame once for all hosts.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import types
from typing import Any

import pytest

from miragekit import sim
from miragekit.link import LinkParams, VnetIf, VnetSwitch
from miragekit.net import _arp
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig


def arp_request(src: VnetIf, target: int) -> bytes:
    mac = src.mac().packed
    return (
        b"\xff" * 6
        + mac
        + b"\x08\x06"
        + bytes.fromhex("0001080006040001")
        + mac
        + bytes([10, 0, 9, 9])
        + bytes(6)
        + target.to_bytes(4, "big")
    )


def test_a_flood_hands_every_port_the_same_view() -> None:
    async def main() -> list[memoryview]:
        sw = VnetSwitch(seed=1)
        src = sw.add_interface("src", link=LinkParams(loss=1e-9))
        got: list[memoryview] = []
        for i in range(5):
            p = sw.add_interface(f"p{i}", link=LinkParams(loss=1e-9))
            p.set_receiver(got.append)
        src.send(arp_request(src, 0x0A00F001))
        await asyncio.sleep(0.001)
        return got

    got = sim.run(main())
    assert len(got) == 5
    assert all(v is got[0] for v in got)  # one view made per flood, not one per port
    assert bytes(got[0])[:6] == b"\xff" * 6


def test_a_flooded_port_costs_one_call_on_the_switchs_side() -> None:
    """Python calls the flood makes per idle plain port it reaches, beyond the receiver:
    ``Flood.carry`` (the draws, the timing and the shared timer in one), and at the
    timer the delivery."""
    calls: list[str] = []

    def seen(f: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            calls.append(f.f_code.co_qualname)

    async def main() -> int:
        sw = VnetSwitch(seed=1)
        link = LinkParams(loss=1e-9)
        src = sw.add_interface("src", link=link)
        got: list[int] = []
        ports = [sw.add_interface(f"p{i}", link=link) for i in range(8)]
        for p in ports:
            p.set_receiver(lambda f: got.append(1))
        src.send(arp_request(src, 0x0A00F001))  # binds the switch to this loop
        await asyncio.sleep(0.001)
        sys.setprofile(seen)
        try:
            src.send(arp_request(src, 0x0A00F002))
            await asyncio.sleep(0.001)
        finally:
            sys.setprofile(None)
        return len(got)

    assert sim.run(main()) == 16
    per_port = {name: calls.count(name) for name in set(calls) if calls.count(name) >= 8}
    assert per_port == {
        "Flood.carry": 8,
        "VnetIf._deliver": 8,
        "test_a_flooded_port_costs_one_call_on_the_switchs_side.<locals>.main.<locals>.<lambda>": 8,
    }


def test_arp_reads_a_broadcast_once_for_all_the_hosts_it_reaches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty hosts pass by 30 requests for addresses nobody has: each request is
    unpacked once, not once per host; every host still counts every request."""
    reads = [0]
    real = _arp._FRAME_FIELDS

    class Counting:
        def unpack_from(self, buf: Any, offset: int = 0) -> tuple[Any, ...]:
            reads[0] += 1
            return real.unpack_from(buf, offset)

    async def main() -> list[int]:
        sw = VnetSwitch(seed=2)
        stacks = []
        for h in range(20):
            vif = sw.add_interface(f"h{h}", link=LinkParams(loss=1e-9))
            r = await DirectStackV4.connect(
                StackConfig(f"h{h}", None, vif, Static(f"10.0.0.{h + 1}/24"))
            )
            assert isinstance(r, Ok)
            stacks.append(r.value)
        await asyncio.sleep(1)  # the announcements are over
        before = [s.ipv4().arp.counters.rx_packets for s in stacks]
        _arp._READ.clear()
        monkeypatch.setattr(_arp, "_FRAME_FIELDS", Counting())
        arp = stacks[0].ipv4().arp
        for i in range(30):
            arp._request(0x0A00F000 | i)
        await asyncio.sleep(0.01)
        monkeypatch.setattr(_arp, "_FRAME_FIELDS", real)
        return [s.ipv4().arp.counters.rx_packets - b for s, b in zip(stacks, before, strict=True)]

    got = sim.run(main(), seed=1)
    assert got == [0] + [30] * 19
    assert reads[0] == 30


def test_passes_by_never_keeps_the_fields_of_a_writable_buffer() -> None:
    """A view of a buffer that may be written again (a device's receive buffer) is read
    each time: the same view with other contents gets its own answer."""
    arp = _arp.Arp(b"\x02\0\0\0\0\x01", lambda bufs: None)
    arp.ips.add(0x0A000001)
    buf = bytearray(42)
    frame = memoryview(buf)
    fields = (bytes.fromhex("0001080006040001"), b"\x02\0\0\0\0\x02", 0x0A000002)
    struct.pack_into("!6s6s2s", buf, 0, b"\xff" * 6, fields[1], b"\x08\x06")
    struct.pack_into("!8s6sI6xI", buf, 14, *fields, 0x0A000099)
    assert arp.passes_by(frame)  # for another host: passes by
    struct.pack_into("!I", buf, 38, 0x0A000001)
    assert not arp.passes_by(frame)  # now for us: not passed by


def test_what_a_broadcast_alone_says_is_read_once_for_every_host() -> None:
    """Whether a frame may pass by any host at all (a request, a unicast sender MAC, a
    sender address neither multicast nor loopback) is answered with its fields, once per
    broadcast: each host then asks only about its own state."""
    sha = b"\x02\0\0\0\0\x02"

    def frame(head: str, sha: bytes, spa: int) -> memoryview:
        raw = b"\xff" * 6 + sha + b"\x08\x06" + bytes.fromhex(head) + sha
        return memoryview(raw + spa.to_bytes(4, "big") + bytes(6) + (0x0A000099).to_bytes(4, "big"))

    request = "0001080006040001"
    assert _arp._request_fields(frame(request, sha, 0x0A000002)) == (
        True,
        sha,
        0x0A000002,
        0x0A000099,
    )
    assert not _arp._request_fields(frame("0001080006040002", sha, 0x0A000002))[0]  # a reply
    assert not _arp._request_fields(frame(request, b"\x03" + sha[1:], 0x0A000002))[0]
    assert not _arp._request_fields(frame(request, sha, 0x7F000001))[0]  # loopback
    assert not _arp._request_fields(frame(request, sha, 0xE0000001))[0]  # multicast
    assert _arp._request_fields(frame(request, sha, 0xDF000001))[0]
    arp = _arp.Arp(b"\x02\0\0\0\0\x01", lambda bufs: None)
    arp.ips.add(0x0A000001)
    ok = frame(request, sha, 0x0A000002)
    assert arp.passes_by(ok) and arp.passes_by(ok)  # the second time from what was read
    assert _arp._READ[ok][0] is True
    assert not arp.passes_by(frame(request, sha, 0x7F000001))


def test_a_flood_reaches_the_ports_plugged_in_at_the_time_in_their_order() -> None:
    """What a flood reads of its ports is read once and kept until a port comes or goes:
    each broadcast still reaches every port then plugged in (mirrors get their own
    copy), in the order they were added, and nothing unplugged."""

    async def main() -> list[list[str]]:
        sw = VnetSwitch(seed=1)
        link = LinkParams(loss=1e-9)
        src = sw.add_interface("src", link=link)
        got: list[str] = []
        mirrored: list[int] = []

        def plug(name: str) -> VnetIf:
            p = sw.add_interface(name, link=link)
            p.set_receiver(lambda f: got.append(name))
            return p

        ports = [plug(f"p{i}") for i in range(4)]
        sw.add_interface("span", link=link, mirror=True).set_receiver(lambda f: mirrored.append(1))
        rounds: list[list[str]] = []
        for step in range(4):
            if step == 1:
                ports[1].unplug()
            elif step == 2:
                plug("late")
            elif step == 3:
                src.link = LinkParams(loss=1e-9, latency=0.001)  # the sender's: no matter
            src.send(arp_request(src, 0x0A00F001 + step))
            await asyncio.sleep(0.01)
            rounds.append(got[:])
            got.clear()
            if step == 0:
                kept = sw._fabric._flood_to
            elif step == 3:
                assert (
                    sw._fabric._flood_to is not None and sw._fabric._flood_to is not kept
                )  # made again
        assert len(mirrored) == 4
        return rounds

    assert sim.run(main()) == [
        ["p0", "p1", "p2", "p3"],
        ["p0", "p2", "p3"],
        ["p0", "p2", "p3", "late"],
        ["p0", "p2", "p3", "late"],
    ]


def test_floods_read_the_ports_once_between_changes() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        src = sw.add_interface("src", link=LinkParams(loss=1e-9))
        for i in range(3):
            sw.add_interface(f"p{i}", link=LinkParams(loss=1e-9)).set_receiver(lambda f: None)
        src.send(arp_request(src, 0x0A00F001))
        first = sw._fabric._flood_to
        src.send(arp_request(src, 0x0A00F002))
        assert first is not None and sw._fabric._flood_to is first
        assert [t[0].name for t in first] == ["src", "p0", "p1", "p2"]
        await asyncio.sleep(0.01)

    sim.run(main())
