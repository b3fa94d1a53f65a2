"""The same inputs in every synchronized state: RST, in-window RST, SYN, old data, bad ACK.

Each state is reached through real transitions from ESTABLISHED (or the handshake), so
this also checks that the paths into the states are right.
"""

from __future__ import annotations

import pytest
from tests.tcp_helpers import (
    LOCAL_ISS,
    LOCAL_SEQ,
    REMOTE_SEQ,
    established,
    events,
    out,
    seg_in,
    state,
    syn_received,
)

from miragekit.tcp import Connection, ConnectionClosed, ConnectionReset, State
from miragekit.wire.tcp import ACK, FIN, RST, SYN

# state -> (our next sequence number, the next number we expect)
NUMBERS = {
    State.SYN_RECEIVED: (LOCAL_ISS + 1, REMOTE_SEQ),
    State.ESTABLISHED: (LOCAL_SEQ, REMOTE_SEQ),
    State.FIN_WAIT_1: (LOCAL_SEQ + 1, REMOTE_SEQ),
    State.FIN_WAIT_2: (LOCAL_SEQ + 1, REMOTE_SEQ),
    State.CLOSE_WAIT: (LOCAL_SEQ, REMOTE_SEQ + 1),
    State.CLOSING: (LOCAL_SEQ + 1, REMOTE_SEQ + 1),
    State.LAST_ACK: (LOCAL_SEQ + 1, REMOTE_SEQ + 1),
    State.TIME_WAIT: (LOCAL_SEQ + 1, REMOTE_SEQ + 1),
}


def in_state(target: State) -> Connection:
    if target == State.SYN_RECEIVED:
        c = syn_received()
        out(c)
    else:
        c = established()
        if target in (State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.TIME_WAIT):
            c.close()
            out(c)
            if target in (State.FIN_WAIT_2, State.TIME_WAIT):
                c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + 1))
            if target in (State.CLOSING, State.TIME_WAIT):
                ack = LOCAL_SEQ if target == State.CLOSING else LOCAL_SEQ + 1
                c.handle_segment(0.0, seg_in(ACK | FIN, REMOTE_SEQ, ack))
        elif target in (State.CLOSE_WAIT, State.LAST_ACK):
            c.handle_segment(0.0, seg_in(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ))
            if target == State.LAST_ACK:
                c.close()
        out(c)
    events(c)
    assert state(c) == target
    assert out(c) == []
    return c


def ack_of(c: Connection) -> list[tuple[int, int, int]]:
    return [(s.flags, s.seq, s.ack) for s in out(c)]


def expected_ack(target: State) -> list[tuple[int, int, int]]:
    snd, rcv = NUMBERS[target]
    return [(ACK, snd & 0xFFFFFFFF, rcv & 0xFFFFFFFF)]


SYNCHRONIZED = [s for s in NUMBERS if s != State.SYN_RECEIVED]


@pytest.mark.parametrize("target", list(NUMBERS))
def test_rst_with_exact_sequence_closes(target: State) -> None:
    c = in_state(target)
    c.handle_segment(0.0, seg_in(RST, NUMBERS[target][1]))
    assert state(c) == State.CLOSED
    quiet = target in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT)
    assert events(c) == ([] if quiet else [ConnectionReset()]) + [ConnectionClosed()]
    assert out(c) == [] and c.poll_at() is None


@pytest.mark.parametrize("target", SYNCHRONIZED)
def test_rst_in_window_challenged(target: State) -> None:
    c = in_state(target)
    c.handle_segment(0.0, seg_in(RST, NUMBERS[target][1] + 10))
    assert state(c) == target
    assert ack_of(c) == expected_ack(target)


@pytest.mark.parametrize("target", SYNCHRONIZED)
def test_syn_challenged(target: State) -> None:
    c = in_state(target)
    c.handle_segment(0.0, seg_in(SYN, NUMBERS[target][1] + 10))
    assert state(c) == target
    assert ack_of(c) == expected_ack(target)


@pytest.mark.parametrize("target", SYNCHRONIZED)
def test_old_duplicate_acked_and_ignored(target: State) -> None:
    c = in_state(target)
    c.handle_segment(0.0, seg_in(ACK, NUMBERS[target][1] - 100, LOCAL_SEQ, b"x" * 50))
    assert state(c) == target
    assert ack_of(c) == expected_ack(target)
    assert c.readable == 0


@pytest.mark.parametrize("target", SYNCHRONIZED)
def test_ack_of_unsent_data_challenged(target: State) -> None:
    c = in_state(target)
    snd, rcv = NUMBERS[target]
    c.handle_segment(0.0, seg_in(ACK, rcv, snd + 5000))
    assert state(c) == target
    assert ack_of(c) == expected_ack(target)


@pytest.mark.parametrize("target", [State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2])
def test_data_accepted_while_peer_may_send(target: State) -> None:
    c = in_state(target)
    snd, rcv = NUMBERS[target]
    c.handle_segment(0.0, seg_in(ACK, rcv, snd, b"data"))
    assert c.receive() == b"data"


@pytest.mark.parametrize(
    "target", [State.CLOSE_WAIT, State.LAST_ACK, State.CLOSING, State.TIME_WAIT]
)
def test_data_after_peer_fin_not_delivered(target: State) -> None:
    c = in_state(target)
    snd, rcv = NUMBERS[target]
    c.handle_segment(0.0, seg_in(ACK, rcv, snd, b"late"))
    assert c.readable == 0
