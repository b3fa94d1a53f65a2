"""DHCP/BOOTP messages (RFC 2131, options RFC 2132): a checked view and a value type.

The options are a type-length-value list after a magic cookie; with the overload option
(52) they continue in the ``file`` and then the ``sname`` field. Every length is checked:
an option that runs past the end of its field is a :class:`WireError` naming the field
(``options``, ``file`` or ``sname``). Options that occur more than once are concatenated
(RFC 3396). Options not interpreted here are kept, in order, in ``DhcpRepr.other``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ..macaddr import MacAddr
from ._error import WireError
from ._view import View, known

Addr = ipaddress.IPv4Address

OP: Final = 0
HTYPE: Final = 1
HLEN: Final = 2
HOPS: Final = 3
XID: Final = 4
SECS: Final = 8
FLAGS: Final = 10
CIADDR: Final = 12
YIADDR: Final = 16
SIADDR: Final = 20
GIADDR: Final = 24
CHADDR: Final = 28
SNAME: Final = 44
FILE: Final = 108
MAGIC: Final = 236
OPTIONS: Final = 240
HEADER_LEN: Final = OPTIONS
"""The fixed part and the magic cookie; the options follow."""
MIN_LEN: Final = 300
"""BOOTP's minimum message size (RFC 1542 2.1); emitted messages are padded to it."""
MAGIC_COOKIE: Final = b"\x63\x82\x53\x63"
FLAG_BROADCAST: Final = 0x8000
SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68
ZERO: Final = Addr(0)
INFINITE: Final = 0xFFFFFFFF
"""A lease time meaning "forever" (RFC 2131 3.3)."""

HEADER: Final = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")

OPT_PAD: Final = 0
OPT_SUBNET_MASK: Final = 1
OPT_ROUTER: Final = 3
OPT_DNS: Final = 6
OPT_HOST_NAME: Final = 12
OPT_MTU: Final = 26
OPT_REQUESTED_IP: Final = 50
OPT_LEASE_TIME: Final = 51
OPT_OVERLOAD: Final = 52
OPT_MESSAGE_TYPE: Final = 53
OPT_SERVER_ID: Final = 54
OPT_PARAMETER_REQUEST: Final = 55
OPT_MESSAGE: Final = 56
OPT_RENEWAL_TIME: Final = 58
OPT_REBINDING_TIME: Final = 59
OPT_CLIENT_ID: Final = 61
OPT_CLASSLESS_ROUTES: Final = 121  # RFC 3442; kept in ``other``, read by the client
OPT_END: Final = 255

_KNOWN: Final = frozenset(
    (
        OPT_SUBNET_MASK,
        OPT_ROUTER,
        OPT_DNS,
        OPT_HOST_NAME,
        OPT_MTU,
        OPT_REQUESTED_IP,
        OPT_LEASE_TIME,
        OPT_OVERLOAD,
        OPT_MESSAGE_TYPE,
        OPT_SERVER_ID,
        OPT_PARAMETER_REQUEST,
        OPT_MESSAGE,
        OPT_RENEWAL_TIME,
        OPT_REBINDING_TIME,
        OPT_CLIENT_ID,
    )
)


class DhcpOp(IntEnum):
    REQUEST = 1
    REPLY = 2


class DhcpMessageType(IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


def message_type(value: int) -> DhcpMessageType | int:
    return known(DhcpMessageType, value)


def parse_options(buf: memoryview | bytes, field: str) -> list[tuple[int, bytes]]:
    """The options in ``buf`` (pad skipped, stopping at end) as (code, data) pairs.

    An option whose length byte or data runs past the end of ``buf`` raises
    :class:`WireError` naming ``field``; a field without an end option ends with it.
    """
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(buf)
    while i < n:
        code = buf[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            break
        if i + 1 >= n:
            raise WireError(field, f"option {code} at {i} has no length byte")
        ln = buf[i + 1]
        if i + 2 + ln > n:
            raise WireError(field, f"option {code} at {i}: {ln} bytes overflow the field")
        out.append((code, bytes(buf[i + 2 : i + 2 + ln])))
        i += 2 + ln
    return out


class DhcpPacket(View):
    """A view over a DHCP message (the UDP payload); :meth:`checked` validates it."""

    __slots__ = ()

    def check_len(self) -> None:
        n = len(self.buf)
        if n < HEADER_LEN:
            raise WireError("length", f"{n} bytes, a DHCP message is at least 240")
        if bytes(self.buf[MAGIC:OPTIONS]) != MAGIC_COOKIE:
            raise WireError("magic", f"cookie {bytes(self.buf[MAGIC:OPTIONS]).hex()} is not DHCP")

    def _u8(self, off: int) -> int:
        return self.buf[off]

    def _addr(self, off: int) -> Addr:
        return Addr(bytes(self.buf[off : off + 4]))

    @property
    def op(self) -> int:
        return self._u8(OP)

    @property
    def htype(self) -> int:
        return self._u8(HTYPE)

    @property
    def hlen(self) -> int:
        return self._u8(HLEN)

    @property
    def hops(self) -> int:
        return self._u8(HOPS)

    @property
    def xid(self) -> int:
        return int.from_bytes(self.buf[XID : XID + 4], "big")

    @property
    def secs(self) -> int:
        return int.from_bytes(self.buf[SECS : SECS + 2], "big")

    @property
    def flags(self) -> int:
        return int.from_bytes(self.buf[FLAGS : FLAGS + 2], "big")

    @property
    def ciaddr(self) -> Addr:
        return self._addr(CIADDR)

    @property
    def yiaddr(self) -> Addr:
        return self._addr(YIADDR)

    @property
    def siaddr(self) -> Addr:
        return self._addr(SIADDR)

    @property
    def giaddr(self) -> Addr:
        return self._addr(GIADDR)

    @property
    def chaddr(self) -> memoryview:
        return self.buf[CHADDR:SNAME]

    @property
    def sname(self) -> memoryview:
        return self.buf[SNAME:FILE]

    @property
    def file(self) -> memoryview:
        return self.buf[FILE:MAGIC]

    @property
    def options_area(self) -> memoryview:
        return self.buf[OPTIONS:]

    def options(self) -> tuple[list[tuple[int, bytes]], int]:
        """All options in RFC 2131 order (options, then file, then sname when overloaded),
        and the overload value (0 when none)."""
        opts = parse_options(self.options_area, "options")
        overload = 0
        for code, data in opts:
            if code == OPT_OVERLOAD:
                if len(data) != 1 or data[0] not in (1, 2, 3):
                    raise WireError(
                        "overload", f"option 52 must be one byte 1..3, got {data.hex()}"
                    )
                overload = data[0]
        for bit, field, area in ((1, "file", self.file), (2, "sname", self.sname)):
            if overload & bit:
                more = parse_options(area, field)
                if any(code == OPT_OVERLOAD for code, _ in more):
                    raise WireError(field, "option 52 inside an overloaded field")
                opts.extend(more)
        return opts, overload


def _addr_list(code: int, name: str, data: bytes) -> tuple[Addr, ...]:
    if not data or len(data) % 4:
        raise WireError(name, f"option {code}: {len(data)} bytes is not a list of addresses")
    return tuple(Addr(data[i : i + 4]) for i in range(0, len(data), 4))


def _one_addr(code: int, name: str, data: bytes) -> Addr:
    if len(data) != 4:
        raise WireError(name, f"option {code}: {len(data)} bytes, an address is 4")
    return Addr(data)


def _u32(code: int, name: str, data: bytes) -> int:
    if len(data) != 4:
        raise WireError(name, f"option {code}: {len(data)} bytes, expected 4")
    return int.from_bytes(data, "big")


def _text(data: bytes) -> str:
    return data.rstrip(b"\0").decode("utf-8", "replace")


def _cstring(b: memoryview) -> bytes:
    raw = bytes(b)
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


@dataclass(frozen=True, slots=True)
class DhcpRepr:
    """The meaning of a DHCP message over Ethernet (htype 1, hlen 6).

    ``None`` means an option is absent. ``other`` keeps every option not named here
    (code, data), in order of first appearance. ``sname`` and ``file`` hold the fields' text
    when they are not used for options.
    """

    op: DhcpOp
    xid: int
    chaddr: MacAddr
    message_type: DhcpMessageType | int | None = None
    secs: int = 0
    broadcast: bool = False
    hops: int = 0
    ciaddr: Addr = ZERO
    yiaddr: Addr = ZERO
    siaddr: Addr = ZERO
    giaddr: Addr = ZERO
    sname: bytes = b""
    file: bytes = b""
    subnet_mask: Addr | None = None
    routers: tuple[Addr, ...] = ()
    dns_servers: tuple[Addr, ...] = ()
    host_name: str | None = None
    mtu: int | None = None
    requested_ip: Addr | None = None
    lease_time: int | None = None
    server_id: Addr | None = None
    parameter_request_list: tuple[int, ...] = ()
    message: str | None = None
    renewal_time: int | None = None
    rebinding_time: int | None = None
    client_id: bytes | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    @classmethod
    def parse(cls, packet: DhcpPacket) -> DhcpRepr:
        packet.check_len()
        if packet.op not in (1, 2):
            raise WireError("op", f"op {packet.op} is neither request nor reply")
        if packet.htype != 1 or packet.hlen != 6:
            raise WireError("htype", f"hardware {packet.htype}/{packet.hlen} is not Ethernet")
        opts, overload = packet.options()
        merged: dict[int, bytes] = {}
        for code, data in opts:
            merged[code] = merged.get(code, b"") + data
        other = [(code, data) for code, data in merged.items() if code not in _KNOWN]
        kw: dict[str, object] = {}
        for code, data in merged.items():
            if code == OPT_MESSAGE_TYPE:
                if len(data) != 1:
                    raise WireError("message_type", f"option 53: {len(data)} bytes, expected 1")
                kw["message_type"] = message_type(data[0])
            elif code == OPT_SUBNET_MASK:
                kw["subnet_mask"] = _one_addr(code, "subnet_mask", data)
            elif code == OPT_ROUTER:
                kw["routers"] = _addr_list(code, "routers", data)
            elif code == OPT_DNS:
                kw["dns_servers"] = _addr_list(code, "dns_servers", data)
            elif code == OPT_HOST_NAME:
                kw["host_name"] = _text(data)
            elif code == OPT_MTU:
                if len(data) != 2:
                    raise WireError("mtu", f"option 26: {len(data)} bytes, expected 2")
                kw["mtu"] = int.from_bytes(data, "big")
            elif code == OPT_REQUESTED_IP:
                kw["requested_ip"] = _one_addr(code, "requested_ip", data)
            elif code == OPT_LEASE_TIME:
                kw["lease_time"] = _u32(code, "lease_time", data)
            elif code == OPT_SERVER_ID:
                kw["server_id"] = _one_addr(code, "server_id", data)
            elif code == OPT_PARAMETER_REQUEST:
                kw["parameter_request_list"] = tuple(data)
            elif code == OPT_MESSAGE:
                kw["message"] = _text(data)
            elif code == OPT_RENEWAL_TIME:
                kw["renewal_time"] = _u32(code, "renewal_time", data)
            elif code == OPT_REBINDING_TIME:
                kw["rebinding_time"] = _u32(code, "rebinding_time", data)
            elif code == OPT_CLIENT_ID:
                kw["client_id"] = data
        return cls(
            op=DhcpOp(packet.op),
            xid=packet.xid,
            chaddr=MacAddr(packet.chaddr[:6]),
            secs=packet.secs,
            broadcast=bool(packet.flags & FLAG_BROADCAST),
            hops=packet.hops,
            ciaddr=packet.ciaddr,
            yiaddr=packet.yiaddr,
            siaddr=packet.siaddr,
            giaddr=packet.giaddr,
            sname=b"" if overload & 2 else _cstring(packet.sname),
            file=b"" if overload & 1 else _cstring(packet.file),
            other=tuple(other),
            **kw,  # type: ignore[arg-type]
        )

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> DhcpRepr:
        """Parse untrusted bytes (the UDP payload); :class:`WireError` when malformed."""
        return cls.parse(DhcpPacket.checked(buf))

    def options_list(self) -> list[tuple[int, bytes]]:
        """The options to emit, message type first, without pad or end."""
        out: list[tuple[int, bytes]] = []
        if self.message_type is not None:
            out.append((OPT_MESSAGE_TYPE, bytes((int(self.message_type),))))
        if self.server_id is not None:
            out.append((OPT_SERVER_ID, self.server_id.packed))
        if self.client_id is not None:
            out.append((OPT_CLIENT_ID, self.client_id))
        if self.requested_ip is not None:
            out.append((OPT_REQUESTED_IP, self.requested_ip.packed))
        if self.lease_time is not None:
            out.append((OPT_LEASE_TIME, self.lease_time.to_bytes(4, "big")))
        if self.renewal_time is not None:
            out.append((OPT_RENEWAL_TIME, self.renewal_time.to_bytes(4, "big")))
        if self.rebinding_time is not None:
            out.append((OPT_REBINDING_TIME, self.rebinding_time.to_bytes(4, "big")))
        if self.subnet_mask is not None:
            out.append((OPT_SUBNET_MASK, self.subnet_mask.packed))
        if self.routers:
            out.append((OPT_ROUTER, b"".join(a.packed for a in self.routers)))
        if self.dns_servers:
            out.append((OPT_DNS, b"".join(a.packed for a in self.dns_servers)))
        if self.host_name is not None:
            out.append((OPT_HOST_NAME, self.host_name.encode()))
        if self.mtu is not None:
            out.append((OPT_MTU, self.mtu.to_bytes(2, "big")))
        if self.parameter_request_list:
            out.append((OPT_PARAMETER_REQUEST, bytes(self.parameter_request_list)))
        if self.message is not None:
            out.append((OPT_MESSAGE, self.message.encode()))
        out.extend(self.other)
        return out

    def _encoded_options(self) -> bytes:
        parts: list[bytes] = []
        for code, data in self.options_list():
            if not 0 < code < 255:
                raise ValueError(f"other: option code {code} is not in 1..254")
            # Long values are split over several instances (RFC 3396).
            chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
            for c in chunks:
                parts.append(bytes((code, len(c))) + c)
        parts.append(bytes((OPT_END,)))
        return b"".join(parts)

    def buffer_len(self) -> int:
        return max(MIN_LEN, OPTIONS + len(self._encoded_options()))

    def emit(self, packet: DhcpPacket) -> None:
        if len(self.sname) > 63 or len(self.file) > 127:
            raise ValueError("sname/file: at most 63/127 bytes")
        if not 0 <= self.xid <= 0xFFFFFFFF or not 0 <= self.secs <= 0xFFFF:
            raise ValueError("xid/secs out of range")
        opts = self._encoded_options()
        n = max(MIN_LEN, OPTIONS + len(opts))
        buf = packet.buf
        HEADER.pack_into(
            buf,
            0,
            int(self.op),
            1,
            6,
            self.hops,
            self.xid,
            self.secs,
            FLAG_BROADCAST if self.broadcast else 0,
            self.ciaddr.packed,
            self.yiaddr.packed,
            self.siaddr.packed,
            self.giaddr.packed,
            self.chaddr.packed,
            self.sname,
            self.file,
            MAGIC_COOKIE,
        )
        buf[OPTIONS : OPTIONS + len(opts)] = opts
        buf[OPTIONS + len(opts) : n] = bytes(n - OPTIONS - len(opts))

    def to_bytes(self) -> bytes:
        buf = bytearray(self.buffer_len())
        self.emit(DhcpPacket(buf))
        return bytes(buf)
