"""TCP (RFC 9293) as sans-I/O state machines: connections, listeners, an endpoint table.

Nothing here does I/O or reads a clock: segments and time come in, segments and events
go out. The stack (``miragekit.net``) drives these over IPv4; tests drive them directly.

Driving a :class:`TCPEndpoint` (addresses are packed ``bytes``, 4 or 16 long)::

    ep = TCPEndpoint(Config(mss=mtu - 40), secret=os.urandom(16))
    ep.listen(80)
    # for each received IP packet carrying TCP (a batch of them, then once):
    ep.handle_packet(now, src, dst, tcp_bytes)            # verified=True when offloaded
    for conn in ep.take_active(): ...                     # drain conn.next_event()
    while (conn := ep.accept(80)) is not None: ...        # new connections
    for src, dst, seg in ep.segments_to_send(now):        # then write the replies
        seg.emit(frame_view, src, dst)                    # len: seg.buffer_len()
    # timers: call ep.handle_timer(now) at ep.poll_at(), then segments_to_send again;
    # after conn.send()/receive()/close() from the application: ep.wake(conn).

Support table with RFC numbers: ``docs/tcp.md``.
"""

from ..wire.tcp import TCPRepr as Segment
from ._config import Config as Config
from ._conn import Connection as Connection
from ._conn import State as State
from ._endpoint import TCPEndpoint as TCPEndpoint
from ._events import Connected as Connected
from ._events import ConnectionClosed as ConnectionClosed
from ._events import ConnectionReset as ConnectionReset
from ._events import ConnectionTimedOut as ConnectionTimedOut
from ._events import DataReceived as DataReceived
from ._events import EndOfStream as EndOfStream
from ._events import Event as Event
from ._events import SendBufferAvailable as SendBufferAvailable
from ._isn import IsnGenerator as IsnGenerator

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
