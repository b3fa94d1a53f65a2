"""DHCPv4 (RFC 2131/2132), sans-I/O: the client state machine and a small server.

Neither reads a clock nor touches a socket: time and messages come in, messages and
events come out. The asyncio drivers that run them on an :class:`~miragekit.net.IPv4Stack`
live in :mod:`miragekit.net` (``DhcpClientDriver``, ``dhcp_configure``,
``DhcpServerDriver``).
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
