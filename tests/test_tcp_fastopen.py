"""TCP Fast Open (RFC 7413), sans-I/O: two endpoints, every segment through its bytes.

The client endpoint asks for a cookie, keeps it per server, and sends data in the SYN
of the next connection; the server checks the cookie (a keyed hash of the client's
address) and takes the data at once, or falls back to the ordinary handshake.
"""

from __future__ import annotations

from collections.abc import Callable

from miragekit.tcp import Config, Connection, DataReceived, State, TCPEndpoint
from miragekit.tcp._fastopen import OPT_FASTOPEN, CookieJar, option_of
from miragekit.wire.tcp import ACK, PSH, SYN, TCPRepr

CLIENT = bytes([10, 0, 0, 1])
SERVER = bytes([10, 0, 0, 2])
CFG = Config(delayed_ack=False, tail_loss_probe=False)


def endpoints(server_fastopen: bool = True) -> tuple[TCPEndpoint, TCPEndpoint]:
    cli = TCPEndpoint(CFG, secret=b"c" * 16)
    srv = TCPEndpoint(CFG, secret=b"s" * 16)
    srv.listen(80, fastopen=server_fastopen)
    return cli, srv


def hop(
    a: TCPEndpoint, b: TCPEndpoint, now: float, drop: Callable[[TCPRepr], bool] = lambda s: False
) -> list[TCPRepr]:
    """Everything ``a`` sends now, delivered to ``b`` as bytes (unless dropped)."""
    sent = []
    for laddr, raddr, seg in a.segments_to_send(now):
        sent.append(seg)
        if not drop(seg):
            b.handle_packet(now, laddr, raddr, seg.to_bytes(laddr, raddr))
    return sent


def accepted(srv: TCPEndpoint, cli: TCPEndpoint, now: float) -> Connection:
    """The server's next connection (its output, which settles the accept queue, first)."""
    hop(srv, cli, now)
    conn = srv.accept(80)
    assert conn is not None
    return conn


def read_all(conn: Connection) -> bytes:
    return bytes(conn.receive())


def open_with(
    cli: TCPEndpoint, srv: TCPEndpoint, data: bytes, now: float = 0.0
) -> tuple[Connection, list[TCPRepr], list[TCPRepr]]:
    """A Fast Open connect with ``data`` queued; (client conn, SYNs sent, SYN-ACKs)."""
    conn = cli.connect(now, CLIENT, SERVER, 80, fastopen=True)
    assert conn.send(data) == len(data)
    syns = hop(cli, srv, now)
    synacks = hop(srv, cli, now)
    return conn, syns, synacks


def first_visit(cli: TCPEndpoint, srv: TCPEndpoint) -> bytes:
    """A first connection: asks for the cookie; returns the cookie the server gave."""
    conn, syns, synacks = open_with(cli, srv, b"first")
    assert [(s.flags, len(s.payload), option_of(s)) for s in syns] == [(SYN, 0, b"")]
    [synack] = synacks
    cookie = option_of(synack)
    assert cookie is not None and len(cookie) == 8
    assert synack.ack == (syns[0].seq + 1) & 0xFFFFFFFF  # nothing but the SYN to ack
    assert conn.state == State.ESTABLISHED
    # The data follows the handshake, as in any connection.
    data = [s for s in hop(cli, srv, 0.0) if s.payload]
    assert [bytes(s.payload) for s in data] == [b"first"]
    server_conn = accepted(srv, cli, 9.0)
    assert read_all(server_conn) == b"first"
    return cookie


def test_cookie_is_a_keyed_hash_of_the_client_address() -> None:
    jar = CookieJar(b"k" * 16)
    assert jar.server_cookie(CLIENT) == jar.server_cookie(CLIENT)
    assert jar.server_cookie(CLIENT) != jar.server_cookie(SERVER)
    assert jar.server_cookie(CLIENT) != CookieJar(b"K" * 16).server_cookie(CLIENT)
    assert len(jar.server_cookie(CLIENT)) == 8


def test_second_connection_sends_data_in_the_syn_and_the_server_takes_it_once() -> None:
    cli, srv = endpoints()
    cookie = first_visit(cli, srv)
    conn, syns, synacks = open_with(cli, srv, b"GET / please", now=1.0)
    [syn] = syns
    assert syn.flags == SYN and option_of(syn) == cookie
    assert bytes(syn.payload) == b"GET / please"
    [synack] = synacks
    # The SYN-ACK acknowledges the data and hands out no cookie (the one sent is good).
    assert synack.ack == (syn.seq + 1 + 12) & 0xFFFFFFFF
    assert option_of(synack) is None
    assert srv.stats["fastopen_accepted"] == 1
    assert conn.fastopen is not None and conn.fastopen.acked
    # The handshake's ACK carries nothing more: the data is not sent twice.
    rest = hop(cli, srv, 1.0)
    assert [(s.flags, len(s.payload)) for s in rest] == [(ACK, 0)]
    assert conn.stats["retransmits"] == 0 and conn.send_queued == 0
    server_conn = accepted(srv, cli, 9.0)
    assert server_conn.next_event() is not None  # Connected / DataReceived
    assert read_all(server_conn) == b"GET / please"
    assert read_all(server_conn) == b""


def test_syn_data_is_bounded_by_the_servers_mss_and_the_rest_follows() -> None:
    cli, srv = endpoints()
    first_visit(cli, srv)
    payload = bytes(range(256)) * 20  # 5120 bytes
    conn, syns, synacks = open_with(cli, srv, payload, now=1.0)
    n = len(syns[0].payload)
    assert 1000 < n <= 1460 - syns[0].options_len()
    assert synacks[0].ack == (syns[0].seq + 1 + n) & 0xFFFFFFFF
    got = bytearray()
    for t in (1.0, 1.01, 1.02, 1.03):
        hop(cli, srv, t)
        hop(srv, cli, t)
    server_conn = accepted(srv, cli, 9.0)
    got += read_all(server_conn)
    assert bytes(got) == payload
    assert conn.stats["retransmits"] == 0


def test_server_without_fast_open_ignores_the_data_and_the_client_resends_it() -> None:
    cli, _ = endpoints()
    _, srv_tfo = endpoints()
    first_visit(cli, srv_tfo)  # a cookie from a server at that address
    srv = TCPEndpoint(CFG, secret=b"s" * 16)
    srv.listen(80)  # the same address now runs no Fast Open
    conn, syns, synacks = open_with(cli, srv, b"hello", now=1.0)
    assert bytes(syns[0].payload) == b"hello"
    [synack] = synacks
    assert synack.ack == (syns[0].seq + 1) & 0xFFFFFFFF and option_of(synack) is None
    # The data goes again right after the handshake, the same bytes at the same place.
    rest = hop(cli, srv, 1.0)
    data = [s for s in rest if s.payload]
    assert [(s.flags, s.seq, bytes(s.payload)) for s in data] == [
        (ACK | PSH, (syns[0].seq + 1) & 0xFFFFFFFF, b"hello")
    ]
    assert conn.stats["retransmits"] == 1
    assert conn.fastopen is not None and not conn.fastopen.acked
    server_conn = accepted(srv, cli, 9.0)
    assert read_all(server_conn) == b"hello"
    # The cookie was forgotten: the next SYN asks again and carries no data.
    cli.connect(2.0, CLIENT, SERVER, 80, fastopen=True).send(b"x")
    [(_, _, syn2)] = cli.segments_to_send(2.0)
    assert option_of(syn2) == b"" and not syn2.payload


def test_a_wrong_cookie_gets_the_right_one_and_the_data_follows() -> None:
    cli, srv = endpoints()
    good = first_visit(cli, srv)
    srv2 = TCPEndpoint(CFG, secret=b"S" * 16)  # the server's key changed
    srv2.listen(80, fastopen=True)
    conn, syns, synacks = open_with(cli, srv2, b"hello", now=1.0)
    assert option_of(syns[0]) == good and bytes(syns[0].payload) == b"hello"
    new = option_of(synacks[0])
    assert new is not None and new != good
    assert synacks[0].ack == (syns[0].seq + 1) & 0xFFFFFFFF
    assert srv2.stats["fastopen_accepted"] == 0
    hop(cli, srv2, 1.0)
    assert conn.stats["retransmits"] == 1  # the data again, after the handshake
    server_conn = accepted(srv2, cli, 9.0)
    assert read_all(server_conn) == b"hello"
    # The next connection uses the new cookie, and its data is taken.
    _, syns2, synacks2 = open_with(cli, srv2, b"again", now=2.0)
    assert option_of(syns2[0]) == new
    assert synacks2[0].ack == (syns2[0].seq + 1 + 5) & 0xFFFFFFFF


def test_lost_syn_with_data_is_retried_bare_and_the_data_follows() -> None:
    cli, srv = endpoints()
    cookie = first_visit(cli, srv)
    conn = cli.connect(1.0, CLIENT, SERVER, 80, fastopen=True)
    conn.send(b"hello")
    [syn] = hop(cli, srv, 1.0, drop=lambda s: True)
    assert bytes(syn.payload) == b"hello"
    t = conn.poll_at()
    assert t is not None and t > 1.5  # the retransmission timeout
    cli.handle_timer(t)
    [retry] = hop(cli, srv, t)
    assert retry.flags == SYN and retry.seq == syn.seq and not retry.payload
    assert (OPT_FASTOPEN, cookie) in retry.unknown_options
    [synack] = hop(srv, cli, t)
    assert synack.ack == (syn.seq + 1) & 0xFFFFFFFF
    data = [s for s in hop(cli, srv, t) if s.payload]
    assert [bytes(s.payload) for s in data] == [b"hello"]
    server_conn = accepted(srv, cli, 9.0)
    assert read_all(server_conn) == b"hello"
    # A lost SYN says nothing against the cookie: the next SYN carries data again.
    _, syns, _ = open_with(cli, srv, b"next", now=10.0)
    assert option_of(syns[0]) == cookie and bytes(syns[0].payload) == b"next"


def test_server_answers_a_retried_syn_again_and_delivers_the_data_once() -> None:
    cli, srv = endpoints()
    first_visit(cli, srv)
    conn = cli.connect(1.0, CLIENT, SERVER, 80, fastopen=True)
    conn.send(b"once")
    [syn] = hop(cli, srv, 1.0)
    [lost] = hop(srv, cli, 1.0, drop=lambda s: True)  # the SYN-ACK is lost
    # The client's SYN again, this time with its data once more (as a peer may send it).
    srv.handle_packet(1.5, CLIENT, SERVER, syn.to_bytes(CLIENT, SERVER))
    [again] = hop(srv, cli, 1.5)
    assert again.flags == SYN | ACK and again.seq == lost.seq and again.ack == lost.ack
    hop(cli, srv, 1.5)
    server_conn = accepted(srv, cli, 9.0)
    assert [e for e in iter(server_conn.next_event, None) if e == DataReceived()] == [
        DataReceived()
    ]
    assert read_all(server_conn) == b"once" and read_all(server_conn) == b""
    assert srv.stats["fastopen_accepted"] == 1


def test_no_fast_open_unless_asked() -> None:
    cli, srv = endpoints()
    conn = cli.connect(0.0, CLIENT, SERVER, 80)
    conn.send(b"x")
    [syn] = hop(cli, srv, 0.0)
    assert option_of(syn) is None and not syn.payload and conn.fastopen is None
    [synack] = hop(srv, cli, 0.0)
    assert option_of(synack) is None


def test_server_answers_before_the_handshake_completes() -> None:
    """RFC 7413 4.2.3: the server's application reads the SYN's data at once and its
    answer leaves right behind the SYN-ACK, a round trip before a plain handshake
    would let it; the FIN waits for ESTABLISHED."""
    cli, srv = endpoints()
    first_visit(cli, srv)
    conn = cli.connect(1.0, CLIENT, SERVER, 80, fastopen=True)
    conn.send(b"ping")
    [syn] = hop(cli, srv, 1.0)
    server_conn = srv.accept(80)
    assert server_conn is not None and server_conn.state == State.SYN_RECEIVED
    assert read_all(server_conn) == b"ping"
    server_conn.send(b"pong")
    server_conn.close()
    srv.wake(server_conn)
    synack, answer = hop(srv, cli, 1.0)
    assert synack.flags == SYN | ACK and synack.ack == (syn.seq + 5) & 0xFFFFFFFF
    assert answer.flags == ACK | PSH and bytes(answer.payload) == b"pong"
    assert answer.seq == (synack.seq + 1) & 0xFFFFFFFF
    assert read_all(conn) == b"pong"  # one round trip after the SYN
    hop(cli, srv, 1.0)  # the client's ACK of both
    assert State(server_conn.state) == State.FIN_WAIT_1  # established, FIN queued
    [fin] = hop(srv, cli, 1.0)
    assert fin.flags & 0x01 and not fin.payload  # the FIN alone: "pong" is not resent
    assert server_conn.stats["retransmits"] == 0 and server_conn.send_queued == 0
