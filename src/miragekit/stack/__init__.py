"""STACKV4 implementations: miragekit's own stack and one over the host's sockets."""

from ._direct import DHCP as DHCP
from ._direct import DirectStackV4 as DirectStackV4
from ._direct import Static as Static
from ._socket import SocketConfig as SocketConfig
from ._socket import SocketFlow as SocketFlow
from ._socket import SocketStackV4 as SocketStackV4

__all__ = ["DHCP", "DirectStackV4", "SocketConfig", "SocketFlow", "SocketStackV4", "Static"]
