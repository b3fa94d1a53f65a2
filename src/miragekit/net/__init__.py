"""Networking: the pure-Python TCP/IP layers over a :mod:`miragekit.link` device.

The layers (:class:`Ethif`, :class:`IPv4`, :class:`IPv6`, :class:`UDP`, :class:`TCP`) are
the seed's device signatures; :class:`Interface` puts IP layers on one Ethernet device
with one ethertype dispatch; :class:`IPv4Stack` and :class:`IPv6Stack` compose them; the
DHCP drivers run :mod:`miragekit.dhcp` on an :class:`IPv4Stack`. The sans-I/O cores
underneath (ARP, NDP, reassembly, ICMP) are not part of this surface.
"""

from ._acd import AddressConflict as AddressConflict
from ._arp import ArpConfig as ArpConfig
from ._dhcp_client import DhcpClientDriver as DhcpClientDriver
from ._dhcp_client import dhcp_configure as dhcp_configure
from ._dhcp_server import DhcpServerDriver as DhcpServerDriver
from ._ethif import Ethif as Ethif
from ._fragment import ReassemblyConfig as ReassemblyConfig
from ._iface import Interface as Interface
from ._ip6stack import IPv6Stack as IPv6Stack
from ._ipstack import IPv4Stack as IPv4Stack
from ._ipv4 import IPv4 as IPv4
from ._ipv6 import IPv6 as IPv6
from ._ndp import NdpConfig as NdpConfig
from ._tcp import TCP as TCP
from ._tcp import TCPFlow as TCPFlow
from ._tcp import TcpIPLayer as TcpIPLayer
from ._udp import UDP as UDP

__all__ = [
    "TCP",
    "UDP",
    "AddressConflict",
    "ArpConfig",
    "DhcpClientDriver",
    "DhcpServerDriver",
    "Ethif",
    "IPv4",
    "IPv4Stack",
    "IPv6",
    "IPv6Stack",
    "Interface",
    "NdpConfig",
    "ReassemblyConfig",
    "TCPFlow",
    "TcpIPLayer",
    "dhcp_configure",
]
