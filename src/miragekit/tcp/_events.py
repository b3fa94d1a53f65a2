"""What a connection tells its driver: small frozen events, drained with ``next_event``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Connected",
    "ConnectionClosed",
    "ConnectionReset",
    "ConnectionTimedOut",
    "DataReceived",
    "EndOfStream",
    "Event",
    "SendBufferAvailable",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake completed (ESTABLISHED)."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """The receive buffer went from empty to non-empty: ``receive`` returns data."""


@dataclass(frozen=True, slots=True)
class SendBufferAvailable:
    """A ``send`` was cut short earlier and the send buffer has room again."""


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer sent FIN: after the buffered data, ``receive`` returns nothing more."""


@dataclass(frozen=True, slots=True)
class ConnectionReset:
    """The peer reset the connection; ``refused`` when it answered our SYN with RST."""

    refused: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionTimedOut:
    """Retransmissions (or SYN retries) were exhausted, or FIN_WAIT_2 timed out."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection reached CLOSED, or TIME_WAIT with its endpoint keeping the 4-tuple
    for 2 MSL: it will change no more (data not yet read can still be), it can be
    dropped. Always last."""


Event = (
    Connected
    | DataReceived
    | SendBufferAvailable
    | EndOfStream
    | ConnectionReset
    | ConnectionTimedOut
    | ConnectionClosed
)
