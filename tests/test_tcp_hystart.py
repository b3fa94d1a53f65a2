"""HyStart++ (RFC 9406): rounds by sequence number, the RTT-rise exit into CSS, the
false-alarm return to slow start, CSS's slower growth and its end after five rounds."""

from __future__ import annotations

import pytest
from tests.tcp_harness import Harness, WireModel, bulk_transfer

from miragekit.tcp import Config
from miragekit.tcp.congestion import INITIAL_SSTHRESH, HyStart, new_controller
from miragekit.tcp.congestion.hystart import CSS_ROUNDS, N_RTT_SAMPLE

MSS = 1000


def _round(hs: HyStart, start: int, end: int, rtt: float, n: int = N_RTT_SAMPLE) -> None:
    """One round: the first ACK reaches the previous round's end (SND.NXT ``end`` now),
    then ``n`` RTT samples in all."""
    hs.on_ack(start, end, rtt)
    for k in range(1, n):
        hs.on_ack(start + k, end, rtt)


def test_rtt_rise_enters_css_and_css_rounds_end_slow_start() -> None:
    hs = HyStart()
    _round(hs, 0, 100, 0.020)
    _round(hs, 100, 200, 0.020)
    assert not hs.in_css and hs.increase(10 * MSS, MSS) == 8 * MSS  # L = 8 per ACK
    # A rise of less than the threshold (20 ms / 8 = 2.5 ms, at least 4 ms): no exit.
    _round(hs, 200, 300, 0.0235)
    assert not hs.in_css
    # Seven samples of a higher RTT are not enough (N_RTT_SAMPLE = 8) ...
    _round(hs, 300, 400, 0.028, n=N_RTT_SAMPLE - 1)
    assert not hs.in_css
    hs.on_ack(307, 400, 0.028)  # ... the eighth is: 28 >= 23.5 + 4
    assert hs.in_css and hs.css_baseline == pytest.approx(0.028)
    # CSS grows a quarter as fast.
    assert hs.increase(2 * MSS, MSS) == MSS // 2
    for r in range(CSS_ROUNDS):
        assert not hs.done
        _round(hs, 400 + 100 * r, 500 + 100 * r, 0.029)
    assert hs.done


def test_rtt_back_below_the_baseline_resumes_slow_start() -> None:
    hs = HyStart()
    _round(hs, 0, 100, 0.010)
    _round(hs, 100, 200, 0.016)  # +6 ms >= the 4 ms floor of the threshold
    assert hs.in_css
    _round(hs, 200, 300, 0.009)  # a false alarm: the RTT fell below the baseline
    assert not hs.in_css and hs.increase(2 * MSS, MSS) == 2 * MSS
    # The threshold is capped at 16 ms: 200 ms + 16 ms exits.
    hs = HyStart()
    _round(hs, 0, 100, 0.200)
    _round(hs, 100, 200, 0.215)
    assert not hs.in_css
    _round(hs, 200, 300, 0.232)
    assert hs.in_css


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_controllers_use_hystart_only_in_the_initial_slow_start(name: str) -> None:
    cc = new_controller(name, MSS, hystart=True)
    hs = cc.hystart
    assert hs is not None
    cc.on_send(0.0, 0, cc.cwnd, True)  # a bulk sender: cwnd full
    cc.on_ack(0.0, 5 * MSS, 0.01)
    assert cc.cwnd == 15 * MSS  # min(N, L*SMSS), not RFC 3465's 2*SMSS
    hs.css_baseline = 0.01  # in CSS
    cc.on_ack(0.0, 4 * MSS, 0.01)
    assert cc.cwnd == 16 * MSS
    hs.done = True  # CSS_ROUNDS rounds are over: congestion avoidance at this cwnd
    cc.on_ack(0.0, 4 * MSS, 0.01)
    assert cc.ssthresh == cc.cwnd == 17 * MSS
    # After a timeout, slow start is RFC 3465's again (ssthresh is known).
    cc.on_rto(1.0, 17 * MSS)
    cc.on_send(1.0, 0, 17 * MSS, True)  # everything outstanding after the timeout
    cc.on_ack(1.1, 5 * MSS, 0.01)
    assert cc.cwnd == 3 * MSS and cc.ssthresh < INITIAL_SSTHRESH
    plain = new_controller(name, MSS)
    assert plain.hystart is None
    plain.on_send(0.0, 0, plain.cwnd, True)
    plain.on_ack(0.0, 5 * MSS, 0.01)
    assert plain.cwnd == 12 * MSS


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_hystart_leaves_slow_start_without_a_loss_on_a_queueing_link(name: str) -> None:
    """A 10 MB/s link with 20 ms of RTT and no loss: the queue grows as the window passes
    the path's 200 KB, the RTT with it; HyStart++ ends slow start, standard slow start
    only the receive window stops (with a queue of seconds on a real path)."""
    got = {}
    for hystart in (True, False):
        cfg = Config(congestion=name, recv_buffer=4 << 20, send_buffer=4 << 20, hystart=hystart)
        h = Harness(cfg, cfg, WireModel(delay=0.01, rate=10e6), seed=1)
        sent, received, _t = bulk_transfer(h, 10_000_000)
        assert sent == received and h.a.stats["retransmits"] == 0
        got[hystart] = (h.a.ssthresh, h.a.cwnd)
    assert got[True][0] < 3_000_000 and got[True][1] < 3_000_000
    assert got[False][0] == INITIAL_SSTHRESH and got[False][1] > 8_000_000
