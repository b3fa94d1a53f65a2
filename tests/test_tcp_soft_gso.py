"""Software segmentation over IPv4 without offload: a connection hands each burst over as
one segment (``Config.tso_max``) and :meth:`TcpSender.burst` cuts it at the MSS.

What is checked: the cut (sequence numbers, flags, payload) against
:func:`cut_segment`, frame for frame against the prebuilt path's single frames and
against the general path; and whole transfers (with loss, Nagle's runts, a FIN, ECN)
whose every frame is the same with and without it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_tcp_sender import LADDR, RADDR, _but_ident, _general, _layer, _scapy_checks

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.net import TCP as TCPLayer
from miragekit.net import IPv4Stack
from miragekit.net._tcp import SOFT_GSO_MAX, TcpSender
from miragekit.result import Ok
from miragekit.tcp import Config
from miragekit.wire.tcp import ACK, CWR, ECE, FIN, PSH, TCPRepr, cut_flags, cut_segment


def test_cut_flags_put_psh_and_fin_last_and_cwr_first() -> None:
    first, middle, last = cut_flags(ACK | PSH | FIN | CWR | ECE)
    assert first == ACK | CWR | ECE
    assert middle == ACK | ECE
    assert last == ACK | PSH | FIN | ECE


def test_cut_segment_follows_on_and_wraps() -> None:
    payload = bytes(range(256)) * 20  # 5120 bytes
    seg = TCPRepr(1, 2, 2**32 - 2000, 7, ACK | PSH | CWR, 100, payload, timestamp=(5, 6))
    pieces = cut_segment(seg, 1448)
    assert [len(p.payload) for p in pieces] == [1448, 1448, 1448, 776]
    assert [p.seq for p in pieces] == [2**32 - 2000, 2**32 - 552, 896, 2344]
    assert [p.flags for p in pieces] == [ACK | CWR, ACK, ACK, ACK | PSH]
    assert b"".join(bytes(p.payload) for p in pieces) == payload
    assert all(p.timestamp == (5, 6) and p.ack == 7 and p.window == 100 for p in pieces)
    assert cut_segment(seg, 5120) == [seg]


def _burst(
    seq: int, ack: int, flags: int, win: int, plen: int, ts: tuple[int, int] | None, ecn: int
) -> TCPRepr:
    payload = random.Random(plen).randbytes(plen)
    return TCPRepr(40000, 80, seq, ack, flags, win, payload, timestamp=ts, ecn=ecn)


bursts = st.tuples(
    st.builds(
        _burst,
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.sampled_from([ACK, ACK | PSH, ACK | FIN, ACK | PSH | FIN, ACK | ECE | CWR]),
        st.integers(0, 65535),
        st.integers(1449, SOFT_GSO_MAX),
        st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
        st.sampled_from([0, 2]),  # Not-ECT, ECT(0)
    ),
    st.sampled_from([536, 1000, 1448]),
)


@settings(max_examples=60, deadline=None)
@given(cases=st.lists(bursts, min_size=1, max_size=3))
def test_burst_is_the_frames_of_the_cut_segments(cases: list[tuple[TCPRepr, int]]) -> None:
    """Each frame of a burst is byte for byte the prebuilt path's frame of the same piece
    of :func:`cut_segment` (the IPv4 ID counting on), and the general path's frame of it
    but for the ID; every frame fits the MTU and both checksums are right."""

    async def main() -> None:
        ip, _ = await _layer()
        ref, ref_link = await _layer()
        now = asyncio.get_running_loop().time()
        for seg, mss in cases:
            sender = TcpSender(ip, LADDR, RADDR, 40000, 80)
            single = TcpSender(ip, LADDR, RADDR, 40000, 80)
            sender.frame(seg._replace(payload=b""), now)  # headers built, ident taken
            single.frame(seg._replace(payload=b""), now)
            single._ident = sender._ident
            heads: list[bytes] = []
            bodies: list[Any] = []
            assert sender.burst(seg, now, mss, heads, bodies)
            got = [h + b for h, b in zip(heads, bodies, strict=True)]
            pieces = cut_segment(seg, mss)
            assert got == [single.frame(p, now) for p in pieces]
            for frame, piece in zip(got, pieces, strict=True):
                assert len(frame) <= 1514
                assert _but_ident(frame) == _but_ident(_general(ref, ref_link, piece))
                _scapy_checks(frame)

    asyncio.run(main())


def test_burst_declines_what_the_prebuilt_headers_do_not_cover() -> None:
    async def main() -> None:
        ip, _ = await _layer()
        now = asyncio.get_running_loop().time()
        sender = TcpSender(ip, LADDR, RADDR, 40000, 80)
        big = TCPRepr(40000, 80, 1, 2, ACK, 3, bytes(5000), timestamp=(1, 2))
        out: list[bytes] = []
        bodies: list[Any] = []
        assert not sender.burst(big._replace(ecn=3), now, 1448, out, bodies)  # CE: not prebuilt
        assert not sender.burst(big._replace(sack_blocks=((9, 10),)), now, 1448, out, bodies)
        assert not sender.burst(big, now, 1449, out, bodies)  # 1449 + 52 > 1500
        assert out == [] and bodies == []

    asyncio.run(main())


async def _transfer(tso_max: int, loss: float) -> list[bytes]:
    """A bulk transfer from h1 to h2 over the switch in simulated time (ECN on, ``loss``
    and as many CE marks): h1's frames."""
    sw = VnetSwitch()
    frames: list[bytes] = []
    stacks = []
    for i in (1, 2):
        vif = sw.add_interface(
            f"h{i}", link=LinkParams(latency=0.002, rate=100e6, loss=loss, mark=loss)
        )
        if i == 1:
            send = vif._send

            def record(data: Any, send: Any = send) -> None:
                frames.append(bytes(data))
                send(data)

            vif._send = record  # type: ignore[method-assign]
        stacks.append(await IPv4Stack.connect(vif, cidr=f"10.0.0.{i}/24"))
    cfg = Config(mss=1460, tso_max=tso_max, send_buffer=256 * 1024, recv_buffer=256 * 1024,
                 ecn="on")  # fmt: skip
    a = TCPLayer(stacks[0].ipv4, config=cfg)
    b = TCPLayer(stacks[1].ipv4, config=Config(mss=1460, ecn="on"))
    got = bytearray()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def sink(flow: Any) -> None:
        while isinstance(r := await flow.read(), Ok):
            got.extend(r.value)
            if len(got) > 500_000:
                await asyncio.sleep(0.01)  # a slow reader: the window closes and opens
        done.set_result(None)

    b.listen(80, sink)
    r = await a.create_connection((ipaddress.IPv4Address("10.0.0.2"), 80))
    assert isinstance(r, Ok)
    flow = r.value
    data = random.Random(9).randbytes(1_500_000)
    assert await flow.write(data[:1_000_000]) == Ok(None)
    for i in range(20):  # small writes while the bulk is under way
        assert await flow.write(data[1_000_000 + i * 700 : 1_000_000 + (i + 1) * 700]) == Ok(None)
        await asyncio.sleep(0.003)
    while flow.connection.send_queued:
        await asyncio.sleep(0.01)
    for i in range(10):  # alone: two segments and a runt, which Nagle holds for the ACK
        off = 1_014_000 + i * 3000
        assert await flow.write(data[off : off + 3000]) == Ok(None)
        await asyncio.sleep(0.02)
    assert await flow.write(data[1_044_000:]) == Ok(None)
    await flow.close()
    await asyncio.wait_for(done, 120)
    assert bytes(got) == data
    return frames


def test_transfer_frames_are_the_same_with_and_without_software_segmentation() -> None:
    """The frames of whole transfers, byte for byte, with the connection emitting one
    segment per burst (cut by TcpSender.burst) and one per MSS (tso_max 0): bulk and
    small writes, a slow reader, loss and its recovery, ECN, the FIN."""
    for loss in (0.0, 0.01):
        per_segment = sim.run(_transfer(0, loss), seed=4)
        cut = sim.run(_transfer(SOFT_GSO_MAX, loss), seed=4)
        assert len(per_segment) > 1000
        assert max(map(len, cut)) <= 1514
        assert cut == per_segment


def test_ipv4_without_offload_defaults_to_software_segmentation() -> None:
    async def main() -> None:
        sw = VnetSwitch()
        stack = await IPv4Stack.connect(sw.add_interface("h"), cidr="10.0.0.1/24")
        assert TCPLayer(stack.ipv4).config.tso_max == SOFT_GSO_MAX

    sim.run(main(), seed=1)
