"""IPv4 headers (RFC 791): a checked view and a value type.

Options are skipped (the header length is honoured, their content is not interpreted)
and never emitted. The fragmentation fields are part of the value type so the stack can
fragment and reassemble.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ._checksum import checksum
from ._error import WireError
from ._view import UInt, View, known

VER_IHL: Final = 0
DSCP_ECN: Final = 1
TOTAL_LEN: Final = 2
IDENT: Final = 4
FLAGS_FRAG: Final = 6
TTL: Final = 8
PROTOCOL: Final = 9
CHECKSUM: Final = 10
SRC: Final = 12
DST: Final = 16
HEADER_LEN: Final = 20
"""The length of a header without options."""
MAX_HEADER_LEN: Final = 60

FLAG_DF: Final = 0x4000
FLAG_MF: Final = 0x2000
FRAG_OFFSET_MASK: Final = 0x1FFF

HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
"""The fixed 20 bytes: ver/ihl, dscp/ecn, total length, ident, flags/fragment offset,
TTL, protocol, checksum, source, destination."""

_H = struct.Struct("!H")


class IpProtocol(IntEnum):
    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58


def ip_protocol(value: int) -> IpProtocol | int:
    return known(IpProtocol, value)


class Ipv4Packet(View):
    """A view over an IPv4 packet. :meth:`checked` validates every length field."""

    __slots__ = ()

    def check_len(self) -> None:
        n = len(self.buf)
        if n < HEADER_LEN:
            raise WireError("length", f"{n} bytes, an IPv4 header is at least 20")
        hl = self.header_len
        if hl < HEADER_LEN:
            raise WireError("ihl", f"header length {hl} is below 20")
        if hl > n:
            raise WireError("ihl", f"header length {hl} exceeds the {n} bytes")
        tl = self.total_len
        if tl < hl:
            raise WireError("total_len", f"total length {tl} is below the header length {hl}")
        if tl > n:
            raise WireError("total_len", f"total length {tl} exceeds the {n} bytes")

    @property
    def version(self) -> int:
        return self.buf[VER_IHL] >> 4

    @property
    def header_len(self) -> int:
        return (self.buf[VER_IHL] & 0x0F) * 4

    def set_version_ihl(self, header_len: int) -> None:
        self.buf[VER_IHL] = 0x40 | (header_len // 4)

    dscp_ecn = UInt(DSCP_ECN, 1)
    total_len = UInt(TOTAL_LEN)
    ident = UInt(IDENT)
    flags_frag = UInt(FLAGS_FRAG)

    @property
    def dont_frag(self) -> bool:
        return bool(self.flags_frag & FLAG_DF)

    @property
    def more_frags(self) -> bool:
        return bool(self.flags_frag & FLAG_MF)

    @property
    def frag_offset(self) -> int:
        """The fragment offset in bytes."""
        return (self.flags_frag & FRAG_OFFSET_MASK) * 8

    ttl = UInt(TTL, 1)

    @property
    def protocol(self) -> IpProtocol | int:
        return ip_protocol(self.buf[PROTOCOL])

    @protocol.setter
    def protocol(self, v: int) -> None:
        self.buf[PROTOCOL] = v

    checksum = UInt(CHECKSUM)

    @property
    def src(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(bytes(self.buf[SRC : SRC + 4]))

    @src.setter
    def src(self, a: ipaddress.IPv4Address) -> None:
        self.buf[SRC : SRC + 4] = a.packed

    @property
    def dst(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(bytes(self.buf[DST : DST + 4]))

    @dst.setter
    def dst(self, a: ipaddress.IPv4Address) -> None:
        self.buf[DST : DST + 4] = a.packed

    def verify_checksum(self) -> bool:
        return checksum(self.buf[: self.header_len]) == 0

    def fill_checksum(self) -> None:
        self.checksum = 0
        self.checksum = checksum(self.buf[: self.header_len])

    @property
    def options(self) -> memoryview:
        return self.buf[HEADER_LEN : self.header_len]

    @property
    def payload(self) -> memoryview:
        return self.buf[self.header_len : self.total_len]


@dataclass(frozen=True, slots=True)
class Ipv4Repr:
    """The meaning of an IPv4 header (options are dropped on parse, never emitted)."""

    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    protocol: IpProtocol | int
    payload_len: int
    ttl: int = 64
    ident: int = 0
    dont_frag: bool = False
    more_frags: bool = False
    frag_offset: int = 0
    dscp_ecn: int = 0

    @classmethod
    def parse(cls, packet: Ipv4Packet, *, verify_checksum: bool = True) -> Ipv4Repr:
        packet.check_len()
        if packet.version != 4:
            raise WireError("version", f"version {packet.version} is not 4")
        if verify_checksum and not packet.verify_checksum():
            raise WireError("checksum", f"header checksum {packet.checksum:#06x} is wrong")
        ff = packet.flags_frag
        if ff & 0x8000:
            raise WireError("flags", "the reserved flag is set")
        return cls(
            src=packet.src,
            dst=packet.dst,
            protocol=packet.protocol,
            payload_len=packet.total_len - packet.header_len,
            ttl=packet.ttl,
            ident=packet.ident,
            dont_frag=bool(ff & FLAG_DF),
            more_frags=bool(ff & FLAG_MF),
            frag_offset=(ff & FRAG_OFFSET_MASK) * 8,
            dscp_ecn=packet.dscp_ecn,
        )

    def buffer_len(self) -> int:
        return HEADER_LEN

    def emit(self, packet: Ipv4Packet) -> None:
        """Write the header (and its checksum) into the first 20 bytes of ``packet``."""
        if not 0 <= self.payload_len <= 0xFFFF - HEADER_LEN:
            raise ValueError(f"payload_len out of range: {self.payload_len}")
        if self.frag_offset % 8 or not 0 <= self.frag_offset // 8 <= FRAG_OFFSET_MASK:
            raise ValueError(f"frag_offset must be a multiple of 8 below 65536: {self.frag_offset}")
        flags = (FLAG_DF if self.dont_frag else 0) | (FLAG_MF if self.more_frags else 0)
        HEADER.pack_into(
            packet.buf,
            0,
            0x45,
            self.dscp_ecn,
            HEADER_LEN + self.payload_len,
            self.ident,
            flags | (self.frag_offset // 8),
            self.ttl,
            self.protocol,
            0,
            self.src.packed,
            self.dst.packed,
        )
        packet.fill_checksum()
