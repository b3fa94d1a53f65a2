"""Networking: NETWORK backends and the pure-Python TCP/IP layers (public facade)."""

from ._link import FrameLink as FrameLink
from ._link import FrameReceiver as FrameReceiver
