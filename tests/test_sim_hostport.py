"""A simulated host's port shows its observer a burst in one call (at 500 hosts every
frame a stack sends passes here), and the observer counts it as frame by frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from miragekit.link import VnetSwitch
from miragekit.sim._hostport import HostPort
from miragekit.sim._observe import HostObserver
from miragekit.v1 import Buffer


def tcp_frame(flags: int, seq: int, payload: bytes = b"") -> bytes:
    """An Ethernet frame with an IPv4 TCP segment from 10.0.0.1:1000 to 10.0.0.2:80."""
    tl = 40 + len(payload)
    ip = (
        bytes([0x45, 0])
        + tl.to_bytes(2, "big")
        + bytes(4)
        + bytes([64, 6])
        + bytes(2)
        + bytes([10, 0, 0, 1, 10, 0, 0, 2])
    )
    tcp = (
        (1000).to_bytes(2, "big")
        + (80).to_bytes(2, "big")
        + seq.to_bytes(4, "big")
        + bytes(4)
        + bytes([0x50, flags])
        + bytes(6)
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + payload


BURST: list[Buffer] = [
    tcp_frame(0x02, 100),  # SYN: a connect
    tcp_frame(0x10, 101, b"x" * 50),
    bytearray(tcp_frame(0x10, 151, b"y" * 20)),
    memoryview(tcp_frame(0x10, 101, b"x" * 50)),  # a retransmission
    tcp_frame(0x11, 171),  # FIN
    b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28),  # ARP
]


def observer(log: list[str]) -> HostObserver:
    return HostObserver("h", log.append, {}, None)


def test_a_burst_is_counted_as_its_frames_one_by_one() -> None:
    one_log: list[str] = []
    burst_log: list[str] = []
    one, burst = observer(one_log), observer(burst_log)
    for f in BURST:
        one.sent((f,))
    burst.sent_frames(BURST)
    assert burst.counters == one.counters
    assert burst_log == one_log
    c = burst.counters
    assert (c.frames_out, c.tcp_connects, c.tcp_retransmits) == (6, 1, 1)


def test_the_port_shows_its_observer_a_burst_in_one_call() -> None:
    calls: list[tuple[str, int]] = []

    class Watch(HostObserver):
        def sent(self, parts: Sequence[Buffer]) -> None:
            calls.append(("sent", len(parts)))
            super().sent(parts)

        def sent_frames(self, frames: Sequence[Buffer]) -> None:
            calls.append(("sent_frames", len(frames)))
            super().sent_frames(frames)

    sw = VnetSwitch(seed=1)
    port = HostPort(sw.add_interface("a"), Watch("h", lambda line: None, {}, None))
    out: list[Any] = []
    port._batch = out.extend  # the switch port's send_frames, here a list
    port.send_frames(BURST)
    assert calls == [("sent_frames", 6)]
    assert out == BURST
    port.dead()
    port.send_frames(BURST)  # nothing a dead host sends is seen
    assert calls == [("sent_frames", 6)]


def test_a_split_burst_is_joined_once_and_shown_as_one() -> None:
    """What a stack's flush of data hands over (headers and bodies apart): the port joins
    each frame and passes the burst on as :meth:`HostPort.send_frames` would."""
    calls: list[tuple[str, int]] = []

    class Watch(HostObserver):
        def sent_frames(self, frames: Sequence[Buffer]) -> None:
            calls.append(("sent_frames", len(frames)))
            super().sent_frames(frames)

    whole = [bytes(f) for f in BURST[1:4]]
    heads = [f[:54] for f in whole]
    bodies: list[Buffer] = [whole[0][54:], bytearray(whole[1][54:]), memoryview(whole[2][54:])]
    sw = VnetSwitch(seed=1)
    log: list[str] = []
    obs = Watch("h", log.append, {}, None)
    port = HostPort(sw.add_interface("a"), obs)
    out: list[Any] = []
    port._batch = out.extend
    port.send_frames([BURST[0]])  # the connection's SYN
    port.send_split(heads, bodies)
    assert calls == [("sent_frames", 1), ("sent_frames", 3)]
    assert out[1:] == whole and all(type(f) is bytes for f in out)
    ref = observer([])
    ref.sent_frames(BURST[:4])
    assert obs.counters == ref.counters
    assert obs.counters.tcp_retransmits == 1
