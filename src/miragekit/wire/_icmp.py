"""What ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share: the 8-byte header (type, code,
checksum, the 32-bit rest of header), the echo fields in it, and writing it out. The
families differ in their types and in what the checksum covers (ICMPv6 adds the IPv6
pseudo-header)."""

from __future__ import annotations

import struct
from typing import ClassVar, Final

from ._error import WireError
from ._view import UInt, View

TYPE: Final = 0
CODE: Final = 1
CHECKSUM: Final = 2
REST: Final = 4
HEADER_LEN: Final = 8
HEADER: Final = struct.Struct("!BBHI")


class Echo:
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


class IcmpView(View, Echo):
    """A view over an ICMP message of either family (the whole upper-layer payload)."""

    __slots__ = ()
    _NAME: ClassVar[str] = "ICMP"

    def check_len(self) -> None:
        if len(self.buf) < HEADER_LEN:
            raise WireError("length", f"{len(self.buf)} bytes, an {self._NAME} header is 8")

    code = UInt(CODE, 1)
    checksum = UInt(CHECKSUM)
    rest = UInt(REST, 4)

    @property
    def data(self) -> memoryview:
        return self.buf[HEADER_LEN:]


class IcmpValue(Echo):
    """The parts of an ICMP message value both families write the same way."""

    __slots__ = ()
    msg_type: int
    code: int
    data: bytes

    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.data)

    def _emit_fields(self, buf: memoryview) -> memoryview:
        """The header (checksum zero) and the data into ``buf``; the message's bytes."""
        if not (0 <= self.msg_type <= 255 and 0 <= self.code <= 255):
            raise ValueError("msg_type and code must fit in a byte")
        if not 0 <= self.rest <= 0xFFFFFFFF:
            raise ValueError(f"rest out of range: {self.rest}")
        n = self.buffer_len()
        HEADER.pack_into(buf, 0, self.msg_type, self.code, 0, self.rest)
        buf[HEADER_LEN:n] = self.data
        return buf[:n]
