"""A host's observer reads the frames its stack sends: the ordinary segment (an ACK or
data on a connection it has seen, IPv4 without options) is read straight from the frame
with nothing to do but move the connection's highest sequence number; everything else
goes the general way. Both ways count and log the same."""

from __future__ import annotations

from typing import Any

from miragekit.sim._observe import HostObserver
from miragekit.v1 import Buffer

A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
A6, B6 = bytes(15) + b"\x01", bytes(15) + b"\x02"
SYN, FIN, RST, ACK, PSH = 0x02, 0x01, 0x04, 0x10, 0x08


def v4(
    flags: int,
    seq: int,
    payload: bytes = b"",
    *,
    src: bytes = A,
    dst: bytes = B,
    sport: int = 1000,
    dport: int = 80,
    options: bytes = b"",
    frag: int = 0,
    proto: int = 6,
) -> bytes:
    """An Ethernet frame with an IPv4 TCP segment (``options``: IP options)."""
    ihl = 20 + len(options)
    tl = ihl + 20 + len(payload)
    ip = (
        bytes([0x40 | ihl // 4, 0])
        + tl.to_bytes(2, "big")
        + bytes(2)
        + frag.to_bytes(2, "big")
        + bytes([64, proto])
        + bytes(2)
        + src
        + dst
        + options
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp(flags, seq, sport, dport) + payload


def v6(flags: int, seq: int, payload: bytes = b"") -> bytes:
    ip = bytes([0x60, 0, 0, 0]) + (20 + len(payload)).to_bytes(2, "big") + bytes([6, 64])
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip + A6 + B6 + tcp(flags, seq) + payload


def tcp(flags: int, seq: int, sport: int = 1000, dport: int = 80) -> bytes:
    head = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + seq.to_bytes(4, "big")
    return head + bytes(4) + bytes([0x50, flags]) + bytes(6)


# What a host sends over a run, with the replies it receives ("in") in between.
SCRIPT: list[tuple[str, bytes]] = [
    ("out", v4(SYN, 0xFFFFFF00)),  # connect
    ("out", v4(ACK, 0xFFFFFF01)),  # a pure ACK on it
    ("out", v4(ACK | PSH, 0xFFFFFF01, b"x" * 0x100)),  # across the wrap of sequence numbers
    ("out", v4(ACK | PSH, 0x00000001, b"y" * 50)),
    ("out", v4(ACK | PSH, 0xFFFFFF01, b"x" * 0x100)),  # a retransmission
    ("out", v4(ACK | PSH, 0x00000020, b"y" * 50)),  # starts before the top: one too
    ("out", v4(ACK, 0x00000001, b"", options=b"\x01\x01\x01\x00")),  # with IP options
    ("out", v4(ACK | PSH, 0x00000053, b"z" * 10, options=b"\x01\x01\x01\x00")),
    ("out", v4(ACK, 0x00000001, sport=2000)),  # a connection never seen: its flow starts
    ("in", v4(ACK | FIN, 7, src=B, dst=A, sport=80, dport=2000)),
    ("out", v4(ACK | FIN, 1, sport=2000)),  # closed
    ("out", v4(RST, 5, sport=3000)),  # reset sent (no connection)
    ("out", v4(SYN | ACK, 99, sport=80, dport=4000)),  # accept
    ("in", v4(RST, 1, src=B, dst=A, sport=4000, dport=80)),  # reset by peer
    ("out", v4(ACK, 1, b"q" * 9, frag=0x2001)),  # a fragment: no segment
    ("out", v4(ACK, 1, b"q" * 9, proto=17)),  # UDP
    ("out", v6(SYN, 500)),  # IPv6: connect
    ("out", v6(ACK, 501, b"w" * 30)),
    ("out", v6(ACK, 501, b"w" * 30)),  # a retransmission
    ("out", b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)),  # ARP
    ("out", v4(ACK | FIN, 0x5D)),  # our FIN on the first connection
    ("in", v4(ACK | FIN, 1, src=B, dst=A, sport=80, dport=1000)),  # theirs: closed
]

EXPECTED_LOG = [
    "h: connect 10.0.0.1:1000 server:80",
    "h: closed 10.0.0.1:2000 server:80",
    "h: reset sent (no connection) 10.0.0.1:3000 server:80",
    "h: accept 10.0.0.1:80 server:4000",
    "h: reset by peer 10.0.0.1:80 server:4000",
    "h: connect [::1]:1000 [::2]:80",
    "h: closed 10.0.0.1:1000 server:80",
]


def play(script: list[tuple[str, bytes]], *, burst: bool, kind: Any = bytes) -> HostObserver:
    """Run ``script`` through an observer: each frame sent on its own (:meth:`sent`), or
    the frames between two received ones as one burst (:meth:`sent_frames`)."""
    log: list[str] = []
    obs = HostObserver("h", log.append, {B: "server"}, None)
    pending: list[Buffer] = []
    for way, frame in script:
        if way == "in":
            obs.sent_frames(pending)
            pending = []
            obs.received(memoryview(frame))
        elif burst:
            pending.append(kind(frame))
        else:
            obs.sent((kind(frame),))
    obs.sent_frames(pending)
    obs.log = log  # type: ignore[attr-defined]
    return obs


def test_a_burst_counts_and_logs_what_frame_by_frame_does() -> None:
    one = play(SCRIPT, burst=False)
    for kind in (bytes, bytearray, memoryview):
        burst = play(SCRIPT, burst=True, kind=kind)
        assert burst.counters == one.counters, kind
        assert burst.log == one.log == EXPECTED_LOG, kind  # type: ignore[attr-defined]
    c = one.counters
    assert (c.tcp_connects, c.tcp_accepts, c.tcp_retransmits) == (2, 1, 3)
    assert (c.tcp_resets_out, c.tcp_resets_in) == (1, 1)
    assert c.frames_out == sum(way == "out" for way, _ in SCRIPT)
    assert c.bytes_out == sum(len(f) for way, f in SCRIPT if way == "out")
    assert len(one._flows) == 1  # the IPv6 connection, still open


def test_an_ordinary_segment_on_a_known_connection_takes_no_general_path() -> None:
    calls: list[int] = []

    class Watch(HostObserver):
        def _segment(self, key: bytes, seq: int, flags: int, used: int) -> None:
            calls.append(flags)
            super()._segment(key, seq, flags, used)

    obs = Watch("h", lambda line: None, {}, None)
    obs.sent_frames([v4(SYN, 1)])
    assert calls == [SYN]
    obs.sent_frames([v4(ACK, 2), v4(ACK | PSH, 2, b"x" * 10), v4(ACK | PSH, 2, b"x" * 10)])
    assert calls == [SYN]  # the ACK, the data and its retransmission: read in place
    assert obs.counters.tcp_retransmits == 1
    obs.sent_frames([v4(ACK, 2, sport=7)])  # an unknown connection: the general way
    obs.sent_frames([v4(ACK | FIN, 12)])  # a FIN: the general way
    assert calls == [SYN, ACK, ACK | FIN]


def test_a_flows_highest_sequence_number_is_a_plain_int() -> None:
    """-1 before its first data, then the number itself: no boxed int in another object
    (and cache line) to read back at every frame of the connection."""
    log: list[str] = []
    obs = HostObserver("h", log.append, {}, None)
    obs.sent_frames([v4(SYN, 0xFFFFFF00)])
    (flow,) = obs._flows.values()
    assert flow.snd_max == 0xFFFFFF01
    obs.sent_frames([v4(ACK, 0xFFFFFF01)])
    assert flow.snd_max == 0xFFFFFF01
    fresh = type(flow)()
    assert fresh.snd_max == -1
    obs.sent_frames([v4(ACK | PSH, 0xFFFFFFF0, b"x" * 32)])
    assert flow.snd_max == 0x10
    assert obs.counters.tcp_retransmits == 0
    obs.sent_frames([v4(ACK | PSH, 0xFFFFFFF0, b"x" * 32)])
    assert flow.snd_max == 0x10 and obs.counters.tcp_retransmits == 1
