"""Networking: NETWORK backends and the pure-Python TCP/IP layers (public facade)."""

from ._arp import Arp as Arp
from ._arp import ArpConfig as ArpConfig
from ._ethif import Ethif as Ethif
from ._fragment import Reassembler as Reassembler
from ._fragment import ReassemblyConfig as ReassemblyConfig
from ._icmp import Icmp as Icmp
from ._ip6stack import IPv6Stack as IPv6Stack
from ._ipstack import IPv4Stack as IPv4Stack
from ._ipv4 import IPv4 as IPv4
from ._ipv6 import IPv6 as IPv6
from ._link import FrameLink as FrameLink
from ._link import FrameReceiver as FrameReceiver
from ._ndp import Ndp as Ndp
from ._ndp import NdpConfig as NdpConfig
from ._tap import TapNetif as TapNetif
from ._udp import UDP as UDP
