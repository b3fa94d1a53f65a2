"""IPv6 headers and extension headers (RFC 8200): checked views and value types.

The extension-header chain is walked by :func:`walk_chain`, bounded in the number of
headers, and stops at the first header it does not consume (an upper layer, the fragment
header, No Next Header, or one it does not know): the caller decides what those mean.
Where RFC 8200 asks for an ICMPv6 Parameter Problem, the walker raises
:class:`ParameterProblem` (a :class:`WireError`) carrying the code and the pointer.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from ._error import WireError
from ._view import UInt, View

VER_TC_FL: Final = 0
PAYLOAD_LEN: Final = 4
NEXT_HEADER: Final = 6
HOP_LIMIT: Final = 7
SRC: Final = 8
DST: Final = 24
HEADER_LEN: Final = 40

HEADER: Final = struct.Struct("!IHBB16s16s")
"""Version/traffic class/flow label, payload length, next header, hop limit, source,
destination."""

# Next-header values.
HOP_BY_HOP: Final = 0
TCP: Final = 6
UDP: Final = 17
ROUTING: Final = 43
FRAGMENT: Final = 44
ICMPV6: Final = 58
NO_NEXT_HEADER: Final = 59
DEST_OPTIONS: Final = 60

# ICMPv6 Parameter Problem codes (RFC 4443 3.4).
ERRONEOUS_FIELD: Final = 0
UNRECOGNIZED_NEXT_HEADER: Final = 1
UNRECOGNIZED_OPTION: Final = 2

# Options of hop-by-hop and destination-options headers.
OPT_PAD1: Final = 0
OPT_PADN: Final = 1
OPT_ROUTER_ALERT: Final = 5

MAX_EXT_HEADERS: Final = 8
"""Extension headers walked before the packet is given up (no legitimate packet has more)."""

_H = struct.Struct("!H")
_FRAG = struct.Struct("!BBHI")

Addr = ipaddress.IPv6Address


class ParameterProblem(WireError):
    """A header RFC 8200 answers with ICMPv6 Parameter Problem ``code`` at ``pointer``.

    ``report`` is False where the RFC says to discard silently (e.g. option action 11
    towards a multicast destination).
    """

    def __init__(self, field: str, msg: str, *, code: int, pointer: int, report: bool) -> None:
        super().__init__(field, msg)
        self.code = code
        self.pointer = pointer
        self.report = report


class Ipv6Packet(View):
    """A view over an IPv6 packet. :meth:`checked` validates the length fields."""

    __slots__ = ()

    def check_len(self) -> None:
        n = len(self.buf)
        if n < HEADER_LEN:
            raise WireError("length", f"{n} bytes, an IPv6 header is 40")
        pl = self.payload_len
        if HEADER_LEN + pl > n:
            raise WireError("payload_len", f"payload length {pl} exceeds the {n - 40} bytes")

    @property
    def version(self) -> int:
        return self.buf[0] >> 4

    @property
    def traffic_class(self) -> int:
        return ((self.buf[0] & 0x0F) << 4) | (self.buf[1] >> 4)

    @property
    def flow_label(self) -> int:
        return ((self.buf[1] & 0x0F) << 16) | (self.buf[2] << 8) | self.buf[3]

    payload_len = UInt(PAYLOAD_LEN)
    next_header = UInt(NEXT_HEADER, 1)
    hop_limit = UInt(HOP_LIMIT, 1)

    @property
    def src(self) -> Addr:
        return Addr(bytes(self.buf[SRC : SRC + 16]))

    @src.setter
    def src(self, a: Addr) -> None:
        self.buf[SRC : SRC + 16] = a.packed

    @property
    def dst(self) -> Addr:
        return Addr(bytes(self.buf[DST : DST + 16]))

    @dst.setter
    def dst(self, a: Addr) -> None:
        self.buf[DST : DST + 16] = a.packed

    @property
    def payload(self) -> memoryview:
        """Everything after the fixed header: extension headers and the upper layer."""
        return self.buf[HEADER_LEN : HEADER_LEN + self.payload_len]


@dataclass(frozen=True, slots=True)
class Ipv6Repr:
    """The meaning of the fixed IPv6 header."""

    src: Addr
    dst: Addr
    next_header: int
    payload_len: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    @classmethod
    def parse(cls, packet: Ipv6Packet) -> Ipv6Repr:
        packet.check_len()
        if packet.version != 6:
            raise WireError("version", f"version {packet.version} is not 6")
        return cls(
            src=packet.src,
            dst=packet.dst,
            next_header=packet.next_header,
            payload_len=packet.payload_len,
            hop_limit=packet.hop_limit,
            traffic_class=packet.traffic_class,
            flow_label=packet.flow_label,
        )

    def buffer_len(self) -> int:
        return HEADER_LEN

    def emit(self, packet: Ipv6Packet) -> None:
        if not 0 <= self.payload_len <= 0xFFFF:
            raise ValueError(f"payload_len out of range: {self.payload_len}")
        if not (0 <= self.traffic_class <= 0xFF and 0 <= self.flow_label <= 0xFFFFF):
            raise ValueError("traffic_class must fit 8 bits and flow_label 20 bits")
        if not (0 <= self.next_header <= 0xFF and 0 <= self.hop_limit <= 0xFF):
            raise ValueError("next_header and hop_limit must fit in a byte")
        HEADER.pack_into(
            packet.buf,
            0,
            (6 << 28) | (self.traffic_class << 20) | self.flow_label,
            self.payload_len,
            self.next_header,
            self.hop_limit,
            self.src.packed,
            self.dst.packed,
        )


# --- extension headers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FragmentRepr:
    """The fragment header (RFC 8200 4.5): 8 bytes."""

    next_header: int
    offset: int  # in bytes, a multiple of 8
    more: bool
    ident: int

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> FragmentRepr:
        if len(buf) < 8:
            raise WireError("fragment", f"{len(buf)} bytes, a fragment header is 8")
        nh, _res, off_m, ident = _FRAG.unpack_from(buf)
        return cls(nh, off_m & 0xFFF8, bool(off_m & 1), ident)

    def buffer_len(self) -> int:
        return 8

    def emit(self, buf: bytearray | memoryview) -> None:
        if self.offset % 8 or not 0 <= self.offset <= 0xFFF8:
            raise ValueError(f"offset must be a multiple of 8 below 65536: {self.offset}")
        _FRAG.pack_into(buf, 0, self.next_header, 0, self.offset | self.more, self.ident)


@dataclass(frozen=True, slots=True)
class Ipv6Option:
    """One TLV option of a hop-by-hop or destination-options header (Pad1 has no data)."""

    type: int
    data: bytes

    @property
    def action(self) -> int:
        """What to do when the type is unknown (RFC 8200 4.2): the top two bits."""
        return self.type >> 6


def parse_options(buf: bytes | bytearray | memoryview) -> list[tuple[int, Ipv6Option]]:
    """The options in the body of an options header, each with its offset in ``buf``.

    ``buf`` starts at the header itself (the first two bytes are skipped).
    """
    out: list[tuple[int, Ipv6Option]] = []
    i, n = 2, len(buf)
    while i < n:
        t = buf[i]
        if t == OPT_PAD1:
            out.append((i, Ipv6Option(0, b"")))
            i += 1
            continue
        if i + 2 > n or i + 2 + buf[i + 1] > n:
            raise WireError("option_len", f"option {t} at {i} runs past the header")
        ln = buf[i + 1]
        out.append((i, Ipv6Option(t, bytes(buf[i + 2 : i + 2 + ln]))))
        i += 2 + ln
    return out


def options_header(next_header: int, options: list[Ipv6Option]) -> bytes:
    """A hop-by-hop or destination-options header holding ``options``, padded to 8."""
    body = bytearray()
    for o in options:
        if o.type == OPT_PAD1:
            body.append(0)
        else:
            body += bytes((o.type, len(o.data))) + o.data
    pad = (-(2 + len(body))) % 8
    if pad == 1:
        body.append(0)
    elif pad:
        body += bytes((OPT_PADN, pad - 2)) + bytes(pad - 2)
    total = 2 + len(body)
    return bytes((next_header, total // 8 - 1)) + bytes(body)


@dataclass(frozen=True, slots=True)
class HeaderChain:
    """Where :func:`walk_chain` stopped: header ``next_header`` starts at ``offset``;
    ``nh_pos`` is the byte that named it; ``router_alert`` if a hop-by-hop header held one."""

    next_header: int
    offset: int
    nh_pos: int
    router_alert: bool = False


_CONSUMED = frozenset((HOP_BY_HOP, ROUTING, DEST_OPTIONS))


def walk_chain(
    pkt: bytes | bytearray | memoryview,
    *,
    multicast_dst: bool,
    next_header: int | None = None,
    offset: int = HEADER_LEN,
    nh_pos: int = NEXT_HEADER,
    max_headers: int = MAX_EXT_HEADERS,
) -> HeaderChain:
    """Walk the hop-by-hop, routing and destination-options headers of ``pkt`` (a whole
    packet, fixed header first), from ``offset`` (to resume after a fragment header).

    Raises :class:`WireError` for a truncated chain or one longer than ``max_headers``,
    and :class:`ParameterProblem` where RFC 8200 asks for an ICMPv6 error.
    """
    n = len(pkt)
    nh = pkt[NEXT_HEADER] if next_header is None else next_header
    alert = False
    for _ in range(max_headers + 1):
        if nh not in _CONSUMED:
            return HeaderChain(nh, offset, nh_pos, alert)
        if nh == HOP_BY_HOP and offset != HEADER_LEN:
            raise ParameterProblem(
                "next_header",
                "a hop-by-hop header after the first position",
                code=UNRECOGNIZED_NEXT_HEADER,
                pointer=nh_pos,
                report=True,
            )
        if offset + 8 > n:
            raise WireError("ext_len", f"extension header {nh} at {offset} is truncated")
        ln = (pkt[offset + 1] + 1) * 8
        if offset + ln > n:
            raise WireError("ext_len", f"extension header {nh} at {offset} runs past the packet")
        hdr = memoryview(pkt)[offset : offset + ln]
        if nh == ROUTING:
            if hdr[3] != 0:  # segments left: a host forwards nothing, so no type is known
                raise ParameterProblem(
                    "routing_type",
                    f"routing type {hdr[2]} with {hdr[3]} segments left",
                    code=ERRONEOUS_FIELD,
                    pointer=offset + 2,
                    report=True,
                )
        else:
            for pos, opt in parse_options(hdr):
                if opt.type in (OPT_PAD1, OPT_PADN):
                    continue
                if nh == HOP_BY_HOP and opt.type == OPT_ROUTER_ALERT:
                    alert = True
                    continue
                act = opt.action
                if act == 0:
                    continue
                raise ParameterProblem(
                    "option",
                    f"unrecognised option {opt.type}",
                    code=UNRECOGNIZED_OPTION,
                    pointer=offset + pos,
                    report=act == 2 or (act == 3 and not multicast_dst),
                )
        nh_pos = offset
        nh = hdr[0]
        offset += ln
    raise WireError("next_header", f"more than {max_headers} extension headers")


def solicited_node(addr: Addr) -> Addr:
    """The solicited-node multicast group of ``addr`` (RFC 4291 2.7.1)."""
    return Addr(b"\xff\x02" + bytes(9) + b"\x01\xff" + addr.packed[13:])


def multicast_mac(addr: bytes | bytearray | memoryview) -> bytes:
    """The Ethernet address of IPv6 multicast group ``addr`` (RFC 2464 7): 33:33 + 4 bytes."""
    return b"\x33\x33" + bytes(addr[12:16])


def interface_id(mac: bytes) -> bytes:
    """The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A)."""
    if len(mac) != 6:
        raise ValueError(f"mac: need 6 bytes, got {len(mac)}")
    return bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))


def link_local(mac: bytes) -> Addr:
    """The link-local address formed from a MAC: fe80::/64 + EUI-64."""
    return Addr(b"\xfe\x80" + bytes(6) + interface_id(mac))
