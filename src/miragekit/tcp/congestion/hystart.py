"""HyStart++ (RFC 9406): leave the initial slow start when the RTT starts to rise.

Slow start doubles the window every round trip until a loss, which overshoots the path
by up to a window's worth and ends in a burst of losses. HyStart++ watches the smallest
RTT of each round (a round ends when the data outstanding at its start is acknowledged):
once it has risen by a threshold (an eighth of the last round's, clamped to 4-16 ms), the
queue is filling, and Conservative Slow Start (CSS) grows the window four times more
slowly; if the RTT falls back below the level that started CSS it was a false alarm and
slow start resumes, else after five rounds congestion avoidance takes over.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HyStart"]

MIN_RTT_THRESH: Final = 0.004
MAX_RTT_THRESH: Final = 0.016
MIN_RTT_DIVISOR: Final = 8
N_RTT_SAMPLE: Final = 8
CSS_GROWTH_DIVISOR: Final = 4
CSS_ROUNDS: Final = 5
L: Final = 8  # segments per ACK at most, for a sender that does not pace
_INF: Final = float("inf")


class HyStart:
    """The state of RFC 9406 4.2 for one connection; ``done`` once CSS has run its
    rounds (the controller then sets ssthresh to cwnd)."""

    __slots__ = (
        "css_baseline",
        "css_rounds",
        "cur_min",
        "done",
        "last_min",
        "samples",
        "window_end",
    )

    def __init__(self) -> None:
        self.window_end: int | None = None  # windowEnd: SND.NXT when the round began
        self.last_min = _INF  # lastRoundMinRTT
        self.cur_min = _INF  # currentRoundMinRTT
        self.samples = 0  # rttSampleCount
        self.css_baseline = _INF  # cssBaselineMinRtt: finite while in CSS
        self.css_rounds = 0
        self.done = False

    @property
    def in_css(self) -> bool:
        return self.css_baseline != _INF

    def on_ack(self, ack: int, snd_nxt: int, rtt: float) -> None:
        """An ACK in slow start: ``ack`` the cumulative ACK, ``rtt`` its RTT sample
        (negative: none)."""
        end = self.window_end
        if end is None or ack >= end:
            self.window_end = snd_nxt
            self.last_min = self.cur_min
            self.cur_min = _INF
            self.samples = 0
            if self.css_baseline != _INF:  # in CSS (the field, not the property: every ACK)
                self.css_rounds += 1
                if self.css_rounds >= CSS_ROUNDS:
                    self.done = True
        if rtt < 0.0:
            return
        if rtt < self.cur_min:
            self.cur_min = rtt
        self.samples += 1
        if self.samples < N_RTT_SAMPLE:
            return
        if self.css_baseline == _INF:  # not in CSS
            last = self.last_min
            if last != _INF:
                thresh = max(MIN_RTT_THRESH, min(last / MIN_RTT_DIVISOR, MAX_RTT_THRESH))
                if self.cur_min >= last + thresh:
                    self.css_baseline = self.cur_min
                    self.css_rounds = 0
        elif self.cur_min < self.css_baseline:
            self.css_baseline = _INF  # a false alarm: back to slow start
            self.css_rounds = 0

    def increase(self, acked: int, mss: int) -> int:
        """The window's growth for ``acked`` new bytes: min(N, L*SMSS), divided by
        CSS_GROWTH_DIVISOR in CSS."""
        inc = acked if acked < L * mss else L * mss
        if self.css_baseline != _INF:
            inc //= CSS_GROWTH_DIVISOR
        return inc
