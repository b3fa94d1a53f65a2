"""DHCPv4 (RFC 2131/2132), sans-I/O: the client state machine and a small server.

Neither reads a clock nor touches a socket: time and messages come in, messages and
events come out. The asyncio drivers that run them on an :class:`~miragekit.net.IPv4Stack`
live in :mod:`miragekit.net` (``DhcpClientDriver``, ``dhcp_configure``,
``DhcpServerDriver``); the message format is :mod:`miragekit.wire.dhcp`.

Supported:

* client: INIT, SELECTING, REQUESTING, BOUND, RENEWING (T1, unicast), REBINDING (T2,
  broadcast), INIT-REBOOT/REBOOTING; retransmission 4, 8, 16 ... 64 s +-1 s from a
  seeded RNG; expiry removes the address (event ``Expired``); NAK; ARP check of the
  acknowledged address (RFC 5227 probes, simplified) and DECLINE; RELEASE on stop;
  options 1, 3, 6, 12, 26, 50, 51, 52 (overload), 53, 54, 55, 56, 58, 59, 61.
* server: one subnet and pool, offers held for a while, leases that expire, ACK/NAK for
  selecting, init-reboot, renewing and rebinding, DECLINE, RELEASE, INFORM.

Not supported: relay agents (giaddr), choosing among several offers (the first valid
one is taken), DHCPv6, FORCERENEW, defending a bound address against ARP conflicts.
"""

from ._client import DhcpClient as DhcpClient
from ._client import DhcpClientConfig as DhcpClientConfig
from ._client import DhcpClientCounters as DhcpClientCounters
from ._client import State as State
from ._server import DhcpServer as DhcpServer
from ._server import DhcpServerConfig as DhcpServerConfig
from ._server import DhcpServerCounters as DhcpServerCounters
from ._server import ServerLease as ServerLease
from ._server import ServerReply as ServerReply
from ._types import ArpProbe as ArpProbe
from ._types import Bound as Bound
from ._types import Declined as Declined
from ._types import Event as Event
from ._types import Expired as Expired
from ._types import Lease as Lease
from ._types import Nak as Nak
from ._types import Output as Output
from ._types import Released as Released
from ._types import Renewed as Renewed
from ._types import Transmit as Transmit

__all__ = [
    "ArpProbe",
    "Bound",
    "Declined",
    "DhcpClient",
    "DhcpClientConfig",
    "DhcpClientCounters",
    "DhcpServer",
    "DhcpServerConfig",
    "DhcpServerCounters",
    "Event",
    "Expired",
    "Lease",
    "Nak",
    "Output",
    "Released",
    "Renewed",
    "ServerLease",
    "ServerReply",
    "State",
    "Transmit",
]
