"""The switch's seeded impairments: reproducible per direction, and ECN marking.

Frames are built and checked with scapy; the switch runs in simulated time.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from miragekit import sim
from miragekit.link import LinkParams, VnetIf, VnetSwitch, mark_ce, parse_link_settings
from miragekit.link._impair import ImpairCounters, _Direction, link_rng


def frame(src: VnetIf, dst: VnetIf, seq: int, tos: int = 0) -> bytes:
    pkt = (
        Ether(src=str(src.mac()), dst=str(dst.mac()))
        / IP(src="10.0.0.1", dst="10.0.0.2", tos=tos)
        / UDP(sport=1, dport=2)
        / Raw(seq.to_bytes(4, "big"))
    )
    return bytes(pkt)


def frame6(src: VnetIf, dst: VnetIf, tc: int) -> bytes:
    pkt = Ether(src=str(src.mac()), dst=str(dst.mac())) / IPv6(tc=tc) / UDP() / Raw(b"x")
    return bytes(pkt)


async def received_seqs(seed: int, reverse_every: int) -> list[int]:
    """300 frames a->b over a lossy, duplicating, reordering link, with b sending a frame
    back after every ``reverse_every``-th (0: never); the sequence numbers b gets."""
    sw = VnetSwitch(seed=seed)
    a = sw.add_interface("a", link=LinkParams(loss=0.1, duplicate=0.05, reorder=0.05))
    b = sw.add_interface("b")
    got: list[int] = []
    b.set_receiver(lambda f: got.append(int.from_bytes(bytes(f[-4:]), "big")))
    a.set_receiver(lambda f: None)
    for i in range(300):
        a.send(frame(a, b, i))
        if reverse_every and i % reverse_every == 0:
            b.send(frame(b, a, 10_000 + i))
        await asyncio.sleep(0.001)
    await asyncio.sleep(1)
    return got


def test_decisions_depend_on_the_seed_and_the_frame_index_only() -> None:
    quiet = sim.run(received_seqs(5, 0), seed=1)
    # Traffic the other way, and another event-loop seed, change nothing on this direction.
    busy = sim.run(received_seqs(5, 3), seed=2)
    assert quiet == busy
    assert len(set(quiet)) < 300 and len(quiet) != len(set(quiet))  # losses, duplicates
    assert sim.run(received_seqs(6, 0), seed=1) != quiet


def test_ecn_flag_marks_ect_packets_where_loss_would_drop() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a", link=LinkParams(loss=1.0, ecn=True))
        b = sw.add_interface("b")
        got: list[bytes] = []
        b.set_receiver(lambda f: got.append(bytes(f)))
        a.send(frame(a, b, 1, tos=0x02))  # ECT(0)
        a.send(frame(a, b, 2, tos=0x01))  # ECT(1)
        a.send(frame(a, b, 3, tos=0x00))  # not ECN-capable: dropped
        a.send(frame6(a, b, tc=0x02))  # IPv6 ECT(0)
        await asyncio.sleep(0.1)
        assert len(got) == 3
        for f in got[:2]:
            ip = Ether(f)[IP]
            assert ip.tos & 3 == 3
            good = IP(bytes(ip))
            del good.chksum
            assert IP(bytes(good)).chksum == ip.chksum  # the header checksum still holds
        assert Ether(got[2])[IPv6].tc & 3 == 3
        assert a.counters.marked_ce == 3 and a.counters.dropped_loss == 1

    sim.run(main(), seed=0)


def test_mark_probability_leaves_other_packets_alone() -> None:
    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a = sw.add_interface("a", link=LinkParams(mark=0.5))
        b = sw.add_interface("b")
        got: list[bytes] = []
        b.set_receiver(lambda f: got.append(bytes(f)))
        for i in range(400):
            a.send(frame(a, b, i, tos=0x02 if i % 2 else 0))
        await asyncio.sleep(0.1)
        assert len(got) == 400
        ce = [Ether(f)[IP].tos & 3 == 3 for f in got]
        assert not any(ce[0::2])  # not ECN-capable: never marked
        assert 60 <= sum(ce[1::2]) <= 140 and a.counters.marked_ce == sum(ce)

    sim.run(main(), seed=0)


def test_mark_ce_only_touches_ect_ip() -> None:
    sw = VnetSwitch(seed=1)
    a, b = sw.add_interface("a"), sw.add_interface("b")
    assert mark_ce(frame(a, b, 1, tos=0)) is None
    assert mark_ce(frame(a, b, 1, tos=3)) is None  # already CE
    assert mark_ce(frame6(a, b, tc=0)) is None
    assert mark_ce(b"\xff" * 60) is None  # not IP
    assert mark_ce(b"\x00" * 20) is None  # too short


def test_link_settings_parse_and_name_what_is_wrong() -> None:
    assert parse_link_settings("loss=0.01,rate=10M,ecn=true,queue_frames=50") == {
        "loss": 0.01,
        "rate": 10e6,
        "ecn": True,
        "queue_frames": 50,
    }
    for bad, msg in [
        ("lose=0.1", "'lose' is unknown"),
        ("loss=2", "probability"),
        ("loss", "expected KEY=VALUE"),
        ("latency=fast", "not a number"),
        ("up=maybe", "true or false"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_link_settings(bad)


def test_a_plain_link_draws_per_frame_what_lost_draws() -> None:
    """The draws written out in ``_Direction.carry`` and in a port's send (a link without
    latency) are ``_Direction.lost``'s: the same generator state and the same losses
    after every frame, whoever made them."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        link = LinkParams(loss=0.3)
        ref = _Direction(lambda f: None, random.Random(7))
        carried = _Direction(lambda f: None, random.Random(7))
        ref_c, carried_c = ImpairCounters(), ImpairCounters()
        sw = VnetSwitch(seed=3)
        a, b = sw.add_interface("a", link=link), sw.add_interface("b", link=link)
        b.set_receiver(lambda f: None)
        up = _Direction(lambda f: None, link_rng(3, "a", "up"))
        up_c = ImpairCounters()
        for i in range(200):
            ref.lost(link, ref_c)
            carried.carry(link, carried_c, b"x" * 60, loop.time(), loop)
            assert carried.rng.getstate() == ref.rng.getstate(), i
            assert carried_c.dropped_loss == ref_c.dropped_loss, i
            up.lost(link, up_c)
            a.send(b.mac().packed + a.mac().packed + b"\x08\x00" + bytes(46))
            assert a._up.rng.getstate() == up.rng.getstate(), i
            assert a.counters.dropped_loss == up_c.dropped_loss, i
        assert 30 < ref_c.dropped_loss < 90 and 30 < up_c.dropped_loss < 90
        await asyncio.sleep(0.01)

    sim.run(main())
