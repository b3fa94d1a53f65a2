"""The interface every congestion controller implements."""

from __future__ import annotations

from typing import ClassVar, Final

from .hystart import HyStart

__all__ = ["INITIAL_SSTHRESH", "CongestionControl", "initial_window"]

INITIAL_SSTHRESH: Final = 1 << 62


def initial_window(mss: int) -> int:
    """RFC 6928: min(10*MSS, max(2*MSS, 14600))."""
    # Comparisons, not min()/max(): each builtin call costs several times more, and
    # every connection computes this (its controller's __init__ and set_mss, inlined).
    two = 2 * mss if 2 * mss > 14600 else 14600
    return 10 * mss if 10 * mss < two else two


# The fields a congestion response may change, which ``restore`` puts back. How full
# the sender keeps cwnd (the ``used_*`` fields) is send-side bookkeeping, not part of a
# response, so undoing one leaves it as it is. Each controller's ``__slots__`` are its
# own response fields: the field list is written once, and ``snapshot`` needs neither
# copy.copy nor the class dictionaries (neither works on a compiled class).
_RESPONSE = ("cwnd", "hystart", "mss", "ssthresh")


class CongestionControl:
    """Growth only while the flow is cwnd-limited (RFC 5681 4.1's and RFC 7661's
    application-limited periods, RFC 9438 5.8; as Linux): a request/response flow that
    never fills cwnd gains none, so a burst after it cannot go out at a window the path
    never carried. Cwnd-limited: in slow start, cwnd below twice the largest flight of
    the window (slow start doubles cwnd per round trip, so a flight of more than half of
    it uses all that slow start gives); in congestion avoidance, cwnd found full in the
    window. The connection reports each transmission to ``on_send``; ``on_ack`` applies
    the rule, so every caller of it inherits it."""

    watches_idle = False  # class-wide: whether ``on_send`` calls ``went_idle``

    # The response fields of the class and its bases, in that order (``snapshot``'s).
    undo_fields: ClassVar[tuple[str, ...]] = _RESPONSE

    __slots__ = (*_RESPONSE, "used_end", "used_full", "used_max", "used_smax")

    def __init__(self, mss: int) -> None:
        self.mss = mss
        # initial_window, inlined: one controller per connection, made at its SYN.
        two = 2 * mss if 2 * mss > 14600 else 14600
        self.cwnd = 10 * mss if 10 * mss < two else two
        self.ssthresh = INITIAL_SSTHRESH
        # HyStart++ (RFC 9406) for the initial slow start, when enabled.
        self.hystart: HyStart | None = None
        self.used_full = False  # a send of this window found cwnd full
        self.used_max = 0  # the most bytes in flight after a send of this window
        self.used_end = 0  # SND.MAX when this window began: it ends once SND.UNA reaches it
        self.used_smax = 0  # SND.MAX at the last send

    def on_send(self, now: float, una: int, smax: int, full: bool) -> None:
        """After new data went out (or waits on a full cwnd): ``una`` SND.UNA, ``smax``
        SND.MAX, ``full`` when less than a segment of cwnd is left. Keeps, per window of
        data, whether cwnd was ever full and the largest flight: a new window (the last
        one acknowledged), a full cwnd, or a larger flight in a window not yet full
        replaces what was kept; a send after everything before it was acknowledged
        first tells ``went_idle`` (only for controllers that set ``watches_idle``: one
        attribute test per send instead of a call)."""
        if una >= self.used_smax and self.watches_idle:
            self.went_idle(now)
        self.used_smax = smax
        flight = smax - una
        if una >= self.used_end or full or (not self.used_full and flight > self.used_max):
            self.used_full = full
            self.used_max = flight
            self.used_end = smax

    def went_idle(self, now: float) -> None:
        """The flow was idle (nothing in flight) until this send."""

    def slow_start(self, acked: int) -> None:
        """Slow start's growth while cwnd-limited (cwnd below twice the largest flight of
        the window): RFC 3465 byte counting (L = 2), or HyStart++'s rule in the initial
        slow start, which ends it once CSS has run its rounds (whether or not this ACK
        may grow cwnd)."""
        limited = self.cwnd < 2 * self.used_max
        hs = self.hystart
        if hs is None or self.ssthresh != INITIAL_SSTHRESH:
            if limited:
                self.cwnd += min(acked, 2 * self.mss)
            return
        if limited:
            self.cwnd += hs.increase(acked, self.mss)
        if hs.done:
            self.ssthresh = self.cwnd

    def set_mss(self, mss: int) -> None:
        """Called once the MSS is negotiated, before any data is sent."""
        self.mss = mss
        two = 2 * mss if 2 * mss > 14600 else 14600  # initial_window, inlined
        self.cwnd = 10 * mss if 10 * mss < two else two

    def snapshot(self) -> tuple[object, ...]:
        """The response fields' values before a loss response (``undo_fields``' order),
        for ``restore`` if it proves spurious."""
        return tuple([getattr(self, name) for name in self.undo_fields])

    def restore(self, snap: tuple[object, ...]) -> None:
        """Undo a loss response (RFC 4015, RFC 3708): every response field from
        ``snap``, with cwnd never below what it has become since."""
        cwnd = self.cwnd
        for name, value in zip(self.undo_fields, snap, strict=True):
            setattr(self, name, value)
        if self.cwnd < cwnd:
            self.cwnd = cwnd

    def on_ack(self, now: float, acked: int, srtt: float) -> None:
        raise NotImplementedError

    def on_loss(self, now: float, flight: int) -> None:
        raise NotImplementedError

    def on_rto(self, now: float, flight: int) -> None:
        raise NotImplementedError
