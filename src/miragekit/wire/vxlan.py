"""VXLAN headers (RFC 7348): a checked view and a value type.

The 8-byte header travels in a UDP datagram (port 4789) in front of an Ethernet frame::

    flags(8: R R R R I R R R) reserved(24) | VNI(24) reserved(8)

RFC 7348 says the I flag must be set for a valid VNI and the reserved bits are ignored on
receipt. ``parse(strict=True)`` additionally rejects any other flag bit, as the Linux
kernel does when no extension is enabled: those bits announce extensions (GBP, GPE) whose
payload might not be Ethernet at all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ._error import WireError
from ._view import View

FLAGS: Final = 0
RESERVED1: Final = 1
VNI: Final = 4
RESERVED2: Final = 7
HEADER_LEN: Final = 8
UDP_PORT: Final = 4789
"""The IANA-assigned destination port."""

FLAG_I: Final = 0x08
"""The only flag RFC 7348 defines: the VNI is valid."""

VNI_MAX: Final = 0xFFFFFF
OVERHEAD_V4: Final = 50
"""Bytes an encapsulated frame adds over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner
Ethernet header 14 (the inner MTU is the underlay MTU minus this)."""
OVERHEAD_V6: Final = 70

_WORDS = struct.Struct("!II")


def header(vni: int) -> bytes:
    """The 8 header bytes for ``vni`` (I flag set, reserved fields zero)."""
    if not 0 <= vni <= VNI_MAX:
        raise ValueError(f"vni: {vni} is outside 0..{VNI_MAX}")
    return _WORDS.pack(FLAG_I << 24, vni << 8)


class VxlanPacket(View):
    """A view over a VXLAN header and the Ethernet frame after it."""

    __slots__ = ()

    def check_len(self) -> None:
        if len(self.buf) < HEADER_LEN:
            raise WireError("length", f"{len(self.buf)} bytes, a VXLAN header is 8")

    @property
    def flags(self) -> int:
        return int(self.buf[FLAGS])

    @flags.setter
    def flags(self, v: int) -> None:
        self.buf[FLAGS] = v

    @property
    def reserved1(self) -> int:
        return int.from_bytes(self.buf[RESERVED1:VNI], "big")

    @reserved1.setter
    def reserved1(self, v: int) -> None:
        self.buf[RESERVED1:VNI] = v.to_bytes(3, "big")

    @property
    def vni(self) -> int:
        return int.from_bytes(self.buf[VNI:RESERVED2], "big")

    @vni.setter
    def vni(self, v: int) -> None:
        self.buf[VNI:RESERVED2] = v.to_bytes(3, "big")

    @property
    def reserved2(self) -> int:
        return int(self.buf[RESERVED2])

    @reserved2.setter
    def reserved2(self, v: int) -> None:
        self.buf[RESERVED2] = v

    @property
    def payload(self) -> memoryview:
        """The encapsulated Ethernet frame."""
        return self.buf[HEADER_LEN:]


@dataclass(frozen=True, slots=True)
class VxlanRepr:
    """The meaning of a VXLAN header: its VNI (flags and reserved fields are fixed)."""

    vni: int

    @classmethod
    def parse(cls, packet: VxlanPacket, *, strict: bool = False) -> VxlanRepr:
        packet.check_len()
        flags = packet.flags
        if not flags & FLAG_I:
            raise WireError("flags", f"flags {flags:#04x}: the I flag is not set")
        if strict and flags != FLAG_I:
            raise WireError("flags", f"flags {flags:#04x}: reserved flag bits are set")
        return cls(packet.vni)

    def buffer_len(self) -> int:
        return HEADER_LEN

    def emit(self, packet: VxlanPacket) -> None:
        packet.buf[:HEADER_LEN] = header(self.vni)
