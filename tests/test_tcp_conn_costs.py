"""The per-connection savings keep behaviour: timer entries kept across later deadlines,
state made on first use, cheaper set-up, and the driver's per-connection bookkeeping."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque
from typing import Any

import pytest
from tests.test_direct_stack import connect, two_stacks

from miragekit.result import Ok
from miragekit.tcp import (
    Config,
    Connected,
    Connection,
    DataReceived,
    EndOfStream,
    IsnGenerator,
    State,
    TCPEndpoint,
)
from miragekit.tcp._conn import _wscale_for
from miragekit.tcp._sendbuf import _NO_CHUNKS, SendBuffer
from miragekit.tcp.congestion import Cubic, NewReno, new_controller
from miragekit.tcp.congestion._base import initial_window
from miragekit.wire.tcp import ACK, FIN, PSH, SYN, TCPRepr

A = bytes([10, 0, 0, 1])
B = bytes([10, 0, 0, 2])
SECRET = b"0123456789abcdef"
CPORT = 40000


def _entries(ep: TCPEndpoint) -> int:
    """Timer entries the endpoint holds (stale ones included)."""
    return len(ep._timers) + sum(len(q) for q in ep._fifos)


def _accepted(ep: TCPEndpoint, now: float = 0.0) -> tuple[Connection, int]:
    """A connection from B to ``ep`` (at A, port 80) in ESTABLISHED; returns it and the
    next sequence number of our side."""
    ep.listen(80)
    ep.handle_segment(now, B, A, TCPRepr(CPORT, 80, 1000, 0, SYN, 64000, b"", 1460))
    (_, _, synack), *rest = ep.segments_to_send(now)
    assert not rest and synack.flags == SYN | ACK
    ep.handle_segment(now, B, A, TCPRepr(CPORT, 80, 1001, synack.seq + 1, ACK, 64000))
    assert ep.segments_to_send(now) == []
    conn = ep.accept(80)
    assert conn is not None and conn.state == State.ESTABLISHED
    return conn, synack.seq + 1


def test_a_later_deadline_keeps_the_earlier_entry_which_then_rearms() -> None:
    ep = TCPEndpoint(Config(timestamps=False), secret=SECRET)
    conn, our = _accepted(ep)
    # One byte in: the ACK is delayed (40 ms), and a timer entry is made for it.
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"x"))
    assert ep.segments_to_send(0.0) == []
    assert ep.poll_at() == conn.poll_at() == pytest.approx(0.04)
    entries = _entries(ep)
    ep.armed_unseen = None  # a driver armed its loop timer for it
    # We answer at once: the ACK rides on the data, and the next deadline (tail loss
    # probe or RTO) is later than the delayed ACK's. No new heap entry for it.
    assert conn.receive() == b"x"
    assert conn.send(b"y") == 1
    ep.wake(conn)
    (_, _, data), *rest = ep.segments_to_send(0.001)
    assert not rest and data.payload == b"y"
    real = conn.poll_at()
    assert real is not None and real > 0.04
    assert _entries(ep) == entries
    assert ep.poll_at() == pytest.approx(0.04)
    # The kept entry fires early: the connection is not touched, the entry re-arms.
    sent = conn.stats["segs_out"]
    ep.take_active()  # what the segments above made active
    ep.handle_timer(0.04)
    assert ep.take_active() == [] and ep.segments_to_send(0.04) == []
    assert conn.stats["segs_out"] == sent
    assert ep.poll_at() == real
    # At the real deadline the timer does what it always did: the lone segment is probed.
    ep.handle_timer(real - 1e-9)
    assert ep.segments_to_send(real - 1e-9) == []
    ep.handle_timer(real)
    (_, _, probe), *rest = ep.segments_to_send(real)
    assert not rest and probe.payload == b"y" and probe.seq == data.seq
    assert conn.stats["retransmits"] == 1


def test_a_new_entry_no_loop_timer_waits_for_follows_a_later_deadline() -> None:
    """The same, but before a driver armed its loop timer for the delayed ACK's entry
    (``armed_unseen``): nothing waits for it, so it follows the reply's deadline."""
    ep = TCPEndpoint(Config(timestamps=False), secret=SECRET)
    conn, our = _accepted(ep)
    ep.armed_unseen = None  # the handshake's entry: a driver armed its loop timer
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"x"))
    assert ep.segments_to_send(0.0) == []
    assert ep.poll_at() == pytest.approx(0.04)
    assert ep.armed_unseen is None  # the handshake's entry was there: not new
    # An idle connection (no entry): the delayed ACK makes a new one.
    ep.handle_timer(0.04)  # the delayed ACK goes; the connection has no deadline left
    assert [s.flags for _, _, s in ep.segments_to_send(0.04)] == [ACK]
    assert conn.poll_at() is None and ep.poll_at() is None
    ep.handle_segment(0.1, B, A, TCPRepr(CPORT, 80, 1002, our, ACK | PSH, 64000, b"z"))
    assert ep.segments_to_send(0.1) == []
    assert ep.poll_at() == pytest.approx(0.14)
    assert ep.armed_unseen == ep.key_of(conn)
    assert conn.receive() == b"xz"
    assert conn.send(b"y") == 1
    ep.wake(conn)
    (_, _, data), *rest = ep.segments_to_send(0.1)
    assert not rest and data.payload == b"y"
    real = conn.poll_at()
    assert real is not None and real > 0.14
    assert ep.poll_at() == real  # no early fire at 0.14
    ep.take_active()  # what the segments above made active
    ep.handle_timer(0.14)
    assert ep.take_active() == [] and ep.segments_to_send(0.14) == []


def test_an_earlier_deadline_gets_its_own_entry() -> None:
    ep = TCPEndpoint(Config(timestamps=False), secret=SECRET)
    conn, our = _accepted(ep)
    assert ep.poll_at() is None or ep.poll_at() == pytest.approx(1.0)  # the SYN-ACK's RTO
    ep.handle_segment(0.5, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"x"))
    assert ep.segments_to_send(0.5) == []
    assert ep.poll_at() == conn.poll_at() == pytest.approx(0.54)
    ep.handle_timer(0.54)
    (_, _, ack), *rest = ep.segments_to_send(0.54)
    assert not rest and ack.flags == ACK and ack.ack == 1002 and ack.payload == b""


def test_timer_entries_of_a_closed_connection_are_dropped_without_firing() -> None:
    ep = TCPEndpoint(Config(timestamps=False), secret=SECRET)
    conn, our = _accepted(ep)
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | FIN, 64000))
    assert ep.segments_to_send(0.0) == []  # the ACK of the FIN waits for our FIN
    conn.close()
    ep.wake(conn)
    (_, _, fin), *rest = ep.segments_to_send(0.001)
    assert not rest and fin.flags & FIN and fin.ack == 1002
    ep.handle_segment(0.002, B, A, TCPRepr(CPORT, 80, 1002, our + 1, ACK, 64000))
    assert ep.segments_to_send(0.002) == []
    assert conn.state == State.CLOSED and not ep.connections
    assert ep.poll_at() is None  # stale entries are popped, never handed to a connection


def test_a_connection_that_never_sends_has_no_chunk_deque() -> None:
    ep = TCPEndpoint(secret=SECRET)
    conn, our = _accepted(ep)
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH, 64000, b"hello"))
    assert conn.receive() == b"hello"
    assert conn._sndbuf._chunks is _NO_CHUNKS
    conn.send(b"world")
    assert type(conn._sndbuf._chunks) is deque and conn._sndbuf._chunks is not _NO_CHUNKS
    assert len(_NO_CHUNKS) == 0 and _NO_CHUNKS.maxlen == 0


def test_the_retransmission_ledger_is_made_by_the_first_loss_episode() -> None:
    # Until a loss episode starts, no ledger: a closed one would answer the same (nothing
    # retransmitted, nothing to undo); the undo tests (test_tcp_loss_response.py) cover
    # the ledger once it exists.
    ep = TCPEndpoint(Config(), secret=SECRET)
    conn, _ = _accepted(ep)
    assert conn._ledger is None
    conn._on_dsack(0.0, 1, 2)  # a D-SACK with no episode: nothing happens
    assert conn._ledger is None and conn.stats["undos"] == 0
    conn._start_episode()
    assert conn._ledger is not None and conn._ledger.open


def test_send_buffer_from_its_first_use() -> None:
    buf = SendBuffer()
    assert len(buf) == 0
    buf.clear()
    buf.consume(0)
    buf.append(b"")
    assert buf._chunks is _NO_CHUNKS
    buf.append(b"abc")
    buf.append(memoryview(b"defg"))
    assert len(buf) == 7 and bytes(buf.slice(1, 5)) == b"bcdef"
    buf.consume(7)
    assert len(buf) == 0
    buf.append(b"z")
    assert bytes(buf.slice(0, 1)) == b"z"
    other = SendBuffer()
    assert other._chunks is _NO_CHUNKS and len(other) == 0  # nothing leaked into it


def test_events_come_out_first_in_first_out() -> None:
    ep = TCPEndpoint(secret=SECRET)
    conn, our = _accepted(ep)
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | PSH | FIN, 64000, b"x"))
    got = []
    while (ev := conn.next_event()) is not None:
        got.append(ev)
    assert got == [Connected(), DataReceived(), EndOfStream()]
    assert conn.next_event() is None


def test_isn_is_the_keyed_blake2s_of_the_four_tuple() -> None:
    g = IsnGenerator(SECRET)
    msg = A + (1000).to_bytes(2, "big") + B + (80).to_bytes(2, "big")
    h = int.from_bytes(hashlib.blake2s(msg, key=SECRET, digest_size=8).digest(), "big")
    assert g.isn_and_ts_offset(2.0, A, 1000, B, 80) == (
        (500_000 + (h >> 32)) & 0xFFFFFFFF,
        h & 0xFFFFFFFF,
    )
    assert g.isn_and_ts_offset(2.0, A, 1000, B, 80) == g.isn_and_ts_offset(2.0, A, 1000, B, 80)
    # IPv6: the same layout with 16-byte addresses (the tuple is packed by length).
    a6, b6 = bytes(range(16)), bytes(range(16, 32))
    msg6 = a6 + (65535).to_bytes(2, "big") + b6 + (443).to_bytes(2, "big")
    h6 = int.from_bytes(hashlib.blake2s(msg6, key=SECRET, digest_size=8).digest(), "big")
    assert g.ts_offset(a6, 65535, b6, 443) == h6 & 0xFFFFFFFF
    assert g.isn_and_ts_offset(0.0, a6, 65535, b6, 443) == (h6 >> 32, h6 & 0xFFFFFFFF)


@pytest.mark.parametrize("size", [1, 65535, 65536, 256 * 1024, 4 * 1024 * 1024, 65535 << 14])
def test_window_scale_is_the_smallest_that_covers_the_buffer(size: int) -> None:
    for _ in range(2):  # computed, then remembered
        shift = _wscale_for(size)
        assert (65535 << shift) >= size and (shift == 0 or (65535 << (shift - 1)) < size)


def test_congestion_controllers_start_at_the_initial_window() -> None:
    # RFC 6928's formula, written with comparisons on the set-up path: the same values,
    # about the points where 2*MSS passes 14600 and 10*MSS passes max(2*MSS, 14600).
    for mss in (*range(1, 20), 536, 1448, 1459, 1460, 1461, 7299, 7300, 7301, 8960, 65495):
        want = min(10 * mss, max(2 * mss, 14600))
        assert initial_window(mss) == want
        for cc in (new_controller("newreno", mss), new_controller("cubic", mss)):
            assert cc.mss == mss and cc.cwnd == want and cc.ssthresh == 1 << 62
            cc.set_mss(1000)
            assert cc.cwnd == initial_window(1000)
            cc.set_mss(mss)
            assert cc.cwnd == want
    assert isinstance(new_controller("newreno", 1000), NewReno)
    assert isinstance(new_controller("cubic", 1000), Cubic)
    with pytest.raises(ValueError, match="congestion"):
        new_controller("vegas", 1000)


def test_accepted_flows_share_the_peer_address_and_their_tasks_are_released() -> None:
    async def main() -> None:
        _, client, server = await two_stacks()
        seen: list[Any] = []

        async def echo_once(flow: Any) -> None:
            seen.append(flow.get_dest())
            r = await flow.read()
            assert isinstance(r, Ok)
            await flow.write(r.value)

        server.listen_tcpv4(port=7, callback=echo_once)
        tcp = server.tcpv4()
        for i in range(3):
            flow = await connect(client, 7)
            await flow.write(b"%d" % i)
            r = await flow.read()
            assert isinstance(r, Ok) and bytes(r.value) == b"%d" % i
            await flow.close()
        for _ in range(200):
            if not tcp._tasks:
                break
            await asyncio.sleep(0.01)
        assert not tcp._tasks  # each task dropped its own reference as it ended
        assert [str(a) for a, _ in seen] == ["10.0.0.1"] * 3
        assert seen[0][0] is seen[1][0] is seen[2][0]
        assert len({p for _, p in seen}) == 3

    asyncio.run(main())


def test_accepted_flows_run_as_tasks_and_a_task_factory_still_makes_them() -> None:
    # The driver builds the accepted flow's Task itself when the loop has no task
    # factory: the handler must still be the current task (asyncio.timeout needs one),
    # and a loop with a factory must still get its own tasks.
    async def main(factory: bool) -> list[str]:
        made: list[str] = []
        loop = asyncio.get_running_loop()
        if factory:

            def make(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
                made.append(getattr(coro, "__qualname__", ""))
                return asyncio.Task(coro, loop=loop, **kw)

            loop.set_task_factory(make)
        _, client, server = await two_stacks()
        current: list[bool] = []

        async def echo_once(flow: Any) -> None:
            current.append(asyncio.current_task() is not None)
            async with asyncio.timeout(5):
                r = await flow.read()
            assert isinstance(r, Ok)
            await flow.write(r.value)

        server.listen_tcpv4(port=7, callback=echo_once)
        flow = await connect(client, 7)
        await flow.write(b"x")
        r = await flow.read()
        assert isinstance(r, Ok) and bytes(r.value) == b"x"
        await flow.close()
        assert current == [True]
        return made

    assert not any("_serve" in m for m in asyncio.run(main(False)))
    assert sum("_serve" in m for m in asyncio.run(main(True))) == 1


def test_time_wait_lets_the_send_buffer_go_and_still_acks_a_retransmitted_fin() -> None:
    ep = TCPEndpoint(Config(timestamps=False, msl=1.0), secret=SECRET)
    conn, our = _accepted(ep)
    assert conn.send(b"bye") == 3
    conn.close()
    ep.wake(conn)
    (_, _, data), *rest = ep.segments_to_send(0.0)
    assert not rest and data.payload == b"bye" and data.flags & FIN
    assert conn._sndbuf._chunks is not _NO_CHUNKS
    # The peer ACKs everything and sends its FIN: TIME_WAIT.
    ep.handle_segment(0.01, B, A, TCPRepr(CPORT, 80, 1001, our + 4, ACK | FIN, 64000))
    (_, _, ack), *rest = ep.segments_to_send(0.01)
    assert not rest and ack.flags == ACK and ack.ack == 1002
    assert conn.state == State.TIME_WAIT
    assert conn._sndbuf._chunks is _NO_CHUNKS and len(conn._sndbuf) == 0
    assert conn.unsent == 0 and conn.send_queued == 0
    # A retransmitted FIN is ACKed again (and restarts the 2 MSL wait).
    ep.handle_segment(0.5, B, A, TCPRepr(CPORT, 80, 1001, our + 4, ACK | FIN, 64000))
    (_, _, again), *rest = ep.segments_to_send(0.5)
    assert not rest and again.flags == ACK and again.ack == 1002
    # The endpoint keeps the TIME_WAIT as a small record, not the connection.
    assert not ep.connections and len(ep.time_wait) == 1
    assert ep.poll_at() == pytest.approx(2.5)
    ep.handle_timer(2.49)
    assert len(ep.time_wait) == 1
    ep.handle_timer(2.5)
    assert ep.segments_to_send(2.5) == [] and not ep.connections and not ep.time_wait


def test_timer_queues_always_give_the_earliest_live_deadline() -> None:
    rng = random.Random(7)
    ep = TCPEndpoint(secret=SECRET)
    live: dict[tuple[bytes, int, bytes, int], float] = {}
    # Connections in the table (an entry is its connection's field), each without a
    # deadline of its own (CLOSED): an entry that comes due is just consumed.
    for port in range(200):
        ep.connections[(A, 80, B, port)] = Connection(ep.config, 80, port, 1)
    now = 0.0
    for step in range(3000):
        key = (A, 80, B, rng.randrange(200))
        # Mostly a fixed time ahead (in order), sometimes anywhere (out of order).
        t = now + (rng.choice((0.04, 0.2, 1.0)) if rng.random() < 0.8 else rng.random() * 2)
        if key not in live or t < live[key]:
            ep._arm(key, ep.connections[key], t)
            live[key] = t
        assert ep.poll_at() == min(live.values())
        if step % 50 == 49:
            now += rng.random() * 0.5
            ep.handle_timer(now)  # no deadlines of their own: due entries are consumed
            live = {k: v for k, v in live.items() if v > now}
            assert ep.poll_at() == (min(live.values()) if live else None)
    assert _entries(ep) >= len(live) and len(ep._timers) > 0 and all(ep._fifos)


def test_each_connection_has_its_own_counters() -> None:
    ep = TCPEndpoint(secret=SECRET)
    conn, _ = _accepted(ep)
    fresh = Connection(Config(), 1, 2, 3)
    assert list(fresh.stats) == [
        "segs_in",
        "segs_out",
        "retransmits",
        "rto",
        "fast_retransmits",
        "lost_retransmits",
        "tail_loss_probes",
        "window_probes",
        "challenge_acks",
        "dropped",
        "resets_data_lost",
        "dsacks_in",
        "dsacks_out",
        "undos",
        "undos_by_timestamp",
        "ce_received",
        "ecn_reductions",
        "cwr_received",
        "tlp_recoveries",
        "rescue_retransmits",
    ]
    assert not any(fresh.stats.values())
    assert conn.stats["segs_in"] == 1 and conn.stats["segs_out"] == 1  # the ACK; the SYN-ACK
    assert fresh.stats is not conn.stats


def test_a_read_wakes_the_endpoint_only_to_announce_a_window() -> None:
    """A read that leaves the window as worth announcing later costs the endpoint
    nothing (no visit at the next flush); one that opens a closed window puts the
    connection up for output at once (the window update), and the transfer goes on."""
    n = 600_000

    async def main() -> None:
        _, client, server = await two_stacks()
        ep = server.tcpv4().endpoint
        dirty: list[bool] = []
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def reader(flow: Any) -> None:
            key = ep.key_of(flow.connection)
            total = 0
            while total < n:
                r = await flow.read()
                assert isinstance(r, Ok)
                dirty.append(key in ep._dirty)
                total += len(r.value)
                if total == 2:
                    await asyncio.sleep(0.3)  # the client fills our receive window
            done.set_result(total)

        server.listen_tcpv4(port=9, callback=reader)
        flow = await connect(client, 9)
        for _ in range(2):
            await flow.write(b"x")
            await asyncio.sleep(0.05)
        await flow.write(bytes(n - 2))
        assert await asyncio.wait_for(done, 20) == n
        # The first read announces the scaled window (the SYN's said at most 64 KiB).
        assert dirty[1] is False  # one more byte read: nothing to announce
        assert dirty[2] is True  # the full window read at once: announced at once
        await flow.close()

    asyncio.run(main())


@pytest.mark.parametrize("initial", [0.1, 0.2, 1.0, 59.0, 60.0, 61.0])
@pytest.mark.parametrize(("lo", "hi"), [(0.2, 60.0), (0.5, 0.5), (0.001, 2.0)])
def test_the_first_timeout_is_the_initial_one_within_the_bounds(
    initial: float, lo: float, hi: float
) -> None:
    from miragekit.tcp._rtt import RttEstimator

    assert RttEstimator(initial, lo, hi).timeout() == min(max(initial, lo), hi)


@pytest.mark.parametrize("peer_mss", [None, 0, 1, 47, 48, 49, 536, 1460, 9000, 65535])
@pytest.mark.parametrize("ts", [True, False])
@pytest.mark.parametrize("tso", [0, 1000, 65475])
def test_the_segment_sizes_a_syn_negotiates(peer_mss: int | None, ts: bool, tso: int) -> None:
    # What _negotiate and _set_seg_max compute (with comparisons now), by the rules:
    # the peer's MSS (at least 48, RFC 879's 536 when absent or 0) and ours, less the
    # timestamp option, at least 1; bursts of whole segments up to tso_max.
    cfg = Config(mss=1460, tso_max=tso)
    syn = TCPRepr(1000, 80, 5, 0, SYN, 65535, b"", peer_mss, 7, True, (), (1, 0) if ts else None)
    conn = Connection.accept(cfg, syn, 100, 0.0)
    peer = cfg.default_mss if not peer_mss else max(peer_mss, 48)
    smss = max(min(peer, cfg.mss) - (12 if ts else 0), 1)
    assert conn._smss == smss and conn._cc.cwnd == initial_window(smss)
    assert conn._seg_max == (max(smss, tso - tso % smss) if tso else smss)
    # Receiver SWS avoidance's least opening follows the segment size (RFC 9293 3.8.6.2.2).
    assert conn._sws_open == min(cfg.recv_buffer // 2, smss)
    conn.set_path_mtu(576)
    assert conn._sws_open == min(cfg.recv_buffer // 2, conn._smss)
    small = Connection.accept(
        Config(mss=1000, default_mss=536, recv_buffer=1500, send_buffer=1500, tso_max=tso),
        syn,
        100,
        0.0,
    )
    assert small._sws_open == min(750, small._smss)
    assert conn._rcv_mss == min(cfg.mss, cfg.default_mss)
    assert conn._rcv_adv - conn._rcv_nxt == min(cfg.recv_buffer, 65535)


def test_poll_at_is_the_earliest_deadline_set() -> None:
    # poll_at tests each deadline in place (no copies): whatever is set, the answer is
    # the earliest of them, None with none set, 0.0 with an ACK or control segment due.
    syn = TCPRepr(1000, 80, 5, 0, SYN, 65535, b"", 1460, 7, True, (), (1, 0))
    conn = Connection.accept(Config(), syn, 100, 0.0)
    rng = random.Random(14)
    names = ("_rtx_at", "_ack_at", "_close_at", "_ka_at", "_tlp_at", "_rack_at")
    conn._ctl_out = []
    conn._ack_now = False
    for _ in range(2000):
        values = [rng.choice((None, None, float(rng.randrange(1, 6)))) for _ in names]
        for name, v in zip(names, values, strict=True):
            setattr(conn, name, v)
        set_ = [v for v in values if v is not None]
        assert conn.poll_at() == (min(set_) if set_ else None), values
    conn._ack_now = True
    assert conn.poll_at() == 0.0
