"""SACK blocks take room from the segment they ride on (RFC 9293 3.7.1: the MSS bounds the
data and the options together). A full segment's data leaves none: its blocks go on a pure
ACK after it.

Without it, an end holding out-of-order data sent every full data segment 12 bytes or more
over the path's MTU; the IP layer dropped them (DF) without a word. Two ends each with a
hole (an echo through the forwarder, under load) then lost every data segment they sent,
retransmissions included, and stalled until the connection timed out."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, due, established, out, seg_in

from miragekit.tcp import Connection
from miragekit.wire.tcp import ACK, TCPRepr

MSS = 1460  # what the peer announced: the bound of our data and options together
SACK_TS = dataclasses.replace(PLAIN, timestamps=True, sack=True)
SACK_ONLY = dataclasses.replace(PLAIN, sack=True)


def with_hole(*, timestamps: bool = True) -> Connection:
    """An established connection (SACK, timestamps unless told) that holds 100 bytes of
    the peer's beyond a hole of 100."""
    if timestamps:
        c = established(SACK_TS, mss=MSS, sack_permitted=True, timestamp=(100, 0))
    else:
        c = established(SACK_ONLY, mss=MSS, sack_permitted=True)
    ts: dict[str, Any] = {"timestamp": (102, 0)} if timestamps else {}
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ + 100, LOCAL_SEQ, b"b" * 100, **ts))
    acks = out(c, 0.01)
    assert [len(s.sack_blocks) for s in acks] == [1]  # the duplicate ACK says what came
    return c


def option_bytes(seg: TCPRepr) -> int:
    return seg.buffer_len() - 20 - len(seg.payload)


def test_full_data_segments_leave_the_sack_blocks_to_a_pure_ack_after_them() -> None:
    c = with_hole()
    smss = c.mss
    assert smss == MSS - 12  # timestamps
    c.send(b"d" * (3 * smss))
    segs = out(c, 0.02)
    assert [len(s.payload) for s in segs] == [smss] * 3 + [0]
    for s in segs:
        assert len(s.payload) + option_bytes(s) <= MSS  # fits the peer's MSS (and the MTU)
    assert [s.sack_blocks for s in segs[:3]] == [()] * 3
    hole = ((REMOTE_SEQ + 100) & 0xFFFFFFFF, (REMOTE_SEQ + 200) & 0xFFFFFFFF)
    assert segs[3].flags == ACK and segs[3].sack_blocks == (hole,)
    assert segs[3].seq == segs[2].seq + smss and segs[3].ack == REMOTE_SEQ & 0xFFFFFFFF


def test_a_retransmission_at_full_size_fits_beside_a_hole() -> None:
    """The stall's own sequence: a full segment in flight is lost, the peer's data leaves
    a hole here, the timeout resends the segment: it goes whole, without the blocks, and
    a pure ACK carries them."""
    c = established(SACK_TS, mss=MSS, sack_permitted=True, timestamp=(100, 0))
    c.send(b"d" * c.mss)
    assert [len(s.payload) for s in out(c)] == [c.mss]  # lost
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ + 100, LOCAL_SEQ, b"b" * 100, timestamp=(102, 0)))
    out(c, 0.01)
    t = due(c)
    c.handle_timer(t)
    segs = out(c, t)
    assert [len(s.payload) for s in segs] == [c.mss, 0]
    assert segs[0].seq == LOCAL_SEQ & 0xFFFFFFFF and not segs[0].sack_blocks
    assert len(segs[0].payload) + option_bytes(segs[0]) <= MSS
    assert len(segs[1].sack_blocks) == 1


def test_a_d_sack_waits_for_the_pure_ack_when_the_data_leaves_no_room() -> None:
    c = established(SACK_TS, mss=MSS, sack_permitted=True, timestamp=(100, 0))
    c.handle_segment(0.01, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100, timestamp=(101, 0)))
    out(c, 0.01)
    c.handle_segment(0.02, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ, b"a" * 100, timestamp=(102, 0)))
    c.send(b"d" * c.mss)
    segs = out(c, 0.02)
    assert [len(s.payload) for s in segs] == [c.mss, 0]
    assert not segs[0].sack_blocks
    dup = (REMOTE_SEQ & 0xFFFFFFFF, (REMOTE_SEQ + 100) & 0xFFFFFFFF)
    assert segs[1].sack_blocks == (dup,)
    assert c.stats["dsacks_out"] == 1
    ack = seg_in(ACK, REMOTE_SEQ + 100, LOCAL_SEQ + c.mss, timestamp=(103, 0))
    c.handle_segment(0.03, ack)
    c.send(b"e" * 10)
    assert [s.sack_blocks for s in out(c, 0.03)] == [()]  # reported once


def test_a_short_segment_carries_the_blocks_that_fit() -> None:
    """Room for the blocks beside the data: they go with it, and no ACK follows."""
    c = with_hole()
    c.send(b"d" * 100)
    segs = out(c, 0.02)
    assert [len(s.payload) for s in segs] == [100]
    assert len(segs[0].sack_blocks) == 1


def test_without_timestamps_as_many_blocks_as_fit_and_the_rest_on_an_ack() -> None:
    """No timestamps: MSS bytes of data each, so data 12 bytes short of it has room for
    one block (4 + 8 bytes); a second range goes on the pure ACK after it."""
    c = with_hole(timestamps=False)
    c.handle_segment(0.015, seg_in(ACK, REMOTE_SEQ + 300, LOCAL_SEQ, b"c" * 100))
    out(c, 0.015)
    assert c.mss == MSS
    c.send(b"d" * (MSS - 12))
    segs = out(c, 0.02)
    assert [len(s.payload) for s in segs] == [MSS - 12, 0]
    assert len(segs[0].sack_blocks) == 1 and option_bytes(segs[0]) == 12
    assert len(segs[1].sack_blocks) == 2
