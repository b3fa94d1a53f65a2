"""IPV6: the IPv6 layer over an ETHIF, with neighbour discovery, SLAAC, ICMPv6, MLDv2,
fragmentation and reassembly.

Why this shape: as for :class:`~miragekit.net.IPv4`, the per-frame work is a synchronous
path over ``memoryview`` slices (:meth:`IPv6.receive`, :meth:`IPv6.send`) with protocol
handlers registered through :meth:`IPv6.set_handler`; packets without extension headers
skip the header walk. Neighbour discovery, address configuration and reassembly are
sans-I/O objects fed with ``now``; their deadlines share one loop timer. Addresses are
16-byte ``bytes`` inside, :class:`ipaddress.IPv6Address` at the API.

On a device with checksum and IPv6 segmentation offload (:class:`~miragekit.link.OffloadLink`,
``OFFLOAD_TSO6``) the rules are IPv4's: received packets may exceed the MTU and carry
flags that let the transport skip its checksum, and TCP sends through
:meth:`IPv6.send_offload`, which never fragments: a packet above the path MTU leaves
whole and the device cuts it into MSS-sized segments.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Self

from ..link import CSUM_NEEDED, OFFLOAD_TSO6, OffloadLink, offload_link
from ..result import Error, IPError, Ok
from ..v1 import Buffer
from ..v1 import IPv6 as IPv6Protocol
from ..wire import WireError, checksum_add, checksum_finish, ones_sum, pseudo_sum_v6
from ..wire.icmpv6 import (
    ALL_MLDV2_ROUTERS,
    CHANGE_TO_EXCLUDE,
    CHANGE_TO_INCLUDE,
    MODE_IS_EXCLUDE,
    Icmpv6Packet,
    Icmpv6Repr,
    Icmpv6Type,
    McastRecord,
    MldQuery,
    Mldv2Report,
    Unreachable,
    parse_ndp,
)
from ..wire.ipv6 import (
    DEST_OPTIONS,
    FRAGMENT,
    HEADER,
    HOP_BY_HOP,
    NO_NEXT_HEADER,
    OPT_ROUTER_ALERT,
    ROUTING,
    UNRECOGNIZED_NEXT_HEADER,
    UNRECOGNIZED_OPTION,
    FragmentRepr,
    HeaderChain,
    Ipv6Option,
    Ipv6Packet,
    Ipv6Repr,
    ParameterProblem,
    link_local,
    multicast_mac,
    options_header,
    solicited_node,
    walk_chain,
)
from ._ethif import Ethif
from ._fragment import Reassembler, ReassemblyConfig, finish_ipv6
from ._iplayer import AddressCache, IPCommon
from ._ipv4 import ErrorHandler, _loop_rng
from ._ndp import ALL_NODES, UNSPECIFIED, Ndp, NdpConfig
from ._ratelimit import TokenBucket
from ._timer import Wakeup

Addr = ipaddress.IPv6Address
Handler = Callable[[Addr, Addr, memoryview, bool], None]
"""A synchronous protocol handler: ``handler(src, dst, payload, verified)``, as for IPv4."""
"""A synchronous protocol handler: ``handler(src, dst, payload)``; the payload view is
valid only during the call."""

PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMPV6: Final = 58
_PROTO: Final = {"TCP": PROTO_TCP, "UDP": PROTO_UDP}
_FAST: Final = frozenset((PROTO_TCP, PROTO_UDP, PROTO_ICMPV6))
ETH_HLEN: Final = 14
HLEN: Final = ETH_HLEN + 40
LOOPBACK: Final = bytes(15) + b"\x01"  # ::1
MIN_MTU: Final = 1280
_NDP_TYPES: Final = frozenset(range(133, 138))
MLD_REPORT_INTERVAL: Final = 1.0  # RFC 3810 9.11, the Unsolicited Report Interval
PMTU_TIMEOUT: Final = 600.0  # RFC 8201 5.3: try a larger MTU again after 10 minutes
_UPPER_MIN: Final = {PROTO_TCP: 20, PROTO_UDP: 8, PROTO_ICMPV6: 4}  # header bytes (RFC 7112)
_CHAINED: Final = frozenset((HOP_BY_HOP, ROUTING, DEST_OPTIONS))


def _holds_upper_header(nh: int, data: memoryview) -> bool:
    """Does a first fragment's ``data`` hold its whole header chain up to and including
    the upper-layer header (RFC 7112 5)? Extension headers are walked (at most 8)."""
    off = 0
    n = len(data)
    for _ in range(8):
        if nh not in _CHAINED:
            return off + _UPPER_MIN.get(nh, 0) <= n
        if off + 2 > n:
            return False
        nh, off = data[off], off + (data[off + 1] + 1) * 8
    return True  # a longer chain is the chain walk's to judge


REASSEMBLY_TIMEOUT: Final = 60.0  # RFC 8200 4.5 (IPv4 keeps Linux's 30 s)


@dataclass(slots=True)
class IPv6Counters:
    rx_packets: int = 0
    rx_short: int = 0
    rx_bad_version: int = 0
    rx_bad_length: int = 0  # payload length beyond the frame
    rx_bad_headers: int = 0  # an extension-header chain malformed or too long
    rx_param_problem: int = 0  # a header RFC 8200 answers with Parameter Problem
    rx_not_for_us: int = 0
    rx_tentative: int = 0  # to an address still under DAD (RFC 4862 5.4)
    rx_martian: int = 0  # a multicast source
    rx_tcp_multicast: int = 0  # TCP to a multicast group (dropped)
    rx_fragments: int = 0
    rx_bad_fragments: int = 0  # length not a multiple of 8, or a first one too short
    rx_no_next_header: int = 0
    rx_delivered: int = 0
    rx_no_protocol: int = 0
    tx_packets: int = 0
    tx_fragments: int = 0
    tx_no_route: int = 0
    tx_no_source: int = 0
    tx_loopback: int = 0  # to ::1 or our own address: delivered here, never sent
    tx_offload: int = 0  # TCP packets whose checksum (and segmentation) the device does
    tx_offload_unresolved: int = 0  # TSO packets cut to one segment while NDP resolves


@dataclass(slots=True)
class Icmpv6Counters:
    rx_messages: int = 0
    rx_malformed: int = 0  # short, bad checksum, or a malformed NDP/MLD message
    rx_echo_requests: int = 0
    rx_mld: int = 0
    rx_other: int = 0  # handed on (errors, replies, unknown types)
    tx_echo_replies: int = 0
    tx_errors: int = 0
    errors_rate_limited: int = 0
    tx_mld_reports: int = 0


class IPv6(IPCommon[ipaddress.IPv6Address, bytes]):
    """IPv6 on one Ethernet interface: a link-local address from the MAC, addresses from
    router advertisements (SLAAC) and from :meth:`set_ip`, each checked by DAD."""

    port_unreachable: Final = int(Unreachable.PORT_UNREACHABLE)
    """The ICMPv6 code UDP passes to :meth:`reject_current` for a closed port."""
    _ICMP = PROTO_ICMPV6
    _ADDRS = (22, 20, 16)
    _ECN_SHIFT = 4

    def __init__(
        self,
        ethif: Ethif,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        rng: random.Random | None = None,
        ndp: NdpConfig | None = None,
        reassembly: ReassemblyConfig | None = None,
        error_rate: float = 100.0,
        error_burst: int = 20,
    ) -> None:
        self._ethif = ethif
        self._loop = loop or asyncio.get_running_loop()
        self.rng = rng or _loop_rng(self._loop)
        self._mac = ethif.mac().packed
        self.link_mtu = ethif.mtu
        self.counters = IPv6Counters()
        self.icmp_counters = Icmpv6Counters()
        self._wakeup = Wakeup(self._loop, self._on_timer)
        self._rx_addrs: dict[bytes, bool] = {}  # ours: tentative?
        self._groups: set[bytes] = {ALL_NODES}
        self._joined: set[bytes] = set()
        self.ndp = Ndp(
            self._mac,
            ethif.sendv,
            wake=self._wakeup.at,
            config=ndp,
            rng=self.rng,
            on_addresses=self._addresses_changed,
        )
        self._neighbours = self.ndp
        self.ndp.max_mtu = self.link_mtu
        self.reassembler = Reassembler(
            wake=self._wakeup.at,
            config=reassembly or ReassemblyConfig(timeout=REASSEMBLY_TIMEOUT),
            max_len=65535 + 40,
            finish=finish_ipv6,
            on_timeout=self._reassembly_timeout,
        )
        self.pmtu: dict[bytes, tuple[int, float]] = {}  # destination: (path MTU, expiry)
        self._errors = TokenBucket(error_rate, error_burst)
        self._netmasks: list[ipaddress.IPv6Network] = []
        self._ident = self.rng.getrandbits(32)
        self._handlers: dict[int, Handler] = {}
        self._error_handlers: dict[int, ErrorHandler] = {}
        self._icmp_handler: Handler | None = None
        self._addr = AddressCache(Addr)
        self._rx_packet: memoryview | None = None
        self._mld_again: list[McastRecord] = []
        self._mld_again_at = math.inf
        self.offload: OffloadLink | None = offload_link(ethif.link, OFFLOAD_TSO6)
        """The device's checksum and IPv6 segmentation offload, when it has them."""

    @classmethod
    async def connect(
        cls,
        id: Ethif,
        *,
        ips: Sequence[ipaddress.IPv6Interface] = (),
        gateways: Sequence[Addr] = (),
        rng: random.Random | None = None,
        ndp: NdpConfig | None = None,
    ) -> Ok[Self] | Error[IPError]:
        """The layer on ``id``: starts DAD for the link-local address, then for ``ips``."""
        self = cls(id, rng=rng, ndp=ndp)
        self.start()
        for iface in ips:
            await self.set_ip_netmask(iface.network)
            await self.set_ip(iface.ip)
        if gateways:
            await self.set_ip_gateways(list(gateways))
        return Ok(self)

    def start(self) -> None:
        """Configure the link-local address (DAD, then router solicitations)."""
        self.ndp.add_address(link_local(self._mac).packed, 64, self._loop.time())

    def id(self) -> Ethif:
        return self._ethif

    async def disconnect(self) -> None:
        self._wakeup.cancel()

    @property
    def mtu(self) -> int:
        """The link MTU (an RA's MTU option may lower it)."""
        m = self.ndp.mtu
        return self.link_mtu if m is None else max(MIN_MTU, min(m, self.link_mtu))

    @property
    def tso_max(self) -> int:
        """The largest TCP payload one packet may carry for TSO (0: no offload): the
        payload length field (16 bits) counts the TCP header (up to 60 bytes) too."""
        return 65535 - 60 if self.offload is not None else 0

    def path_mtu(self, dst: Addr) -> int:
        """The MTU towards ``dst``: the link's, or less after a Packet Too Big (RFC 8201)."""
        return self._path_mtu(dst.packed, self._loop.time())

    def _path_mtu(self, dst: bytes, now: float) -> int:
        """:meth:`path_mtu` of a packed address; an expired entry is dropped."""
        mtu = self.mtu
        if self.pmtu:
            p = self.pmtu.get(dst)
            if p is not None:
                if p[1] > now:
                    return min(mtu, p[0])
                del self.pmtu[dst]
        return mtu

    # --- configuration ---------------------------------------------------------------------

    async def set_ip(self, ip: Addr) -> None:
        """Add ``ip`` (it is usable once DAD confirms it)."""
        plen = next((n.prefixlen for n in self._netmasks if ip in n), 128)
        self.ndp.add_address(ip.packed, plen, self._loop.time())

    def get_ip(self) -> list[Addr]:
        """Our confirmed addresses, the link-local one first."""
        out = [self._addr(a.addr) for a in self.ndp.addresses.values() if not a.tentative]
        return sorted(out, key=lambda a: not a.is_link_local)

    def addresses(self) -> dict[Addr, str]:
        """Every address with its state: tentative, preferred or deprecated."""
        now = self._loop.time()
        return {
            Addr(a.addr): "tentative"
            if a.tentative
            else ("deprecated" if a.deprecated(now) else "preferred")
            for a in self.ndp.addresses.values()
        }

    async def set_ip_netmask(self, prefix: ipaddress.IPv6Network) -> None:
        """Declare ``prefix`` on-link."""
        if prefix not in self._netmasks:
            self._netmasks.append(prefix)
        self.ndp.prefixes[prefix] = math.inf

    def get_ip_netmasks(self) -> list[ipaddress.IPv6Network]:
        now = self._loop.time()
        learnt = [p for p, exp in self.ndp.prefixes.items() if exp > now]
        return [*self._netmasks, *(p for p in learnt if p not in self._netmasks)]

    async def set_ip_gateways(self, gateways: list[Addr]) -> None:
        self.ndp.static_routers = [g.packed for g in gateways]

    def get_ip_gateways(self) -> list[Addr]:
        now = self._loop.time()
        learnt = [r for r, exp in self.ndp.routers.items() if exp > now]
        out = [*self.ndp.static_routers, *(r for r in learnt if r not in self.ndp.static_routers)]
        return [Addr(r) for r in out]

    def get_source(self, *, dst: Addr) -> Addr:
        if dst.packed == LOOPBACK:
            return self._addr(LOOPBACK)
        return self._addr(self.ndp.select_source(dst.packed, self._loop.time()))

    def set_handler(self, proto: int, handler: Handler | None) -> None:
        """Register the synchronous input handler of next header ``proto`` (6, 17).

        For ``proto`` 58 the handler gets the ICMPv6 messages not handled here (errors,
        echo replies, unknown types).
        """
        if proto == PROTO_ICMPV6:
            self._icmp_handler = handler
        elif handler is None:
            self._handlers.pop(proto, None)
        else:
            self._handlers[proto] = handler

    def set_error_handler(self, proto: int, handler: ErrorHandler | None) -> None:
        """Register who hears of ICMPv6 destination-unreachable errors about the packets
        of ``proto`` we sent (UDP: a connected socket's "connection refused"); the
        handler gets ICMPv6's type and code, and never an MTU (see packet too big)."""
        if handler is None:
            self._error_handlers.pop(proto, None)
        else:
            self._error_handlers[proto] = handler

    def join(self, group: Addr) -> None:
        """Listen to multicast ``group`` (and report it with MLDv2)."""
        if not group.is_multicast:
            raise ValueError(f"group: {group} is not a multicast address")
        self._joined.add(group.packed)
        self._addresses_changed()

    def leave(self, group: Addr) -> None:
        self._joined.discard(group.packed)
        self._addresses_changed()

    def groups(self) -> set[Addr]:
        return {Addr(g) for g in self._groups}

    # --- multicast listener (RFC 3810) -------------------------------------------------------

    def _addresses_changed(self) -> None:
        rx = {a.addr: a.tentative for a in self.ndp.addresses.values()}
        groups = {ALL_NODES, *(solicited_node(Addr(a)).packed for a in rx), *self._joined}
        new, gone = groups - self._groups, self._groups - groups
        rx[LOOPBACK] = False  # ::1 is ours too, delivered inside (no group, no DAD)
        self._rx_addrs = rx
        self._groups = groups
        records = [McastRecord(CHANGE_TO_EXCLUDE, Addr(g)) for g in sorted(new)]
        records += [McastRecord(CHANGE_TO_INCLUDE, Addr(g)) for g in sorted(gone)]
        records = [r for r in records if r.group.packed != ALL_NODES]
        if records:
            self._send_mld(records)
            # Sent once more a little later, in case the first was lost (RFC 3810 6.1).
            again = {r.group: r for r in self._mld_again}
            again.update((r.group, r) for r in records)
            self._mld_again = list(again.values())
            self._mld_again_at = self._loop.time() + self.rng.uniform(0.0, MLD_REPORT_INTERVAL)
            self._wakeup.at(self._mld_again_at)

    def _send_mld(self, records: list[McastRecord]) -> None:
        # The all-nodes group is never reported (RFC 3810 6).
        records = [r for r in records if r.group.packed != ALL_NODES]
        if not records:
            return
        src = self.ndp.link_local() or UNSPECIFIED
        dst = ALL_MLDV2_ROUTERS
        msg = Mldv2Report(tuple(records)).to_icmp()
        hbh = options_header(PROTO_ICMPV6, [Ipv6Option(OPT_ROUTER_ALERT, b"\0\0")])
        n = msg.buffer_len()
        buf = bytearray(HLEN + len(hbh) + n)
        buf[0:6] = multicast_mac(dst.packed)
        buf[6:12] = self._mac
        buf[12:14] = b"\x86\xdd"
        view = memoryview(buf)
        Ipv6Repr(Addr(src), dst, 0, len(hbh) + n, 1).emit(Ipv6Packet(view[ETH_HLEN:]))
        buf[HLEN : HLEN + len(hbh)] = hbh
        msg.emit(Icmpv6Packet(view[HLEN + len(hbh) :]), Addr(src), dst)
        self.icmp_counters.tx_mld_reports += 1
        self._ethif.sendv((buf,))

    # --- input -----------------------------------------------------------------------------

    def _chain(
        self,
        pkt: memoryview,
        mcast: bool,
        src: bytes,
        dst: bytes,
        nh: int | None = None,
        off: int = 40,
        nh_pos: int = 6,
    ) -> HeaderChain | None:
        try:
            return walk_chain(pkt, multicast_dst=mcast, next_header=nh, offset=off, nh_pos=nh_pos)
        except ParameterProblem as e:
            self.counters.rx_param_problem += 1
            if e.report:  # to a multicast packet only about an option (RFC 4443 2.4(e))
                multicast_ok = e.code == UNRECOGNIZED_OPTION
                self._error(
                    Icmpv6Type.PARAM_PROBLEM, e.code, pkt, src, dst, e.pointer, multicast_ok
                )
            return None
        except WireError:
            self.counters.rx_bad_headers += 1
            return None

    def _parse_packet(
        self, pkt: memoryview
    ) -> tuple[int, bytes, bytes, memoryview, memoryview] | None:
        r = self._parse(pkt)
        return None if r is None else r[:5]

    def _parse(
        self, pkt: memoryview
    ) -> tuple[int, bytes, bytes, memoryview, memoryview, int] | None:
        """Validate one packet: (next header, src, dst, upper-layer payload, whole packet,
        position of the next-header byte), or None (counted, answered where due)."""
        c = self.counters
        c.rx_packets += 1
        n = len(pkt)
        if n < 40:
            c.rx_short += 1
            return None
        if pkt[0] >> 4 != 6:
            c.rx_bad_version += 1
            return None
        tl = 40 + ((pkt[4] << 8) | pkt[5])
        if tl > n:
            c.rx_bad_length += 1
            return None
        if tl < n:
            pkt = pkt[:tl]  # Ethernet padding
        dst = bytes(pkt[24:40])
        tentative = self._rx_addrs.get(dst)
        mcast = tentative is None
        if mcast and dst not in self._groups:
            c.rx_not_for_us += 1
            return None
        src = bytes(pkt[8:24])
        if src[0] == 0xFF:
            c.rx_martian += 1
            return None
        nh, off, nh_pos = pkt[6], 40, 6
        if nh not in _FAST:
            ch = self._chain(pkt, mcast, src, dst)
            if ch is None:
                return None
            nh, off, nh_pos = ch.next_header, ch.offset, ch.nh_pos
            if nh == FRAGMENT:
                r = self._fragment(pkt, mcast, src, dst, off, nh_pos)
                if r is None:
                    return None
                pkt, nh, off, nh_pos = r
            if nh == NO_NEXT_HEADER:
                c.rx_no_next_header += 1
                return None
        if tentative and not (nh == PROTO_ICMPV6 and off < len(pkt) and pkt[off] in (135, 136)):
            c.rx_tentative += 1
            return None
        if nh == PROTO_TCP and mcast:  # never a connection to a group (RFC 1122 4.2.3.10)
            c.rx_tcp_multicast += 1
            return None
        c.rx_delivered += 1
        return nh, src, dst, pkt[off:], pkt, nh_pos

    def _fragment(
        self, pkt: memoryview, mcast: bool, src: bytes, dst: bytes, off: int, nh_pos: int
    ) -> tuple[memoryview, int, int, int] | None:
        """A fragment header at ``off``: the whole packet once reassembled (or this one,
        for an atomic fragment), with where its next header is."""
        c = self.counters
        if off + 8 > len(pkt):
            c.rx_bad_headers += 1
            return None
        f = FragmentRepr.parse(pkt[off : off + 8])
        if f.offset == 0 and not f.more:  # an atomic fragment (RFC 6946)
            ch = self._chain(pkt, mcast, src, dst, f.next_header, off + 8, off)
        else:
            c.rx_fragments += 1
            n = len(pkt) - off - 8
            p = Icmpv6Type.PARAM_PROBLEM
            if f.more and n % 8:
                # RFC 8200 4.5: a non-last fragment not a multiple of 8 long; the pointer
                # is the Payload Length field.
                c.rx_bad_fragments += 1
                self._error(p, 0, pkt, src, dst, 4, False)
                return None
            if f.offset == 0 and not _holds_upper_header(f.next_header, pkt[off + 8 :]):
                # RFC 7112 5: the first fragment must hold the upper-layer header.
                c.rx_bad_fragments += 1
                self._error(p, 3, pkt, src, dst, 0, False)
                return None
            hdr = bytearray(pkt[:off])
            hdr[nh_pos] = f.next_header
            whole = self.reassembler.add(
                (src, dst, 0, f.ident),
                memoryview(hdr),
                f.offset,
                f.more,
                pkt[off + 8 :],
                self._loop.time(),
            )
            if whole is None:
                return None
            pkt = memoryview(whole)
            ch = self._chain(pkt, mcast, src, dst, f.next_header, off, nh_pos)
        if ch is None:
            return None
        if ch.next_header == FRAGMENT:  # nested fragment headers: nothing legitimate
            c.rx_bad_headers += 1
            return None
        return pkt, ch.next_header, ch.offset, ch.nh_pos

    def receive(self, packet: memoryview, flags: int = 0) -> None:
        """The synchronous input path: one IPv6 packet (the Ethernet payload).

        ``flags`` (``CSUM_NEEDED``/``CSUM_VALID`` from an :class:`OffloadLink`) say the
        device vouches for the transport checksum, as for IPv4: the transport skips it
        (the handler's ``verified``). Such a packet may exceed the MTU.
        """
        r = self._parse(packet)
        if r is None:
            return
        proto, src, dst, payload, pkt, nh_pos = r
        if proto == PROTO_ICMPV6:
            if not self._icmp_input(src, dst, payload, pkt) and self._icmp_handler is not None:
                self._icmp_handler(self._addr(src), self._addr(dst), payload, False)
            return
        h = self._handlers.get(proto)
        if h is None:
            self._no_protocol(pkt, src, dst, nh_pos)
            return
        self._rx_packet = pkt
        # A reassembled packet lives in a new buffer: the device's flags are not about it.
        verified = flags != 0 and pkt.obj is packet.obj
        try:
            h(self._addr(src), self._addr(dst), payload, verified)
        finally:
            self._rx_packet = None

    def _no_protocol(self, pkt: memoryview, src: bytes, dst: bytes, nh_pos: int) -> None:
        self.counters.rx_no_protocol += 1
        p = Icmpv6Type.PARAM_PROBLEM
        self._error(p, UNRECOGNIZED_NEXT_HEADER, pkt, src, dst, nh_pos, False)

    def _icmp_input(self, src: bytes, dst: bytes, msg: memoryview, pkt: memoryview) -> bool:
        """Echo, NDP and MLD; True when the message was used up here (or malformed)."""
        ic = self.icmp_counters
        ic.rx_messages += 1
        n = len(msg)
        if n < 8 or checksum_add(pseudo_sum_v6(src, dst, 58, n), ones_sum(msg)) != 0xFFFF:
            ic.rx_malformed += 1
            return True
        t = msg[0]
        if t == Icmpv6Type.ECHO_REQUEST:
            ic.rx_echo_requests += 1
            self._echo_reply(src, dst, msg)
            return True
        if t in _NDP_TYPES:
            rest = int.from_bytes(msg[4:8], "big")
            try:
                m = parse_ndp(Icmpv6Repr(t, msg[1], rest, bytes(msg[8:])))
            except WireError:
                ic.rx_malformed += 1
                return True
            self.ndp.input(src, dst, pkt[7], m, self._loop.time())
            return True
        if t in (130, 131, 132, 143):
            ic.rx_mld += 1
            # A query counts only from a link-local router with hop limit 1 (RFC 3810 5.1.14).
            if t == Icmpv6Type.MLD_QUERY and src[:2] == b"\xfe\x80" and pkt[7] == 1:
                self._mld_query(msg)
            return True
        if t == Icmpv6Type.PACKET_TOO_BIG and n >= 48:
            self._packet_too_big(msg)
        elif t == Icmpv6Type.DEST_UNREACHABLE and n >= 56:
            self._dest_unreachable(msg)
        ic.rx_other += 1
        return False

    def _dest_unreachable(self, msg: memoryview) -> None:
        """Tell the protocol of a packet we sent (quoted without extension headers, from
        one of our addresses or ::1) that its destination is unreachable."""
        q = msg[8:]
        local = bytes(q[8:24])
        if q[0] >> 4 != 6 or not (local == LOOPBACK or self.ndp.is_ours(local)):
            return
        h = self._error_handlers.get(q[6])
        if h is not None:
            h(msg[0], msg[1], local, bytes(q[24:40]), q[40:], None)

    def _packet_too_big(self, msg: memoryview) -> None:
        """Lower the path MTU towards the quoted packet's destination (RFC 8201 4);
        never below 1280, and only for packets we sent."""
        if not self.ndp.is_ours(bytes(msg[16:32])):
            return
        mtu = max(MIN_MTU, int.from_bytes(msg[4:8], "big"))
        if mtu >= self.mtu:
            return
        pmtu = self.pmtu
        if len(pmtu) >= 1024:
            del pmtu[next(iter(pmtu))]
        pmtu[bytes(msg[32:48])] = (mtu, self._loop.time() + PMTU_TIMEOUT)

    def _reassembly_timeout(
        self, key: tuple[bytes, bytes, int, int], header: bytes, first: bytes
    ) -> None:
        """RFC 8200 4.5: time exceeded (code 1) to the source of a first fragment. The
        quote is the header chain as reassembly keeps it (without the fragment header)."""
        pkt = memoryview(header + first)
        self._error(Icmpv6Type.TIME_EXCEEDED, 1, pkt, key[0], key[1], 0, False)

    def _echo_reply(self, src: bytes, dst: bytes, msg: memoryview) -> None:
        if src == UNSPECIFIED:
            return
        now = self._loop.time()
        me = dst if dst in self._rx_addrs else self.ndp.select_source(src, now)
        if me == UNSPECIFIED:
            return
        reply = bytearray(msg)
        reply[0] = Icmpv6Type.ECHO_REPLY
        reply[2:4] = b"\0\0"
        s = checksum_add(pseudo_sum_v6(me, src, 58, len(reply)), ones_sum(reply))
        reply[2:4] = checksum_finish(s).to_bytes(2, "big")
        self.icmp_counters.tx_echo_replies += 1
        self._send_from(me, src, PROTO_ICMPV6, reply)

    def _mld_query(self, msg: memoryview) -> None:
        try:
            q = MldQuery.parse(
                Icmpv6Repr(130, msg[1], int.from_bytes(msg[4:8], "big"), bytes(msg[8:]))
            )
        except WireError:
            self.icmp_counters.rx_malformed += 1
            return
        groups = sorted(self._groups) if q.group.packed == UNSPECIFIED else [q.group.packed]
        self._send_mld([McastRecord(MODE_IS_EXCLUDE, Addr(g)) for g in groups if g in self._groups])

    def _error(
        self,
        msg_type: int,
        code: int,
        pkt: memoryview,
        src: bytes,
        dst: bytes,
        rest: int,
        to_multicast: bool,
    ) -> None:
        """Send an ICMPv6 error about ``pkt`` (RFC 4443 2.4): never about an error, to a
        source that cannot be answered, or (unless allowed) about a multicast packet."""
        if src == UNSPECIFIED or src[0] == 0xFF or (dst[0] == 0xFF and not to_multicast):
            return
        if pkt[6] == PROTO_ICMPV6 and len(pkt) > 40 and pkt[40] < 128:
            return
        ic = self.icmp_counters
        now = self._loop.time()
        if not self._errors.allow(now):
            ic.errors_rate_limited += 1
            return
        me = dst if self.ndp.is_ours(dst) else self.ndp.select_source(src, now)
        if me == UNSPECIFIED:
            return
        m = Icmpv6Repr.error(msg_type, code, bytes(pkt), rest=rest)
        buf = bytearray(m.buffer_len())
        m.emit(Icmpv6Packet(buf), Addr(me), Addr(src))
        ic.tx_errors += 1
        self._send_from(me, src, PROTO_ICMPV6, buf)

    def reject_current(self, code: int) -> None:
        """Send ICMPv6 destination-unreachable ``code`` about the packet being delivered
        (e.g. 4, port unreachable, from UDP); does nothing outside a delivery."""
        pkt = self._rx_packet
        if pkt is None:
            return
        src, dst = bytes(pkt[8:24]), bytes(pkt[24:40])
        self._error(Icmpv6Type.DEST_UNREACHABLE, code, pkt, src, dst, 0, False)

    # --- output ----------------------------------------------------------------------------

    def _allocate(self, src: bytes, dst: bytes, proto: int, size: int = 0) -> memoryview:
        buf = bytearray(size or HLEN + self.mtu)
        buf[6:12] = self._mac
        buf[12:14] = b"\x86\xdd"
        HEADER.pack_into(buf, ETH_HLEN, 6 << 28, 0, proto, self.ndp.hop_limit, src, dst)
        return memoryview(buf)

    def allocate_header(self, dst: bytes, proto: int, size: int, src: bytes) -> memoryview:
        """A frame of ``size`` bytes with the Ethernet and IPv6 headers filled from packed
        ``src`` to ``dst`` (payload length zero): the transport header goes at 54."""
        return self._allocate(src, dst, proto, size)

    def allocate_frame(self, *, dst: Addr, proto: Literal["TCP", "UDP"]) -> tuple[memoryview, int]:
        if proto not in _PROTO:
            raise ValueError(f"proto must be 'TCP' or 'UDP', got {proto!r}")
        d = dst.packed
        src = LOOPBACK if d == LOOPBACK else self.ndp.select_source(d, self._loop.time())
        return self._allocate(src, d, _PROTO[proto]), HLEN

    def _send_from(self, src: bytes, dst: bytes, proto: int, payload: Buffer) -> None:
        self.send(self._allocate(src, dst, proto)[:HLEN], (payload,))

    def send(self, frame: Buffer, bufs: Sequence[Buffer]) -> None:
        """The synchronous output path: ``frame`` from :meth:`allocate_frame` (its headers,
        possibly with transport bytes after the IPv6 header), then ``bufs``."""
        f = memoryview(frame)
        c = self.counters
        pl = len(f) - HLEN
        for b in bufs:
            pl += len(b)
        dst = bytes(f[38:54])
        now = self._loop.time()
        if f[22:38] == UNSPECIFIED:
            c.tx_no_source += 1
            return
        if self._rx_addrs.get(dst) is False:
            self._loopback(f, pl, bufs, 0)
            return
        if dst[0] == 0xFF:
            hop, mac = dst, multicast_mac(dst)
        else:
            nh = self.ndp.next_hop(dst, now)
            if nh is None:
                c.tx_no_route += 1
                return
            hop, mac = nh, b""
        mtu = self._path_mtu(dst, now)
        if 40 + pl <= mtu:
            f[18:20] = pl.to_bytes(2, "big")
            c.tx_packets += 1
            self._emit([f, *bufs], hop, mac)
            return
        payload = memoryview(b"".join([f[HLEN:], *bufs]))
        total = len(payload)
        chunk = (mtu - 48) & ~7
        self._ident = ident = (self._ident + 1) & 0xFFFFFFFF
        nxt = f[20]
        for off in range(0, total, chunk):
            piece = payload[off : off + chunk]
            hdr = bytearray(HLEN + 8)
            hdr[:HLEN] = f[:HLEN]
            hdr[20] = FRAGMENT
            hdr[18:20] = (8 + len(piece)).to_bytes(2, "big")
            FragmentRepr(nxt, off, off + chunk < total, ident).emit(memoryview(hdr)[HLEN:])
            c.tx_fragments += 1
            self._emit([hdr, piece], hop, mac)
        c.tx_packets += 1

    def _loopback(self, f: memoryview, pl: int, bufs: Sequence[Buffer], flags: int) -> None:
        """To ::1 or one of our own addresses: delivered here on the next turn of the
        loop, never on the wire (RFC 4291 2.5.3)."""
        f[18:20] = pl.to_bytes(2, "big")
        c = self.counters
        c.tx_packets += 1
        c.tx_loopback += 1
        packet = memoryview(b"".join([f, *bufs]))[ETH_HLEN:]
        self._loop.call_soon(self.receive, packet, flags)

    def send_offload(self, frame: memoryview, payload: Buffer, gso_size: int) -> None:
        """Send a TCP packet whose checksum field holds the pseudo-header sum only: the
        device completes it. ``frame`` holds the headers (Ethernet, IPv6 from
        :meth:`allocate_header`, TCP), ``payload`` the data. Above the path MTU the device
        cuts it into segments of ``gso_size`` payload bytes (TSO); it is never fragmented
        (as :meth:`IPv4.send_offload <miragekit.net.IPv4.send_offload>`)."""
        link = self.offload
        if link is None:
            raise ValueError("send_offload: the device offers no IPv6 offload")
        f = frame
        c = self.counters
        pl = len(f) - HLEN + len(payload)
        if pl > 65535:
            raise ValueError(f"payload: a {pl}-byte payload exceeds 65535")
        if f[22:38] == UNSPECIFIED:
            c.tx_no_source += 1
            return
        dst = bytes(f[38:54])
        if self._rx_addrs.get(dst) is False:
            # The transport checksum is left unfinished, as the device would get it.
            self._loopback(f, pl, (payload,), CSUM_NEEDED)
            return
        now = self._loop.time()
        hop = self.ndp.next_hop(dst, now)
        if hop is None:
            c.tx_no_route += 1
            return
        mtu = self._path_mtu(dst, now)
        if 40 + pl <= mtu:
            gso_size = 0
        elif gso_size <= 0:
            raise ValueError(f"gso_size: {gso_size} for a {pl}-byte payload above the MTU")
        else:  # segments that fit the path MTU (TCP's MSS follows it a little later)
            gso_size = min(gso_size, mtu - (len(f) - ETH_HLEN))
        f[18:20] = pl.to_bytes(2, "big")
        if not self.ndp.address(hop, f, now):
            if self._send_unresolved(f, HLEN, payload, gso_size, mtu):
                c.tx_offload_unresolved += 1
            return
        c.tx_packets += 1
        c.tx_offload += 1
        self._ethif.counters.tx_frames += 1
        link.send_offload((f, payload), csum_start=HLEN, hdr_len=len(f), gso_size=gso_size)

    # --- timers ----------------------------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        self.ndp.handle_timer(now)
        self.reassembler.handle_timer(now)
        if self._mld_again_at <= now:
            records, self._mld_again = self._mld_again, []
            self._mld_again_at = math.inf
            self._send_mld(records)
        nxt = [t for t in (self.ndp.poll_at(), self.reassembler.poll_at()) if t is not None]
        if self._mld_again:
            nxt.append(self._mld_again_at)
        if nxt:
            self._wakeup.at(min(nxt))


_check: type[IPv6Protocol] = IPv6
