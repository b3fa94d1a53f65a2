"""Pluggable congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

The connection owns loss detection and recovery; a controller only decides the window:
``on_ack`` grows it (outside recovery, and only while the flow is cwnd-limited, which
``on_send`` reports after each transmission), ``on_loss`` reacts to fast retransmit,
``on_rto`` to a retransmission timeout. Windows are in bytes.
"""

from __future__ import annotations

from ._base import INITIAL_SSTHRESH as INITIAL_SSTHRESH
from ._base import CongestionControl as CongestionControl
from .cubic import Cubic as Cubic
from .hystart import HyStart as HyStart
from .newreno import NewReno as NewReno

__all__ = ["INITIAL_SSTHRESH", "CongestionControl", "Cubic", "HyStart", "NewReno", "new_controller"]


_BY_NAME: dict[str, type[CongestionControl]] = {"newreno": NewReno, "cubic": Cubic}


def new_controller(name: str, mss: int, *, hystart: bool = False) -> CongestionControl:
    """A controller by name; ``hystart`` adds HyStart++ (RFC 9406) to its slow start."""
    cls = _BY_NAME.get(name)
    if cls is None:
        raise ValueError(f"congestion: unknown algorithm {name!r} (newreno, cubic)")
    cc = cls(mss)
    if hystart:
        cc.hystart = HyStart()
    return cc
