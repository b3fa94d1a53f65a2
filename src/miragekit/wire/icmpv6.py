"""ICMPv6 (RFC 4443), neighbour discovery (RFC 4861) and MLDv2 (RFC 3810) messages.

:class:`Icmpv6Repr` is the generic message (type, code, the 4 "rest of header" bytes,
data), so unknown types are kept. The neighbour-discovery and MLD messages are value types
that convert from and to it (:func:`parse_ndp`, ``to_icmp()``), with the NDP options
parsed into their own value types; unknown options are kept.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ..macaddr import MacAddr
from ._checksum import checksum_add, checksum_finish, ones_sum, pseudo_sum_v6
from ._error import WireError
from ._icmp import TYPE, IcmpValue, IcmpView
from ._view import known

PROTOCOL: Final = 58

_H = struct.Struct("!H")
_I = struct.Struct("!I")
_RA = struct.Struct("!II")
_PREFIX = struct.Struct("!BBIII16s")
_REC = struct.Struct("!BBH16s")

Addr = ipaddress.IPv6Address


class Icmpv6Type(IntEnum):
    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAM_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    MLD_QUERY = 130
    MLD_REPORT = 131
    MLD_DONE = 132
    ROUTER_SOLICIT = 133
    ROUTER_ADVERT = 134
    NEIGHBOR_SOLICIT = 135
    NEIGHBOR_ADVERT = 136
    REDIRECT = 137
    MLDV2_REPORT = 143


class Unreachable(IntEnum):
    """Destination Unreachable codes (RFC 4443 3.1)."""

    NO_ROUTE = 0
    ADMIN_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS_UNREACHABLE = 3
    PORT_UNREACHABLE = 4


def icmpv6_type(value: int) -> Icmpv6Type | int:
    return known(Icmpv6Type, value)


def is_error(msg_type: int) -> bool:
    """Error messages have types below 128 (RFC 4443 2.1)."""
    return msg_type < 128


def _pseudo(src: Addr, dst: Addr, length: int) -> int:
    return pseudo_sum_v6(src.packed, dst.packed, PROTOCOL, length)


class Icmpv6Packet(IcmpView):
    """A view over an ICMPv6 message (the whole upper-layer payload)."""

    __slots__ = ()
    _NAME = "ICMPv6"

    @property
    def msg_type(self) -> Icmpv6Type | int:
        return icmpv6_type(self.buf[TYPE])

    def verify_checksum(self, src: Addr, dst: Addr) -> bool:
        s = checksum_add(_pseudo(src, dst, len(self.buf)), ones_sum(self.buf))
        return s == 0xFFFF

    def fill_checksum(self, src: Addr, dst: Addr) -> None:
        self.checksum = 0
        s = checksum_add(_pseudo(src, dst, len(self.buf)), ones_sum(self.buf))
        self.checksum = checksum_finish(s)


@dataclass(frozen=True, slots=True)
class Icmpv6Repr(IcmpValue):
    """One ICMPv6 message: type, code, the 32-bit rest of header, and the data."""

    msg_type: Icmpv6Type | int
    code: int
    rest: int
    data: bytes

    @classmethod
    def echo(cls, *, request: bool, ident: int, seq: int, data: bytes) -> Icmpv6Repr:
        t = Icmpv6Type.ECHO_REQUEST if request else Icmpv6Type.ECHO_REPLY
        return cls(t, 0, (ident << 16) | seq, data)

    @classmethod
    def error(cls, msg_type: int, code: int, invoking: bytes, *, rest: int = 0) -> Icmpv6Repr:
        """An error message quoting ``invoking``, cut so the whole fits the minimum MTU
        (1280 bytes with the 40-byte IPv6 and 8-byte ICMPv6 headers, RFC 4443 2.4(c))."""
        if not is_error(msg_type):
            raise ValueError(f"msg_type {msg_type} is not an error type")
        return cls(icmpv6_type(msg_type), code, rest, bytes(invoking[: 1280 - 48]))

    @classmethod
    def parse(
        cls, packet: Icmpv6Packet, src: Addr, dst: Addr, *, verify_checksum: bool = True
    ) -> Icmpv6Repr:
        packet.check_len()
        if verify_checksum and not packet.verify_checksum(src, dst):
            raise WireError("checksum", f"ICMPv6 checksum {packet.checksum:#06x} is wrong")
        return cls(packet.msg_type, packet.code, packet.rest, bytes(packet.data))

    def emit(self, packet: Icmpv6Packet, src: Addr, dst: Addr) -> None:
        Icmpv6Packet(self._emit_fields(packet.buf)).fill_checksum(src, dst)


# --- NDP options (RFC 4861 4.6) -------------------------------------------------------------

OPT_SOURCE_LLADDR: Final = 1
OPT_TARGET_LLADDR: Final = 2
OPT_PREFIX_INFO: Final = 3
OPT_REDIRECTED_HEADER: Final = 4
OPT_MTU: Final = 5
OPT_RDNSS: Final = 25  # recursive DNS servers (RFC 8106 5.1)
INFINITE: Final = 0xFFFFFFFF
"""A lifetime that never ends."""


@dataclass(frozen=True, slots=True)
class LinkAddrOption:
    """Source (``source``) or target link-layer address."""

    source: bool
    mac: MacAddr


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    prefix: Addr
    prefix_len: int
    on_link: bool
    autonomous: bool
    valid_lifetime: int
    preferred_lifetime: int

    @property
    def network(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network((self.prefix, self.prefix_len), strict=False)


@dataclass(frozen=True, slots=True)
class MtuOption:
    mtu: int


@dataclass(frozen=True, slots=True)
class RdnssOption:
    """DNS servers the router offers, valid for ``lifetime`` seconds (RFC 8106)."""

    lifetime: int
    servers: tuple[Addr, ...]


@dataclass(frozen=True, slots=True)
class RedirectedHeader:
    data: bytes


@dataclass(frozen=True, slots=True)
class UnknownOption:
    type: int
    data: bytes  # the option body after type and length


NdpOption = LinkAddrOption | PrefixInfo | MtuOption | RdnssOption | RedirectedHeader | UnknownOption


def parse_options(buf: bytes | bytearray | memoryview) -> tuple[NdpOption, ...]:
    """The options in ``buf``; a zero or overlong length is malformed (RFC 4861 4.6)."""
    out: list[NdpOption] = []
    i, n = 0, len(buf)
    while i < n:
        if i + 2 > n:
            raise WireError("option_len", f"option at {i} is truncated")
        t, units = buf[i], buf[i + 1]
        ln = units * 8
        if ln == 0:
            raise WireError("option_len", f"option {t} at {i} has length 0")
        if i + ln > n:
            raise WireError("option_len", f"option {t} at {i} runs past the message")
        body = bytes(buf[i + 2 : i + ln])
        if t in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR) and ln == 8:
            out.append(LinkAddrOption(t == OPT_SOURCE_LLADDR, MacAddr(body[:6])))
        elif t == OPT_PREFIX_INFO:
            if ln != 32:
                raise WireError("prefix_info", f"length {ln}, a prefix option is 32")
            plen, flags, valid, pref, _r, prefix = _PREFIX.unpack_from(body)
            if plen > 128:
                raise WireError("prefix_len", f"prefix length {plen}")
            out.append(
                PrefixInfo(Addr(prefix), plen, bool(flags & 0x80), bool(flags & 0x40), valid, pref)
            )
        elif t == OPT_MTU:
            if ln != 8:
                raise WireError("mtu", f"length {ln}, an MTU option is 8")
            out.append(MtuOption(int(_I.unpack_from(body, 2)[0])))
        elif t == OPT_RDNSS:
            if units < 3 or units % 2 == 0:  # RFC 8106 5.1: 3 + 2 per address, at least one
                raise WireError("rdnss", f"length {units} units, an RDNSS option is odd and >= 3")
            servers = tuple(Addr(body[k : k + 16]) for k in range(6, len(body), 16))
            out.append(RdnssOption(int(_I.unpack_from(body, 2)[0]), servers))
        elif t == OPT_REDIRECTED_HEADER:
            out.append(RedirectedHeader(body[6:]))
        else:
            out.append(UnknownOption(t, body))
        i += ln
    return tuple(out)


def emit_options(options: tuple[NdpOption, ...]) -> bytes:
    out = bytearray()
    for o in options:
        if isinstance(o, LinkAddrOption):
            t = OPT_SOURCE_LLADDR if o.source else OPT_TARGET_LLADDR
            out += bytes((t, 1)) + o.mac.packed
        elif isinstance(o, PrefixInfo):
            flags = (0x80 if o.on_link else 0) | (0x40 if o.autonomous else 0)
            out += bytes((OPT_PREFIX_INFO, 4)) + _PREFIX.pack(
                o.prefix_len, flags, o.valid_lifetime, o.preferred_lifetime, 0, o.prefix.packed
            )
        elif isinstance(o, MtuOption):
            out += bytes((OPT_MTU, 1, 0, 0)) + _I.pack(o.mtu)
        elif isinstance(o, RdnssOption):
            out += bytes((OPT_RDNSS, 1 + 2 * len(o.servers), 0, 0)) + _I.pack(o.lifetime)
            out += b"".join(a.packed for a in o.servers)
        elif isinstance(o, RedirectedHeader):
            body = bytes(6) + o.data
            body += bytes((-(2 + len(body))) % 8)
            out += bytes((OPT_REDIRECTED_HEADER, (2 + len(body)) // 8)) + body
        else:
            body = o.data + bytes((-(2 + len(o.data))) % 8)
            out += bytes((o.type, (2 + len(body)) // 8)) + body
    return bytes(out)


def link_addr(options: tuple[NdpOption, ...], *, source: bool) -> MacAddr | None:
    """The source (or target) link-layer address among ``options``, if any."""
    for o in options:
        if isinstance(o, LinkAddrOption) and o.source == source:
            return o.mac
    return None


# --- NDP messages (RFC 4861 4) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouterSolicit:
    options: tuple[NdpOption, ...] = ()

    def to_icmp(self) -> Icmpv6Repr:
        return Icmpv6Repr(Icmpv6Type.ROUTER_SOLICIT, 0, 0, emit_options(self.options))


@dataclass(frozen=True, slots=True)
class RouterAdvert:
    hop_limit: int
    managed: bool
    other: bool
    router_lifetime: int  # seconds; 0: not a default router
    reachable_time: int  # milliseconds; 0: unspecified
    retrans_timer: int  # milliseconds; 0: unspecified
    options: tuple[NdpOption, ...] = ()

    def to_icmp(self) -> Icmpv6Repr:
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0)
        rest = (self.hop_limit << 24) | (flags << 16) | self.router_lifetime
        body = _RA.pack(self.reachable_time, self.retrans_timer) + emit_options(self.options)
        return Icmpv6Repr(Icmpv6Type.ROUTER_ADVERT, 0, rest, body)


@dataclass(frozen=True, slots=True)
class NeighborSolicit:
    target: Addr
    options: tuple[NdpOption, ...] = ()

    def to_icmp(self) -> Icmpv6Repr:
        body = self.target.packed + emit_options(self.options)
        return Icmpv6Repr(Icmpv6Type.NEIGHBOR_SOLICIT, 0, 0, body)


@dataclass(frozen=True, slots=True)
class NeighborAdvert:
    router: bool
    solicited: bool
    override: bool
    target: Addr
    options: tuple[NdpOption, ...] = ()

    def to_icmp(self) -> Icmpv6Repr:
        rest = (self.router << 31) | (self.solicited << 30) | (self.override << 29)
        body = self.target.packed + emit_options(self.options)
        return Icmpv6Repr(Icmpv6Type.NEIGHBOR_ADVERT, 0, rest, body)


@dataclass(frozen=True, slots=True)
class Redirect:
    target: Addr
    dest: Addr
    options: tuple[NdpOption, ...] = ()

    def to_icmp(self) -> Icmpv6Repr:
        body = self.target.packed + self.dest.packed + emit_options(self.options)
        return Icmpv6Repr(Icmpv6Type.REDIRECT, 0, 0, body)


NdpRepr = RouterSolicit | RouterAdvert | NeighborSolicit | NeighborAdvert | Redirect

_NDP_MIN = {133: 0, 134: 8, 135: 16, 136: 16, 137: 32}
"""Bytes of fixed body (after the 8-byte ICMPv6 header) of each NDP message."""


def parse_ndp(msg: Icmpv6Repr) -> NdpRepr:
    """The NDP message in ``msg``; :class:`WireError` when it fails RFC 4861's checks that
    do not need the IP header (code 0, length, options)."""
    t = int(msg.msg_type)
    if t not in _NDP_MIN:
        raise WireError("msg_type", f"type {t} is not a neighbour-discovery message")
    if msg.code != 0:
        raise WireError("code", f"code {msg.code} is not 0")
    d = msg.data
    fixed = _NDP_MIN[t]
    if len(d) < fixed:
        raise WireError("length", f"{len(d) + 8} bytes is too short for type {t}")
    opts = parse_options(d[fixed:])
    if t == 133:
        return RouterSolicit(opts)
    if t == 134:
        reach, retrans = _RA.unpack_from(d)
        r = msg.rest
        return RouterAdvert(
            r >> 24, bool(r & 0x800000), bool(r & 0x400000), r & 0xFFFF, reach, retrans, opts
        )
    target = Addr(d[:16])
    if target.is_multicast:
        raise WireError("target", f"target {target} is multicast")
    if t == 135:
        return NeighborSolicit(target, opts)
    if t == 136:
        r = msg.rest
        return NeighborAdvert(bool(r >> 31), bool(r >> 30 & 1), bool(r >> 29 & 1), target, opts)
    return Redirect(target, Addr(d[16:32]), opts)


# --- MLDv2 (RFC 3810) ---------------------------------------------------------------------

MODE_IS_INCLUDE: Final = 1
MODE_IS_EXCLUDE: Final = 2
CHANGE_TO_INCLUDE: Final = 3
CHANGE_TO_EXCLUDE: Final = 4
ALL_MLDV2_ROUTERS: Final = Addr("ff02::16")


@dataclass(frozen=True, slots=True)
class McastRecord:
    record_type: int
    group: Addr
    sources: tuple[Addr, ...] = ()


@dataclass(frozen=True, slots=True)
class Mldv2Report:
    records: tuple[McastRecord, ...]

    def to_icmp(self) -> Icmpv6Repr:
        body = bytearray()
        for r in self.records:
            body += _REC.pack(r.record_type, 0, len(r.sources), r.group.packed)
            for s in r.sources:
                body += s.packed
        return Icmpv6Repr(Icmpv6Type.MLDV2_REPORT, 0, len(self.records), bytes(body))

    @classmethod
    def parse(cls, msg: Icmpv6Repr) -> Mldv2Report:
        if msg.msg_type != Icmpv6Type.MLDV2_REPORT:
            raise WireError("msg_type", f"type {msg.msg_type} is not an MLDv2 report")
        count = msg.rest & 0xFFFF
        d, i, recs = msg.data, 0, []
        for _ in range(count):
            if i + 20 > len(d):
                raise WireError("records", "record truncated")
            rt, aux, ns, group = _REC.unpack_from(d, i)
            end = i + 20 + 16 * ns + 4 * aux
            if end > len(d):
                raise WireError("records", "record truncated")
            srcs = tuple(Addr(d[i + 20 + 16 * k : i + 36 + 16 * k]) for k in range(ns))
            recs.append(McastRecord(rt, Addr(group), srcs))
            i = end
        return cls(tuple(recs))


@dataclass(frozen=True, slots=True)
class MldQuery:
    """A multicast listener query (MLDv1 or v2); only what a listener needs."""

    max_response_ms: int
    group: Addr  # :: for a general query

    @classmethod
    def parse(cls, msg: Icmpv6Repr) -> MldQuery:
        if msg.msg_type != Icmpv6Type.MLD_QUERY or len(msg.data) < 16:
            raise WireError("length", "an MLD query has a 16-byte group")
        code = msg.rest >> 16
        if code >= 0x8000:  # floating-point form (RFC 3810 5.1.3)
            code = ((code & 0x0FFF) | 0x1000) << (((code >> 12) & 7) + 3)
        return cls(code, Addr(msg.data[:16]))
