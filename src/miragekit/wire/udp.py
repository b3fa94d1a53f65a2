"""UDP datagrams (RFC 768): a checked view and a value type, over IPv4 or IPv6."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from ._checksum import checksum_add as add
from ._checksum import checksum_finish as finish
from ._checksum import ones_sum, pseudo_sum_v4, pseudo_sum_v6
from ._error import WireError
from ._view import UInt, View

SRC_PORT: Final = 0
DST_PORT: Final = 2
LENGTH: Final = 4
CHECKSUM: Final = 6
HEADER_LEN: Final = 8
PROTOCOL: Final = 17

HEADER: Final = struct.Struct("!HHHH")
_H = struct.Struct("!H")

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def pseudo_sum(src: Addr, dst: Addr, length: int) -> int:
    """The folded pseudo-header sum for a UDP datagram of ``length`` bytes."""
    if isinstance(src, ipaddress.IPv4Address):
        return pseudo_sum_v4(src.packed, dst.packed, PROTOCOL, length)
    return pseudo_sum_v6(src.packed, dst.packed, PROTOCOL, length)


class UdpPacket(View):
    """A view over a UDP datagram; :meth:`checked` validates the length field."""

    __slots__ = ()

    def check_len(self) -> None:
        n = len(self.buf)
        if n < HEADER_LEN:
            raise WireError("length", f"{n} bytes, a UDP header is 8")
        ln = self.length
        if ln < HEADER_LEN:
            raise WireError("length", f"length field {ln} is below 8")
        if ln > n:
            raise WireError("length", f"length field {ln} exceeds the {n} bytes")

    src_port = UInt(SRC_PORT)
    dst_port = UInt(DST_PORT)
    length = UInt(LENGTH)
    checksum = UInt(CHECKSUM)

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN : self.length]

    def verify_checksum(self, src: Addr, dst: Addr) -> bool:
        """True when the checksum is right or absent (0, allowed over IPv4 only)."""
        if self.checksum == 0:
            return isinstance(src, ipaddress.IPv4Address)
        ln = self.length
        return add(pseudo_sum(src, dst, ln), ones_sum(self.buf[:ln])) == 0xFFFF

    def fill_checksum(self, src: Addr, dst: Addr) -> None:
        self.checksum = 0
        ln = self.length
        c = finish(add(pseudo_sum(src, dst, ln), ones_sum(self.buf[:ln])))
        self.checksum = c or 0xFFFF


@dataclass(frozen=True, slots=True)
class UdpRepr:
    """A UDP datagram: ports and payload."""

    src_port: int
    dst_port: int
    payload: bytes

    @classmethod
    def parse(
        cls, packet: UdpPacket, src: Addr, dst: Addr, *, verify_checksum: bool = True
    ) -> UdpRepr:
        packet.check_len()
        if packet.dst_port == 0:
            raise WireError("dst_port", "destination port 0")
        if verify_checksum and not packet.verify_checksum(src, dst):
            raise WireError("checksum", f"UDP checksum {packet.checksum:#06x} is wrong")
        return cls(packet.src_port, packet.dst_port, bytes(packet.payload))

    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.payload)

    def emit(self, packet: UdpPacket, src: Addr, dst: Addr) -> None:
        n = self.buffer_len()
        if n > 0xFFFF:
            raise ValueError(f"datagram too long: {n} bytes")
        if not (0 <= self.src_port <= 0xFFFF and 0 <= self.dst_port <= 0xFFFF):
            raise ValueError("ports must be in 0..65535")
        HEADER.pack_into(packet.buf, 0, self.src_port, self.dst_port, n, 0)
        packet.buf[HEADER_LEN:n] = self.payload
        packet.fill_checksum(src, dst)
