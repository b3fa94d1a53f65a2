"""smoltcp-style helpers: build a connection in a state, feed segments, assert the output.

The remote sequence numbers start just below 2**32 and ours too, so every test that
moves a few hundred bytes crosses the wraparound on both sides.
"""

from __future__ import annotations

from typing import Any

from miragekit.tcp import Config, Connection, Event, State
from miragekit.tcp.seqnum import MASK
from miragekit.wire.tcp import ACK, SYN, TCPRepr

LOCAL_PORT = 80
REMOTE_PORT = 49500
LOCAL_ISS = 0xFFFF_FF80
REMOTE_ISS = 0xFFFF_FFF0
LOCAL_SEQ = LOCAL_ISS + 1  # unbounded; masked when put on the wire
REMOTE_SEQ = REMOTE_ISS + 1
WINDOW = 64000

# No options beyond MSS, immediate ACKs: the plainest TCP, for exact expectations, with
# NewReno's halving (RFC 5681), whose windows the tests' expectations are written in.
PLAIN = Config(
    congestion="newreno",
    window_scaling=False,
    timestamps=False,
    sack=False,
    delayed_ack=False,
    recv_buffer=WINDOW,
    send_buffer=64000,
    tail_loss_probe=False,
)


def seg_in(
    flags: int,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    window: int = WINDOW,
    **kw: Any,
) -> TCPRepr:
    """A segment from the remote end (numbers may be unbounded; they are masked)."""
    return TCPRepr(
        REMOTE_PORT,
        LOCAL_PORT,
        seq & MASK,
        ack & MASK,
        flags,
        window,
        payload,
        **kw,
    )


def seg_out(
    flags: int,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    window: int = WINDOW,
    **kw: Any,
) -> TCPRepr:
    """A segment we expect the connection to send."""
    return TCPRepr(
        LOCAL_PORT,
        REMOTE_PORT,
        seq & MASK,
        ack & MASK,
        flags,
        window,
        payload,
        **kw,
    )


def out(conn: Connection, now: float = 0.0) -> list[TCPRepr]:
    return conn.segments_to_send(now)


def events(conn: Connection) -> list[Event]:
    got: list[Event] = []
    while (e := conn.next_event()) is not None:
        got.append(e)
    return got


def state(conn: Connection) -> State:
    return conn.state


def syn_received(cfg: Config = PLAIN, **syn_opts: Any) -> Connection:
    syn_opts.setdefault("mss", 1460)
    conn = Connection.accept(cfg, seg_in(SYN, REMOTE_ISS, 0, **syn_opts), LOCAL_ISS, 0.0)
    assert state(conn) == State.SYN_RECEIVED
    return conn


def established(cfg: Config = PLAIN, **syn_opts: Any) -> Connection:
    """A passive connection in ESTABLISHED with nothing pending."""
    conn = syn_received(cfg, **syn_opts)
    synack = out(conn)
    assert len(synack) == 1 and synack[0].flags == SYN | ACK
    ts = syn_opts.get("timestamp")
    kw: dict[str, Any] = {}
    if ts is not None and cfg.timestamps:
        kw["timestamp"] = (101, synack[0].timestamp[0] if synack[0].timestamp else 0)
    conn.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, **kw))
    assert state(conn) == State.ESTABLISHED
    events(conn)
    assert out(conn) == []
    return conn


def due(conn: Connection) -> float:
    """The connection's next timer, which must exist."""
    t = conn.poll_at()
    assert t is not None
    return t
