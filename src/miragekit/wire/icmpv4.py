"""ICMPv4 messages (RFC 792): a checked view and a value type.

The value type is generic (type, code, the 4 "rest of header" bytes, data) so unknown
message types are kept; echo and destination-unreachable have named helpers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ._checksum import checksum
from ._error import WireError
from ._icmp import TYPE, IcmpValue, IcmpView
from ._view import known

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


class Icmpv4Packet(IcmpView):
    """A view over an ICMPv4 message (the whole IP payload)."""

    __slots__ = ()

    @property
    def msg_type(self) -> Icmpv4Type | int:
        return icmpv4_type(self.buf[TYPE])

    @msg_type.setter
    def msg_type(self, v: int) -> None:
        self.buf[TYPE] = v

    def verify_checksum(self) -> bool:
        return checksum(self.buf) == 0

    def fill_checksum(self) -> None:
        self.checksum = 0
        self.checksum = checksum(self.buf)


@dataclass(frozen=True, slots=True)
class Icmpv4Repr(IcmpValue):
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

    def emit(self, packet: Icmpv4Packet) -> None:
        Icmpv4Packet(self._emit_fields(packet.buf)).fill_checksum()
