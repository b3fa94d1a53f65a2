"""Networking: the pure-Python TCP/IP layers over a :mod:`miragekit.link` device (public facade)."""

from ._arp import Arp as Arp
from ._arp import ArpConfig as ArpConfig
from ._dhcp_client import DhcpClientDriver as DhcpClientDriver
from ._dhcp_client import dhcp_configure as dhcp_configure
from ._dhcp_server import DhcpServerDriver as DhcpServerDriver
from ._ethif import Ethif as Ethif
from ._fragment import Reassembler as Reassembler
from ._fragment import ReassemblyConfig as ReassemblyConfig
from ._icmp import Icmp as Icmp
from ._ip6stack import IPv6Stack as IPv6Stack
from ._ipstack import IPv4Stack as IPv4Stack
from ._ipv4 import IPv4 as IPv4
from ._ipv6 import IPv6 as IPv6
from ._ndp import Ndp as Ndp
from ._ndp import NdpConfig as NdpConfig
from ._tcp import TCP as TCP
from ._tcp import TCPFlow as TCPFlow
from ._tcp import TcpIPLayer as TcpIPLayer
from ._udp import UDP as UDP
