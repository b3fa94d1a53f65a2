"""ICMPv4 messages (RFC 792): a checked view and a value type.

The value type is generic (type, code, the 4 "rest of header" bytes, data) so unknown
message types are kept; echo and destination-unreachable have named helpers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ._checksum import checksum
from ._error import WireError
from ._view import UInt, View, known

TYPE: Final = 0
CODE: Final = 1
CHECKSUM: Final = 2
REST: Final = 4
HEADER_LEN: Final = 8

HEADER: Final = struct.Struct("!BBHI")
_H = struct.Struct("!H")
_I = struct.Struct("!I")


class Icmpv4Type(IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAM_PROBLEM = 12


class DestUnreachable(IntEnum):
    NET_UNREACHABLE = 0
    HOST_UNREACHABLE = 1
    PROTO_UNREACHABLE = 2
    PORT_UNREACHABLE = 3
    FRAG_REQUIRED = 4


def icmpv4_type(value: int) -> Icmpv4Type | int:
    return known(Icmpv4Type, value)


class _Echo:
    """An echo message's identifier and sequence number: the two halves of the rest of
    the header (a view and a value both have ``rest``)."""

    __slots__ = ()
    rest: int

    @property
    def echo_ident(self) -> int:
        return self.rest >> 16

    @property
    def echo_seq(self) -> int:
        return self.rest & 0xFFFF


class Icmpv4Packet(View, _Echo):
    """A view over an ICMPv4 message (the whole IP payload)."""

    __slots__ = ()

    def check_len(self) -> None:
        if len(self.buf) < HEADER_LEN:
            raise WireError("length", f"{len(self.buf)} bytes, an ICMP header is 8")

    @property
    def msg_type(self) -> Icmpv4Type | int:
        return icmpv4_type(self.buf[TYPE])

    @msg_type.setter
    def msg_type(self, v: int) -> None:
        self.buf[TYPE] = v

    code = UInt(CODE, 1)
    checksum = UInt(CHECKSUM)
    rest = UInt(REST, 4)

    @property
    def data(self) -> memoryview:
        return self.buf[HEADER_LEN:]

    def verify_checksum(self) -> bool:
        return checksum(self.buf) == 0

    def fill_checksum(self) -> None:
        self.checksum = 0
        self.checksum = checksum(self.buf)


@dataclass(frozen=True, slots=True)
class Icmpv4Repr(_Echo):
    """One ICMPv4 message: type, code, the 32-bit rest of header, and the data."""

    msg_type: Icmpv4Type | int
    code: int
    rest: int
    data: bytes

    @classmethod
    def echo(cls, *, request: bool, ident: int, seq: int, data: bytes) -> Icmpv4Repr:
        t = Icmpv4Type.ECHO_REQUEST if request else Icmpv4Type.ECHO_REPLY
        return cls(t, 0, (ident << 16) | seq, data)

    @classmethod
    def parse(cls, packet: Icmpv4Packet, *, verify_checksum: bool = True) -> Icmpv4Repr:
        packet.check_len()
        if verify_checksum and not packet.verify_checksum():
            raise WireError("checksum", f"ICMP checksum {packet.checksum:#06x} is wrong")
        return cls(packet.msg_type, packet.code, packet.rest, bytes(packet.data))

    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.data)

    def emit(self, packet: Icmpv4Packet) -> None:
        if not (0 <= self.msg_type <= 255 and 0 <= self.code <= 255):
            raise ValueError("msg_type and code must fit in a byte")
        if not 0 <= self.rest <= 0xFFFFFFFF:
            raise ValueError(f"rest out of range: {self.rest}")
        n = self.buffer_len()
        HEADER.pack_into(packet.buf, 0, self.msg_type, self.code, 0, self.rest)
        packet.buf[HEADER_LEN:n] = self.data
        Icmpv4Packet(packet.buf[:n]).fill_checksum()
