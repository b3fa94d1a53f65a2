"""Wire formats, sans-I/O: checked views over buffers and value types with parse/emit.

No module here imports asyncio or reads a clock. Malformed bytes raise
:class:`WireError` (a :class:`ValueError`) naming the field at fault.
"""

from . import arp as arp
from . import dhcp as dhcp
from . import ethernet as ethernet
from . import icmpv4 as icmpv4
from . import icmpv6 as icmpv6
from . import ipv4 as ipv4
from . import ipv6 as ipv6
from . import udp as udp
from . import vxlan as vxlan
from ._checksum import FOLD2 as FOLD2
from ._checksum import FOLD3 as FOLD3
from ._checksum import FOLD4 as FOLD4
from ._checksum import FOLD_FROM as FOLD_FROM
from ._checksum import FOLD_WIDE as FOLD_WIDE
from ._checksum import HALF as HALF
from ._checksum import MASK2 as MASK2
from ._checksum import MASK3 as MASK3
from ._checksum import MASK4 as MASK4
from ._checksum import checksum as checksum
from ._checksum import checksum_add as checksum_add
from ._checksum import checksum_finish as checksum_finish
from ._checksum import checksum_v as checksum_v
from ._checksum import ipv4_sums_to_zero as ipv4_sums_to_zero
from ._checksum import ones_sum as ones_sum
from ._checksum import ones_sum_v as ones_sum_v
from ._checksum import pseudo_sum as pseudo_sum
from ._checksum import pseudo_sum_v4 as pseudo_sum_v4
from ._checksum import pseudo_sum_v6 as pseudo_sum_v6
from ._checksum import residue as residue
from ._checksum import sums_to_zero as sums_to_zero
from ._error import WireError as WireError
from .arp import ArpOperation as ArpOperation
from .arp import ArpPacket as ArpPacket
from .arp import ArpRepr as ArpRepr
from .dhcp import DhcpMessageType as DhcpMessageType
from .dhcp import DhcpOp as DhcpOp
from .dhcp import DhcpPacket as DhcpPacket
from .dhcp import DhcpRepr as DhcpRepr
from .ethernet import EthernetFrame as EthernetFrame
from .ethernet import EthernetRepr as EthernetRepr
from .ethernet import EtherType as EtherType
from .icmpv4 import DestUnreachable as DestUnreachable
from .icmpv4 import Icmpv4Packet as Icmpv4Packet
from .icmpv4 import Icmpv4Repr as Icmpv4Repr
from .icmpv4 import Icmpv4Type as Icmpv4Type
from .icmpv6 import Icmpv6Packet as Icmpv6Packet
from .icmpv6 import Icmpv6Repr as Icmpv6Repr
from .icmpv6 import Icmpv6Type as Icmpv6Type
from .ipv4 import IpProtocol as IpProtocol
from .ipv4 import Ipv4Packet as Ipv4Packet
from .ipv4 import Ipv4Repr as Ipv4Repr
from .ipv6 import FragmentRepr as FragmentRepr
from .ipv6 import Ipv6Packet as Ipv6Packet
from .ipv6 import Ipv6Repr as Ipv6Repr
from .ipv6 import ParameterProblem as ParameterProblem
from .tcp import TCPPacket as TCPPacket
from .tcp import TCPParseError as TCPParseError
from .tcp import TCPRepr as TCPRepr
from .udp import UdpPacket as UdpPacket
from .udp import UdpRepr as UdpRepr
from .vxlan import VxlanPacket as VxlanPacket
from .vxlan import VxlanRepr as VxlanRepr

__all__ = [
    "FOLD2",
    "FOLD3",
    "FOLD4",
    "FOLD_FROM",
    "FOLD_WIDE",
    "HALF",
    "MASK2",
    "MASK3",
    "MASK4",
    "ArpOperation",
    "ArpPacket",
    "ArpRepr",
    "DestUnreachable",
    "DhcpMessageType",
    "DhcpOp",
    "DhcpPacket",
    "DhcpRepr",
    "EtherType",
    "EthernetFrame",
    "EthernetRepr",
    "FragmentRepr",
    "Icmpv4Packet",
    "Icmpv4Repr",
    "Icmpv4Type",
    "Icmpv6Packet",
    "Icmpv6Repr",
    "Icmpv6Type",
    "IpProtocol",
    "Ipv4Packet",
    "Ipv4Repr",
    "Ipv6Packet",
    "Ipv6Repr",
    "ParameterProblem",
    "TCPPacket",
    "TCPParseError",
    "TCPRepr",
    "UdpPacket",
    "UdpRepr",
    "VxlanPacket",
    "VxlanRepr",
    "WireError",
    "arp",
    "checksum",
    "checksum_add",
    "checksum_finish",
    "checksum_v",
    "dhcp",
    "ethernet",
    "icmpv4",
    "icmpv6",
    "ipv4",
    "ipv4_sums_to_zero",
    "ipv6",
    "ones_sum",
    "ones_sum_v",
    "pseudo_sum",
    "pseudo_sum_v4",
    "pseudo_sum_v6",
    "residue",
    "sums_to_zero",
    "udp",
    "vxlan",
]
