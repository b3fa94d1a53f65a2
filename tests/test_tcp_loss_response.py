"""How fast a SACK sender goes while it recovers from loss (the lossy benchmark's rules):
a connection built in a state, fed segments and timers, and the exact segments out."""

from __future__ import annotations

import dataclasses

import pytest
from tests.tcp_helpers import LOCAL_SEQ, PLAIN, REMOTE_SEQ, established, out, seg_in, seg_out

from miragekit.tcp import Config, Connection
from miragekit.wire.tcp import ACK

SACK_TLP = dataclasses.replace(PLAIN, sack=True, tail_loss_probe=True)


def _blocks(*ranges: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(((LOCAL_SEQ + a) & 0xFFFFFFFF, (LOCAL_SEQ + b) & 0xFFFFFFFF) for a, b in ranges)


def _data(rel: int, n: int = 1000, flags: int = ACK) -> object:
    return seg_out(flags, LOCAL_SEQ + rel, REMOTE_SEQ, bytes(n))


def _ack(c: Connection, now: float, rel: int, *ranges: tuple[int, int]) -> None:
    c.handle_segment(now, seg_in(ACK, REMOTE_SEQ, LOCAL_SEQ + rel, sack_blocks=_blocks(*ranges)))


def reordering_seen(cfg: Config = SACK_TLP) -> Connection:
    """ESTABLISHED, MSS 1000, SACK; segments 1000-4000 sent at 2.0, 2000-3000 SACKed,
    then all ACKed at 2.02 by their first transmission: reordering seen, so RACK waits
    its window before calling a hole lost, and DupThresh no longer counts."""
    c = established(cfg, mss=1000, sack_permitted=True)
    c.send(bytes(1000))
    assert len(out(c, 1.0)) == 1
    _ack(c, 1.1, 1000)
    c.send(bytes(3000))
    assert len(out(c, 2.0)) == 3
    _ack(c, 2.01, 1000, (2000, 3000))
    _ack(c, 2.02, 4000)
    assert c._reo.seen and c.cwnd == 14000
    return c


def test_sacked_data_frees_cwnd_before_recovery() -> None:
    """Outside recovery, cwnd limits the pipe (RFC 6675), not everything below SND.MAX:
    each segment SACKed while RACK waits out the reordering window lets one new one go
    (as Linux counts packets in flight), where limited transmit (RFC 3042) allows two."""
    c = reordering_seen()
    c.send(bytes(40000))
    assert out(c, 3.0) == [_data(4000 + 1000 * i) for i in range(14)]
    # Segment 4000 is missing; 5000-9000 arrive, early enough to be reordering.
    for i, t in enumerate((3.011, 3.012, 3.013, 3.014)):
        _ack(c, t, 4000, (5000, 6000 + 1000 * i))
        assert out(c, t) == [_data(18000 + 1000 * i)]
    assert not c._in_recovery and c.stats["fast_retransmits"] == 0
    assert c.cwnd == 14000
    # RACK's deadline (sent at 3.0, + RACK.rtt 0.02 + the window, min_rtt/4 = 0.005)
    # then finds the hole lost: recovery, and the retransmission.
    assert c.poll_at() == pytest.approx(3.025, abs=2e-6)
    c.handle_timer(c.poll_at() or 0.0)
    assert c._in_recovery and out(c, 3.021)[0] == _data(4000)
