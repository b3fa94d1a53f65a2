"""Networking: NETWORK backends and the pure-Python TCP/IP layers (public facade)."""

from ._arp import Arp as Arp
from ._arp import ArpConfig as ArpConfig
from ._ethif import Ethif as Ethif
from ._fragment import Reassembler as Reassembler
from ._fragment import ReassemblyConfig as ReassemblyConfig
from ._icmp import Icmp as Icmp
from ._ipstack import IPv4Stack as IPv4Stack
from ._ipv4 import IPv4 as IPv4
from ._link import FrameLink as FrameLink
from ._link import FrameReceiver as FrameReceiver
from ._pcap import FrameNetwork as FrameNetwork
from ._pcap import PcapNetif as PcapNetif
from ._tap import TapNetif as TapNetif
from ._tcp import TCP as TCP
from ._tcp import TCPFlow as TCPFlow
from ._udp import UDP as UDP
from ._vswitch import LinkParams as LinkParams
from ._vswitch import VnetCounters as VnetCounters
from ._vswitch import VnetIf as VnetIf
from ._vswitch import VnetSwitch as VnetSwitch
from ._vxlan import VxlanConfig as VxlanConfig
from ._vxlan import VxlanCounters as VxlanCounters
from ._vxlan import VxlanNetif as VxlanNetif
from ._vxlan import parse_vxlan_spec as parse_vxlan_spec
