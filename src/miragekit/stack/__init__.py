"""STACKV4 implementations: miragekit's own stack and one over the host's sockets."""

from ._direct import DHCP as DHCP
from ._direct import DirectStack as DirectStack
from ._direct import DirectStackV4 as DirectStackV4
from ._direct import IPv6Config as IPv6Config
from ._direct import Static as Static
from ._socket import SocketConfig as SocketConfig
from ._socket import SocketFlow as SocketFlow
from ._socket import SocketStackV4 as SocketStackV4

__all__ = [
    "DHCP",
    "DirectStack",
    "DirectStackV4",
    "IPv6Config",
    "SocketConfig",
    "SocketFlow",
    "SocketStackV4",
    "Static",
]
