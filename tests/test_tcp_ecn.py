"""ECN (RFC 3168 6.1), sans-I/O: the exact flags and IP codepoints of every segment.

``TCPRepr.ecn`` is the IP header's ECN codepoint: what the segment goes out with (2 is
ECT(0)) or arrived with (3 is CE).
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import (
    LOCAL_ISS,
    LOCAL_SEQ,
    PLAIN,
    REMOTE_ISS,
    REMOTE_SEQ,
    events,
    out,
    seg_in,
    seg_out,
    state,
)

from miragekit.tcp import Config, Connection, State, TCPEndpoint
from miragekit.wire.tcp import ACK, CWR, ECE, PSH, SYN, TCPRepr

ECT0 = 2
CE = 3
MSS = 1000


def acks(segs: list[TCPRepr]) -> list[tuple[int, int, int, int]]:
    """(flags, ack, payload length, IP codepoint) of each segment."""
    return [(s.flags, s.ack, len(s.payload), s.ecn) for s in segs]


def cfg(**kw: object) -> Config:
    return dataclasses.replace(PLAIN, **kw)  # type: ignore[arg-type]


def passive(config: Config, syn_flags: int = SYN | ECE | CWR) -> tuple[Connection, list[TCPRepr]]:
    conn = Connection.accept(config, seg_in(syn_flags, REMOTE_ISS, 0, mss=MSS), LOCAL_ISS, 0.0)
    return conn, out(conn)


def negotiated(config: Config | None = None) -> Connection:
    """A passive connection that agreed to ECN, ESTABLISHED, nothing pending."""
    conn, synack = passive(config or cfg())
    assert [s.flags for s in synack] == [SYN | ACK | ECE]
    conn.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    assert state(conn) == State.ESTABLISHED
    events(conn)
    assert out(conn) == []
    return conn


def active(config: Config) -> tuple[Connection, list[TCPRepr]]:
    conn = Connection.connect(config, 80, 49500, LOCAL_ISS, 0.0)
    return conn, out(conn)


def synack_in(flags: int) -> TCPRepr:
    return seg_in(SYN | ACK | flags, REMOTE_ISS, LOCAL_SEQ, mss=MSS)


# ---------------------------------------------------------------- negotiation


def test_active_open_asks_with_ece_and_cwr_when_on() -> None:
    c, syn = active(cfg(ecn="on"))
    assert syn == [seg_out(SYN | ECE | CWR, LOCAL_ISS, 0, mss=1460)]
    assert syn[0].ecn == 0  # never ECT on a SYN (6.1.1)
    c.handle_segment(0.01, synack_in(ECE))
    assert state(c) == State.ESTABLISHED
    c.send(b"x" * 10)
    segs = out(c, 0.01)
    # The handshake's pure ACK is not ECT; the data is ECT(0).
    assert [(s.flags, len(s.payload), s.ecn) for s in segs] == [(ACK | PSH, 10, ECT0)]


@pytest.mark.parametrize("mode", ["accept", "off"])
def test_active_open_asks_nothing_unless_on(mode: str) -> None:
    c, syn = active(cfg(ecn=mode))
    assert syn == [seg_out(SYN, LOCAL_ISS, 0, mss=1460)]
    c.handle_segment(0.01, synack_in(ECE))  # a SYN-ACK agreeing to what we never asked
    c.send(b"x")
    assert [s.ecn for s in out(c, 0.01)] == [0]


@pytest.mark.parametrize("synack_flags", [0, ECE | CWR, CWR])
def test_active_open_without_agreement_sends_no_ect(synack_flags: int) -> None:
    c, _ = active(cfg(ecn="on"))
    c.handle_segment(0.01, synack_in(synack_flags))
    assert state(c) == State.ESTABLISHED
    c.send(b"x")
    assert [(s.flags, s.ecn) for s in out(c, 0.01)] == [(ACK | PSH, 0)]


def test_retransmitted_syn_drops_the_ecn_setup() -> None:
    """6.1.1.1: the retried SYN goes without ECE/CWR, and ECN stays off."""
    c, syn = active(cfg(ecn="on"))
    assert syn[0].flags == SYN | ECE | CWR
    c.handle_timer(1.0)
    assert [s.flags for s in out(c, 1.0)] == [SYN]
    c.handle_segment(1.01, synack_in(ECE))
    c.send(b"x")
    assert [s.ecn for s in out(c, 1.01)] == [0]


@pytest.mark.parametrize("mode", ["accept", "on"])
def test_passive_open_agrees_with_ece_alone(mode: str) -> None:
    _, synack = passive(cfg(ecn=mode))
    assert synack == [seg_out(SYN | ACK | ECE, LOCAL_ISS, REMOTE_SEQ, mss=1460)]
    assert synack[0].ecn == 0


@pytest.mark.parametrize(
    ("mode", "syn_flags"),
    [("off", SYN | ECE | CWR), ("accept", SYN | ECE), ("accept", SYN | CWR), ("on", SYN)],
)
def test_passive_open_declines(mode: str, syn_flags: int) -> None:
    c, synack = passive(cfg(ecn=mode), syn_flags)
    assert synack == [seg_out(SYN | ACK, LOCAL_ISS, REMOTE_SEQ, mss=1460)]
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    c.send(b"x")
    assert [s.ecn for s in out(c)] == [0]


def test_config_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="ecn: 'yes' is not one of off, accept, on"):
        Config(ecn="yes")


# ---------------------------------------------------------------- the receiver


def test_ce_mark_is_echoed_until_cwr() -> None:
    c = negotiated()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100, ecn=CE))
    assert c.stats["ce_received"] == 1
    # The first mark is ACKed at once, with ECE.
    assert acks(out(c)) == [(ACK | ECE, REMOTE_SEQ + 100 - 2**32, 0, 0)]
    # Unmarked data: the echo goes on (the sender may not have heard yet).
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ + 100, LOCAL_SEQ, b"b" * 100, ecn=ECT0))
    assert acks(out(c, 0.01)) == [(ACK | ECE, REMOTE_SEQ + 200 - 2**32, 0, 0)]
    # Our own data carries the echo too (and is ECT(0)).
    c.send(b"reply")
    segs = out(c, 0.02)
    assert [(s.flags, s.ecn) for s in segs] == [(ACK | PSH | ECE, ECT0)]
    # CWR ends it.
    c.handle_segment(0.03, seg_in(ACK | CWR, REMOTE_SEQ + 200, LOCAL_SEQ + 5, b"c" * 100))
    assert acks(out(c, 0.03)) == [(ACK, REMOTE_SEQ + 300 - 2**32, 0, 0)]
    assert c.stats["cwr_received"] == 1


def test_cwr_and_ce_on_one_segment_keep_the_echo() -> None:
    c = negotiated()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100, ecn=CE))
    out(c)
    c.handle_segment(0.01, seg_in(ACK | CWR, REMOTE_SEQ + 100, LOCAL_SEQ, b"b" * 100, ecn=CE))
    assert acks(out(c, 0.01)) == [(ACK | ECE, REMOTE_SEQ + 200 - 2**32, 0, 0)]
    assert c.stats["ce_received"] == 2


def test_ce_is_ignored_without_negotiation() -> None:
    c, _ = passive(cfg(), SYN)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ))
    out(c)
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100, ecn=CE))
    assert acks(out(c)) == [(ACK, REMOTE_SEQ + 100 - 2**32, 0, 0)]


# ---------------------------------------------------------------- the sender


def sender_with_flight(n: int = 4) -> Connection:
    """Negotiated, window open, ``n`` full segments in flight (all ECT(0))."""
    c = negotiated(cfg(send_buffer=64000))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=64000))
    c.send(b"d" * (MSS * n))
    segs = out(c)
    assert [(len(s.payload), s.ecn, s.flags & (ECE | CWR)) for s in segs] == [(MSS, ECT0, 0)] * n
    return c


def test_ece_reduces_once_per_window_and_sets_cwr() -> None:
    c = sender_with_flight(4)
    assert c.cwnd == 10 * MSS
    # An ECE ACK for the first segment: ssthresh = flight/2, cwnd = ssthresh.
    c.handle_segment(0.01, seg_in(ACK | ECE, REMOTE_SEQ, LOCAL_SEQ + MSS))
    assert c.stats["ecn_reductions"] == 1
    assert c.ssthresh == c.cwnd == 4 * MSS // 2
    # More ECEs for data of the same window: no second reduction.
    c.handle_segment(0.02, seg_in(ACK | ECE, REMOTE_SEQ, LOCAL_SEQ + 2 * MSS))
    assert c.stats["ecn_reductions"] == 1
    assert out(c, 0.02) == []  # 2 segments in flight fill the halved window
    # The next new data segment carries CWR (once), ECT(0) as always.
    c.handle_segment(0.025, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 3 * MSS))
    c.send(b"e" * (2 * MSS))
    segs = out(c, 0.025)
    # (4 segments never filled cwnd: the ACKs grew nothing, one fits beside the one
    # in flight)
    assert [(s.flags & (ECE | CWR), s.ecn) for s in segs] == [(CWR, ECT0)]
    assert segs[0].seq == (LOCAL_SEQ + 4 * MSS) & 0xFFFFFFFF
    # Once everything sent before the reduction is acknowledged, ECE counts again.
    c.handle_segment(0.03, seg_in(ACK | ECE, REMOTE_SEQ, LOCAL_SEQ + 4 * MSS))
    assert c.stats["ecn_reductions"] == 1  # ack == snd.max at the reduction: same window
    c.handle_segment(0.04, seg_in(ACK | ECE, REMOTE_SEQ, LOCAL_SEQ + 5 * MSS))
    assert c.stats["ecn_reductions"] == 2
    assert c.stats["retransmits"] == 0


def test_retransmissions_are_not_ect() -> None:
    c = sender_with_flight(2)
    t = c.poll_at()
    assert t is not None
    c.handle_timer(t)
    segs = out(c, t)
    assert [(s.seq, s.ecn) for s in segs] == [(LOCAL_SEQ & 0xFFFFFFFF, 0)]
    assert c.stats["retransmits"] == 1


def test_window_probe_and_pure_acks_are_not_ect() -> None:
    c = negotiated()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, window=0))
    c.send(b"hello")
    assert out(c) == []
    c.handle_timer(0.2)
    probe = out(c, 0.2)
    assert probe == [seg_out(ACK, LOCAL_SEQ - 1, REMOTE_SEQ)]  # old sequence number, no data
    assert probe[0].ecn == 0
    c.handle_segment(0.3, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"q" * 10, window=0))
    acks = out(c, 0.3)
    assert [(s.flags, len(s.payload), s.ecn) for s in acks] == [(ACK, 0, 0)]


def test_endpoint_passes_the_ce_mark_from_ip() -> None:
    """``handle_packet(..., ecn=3)``: the IP header's CE reaches the connection."""
    ep = TCPEndpoint(cfg(), secret=bytes(16))
    ep.listen(80)
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    syn = seg_in(SYN | ECE | CWR, REMOTE_ISS, 0, mss=MSS)
    ep.handle_packet(0.0, a, b, syn.to_bytes(a, b))
    (_, _, synack), *_ = ep.segments_to_send(0.0)
    assert synack.flags == SYN | ACK | ECE
    ack = seg_in(ACK, REMOTE_SEQ, (synack.seq + 1) & 0xFFFFFFFF)
    ep.handle_packet(0.0, a, b, ack.to_bytes(a, b))
    data = seg_in(ACK, REMOTE_SEQ, (synack.seq + 1) & 0xFFFFFFFF, b"z" * 50)
    ep.handle_packet(0.0, a, b, data.to_bytes(a, b), ecn=CE)
    assert [s.flags for _, _, s in ep.segments_to_send(0.0)] == [ACK | ECE]
    conn = ep.accept(80)
    assert conn is not None and conn.stats["ce_received"] == 1
