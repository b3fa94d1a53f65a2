"""ARP (RFC 826) for Ethernet and IPv4: a checked view and a value type."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ..macaddr import MacAddr
from ._error import WireError
from ._view import View, known

HTYPE: Final = 0
PTYPE: Final = 2
HLEN: Final = 4
PLEN: Final = 5
OPER: Final = 6
SHA: Final = 8
SPA: Final = 14
THA: Final = 18
TPA: Final = 24
PACKET_LEN: Final = 28
"""The length of an Ethernet/IPv4 ARP packet."""

HTYPE_ETHERNET: Final = 1
PTYPE_IPV4: Final = 0x0800

_H = struct.Struct("!H")
_FIXED = struct.Struct("!HHBBH")


class ArpOperation(IntEnum):
    REQUEST = 1
    REPLY = 2


def arp_operation(value: int) -> ArpOperation | int:
    return known(ArpOperation, value)


class ArpPacket(View):
    """A view over an ARP packet; the address fields assume Ethernet/IPv4 lengths."""

    __slots__ = ()

    def check_len(self) -> None:
        n = len(self.buf)
        if n < OPER + 2:
            raise WireError("length", f"{n} bytes, shorter than the fixed ARP header")
        need = OPER + 2 + 2 * (self.hlen + self.plen)
        if n < need:
            raise WireError("length", f"{n} bytes, the address lengths need {need}")

    @property
    def htype(self) -> int:
        return int(_H.unpack_from(self.buf, HTYPE)[0])

    @property
    def ptype(self) -> int:
        return int(_H.unpack_from(self.buf, PTYPE)[0])

    @property
    def hlen(self) -> int:
        return self.buf[HLEN]

    @property
    def plen(self) -> int:
        return self.buf[PLEN]

    @property
    def operation(self) -> ArpOperation | int:
        return arp_operation(_H.unpack_from(self.buf, OPER)[0])

    @property
    def sha(self) -> bytes:
        return bytes(self.buf[SHA : SHA + 6])

    @property
    def spa(self) -> bytes:
        return bytes(self.buf[SPA : SPA + 4])

    @property
    def tha(self) -> bytes:
        return bytes(self.buf[THA : THA + 6])

    @property
    def tpa(self) -> bytes:
        return bytes(self.buf[TPA : TPA + 4])

    def set_fixed(self, operation: int) -> None:
        _FIXED.pack_into(self.buf, 0, HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, operation)

    def set_addresses(self, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
        self.buf[SHA : SHA + 6] = sha
        self.buf[SPA : SPA + 4] = spa
        self.buf[THA : THA + 6] = tha
        self.buf[TPA : TPA + 4] = tpa


@dataclass(frozen=True, slots=True)
class ArpRepr:
    """An Ethernet/IPv4 ARP packet; other hardware/protocol types raise :class:`WireError`."""

    operation: ArpOperation | int
    source_mac: MacAddr
    source_ip: ipaddress.IPv4Address
    target_mac: MacAddr
    target_ip: ipaddress.IPv4Address

    @classmethod
    def parse(cls, packet: ArpPacket) -> ArpRepr:
        packet.check_len()
        if packet.htype != HTYPE_ETHERNET:
            raise WireError("htype", f"hardware type {packet.htype} is not Ethernet")
        if packet.ptype != PTYPE_IPV4:
            raise WireError("ptype", f"protocol type {packet.ptype:#06x} is not IPv4")
        if packet.hlen != 6:
            raise WireError("hlen", f"hardware length {packet.hlen} is not 6")
        if packet.plen != 4:
            raise WireError("plen", f"protocol length {packet.plen} is not 4")
        return cls(
            operation=packet.operation,
            source_mac=MacAddr(packet.sha),
            source_ip=ipaddress.IPv4Address(packet.spa),
            target_mac=MacAddr(packet.tha),
            target_ip=ipaddress.IPv4Address(packet.tpa),
        )

    def buffer_len(self) -> int:
        return PACKET_LEN

    def emit(self, packet: ArpPacket) -> None:
        if not 0 <= self.operation <= 0xFFFF:
            raise ValueError(f"operation out of range: {self.operation}")
        packet.set_fixed(self.operation)
        packet.set_addresses(
            self.source_mac.packed,
            self.source_ip.packed,
            self.target_mac.packed,
            self.target_ip.packed,
        )
