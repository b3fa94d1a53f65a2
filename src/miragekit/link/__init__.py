"""Link layer: the NETWORK devices (TAP, VXLAN, the virtual switch, pcap) and their plumbing.

Every device here offers the seed's async NETWORK signature and, beside it, the synchronous
:class:`FrameLink` fast path that the stack in :mod:`miragekit.net` uses. Nothing here
knows about IP: frames go in and out as bytes.
"""

from ._frame import CSUM_NEEDED as CSUM_NEEDED
from ._frame import CSUM_VALID as CSUM_VALID
from ._frame import OFFLOAD_CSUM as OFFLOAD_CSUM
from ._frame import OFFLOAD_TSO4 as OFFLOAD_TSO4
from ._frame import OFFLOAD_TSO6 as OFFLOAD_TSO6
from ._frame import FlagsLink as FlagsLink
from ._frame import FrameLink as FrameLink
from ._frame import FrameNetwork as FrameNetwork
from ._frame import FrameReceiver as FrameReceiver
from ._frame import MetaReceiver as MetaReceiver
from ._frame import OffloadLink as OffloadLink
from ._frame import offload_link as offload_link
from ._frame import send_frames as send_frames
from ._frame import send_split as send_split
from ._impair import ImpairCounters as ImpairCounters
from ._impair import ImpairedLink as ImpairedLink
from ._impair import LinkParams as LinkParams
from ._impair import mark_ce as mark_ce
from ._packet import PacketCounters as PacketCounters
from ._packet import PacketNetif as PacketNetif
from ._packet import RingLayout as RingLayout
from ._pcap import PcapNetif as PcapNetif
from ._pcap import PcapWriter as PcapWriter
from ._ports import PortSpec as PortSpec
from ._ports import TapBridge as TapBridge
from ._ports import apply_link_settings as apply_link_settings
from ._ports import bridge as bridge
from ._ports import link_settings as link_settings
from ._ports import open_port as open_port
from ._ports import parse_link_settings as parse_link_settings
from ._ports import parse_port_spec as parse_port_spec
from ._ports import tap_bridge as tap_bridge
from ._qemu import QemuCounters as QemuCounters
from ._qemu import QemuDgramNetif as QemuDgramNetif
from ._qemu import QemuStreamNetif as QemuStreamNetif
from ._qemu import claim_path as claim_path
from ._tap import TapNetif as TapNetif
from ._vswitch import VnetCounters as VnetCounters
from ._vswitch import VnetIf as VnetIf
from ._vswitch import VnetSwitch as VnetSwitch
from ._vxlan import VxlanConfig as VxlanConfig
from ._vxlan import VxlanCounters as VxlanCounters
from ._vxlan import VxlanNetif as VxlanNetif
from ._vxlan import parse_vxlan_spec as parse_vxlan_spec
from ._wrap import Wrapper as Wrapper

__all__ = [
    "CSUM_NEEDED",
    "CSUM_VALID",
    "OFFLOAD_CSUM",
    "OFFLOAD_TSO4",
    "OFFLOAD_TSO6",
    "FlagsLink",
    "FrameLink",
    "FrameNetwork",
    "FrameReceiver",
    "ImpairCounters",
    "ImpairedLink",
    "LinkParams",
    "MetaReceiver",
    "OffloadLink",
    "PacketCounters",
    "PacketNetif",
    "PcapNetif",
    "PcapWriter",
    "PortSpec",
    "QemuCounters",
    "QemuDgramNetif",
    "QemuStreamNetif",
    "RingLayout",
    "TapBridge",
    "TapNetif",
    "VnetCounters",
    "VnetIf",
    "VnetSwitch",
    "VxlanConfig",
    "VxlanCounters",
    "VxlanNetif",
    "Wrapper",
    "apply_link_settings",
    "bridge",
    "claim_path",
    "link_settings",
    "mark_ce",
    "offload_link",
    "open_port",
    "parse_link_settings",
    "parse_port_spec",
    "parse_vxlan_spec",
    "send_frames",
    "send_split",
    "tap_bridge",
]
