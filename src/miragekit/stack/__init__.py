"""STACKV4 implementations: over the host's sockets, and (later) miragekit's own stack."""

from ._socket import SocketConfig as SocketConfig
from ._socket import SocketFlow as SocketFlow
from ._socket import SocketStackV4 as SocketStackV4

__all__ = ["SocketConfig", "SocketFlow", "SocketStackV4"]
