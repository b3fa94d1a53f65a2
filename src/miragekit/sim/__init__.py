"""Simulated time: an asyncio event loop whose clock is virtual (public facade).

``miragekit.sim.run(main(), seed=0)`` runs like :func:`asyncio.run` but sleeping costs
nothing when every task is waiting, and the same program with the same seed gives the
same sequence of events. ``sim.Network`` runs named hosts, each on its own stack, with
unmodified asyncio code. ``sim.clock()`` is a CLOCK on the same virtual time, starting at
:data:`CLOCK_START` (2000-01-01 UTC) unless ``run(..., clock_start=...)`` says otherwise.
"""

from ._escape import Escape as Escape
from ._escape import SimEscape as SimEscape
from ._hugepages import HugePageStats as HugePageStats
from ._hugepages import huge_page_stats as huge_page_stats
from ._loop import CLOCK_START as CLOCK_START
from ._loop import DEFAULT_IDLE_TIMEOUT as DEFAULT_IDLE_TIMEOUT
from ._loop import TEARDOWN_GRACE as TEARDOWN_GRACE
from ._loop import SimDeadlock as SimDeadlock
from ._loop import SimLoop as SimLoop
from ._loop import clock as clock
from ._loop import current as current
from ._loop import now as now
from ._loop import rng as rng
from ._loop import run as run
from ._network import HostOutcome as HostOutcome
from ._network import Network as Network
from ._network import Report as Report
from ._observe import Event as Event
from ._observe import HostCounters as HostCounters
from ._replay import Determinism as Determinism
from ._replay import check_determinism as check_determinism
from ._replay import pcap_frames as pcap_frames

__all__ = [
    "CLOCK_START",
    "DEFAULT_IDLE_TIMEOUT",
    "TEARDOWN_GRACE",
    "Determinism",
    "Escape",
    "Event",
    "HostCounters",
    "HostOutcome",
    "HugePageStats",
    "Network",
    "Report",
    "SimDeadlock",
    "SimEscape",
    "SimLoop",
    "check_determinism",
    "clock",
    "current",
    "huge_page_stats",
    "now",
    "pcap_frames",
    "rng",
    "run",
]
