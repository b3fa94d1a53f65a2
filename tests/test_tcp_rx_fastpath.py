"""The bulk receiver's fast path (data that acknowledges nothing new and keeps the
window skips the sender-side ACK processing): it must still track the window-update
sequence numbers (RFC 9293 3.10.7.4, SND.WL1/WL2) and honour a window change."""

from __future__ import annotations

from tests.tcp_helpers import LOCAL_SEQ, REMOTE_SEQ, WINDOW, established, out, seg_in

from miragekit.wire.tcp import ACK


def test_an_old_duplicate_cannot_shrink_the_window_after_fast_path_data() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 100, LOCAL_SEQ, b"b" * 100))
    out(c)
    # A retransmission that starts before the last window update (SND.WL1) and claims a
    # closed window: older news, so it must not change the send window.
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 50, LOCAL_SEQ, b"ab" * 100, window=0))
    out(c)
    assert c.send(b"x" * 500) == 500
    sent = out(c)
    assert [len(s.payload) for s in sent] == [500]


def test_a_window_change_on_data_is_honoured() -> None:
    c = established()
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100))
    c.handle_segment(0.0, seg_in(ACK, REMOTE_SEQ + 100, LOCAL_SEQ, b"b" * 100, window=300))
    out(c)
    assert c.send(b"x" * 1000) == 1000
    assert [len(s.payload) for s in out(c)] == [300]
    assert WINDOW != 300


def test_parse_reads_a_32_byte_header_right_whatever_its_options() -> None:
    """The one-unpack branch for a 32-byte header takes timestamps only; any other
    12 bytes of options there go through the general walk, with the same result."""
    from miragekit.wire.tcp import TCPRepr

    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    cases = [
        TCPRepr(1, 2, 3, 4, ACK, 5, b"data", timestamp=(7, 8)),
        TCPRepr(1, 2, 3, 4, ACK, 5, b"data", sack_blocks=((10, 20),)),
        TCPRepr(1, 2, 3, 4, ACK, 5, b"", mss=1460, wscale=7, sack_permitted=True),
        TCPRepr(1, 2, 3, 4, ACK, 5, b"x", mss=1400, timestamp=None, wscale=3),
    ]
    for seg in cases:
        wire = seg.to_bytes(a, b)
        got = TCPRepr.parse(wire, a, b)
        assert got._replace(payload=bytes(got.payload)) == seg, (seg, got)
    ts = cases[0].to_bytes(a, b)
    assert len(ts) == 32 + 4 and ts[12] == 0x80
