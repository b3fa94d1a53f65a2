"""TIME-WAIT kept as a small record by the endpoint (``tcp/_timewait.py``).

Each probe is played twice from the same start: once as today's endpoint did it (the
whole ``Connection`` kept in TIME_WAIT, by making ``time_wait_record`` decline), once with
the record; everything the endpoint sends, its next deadline and its counters must be the
same. Then the answers themselves, spelled out.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from tests.test_direct_stack import connect, drain, run_sim, two_stacks

from miragekit.result import Ok
from miragekit.tcp import Config, Connection, State, TCPEndpoint
from miragekit.tcp._timewait import TimeWait
from miragekit.wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, SYN, TCPRepr

A = bytes([10, 0, 0, 1])  # our endpoint, port 80
B = bytes([10, 0, 0, 2])  # the peer, port CPORT
SECRET = b"0123456789abcdef"
CPORT = 40000
PEER_ISS = 1000
MSL = 1.0
T0 = 0.003  # when the endpoint enters TIME_WAIT


class TW:
    """An endpoint whose connection closed first and sits in TIME_WAIT, and the numbers
    a peer needs to probe it."""

    def __init__(self, *, ts: bool = True, sack: bool = True, ecn: bool = False) -> None:
        self.ts = ts
        cfg = Config(msl=MSL, ecn="accept" if ecn else "off")
        self.ep = ep = TCPEndpoint(cfg, secret=SECRET)
        ep.listen(80)
        self.tsval = 7000  # the peer's clock
        syn = TCPRepr(
            CPORT,
            80,
            PEER_ISS,
            0,
            SYN | (ECE | CWR if ecn else 0),
            64000,
            mss=1460,
            wscale=7,
            sack_permitted=sack,
            timestamp=(self.tsval, 0) if ts else None,
        )
        ep.handle_segment(0.0, B, A, syn)
        ((_, _, synack),) = ep.segments_to_send(0.0)
        self.our_ts = synack.timestamp[0] if synack.timestamp else 0
        snd = synack.seq + 1
        rcv = PEER_ISS + 1
        self.send(0.0, ACK, rcv, snd)
        assert self.out(0.0) == []
        conn = ep.accept(80)
        assert conn is not None
        self.send(0.001, ACK | PSH, rcv, snd, b"GET")
        rcv += 3
        assert conn.receive() == b"GET"
        conn.send(b"reply")
        conn.close()
        ep.wake(conn)
        segs = ep.segments_to_send(0.002)
        assert segs[-1][2].flags & FIN
        snd += 6
        self.send(0.003, ACK | FIN, rcv, snd)  # acks our FIN, brings the peer's
        rcv += 1
        ((_, _, ack),) = ep.segments_to_send(T0)
        assert ack.flags & ACK and ack.ack == rcv and ack.seq == snd
        assert conn.state == State.TIME_WAIT
        self.conn = conn
        self.fin_tsval = self.tsval  # TS.Recent: later segments in TIME_WAIT are not taken
        self.rcv = rcv  # RCV.NXT of our side: the peer's next sequence number
        self.snd = snd  # SND.NXT of our side

    def seg(
        self,
        flags: int,
        seq: int,
        ack: int,
        payload: bytes = b"",
        *,
        tsval: int | None = None,
        ecn: int = 0,
    ) -> TCPRepr:
        self.tsval += 1
        ts = (self.tsval if tsval is None else tsval, self.our_ts) if self.ts else None
        return TCPRepr(CPORT, 80, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, 500, payload, timestamp=ts, ecn=ecn)  # fmt: skip

    def send(self, now: float, flags: int, seq: int, ack: int, payload: bytes = b"", **kw: Any) -> None:  # fmt: skip
        self.ep.handle_segment(now, B, A, self.seg(flags, seq, ack, payload, **kw))

    def out(self, now: float) -> list[TCPRepr]:
        segs = self.ep.segments_to_send(now)
        assert all(s == A and d == B for s, d, _ in segs)
        return [seg for _, _, seg in segs]


Probe = Callable[[TW], list[Any]]


def _deadline(tw: TW) -> float | None:
    """When the 4-tuple's state next needs a timer (the endpoint's own poll_at may come
    earlier: it keeps a connection's earlier timer entries and re-arms when they fire)."""
    key = (A, 80, B, CPORT)
    conn = tw.ep.connections.get(key)
    if conn is not None:
        return conn.poll_at()
    rec = tw.ep.time_wait.get(key)
    return None if rec is None else rec.expires


def _tick(tw: TW, now: float) -> tuple[list[TCPRepr], float | None]:
    tw.ep.handle_timer(now)
    return tw.out(now), _deadline(tw)


def _steps(
    tw: TW, steps: Sequence[tuple[float, int, int, int, bytes, Mapping[str, Any]]]
) -> list[Any]:
    seen: list[Any] = []
    for now, flags, dseq, dack, payload, kw in steps:
        tw.send(now, flags, tw.rcv + dseq, tw.snd + dack, payload, **kw)
        seen.append((tw.out(now), _deadline(tw)))
    return seen


def _quote(seq: int) -> bytes:
    """The start of our segment with ``seq`` as an ICMP error quotes it."""
    return (
        (80).to_bytes(2, "big") + CPORT.to_bytes(2, "big") + (seq & 0xFFFFFFFF).to_bytes(4, "big")
    )


def _connect_error(tw: TW) -> str:
    with pytest.raises(ValueError) as e:
        tw.ep.connect(0.5, A, B, CPORT, 80)
    return str(e.value)


PROBES: dict[str, Probe] = {
    "retransmitted FIN": lambda tw: _steps(tw, [(0.5, ACK | FIN, -1, 0, b"", {})]),
    "FIN twice, later": lambda tw: _steps(
        tw, [(0.5, ACK | FIN, -1, 0, b"", {}), (1.7, ACK | FIN, -1, 0, b"", {})]
    ),
    "new data": lambda tw: _steps(tw, [(0.5, ACK | PSH, 0, 0, b"more", {})]),
    "old data": lambda tw: _steps(tw, [(0.5, ACK | PSH, -4, 0, b"GET", {})]),
    "data beyond the window": lambda tw: _steps(tw, [(0.5, ACK, 10**6, 0, b"x", {})]),
    "data without ACK": lambda tw: _steps(tw, [(0.5, PSH, 0, 0, b"x", {})]),
    "pure ACK": lambda tw: _steps(tw, [(0.5, ACK, 0, 0, b"", {})]),
    "ACK of unsent data": lambda tw: _steps(tw, [(0.5, ACK, 0, 5000, b"", {})]),
    "ACK far below": lambda tw: _steps(tw, [(0.5, ACK, 0, -(10**6), b"", {})]),
    "a new FIN": lambda tw: _steps(tw, [(0.5, ACK | FIN, 0, 0, b"", {})]),
    "exact RST": lambda tw: _steps(
        tw, [(0.5, RST, 0, 0, b"", {}), (0.6, ACK | FIN, -1, 0, b"", {})]
    ),
    "RST in window": lambda tw: _steps(tw, [(0.5, RST, 10, 0, b"", {})]),
    "RST out of window": lambda tw: _steps(tw, [(0.5, RST, 10**6, 0, b"", {})]),
    "RSTs beyond the challenge limit": lambda tw: _steps(
        tw, [(0.5, RST, 10, 0, b"", {})] * 12 + [(1.2, RST, 10, 0, b"", {})]
    ),
    "old SYN": lambda tw: _steps(tw, [(0.5, SYN, -100, 0, b"", {})]),
    "SYN at RCV.NXT": lambda tw: _steps(tw, [(0.5, SYN, 0, 0, b"", {})]),
    "newer SYN": lambda tw: _steps(tw, [(0.5, SYN, 1000, 0, b"", {})]),
    "newer SYN, old timestamp": lambda tw: _steps(tw, [(0.5, SYN, 1000, 0, b"", {"tsval": 1})]),
    "SYN+ACK": lambda tw: _steps(tw, [(0.5, SYN | ACK, 1000, 0, b"", {})]),
    "old timestamp (PAWS)": lambda tw: _steps(
        tw, [(0.5, ACK | FIN, -1, 0, b"", {"tsval": 1}), (0.6, ACK, 0, 0, b"", {"tsval": 2})]
    ),
    "CE mark, then CWR": lambda tw: _steps(
        tw,
        [
            (0.5, ACK, 0, 0, b"", {"ecn": 3}),
            (0.6, ACK | FIN, -1, 0, b"", {}),
            (0.7, ACK | CWR, 0, 0, b"", {}),
            (0.8, ACK | FIN, -1, 0, b"", {}),
        ],
    ),
    "expiry, then a segment": lambda tw: [
        _deadline(tw),
        _tick(tw, T0 + 2 * MSL - 0.001),
        _tick(tw, T0 + 2 * MSL),
        _steps(tw, [(2.5, ACK | FIN, -1, 0, b"", {})]),
    ],
    "restart, then expiry": lambda tw: [
        _steps(tw, [(1.5, ACK | FIN, -1, 0, b"", {})]),
        _tick(tw, T0 + 2 * MSL),
        _tick(tw, 1.5 + 2 * MSL),
    ],
    "ICMP errors": lambda tw: [
        tw.ep.handle_icmp_error(A, B, _quote(tw.snd)),
        tw.ep.handle_icmp_error(A, B, _quote(tw.snd - 1)),
    ],
    "address lost": lambda tw: [tw.ep.address_lost(A), tw.out(0.5), _deadline(tw)],
    "connect to the same 4-tuple": lambda tw: [_connect_error(tw)],
}

OPTIONS = [
    {"ts": True, "sack": True, "ecn": False},
    {"ts": False, "sack": True, "ecn": False},
    {"ts": True, "sack": False, "ecn": True},
    {"ts": False, "sack": False, "ecn": True},
]


def _play(probe: Probe, opts: dict[str, bool]) -> tuple[bool, Any]:
    """(whether a record held the TIME-WAIT, what the probe saw and the counters)."""
    tw = TW(**opts)
    record = bool(tw.ep.time_wait)
    seen = probe(tw)
    return record, (seen, dict(tw.ep.stats), len(tw.ep.connections) + len(tw.ep.time_wait))


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(k for k, v in o.items() if v))
@pytest.mark.parametrize("name", list(PROBES))
def test_the_record_answers_as_the_connection_did(
    name: str, opts: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(Connection, "time_wait_record", lambda self: None)  # today's endpoint
        record, before = _play(PROBES[name], opts)
        assert not record
    record, after = _play(PROBES[name], opts)
    assert record
    assert after == before


def test_the_endpoint_holds_no_connection_in_time_wait() -> None:
    tw = TW()
    ep = tw.ep
    assert not ep.connections and list(ep.time_wait) == [(A, 80, B, CPORT)]
    assert isinstance(ep.time_wait[A, 80, B, CPORT], TimeWait)
    # The connection said it is done, so its driver lets it go; nothing keeps it alive.
    assert ep.take_active() == [tw.conn]
    assert [type(e).__name__ for e in tw.conn.take_events()][-1] == "ConnectionClosed"
    assert ep.key_of(tw.conn) is None and tw.conn.poll_at() is None
    cid = id(tw.conn)
    del tw.conn
    gc.collect()
    assert not any(type(o) is Connection and id(o) == cid for o in gc.get_objects())
    # One small object per TIME-WAIT, not a connection's ten-odd.
    assert not any(isinstance(o, Connection) for o in gc.get_referents(*ep.time_wait.values()))


def test_retransmitted_fin_is_acked_and_restarts_the_wait() -> None:
    tw = TW(ts=True, sack=True)
    assert tw.ep.poll_at() == pytest.approx(T0 + 2 * MSL)
    tw.send(0.5, ACK | FIN, tw.rcv - 1, tw.snd, tsval=9000)
    assert tw.ep.poll_at() == 0.0
    (ack,) = tw.out(0.5)
    ts = (500 + tw.conn._ts_offset) & 0xFFFFFFFF  # our clock in ms, keyed offset
    assert ack == TCPRepr(80, CPORT, tw.snd, tw.rcv, ACK, ack.window, timestamp=(ts, tw.fin_tsval))
    assert ack.window > 0
    assert tw.ep.poll_at() == pytest.approx(0.5 + 2 * MSL)
    tw.ep.handle_timer(T0 + 2 * MSL)  # the first deadline is stale now
    assert tw.ep.time_wait and tw.out(T0 + 2 * MSL) == []
    tw.ep.handle_timer(0.5 + 2 * MSL)
    assert not tw.ep.time_wait and tw.ep.stats["connections_removed"] == 1
    assert tw.ep.poll_at() is None


def test_data_in_time_wait() -> None:
    tw = TW(ts=False, sack=True)
    # New data after the peer's FIN is dropped without an answer.
    tw.send(0.5, ACK | PSH, tw.rcv, tw.snd, b"more")
    assert tw.out(0.5) == []
    # Old data is ACKed again, with a D-SACK for the duplicate (RFC 2883).
    tw.send(0.6, ACK | PSH, tw.rcv - 4, tw.snd, b"GET")
    (ack,) = tw.out(0.6)
    dup = ((tw.rcv - 4, tw.rcv - 1),)
    assert ack == TCPRepr(80, CPORT, tw.snd, tw.rcv, ACK, ack.window, sack_blocks=dup)
    # Many segments before a flush: one ACK.
    for _ in range(3):
        tw.send(0.7, ACK, tw.rcv + 10**6, tw.snd, b"x")
    assert [s.flags for s in tw.out(0.7)] == [ACK]
    assert tw.ep.poll_at() == pytest.approx(T0 + 2 * MSL)  # not restarted by data


@pytest.mark.parametrize("ts", [True, False])
def test_syn_reuse_rule(ts: bool) -> None:
    tw = TW(ts=ts)
    key = (A, 80, B, CPORT)
    # RFC 6191: with timestamps a SYN with an older TSval, else one below RCV.NXT, is no
    # new incarnation: ACKed (an old duplicate; PAWS) and the TIME-WAIT stays.
    if ts:
        tw.send(0.5, SYN, tw.rcv + 1000, 0, tsval=1)
    else:
        tw.send(0.5, SYN, tw.rcv - 100, 0)
    (ack,) = tw.out(0.5)
    assert ack.flags == ACK and (ack.seq, ack.ack) == (tw.snd, tw.rcv)
    assert key in tw.ep.time_wait and tw.ep.stats["time_wait_reused"] == 0
    # A SYN beyond RCV.NXT (newer TSval) replaces it: a SYN-ACK for a new connection.
    tw.send(0.6, SYN, tw.rcv + 1000, 0)
    (synack,) = tw.out(0.6)
    assert synack.flags == SYN | ACK and synack.ack == tw.rcv + 1001
    assert key not in tw.ep.time_wait and key in tw.ep.connections
    assert tw.ep.stats["time_wait_reused"] == 1


def test_exact_rst_ends_time_wait_silently() -> None:
    tw = TW(ts=False)
    tw.send(0.5, RST, tw.rcv + 10, 0)  # in the window, not exact: a challenge ACK
    (ack,) = tw.out(0.5)
    assert ack.flags == ACK and (ack.seq, ack.ack) == (tw.snd, tw.rcv)
    tw.send(0.5, RST, tw.rcv, 0)
    assert tw.out(0.5) == [] and not tw.ep.time_wait
    assert tw.ep.stats["connections_removed"] == 1


def test_the_stack_lets_flows_go_when_the_server_closes_first() -> None:
    """Over two of our stacks: the server side's flows and connections are gone as soon as
    they settle in TIME-WAIT; the endpoint keeps only the records, for 2 MSL."""

    async def main() -> None:
        _, client, server = await two_stacks()

        async def hello(flow: Any) -> None:
            r = await flow.read()
            assert isinstance(r, Ok)
            await flow.write(bytes(r.value).upper())
            await flow.close()  # the server closes first

        server.listen_tcpv4(port=80, callback=hello)

        async def one(i: int) -> None:
            flow = await connect(client, 80)
            await flow.write(f"conn {i}".encode())
            assert await drain(flow) == f"CONN {i}".encode()
            await flow.close()

        await asyncio.gather(*(one(i) for i in range(200)))
        await asyncio.sleep(1.0)
        tcp = server.tcpv4()
        assert tcp.flow_count() == 0 and not tcp.endpoint.connections
        assert len(tcp.endpoint.time_wait) == 200 == tcp.connections()
        await asyncio.sleep(300)  # past TIME_WAIT (2 * MSL)
        assert tcp.connections() == 0 and client.tcpv4().connections() == 0

    run_sim(main())
