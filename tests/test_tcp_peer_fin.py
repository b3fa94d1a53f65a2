"""The peer's FIN of a passive close taken in one step (``Connection._peer_fin``): every
connection a client closes first gets one. Whatever it takes must end in the state the
full RFC 9293 walk of ``handle_segment`` leaves (every field of the connection, its
events, output and timers); what it declines goes that walk unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from tests.tcp_helpers import REMOTE_SEQ, established, seg_in
from tests.test_tcp_next_segment import connection
from tests.test_tcp_small_send import RICH, _ts, clone, history, snapshot

from miragekit.tcp import Connection, State
from miragekit.wire.tcp import ACK, FIN, PSH

step = st.tuples(
    st.sampled_from(["data", "hole", "ack", "send", "wait", "read"]), st.integers(0, 3000)
)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What ``_peer_fin`` answered, call by call."""
    taken: list[bool] = []
    real = Connection._peer_fin

    def spying(self: Connection, *a: Any) -> bool:
        r = real(self, *a)
        taken.append(r)
        return r

    monkeypatch.setattr(Connection, "_peer_fin", spying)
    return taken


@settings(max_examples=400, deadline=None)
@given(
    cfg=st.sampled_from(["plain", "rich", "keepalive"]),
    steps=st.lists(step, max_size=10),
    acked=st.sampled_from(["all", "all", "part", "none", "beyond"]),
    plen=st.sampled_from([0, 0, 0, 5]),
    window=st.sampled_from([64000, 0, 1000]),
    seq_off=st.sampled_from([0, 0, 0, 1, -1]),
    ts_off=st.sampled_from([1, 1, 0, -5]),
    flags=st.sampled_from([ACK | FIN, ACK | FIN | PSH, FIN]),
    full_window=st.booleans(),
)
def test_the_peer_fin_step_is_the_full_walk(
    cfg: str,
    steps: list[tuple[str, int]],
    acked: str,
    plen: int,
    window: int,
    seq_off: int,
    ts_off: int,
    flags: int,
    full_window: bool,
) -> None:
    c = connection(cfg)
    now, peer_seq, tsv = history(c, steps)
    if full_window:
        c._rcv_adv = c._rcv_nxt  # our announced window is full: a zero window
    now += 0.0007
    una, smax = c._snd_una, c._snd_max
    ack = {"all": smax, "part": una + (smax - una) // 2, "none": una, "beyond": smax + 1}[acked]
    fin = seg_in(flags, peer_seq + seq_off, ack, b"f" * plen, window=window, **_ts(c, tsv + ts_off))
    general = clone(c)
    with pytest.MonkeyPatch.context() as mp:
        taken = _spy(mp)
        c.handle_segment(now, fin)
    event(f"taken={taken}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Connection, "_peer_fin", lambda self, *a: False)
        general.handle_segment(now, fin)
    assert snapshot(c) == snapshot(general)
    assert c.poll_at() == general.poll_at()
    assert c.take_events() == general.take_events()
    assert c.segments_to_send(now) == general.segments_to_send(now)
    assert snapshot(c) == snapshot(general)


def test_a_client_close_is_taken_and_the_rest_goes_the_full_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usual passive close (the peer's FIN after it acknowledged our reply) is taken;
    a FIN with data, one while our reply is in flight, an old timestamp are not."""
    taken = _spy(monkeypatch)
    c = established(RICH, mss=1460, timestamp=(100, 0), sack_permitted=True)
    c.send(b"reply")
    assert c.segment_now(0.01) is not None
    # Our reply in flight: not taken.
    c2 = clone(c)
    c2.handle_segment(0.02, seg_in(ACK | FIN, REMOTE_SEQ, c._snd_una, **_ts(c, 200)))
    assert taken == [False] and c2.state == State.CLOSE_WAIT
    c.handle_segment(0.02, seg_in(ACK, REMOTE_SEQ, c._snd_max, **_ts(c, 200)))
    # An old timestamp (PAWS): not taken, the full walk drops it.
    c3 = clone(c)
    c3.handle_segment(0.03, seg_in(ACK | FIN, REMOTE_SEQ, c._snd_max, timestamp=(1, 0)))
    assert taken == [False, False] and c3.state == State.ESTABLISHED
    # Data with the FIN: not taken.
    c4 = clone(c)
    c4.handle_segment(0.03, seg_in(ACK | FIN, REMOTE_SEQ, c._snd_max, b"x", **_ts(c, 201)))
    assert taken == [False] * 3 and c4.state == State.CLOSE_WAIT
    c.handle_segment(0.03, seg_in(ACK | FIN, REMOTE_SEQ, c._snd_max, **_ts(c, 201)))
    assert taken == [False, False, False, True]
    assert c.state == State.CLOSE_WAIT and c.at_eof
