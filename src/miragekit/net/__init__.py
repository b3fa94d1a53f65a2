"""Networking: NETWORK backends and the pure-Python TCP/IP layers (public facade)."""

from ._arp import Arp as Arp
from ._arp import ArpConfig as ArpConfig
from ._dhcp_client import DhcpClientDriver as DhcpClientDriver
from ._dhcp_client import dhcp_configure as dhcp_configure
from ._dhcp_server import DhcpServerDriver as DhcpServerDriver
from ._ethif import Ethif as Ethif
from ._fragment import Reassembler as Reassembler
from ._fragment import ReassemblyConfig as ReassemblyConfig
from ._icmp import Icmp as Icmp
from ._ipstack import IPv4Stack as IPv4Stack
from ._ipv4 import IPv4 as IPv4
from ._link import FrameLink as FrameLink
from ._link import FrameReceiver as FrameReceiver
from ._tap import TapNetif as TapNetif
from ._udp import UDP as UDP
