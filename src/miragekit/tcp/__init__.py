"""TCP (RFC 9293) as sans-I/O state machines: connections, listeners, an endpoint table.

Nothing here does I/O or reads a clock: segments and time come in, segments and events
go out. The stack (``miragekit.net``) drives these over IPv4; tests drive them directly.
"""

from ..wire.tcp import TCPRepr as Segment
from ._config import Config as Config
from ._conn import Connection as Connection
from ._conn import State as State
from ._events import Connected as Connected
from ._events import ConnectionClosed as ConnectionClosed
from ._events import ConnectionReset as ConnectionReset
from ._events import ConnectionTimedOut as ConnectionTimedOut
from ._events import DataReceived as DataReceived
from ._events import EndOfStream as EndOfStream
from ._events import Event as Event
from ._events import SendBufferAvailable as SendBufferAvailable
from ._isn import IsnGenerator as IsnGenerator
from ._listener import TCPEndpoint as TCPEndpoint

__all__ = [
    "Config",
    "Connected",
    "Connection",
    "ConnectionClosed",
    "ConnectionReset",
    "ConnectionTimedOut",
    "DataReceived",
    "EndOfStream",
    "Event",
    "IsnGenerator",
    "Segment",
    "SendBufferAvailable",
    "State",
    "TCPEndpoint",
]
