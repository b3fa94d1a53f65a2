"""TCPEndpoint: demultiplexing, RST for closed ports, backlog, SYN cookies, table cleanup."""

from __future__ import annotations

import pytest
from tests.tcp_helpers import state

from miragekit.tcp import Config, Connected, Connection, IsnGenerator, State, TCPEndpoint
from miragekit.wire.tcp import ACK, RST, SYN, TCPRepr

A = bytes([10, 0, 0, 1])
B = bytes([10, 0, 0, 2])
SECRET = b"0123456789abcdef"


class Net:
    """Two endpoints joined by a perfect wire of serialized, checksummed segments."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.now = 0.0
        self.eps = {A: TCPEndpoint(cfg, secret=SECRET), B: TCPEndpoint(cfg, secret=SECRET + b"x")}
        self.wire: list[tuple[bytes, bytes, bytes]] = []
        self.seen: list[tuple[bytes, TCPRepr]] = []
        self.drop_to: set[bytes] = set()

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for addr, ep in self.eps.items():
                for laddr, raddr, seg in ep.segments_to_send(self.now):
                    assert laddr == addr
                    self.seen.append((addr, seg))
                    self.wire.append((laddr, raddr, bytes(seg.to_bytes(laddr, raddr))))
                    moved = True
            wire, self.wire = self.wire, []
            for src, dst, raw in wire:
                if dst not in self.drop_to:
                    self.eps[dst].handle_packet(self.now, src, dst, raw)
            if not moved and not wire:
                return

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            ts = [t for ep in self.eps.values() if (t := ep.poll_at()) is not None]
            t = min(ts, default=None)
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            for ep in self.eps.values():
                ep.handle_timer(self.now)
            self.pump()
        self.now = end


def test_rst_for_closed_port_both_forms() -> None:
    ep = TCPEndpoint(secret=SECRET)
    ep.handle_segment(0.0, B, A, TCPRepr(5000, 81, 0xFFFFFFFF, 0, SYN, 1000, b"", 1460))
    ep.handle_segment(0.0, B, A, TCPRepr(5000, 81, 100, 777, ACK, 1000, b"data"))
    ep.handle_segment(0.0, B, A, TCPRepr(5000, 81, 100, 777, RST, 1000))
    assert ep.segments_to_send(0.0) == [
        (A, B, TCPRepr(81, 5000, 0, 0, RST | ACK, 0)),
        (A, B, TCPRepr(81, 5000, 777, 0, RST, 0)),
    ]
    assert ep.stats["rst_sent"] == 2


def test_bad_checksum_counted_and_dropped() -> None:
    ep = TCPEndpoint(secret=SECRET)
    ep.listen(80)
    raw = bytearray(TCPRepr(5000, 80, 1, 0, SYN, 1000).to_bytes(B, A))
    raw[4] ^= 1
    ep.handle_packet(0.0, B, A, raw)
    ep.handle_packet(0.0, B, A, b"short")
    assert ep.stats["bad_checksum"] == 1 and ep.stats["malformed"] == 1
    assert ep.segments_to_send(0.0) == [] and not ep.connections


def test_connect_accept_transfer_close_and_table_empties() -> None:
    net = Net(Config(msl=1.0))
    server = net.eps[B]
    server.listen(80)
    client = net.eps[A].connect(net.now, A, B, 80)
    net.pump()
    assert client.state == State.ESTABLISHED
    conn = server.accept(80)
    assert conn is not None and conn.state == State.ESTABLISHED
    assert server.accept(80) is None
    client.send(b"ping")
    net.eps[A].wake(client)
    net.pump()
    assert conn.receive() == b"ping"
    conn.send(b"pong")
    conn.close()
    server.wake(conn)
    net.pump()
    assert client.receive() == b"pong" and client.at_eof
    client.close()
    net.eps[A].wake(client)
    net.pump()
    # The client closed last: LAST_ACK -> CLOSED frees it at once; the server closed
    # first and waits in TIME_WAIT for 2*MSL.
    assert state(client) == State.CLOSED
    assert not net.eps[A].connections
    # (as a small record: the endpoint holds no Connection for it)
    assert state(conn) == State.TIME_WAIT and len(server.time_wait) == 1
    assert not server.connections
    net.advance(3.0)
    assert not server.connections and not server.time_wait
    assert net.eps[A].poll_at() is None and server.poll_at() is None


def test_connect_to_closed_port_is_refused() -> None:
    net = Net()
    client = net.eps[A].connect(net.now, A, B, 9999)
    net.pump()
    assert client.state == State.CLOSED
    assert not net.eps[A].connections
    assert [type(e).__name__ for e in iter(client.next_event, None)] == [
        "ConnectionReset",
        "ConnectionClosed",
    ]


def test_new_listen_replaces_old_and_unlisten() -> None:
    ep = TCPEndpoint(secret=SECRET)
    ep.listen(80, backlog=1)
    ep.listen(80, backlog=5)
    assert ep.backlog_len(80) == 0
    ep.unlisten(80)
    ep.handle_segment(0.0, B, A, TCPRepr(5000, 80, 1, 0, SYN, 1000))
    assert ep.segments_to_send(0.0)[0][2].flags == RST | ACK
    with pytest.raises(ValueError, match="port"):
        ep.listen(0)
    with pytest.raises(ValueError, match="backlog"):
        ep.listen(80, backlog=0)


def test_syn_backlog_bounded_then_syn_cookies() -> None:
    net = Net()
    server = net.eps[B]
    server.listen(80, backlog=2)
    # Two half-open connections from a client that never answers fill the backlog.
    for port in (1001, 1002):
        server.handle_segment(0.0, A, B, TCPRepr(port, 80, 5, 0, SYN, 1000, b"", 1460))
    server.segments_to_send(0.0)
    assert server.backlog_len(80) == 2 and len(server.connections) == 2
    # A real client now gets a SYN cookie and no state is kept until its ACK returns.
    client = net.eps[A].connect(net.now, A, B, 80, lport=2000)
    net.pump()
    assert server.stats["syn_cookies_sent"] == 1
    assert server.stats["syn_cookies_accepted"] == 1
    assert client.state == State.ESTABLISHED
    conn = server.accept(80)
    assert conn is not None and conn.state == State.ESTABLISHED
    assert conn.next_event() == Connected()
    client.send(b"hello through a cookie")
    net.eps[A].wake(client)
    net.pump()
    assert conn.receive() == b"hello through a cookie"
    # Window scale, SACK and timestamps came back through the echoed TSval.
    assert conn._ts_on and conn._sack_on and conn._ws_on
    assert conn.mss == 1460 - 12
    big = bytes(range(256)) * 800
    assert conn.send(big) == len(big)
    server.wake(conn)
    got = bytearray()
    for _ in range(200):
        net.pump()
        got += client.receive()
        net.advance(0.05)
        if len(got) == len(big):
            break
    assert got == big


def test_syn_cookie_without_timestamps_keeps_only_mss() -> None:
    net = Net(Config(timestamps=False))
    server = net.eps[B]
    server.listen(80, backlog=1)
    server.handle_segment(0.0, A, B, TCPRepr(1001, 80, 5, 0, SYN, 1000, b"", 1460))
    server.segments_to_send(0.0)
    client = net.eps[A].connect(net.now, A, B, 80, lport=2001)
    net.pump()
    conn = server.accept(80)
    assert state(client) == State.ESTABLISHED and conn is not None
    assert not conn._ts_on and not conn._sack_on and not conn._ws_on
    assert conn.mss == 1460


def test_forged_cookie_ack_gets_rst() -> None:
    ep = TCPEndpoint(secret=SECRET)
    ep.listen(80)
    ep.handle_segment(0.0, A, B, TCPRepr(3000, 80, 1000, 123456, ACK, 1000))
    assert ep.stats["syn_cookies_rejected"] == 1
    assert ep.segments_to_send(0.0) == [(B, A, TCPRepr(80, 3000, 123456, 0, RST, 0))]
    assert not ep.connections


def test_half_open_connections_expire() -> None:
    net = Net(Config(syn_retries=2))
    server = net.eps[B]
    server.listen(80)
    net.drop_to.add(A)  # the client never hears back
    server.handle_segment(0.0, A, B, TCPRepr(1001, 80, 5, 0, SYN, 1000, b"", 1460))
    net.pump()
    assert len(server.connections) == 1
    net.advance(30.0)
    assert not server.connections and server.backlog_len(80) == 0


def test_thousand_connections_open_and_close_cleanly() -> None:
    net = Net(Config(msl=0.5, recv_buffer=8192, send_buffer=8192))
    server = net.eps[B]
    server.listen(7, backlog=2000)
    clients = [net.eps[A].connect(net.now, A, B, 7) for _ in range(1000)]
    net.pump()
    accepted: list[Connection] = []
    while (c := server.accept(7)) is not None:
        accepted.append(c)
    assert len(accepted) == 1000
    assert all(c.state == State.ESTABLISHED for c in clients)
    for c in clients:
        c.send(b"x")
        net.eps[A].wake(c)
    net.pump()
    for s in accepted:
        assert s.receive() == b"x"
        s.send(b"y")
        s.close()
        server.wake(s)
    net.pump()
    for c in clients:
        assert c.receive() == b"y" and c.at_eof
        c.close()
        net.eps[A].wake(c)
    net.pump()
    assert not net.eps[A].connections
    assert len(server.time_wait) == 1000  # TIME_WAIT on the side that closed first
    assert not server.connections
    net.advance(2.0)
    assert not server.connections and not server.time_wait
    assert server.stats["connections_removed"] == 1000


def test_isn_keyed_per_tuple_and_increasing() -> None:
    g = IsnGenerator(SECRET)
    a = g.isn(0.0, A, 1000, B, 80)
    assert a != g.isn(0.0, A, 1001, B, 80)
    assert a != IsnGenerator(SECRET[::-1]).isn(0.0, A, 1000, B, 80)
    assert (g.isn(1.0, A, 1000, B, 80) - a) & 0xFFFFFFFF == 250_000
    with pytest.raises(ValueError, match="secret"):
        IsnGenerator(b"short")


def test_isn_and_ts_offset_from_one_hash_match_the_separate_calls() -> None:
    g = IsnGenerator(SECRET)
    both = g.isn_and_ts_offset(2.5, A, 1000, B, 80)
    assert both == (g.isn(2.5, A, 1000, B, 80), g.ts_offset(A, 1000, B, 80))
    assert g.ts_offset(A, 1000, B, 80) != g.ts_offset(A, 1001, B, 80)
    assert g.ts_offset(A, 1000, B, 80) != IsnGenerator(SECRET[::-1]).ts_offset(A, 1000, B, 80)


def test_ephemeral_ports_distinct() -> None:
    ep = TCPEndpoint(secret=SECRET)
    ports = {ep.connect(0.0, A, B, 80).local_port for _ in range(100)}
    assert len(ports) == 100 and all(49152 <= p <= 65535 for p in ports)
    with pytest.raises(ValueError, match="lport"):
        ep.connect(0.0, A, B, 80, lport=min(ports))


def test_take_active_reports_connections_with_input_even_once_removed() -> None:
    net = Net()
    net.eps[B].listen(80)
    client = net.eps[A].connect(net.now, A, B, 80)
    net.pump()
    assert net.eps[A].take_active() == [client]
    assert net.eps[A].take_active() == []
    server_conn = net.eps[B].accept(80)
    assert server_conn is not None
    server_conn.abort()
    net.eps[B].wake(server_conn)
    net.pump()
    assert state(client) == State.CLOSED and not net.eps[A].connections
    assert net.eps[A].take_active() == [client]
    assert [type(e).__name__ for e in iter(client.next_event, None)][-2:] == [
        "ConnectionReset",
        "ConnectionClosed",
    ]


def test_segment_to_closed_uncollected_connection_gets_rst() -> None:
    ep = TCPEndpoint(secret=SECRET)
    conn = ep.connect(0.0, A, B, 80, lport=5555)
    conn.abort()  # CLOSED, but the endpoint has not collected it yet
    ep.handle_segment(0.0, B, A, TCPRepr(80, 5555, 1, 2, ACK, 100))
    assert (A, B, TCPRepr(5555, 80, 2, 0, RST, 0)) in ep.segments_to_send(0.0)
    assert not ep.connections


def test_verified_packets_skip_the_checksum() -> None:
    ep = TCPEndpoint(secret=SECRET)
    ep.listen(80)
    raw = TCPRepr(5000, 80, 1, 0, SYN, 1000).to_bytes()  # checksum left zero
    ep.handle_packet(0.0, B, A, raw)
    assert ep.stats["bad_checksum"] == 1 and not ep.connections
    ep.handle_packet(0.0, B, A, raw, verified=True)
    assert len(ep.connections) == 1


def test_ipv6_addresses_work_end_to_end() -> None:
    import ipaddress

    a6 = ipaddress.IPv6Address("fd00::1").packed
    b6 = ipaddress.IPv6Address("fd00::2").packed
    net = Net()
    net.eps = {a6: TCPEndpoint(secret=SECRET), b6: TCPEndpoint(secret=SECRET)}
    net.eps[b6].listen(80)
    client = net.eps[a6].connect(0.0, a6, b6, 80)
    net.pump()
    assert state(client) == State.ESTABLISHED
    client.send(b"v6")
    net.eps[a6].wake(client)
    net.pump()
    conn = net.eps[b6].accept(80)
    assert conn is not None and conn.receive() == b"v6"


@pytest.mark.parametrize("timestamps", [True, False])
def test_time_wait_port_reuse_accepts_newer_syn(timestamps: bool) -> None:
    net = Net(Config(timestamps=timestamps, msl=60.0))
    server = net.eps[B]
    server.listen(80)
    client = net.eps[A].connect(net.now, A, B, 80, lport=3333)
    net.pump()
    conn = server.accept(80)
    assert conn is not None
    conn.close()  # the server closes first: it keeps TIME_WAIT
    server.wake(conn)
    net.pump()
    client.close()
    net.eps[A].wake(client)
    net.pump()
    assert state(conn) == State.TIME_WAIT and state(client) == State.CLOSED
    net.advance(0.5)
    # The same client port again: the newer SYN replaces the TIME_WAIT at once.
    again = net.eps[A].connect(net.now, A, B, 80, lport=3333)
    net.pump()
    assert state(again) == State.ESTABLISHED
    assert server.stats["time_wait_reused"] == 1
    assert not server.time_wait and len(server.connections) == 1
    fresh = server.accept(80)
    assert fresh is not None and fresh is not conn


def test_time_wait_rejects_old_syn() -> None:
    from miragekit.tcp import Connection

    c = Connection.connect(Config(timestamps=False), 80, 3333, 1000, 0.0)
    c.segments_to_send(0.0)
    c.handle_segment(0.0, TCPRepr(3333, 80, 5000, 1001, SYN | ACK, 1000, b"", 1460))
    c.close()
    c.segments_to_send(0.0)
    c.handle_segment(0.0, TCPRepr(3333, 80, 5001, 1002, ACK | 0x01, 1000))
    assert c.state == State.TIME_WAIT
    assert not c.accepts_new_syn(TCPRepr(3333, 80, 4000, 0, SYN, 1000))
    assert c.accepts_new_syn(TCPRepr(3333, 80, 9000, 0, SYN, 1000))
    assert not c.accepts_new_syn(TCPRepr(3333, 80, 9000, 0, SYN | ACK, 1000))


def test_key_of_gives_the_four_tuple_while_the_table_holds_the_connection() -> None:
    from miragekit.tcp import Config, TCPEndpoint

    ep = TCPEndpoint(Config(), secret=b"k" * 32)
    conn = ep.connect(0.0, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 80)
    key = ep.key_of(conn)
    assert key is not None
    assert key[0] == b"\x0a\x00\x00\x01" and key[2:] == (b"\x0a\x00\x00\x02", 80)
    assert ep.connections[key] is conn
    conn.abort()
    ep.segments_to_send(0.0)
    assert ep.key_of(conn) is None


def test_connection_reset_while_waiting_to_be_accepted_leaves_the_queue() -> None:
    # The endpoint finds a closed connection's place in its listener's accept queue by key
    # (no scan of every listener's queue): the others keep their order, other listeners
    # and their queues are untouched.
    net = Net()
    server = net.eps[B]
    server.listen(80)
    server.listen(81)
    clients = [net.eps[A].connect(net.now, A, B, 80) for _ in range(3)]
    other = net.eps[A].connect(net.now, A, B, 81)
    net.pump()
    assert server.backlog_len(80) == 3 and server.backlog_len(81) == 1
    clients[1].abort()  # RST to the server while it waits in the queue
    net.eps[A].wake(clients[1])
    net.pump()
    assert server.backlog_len(80) == 2 and server.backlog_len(81) == 1
    assert server.stats["connections_removed"] == 1
    ports = []
    while (c := server.accept(80)) is not None:
        ports.append(c.remote_port)
    assert ports == [clients[0].local_port, clients[2].local_port]
    accepted = server.accept(81)
    assert accepted is not None and accepted.remote_port == other.local_port
    assert server.accept(81) is None


def test_a_fin_with_nothing_to_answer_now_owes_no_output_walk() -> None:
    # The peer closes first and the application has yet to answer: the FIN's ACK waits
    # (delayed) for the answer or the close, so the endpoint owes no walk of its output
    # (poll_at is the delayed ACK's deadline, not 0.0: "output pending now"); the ACK
    # still leaves at that deadline, and the close that follows sends FIN as before.
    net = Net()
    server = net.eps[B]
    server.listen(80)
    client = net.eps[A].connect(net.now, A, B, 80)
    net.pump()
    conn = server.accept(80)
    assert conn is not None
    client.close()
    net.eps[A].wake(client)
    for laddr, raddr, seg in net.eps[A].segments_to_send(net.now):
        server.handle_packet(net.now, laddr, raddr, bytes(seg.to_bytes(laddr, raddr)))
    assert conn.state == State.CLOSE_WAIT and not conn.segments_to_send(net.now)
    due = server.poll_at()
    assert due is not None and due > net.now
    assert due == conn.poll_at()
    conn.close()
    server.wake(conn)
    assert server.poll_at() == 0.0
    net.pump()
    assert state(conn) == State.CLOSED and state(client) == State.TIME_WAIT
