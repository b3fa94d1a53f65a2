"""Networking: NETWORK backends and the pure-Python TCP/IP layers (public facade)."""

from ._link import FrameLink as FrameLink
from ._link import FrameReceiver as FrameReceiver
from ._pcap import FrameNetwork as FrameNetwork
from ._pcap import PcapNetif as PcapNetif
from ._vswitch import LinkParams as LinkParams
from ._vswitch import VnetCounters as VnetCounters
from ._vswitch import VnetIf as VnetIf
from ._vswitch import VnetSwitch as VnetSwitch
