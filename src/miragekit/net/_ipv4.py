"""IPV4: the IPv4 layer over an ETHIF, with ARP, ICMP echo and fragmentation.

Why this shape: the per-frame work is a synchronous path over ``memoryview`` slices with
ints for addresses (:meth:`IPv4.receive`, :meth:`IPv4.send`); protocol handlers register
synchronously with :meth:`IPv4.set_handler` (UDP now, TCP later). The seed's async
``input``/``write``/``writev`` wrap that path. ARP, reassembly and ICMP are sans-I/O
objects fed with ``now``; their deadlines share one loop timer.

On a device with checksum and segmentation offload (:class:`~miragekit.link.OffloadLink`)
received packets may exceed the MTU (up to 64 KiB, never via reassembly) and carry flags
that let the transport skip its checksum (the handler's ``verified`` argument);
TCP sends through :meth:`IPv4.send_offload`, which never fragments: a packet above the
MTU leaves whole, and the device cuts it into MSS-sized segments.

Without offload, TCP's per-segment paths are short cuts over the same rules: segments go
out as whole frames built on :meth:`IPv4.prebuilt_header` (valid while
:attr:`IPv4.generation` stays) in bursts (:meth:`IPv4.send_frames`), and plain packets for our address
reach a handler registered with :meth:`IPv4.set_packed_handler` with packed addresses,
without the general parse. Anything unusual takes the general path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Self

from ..link import CSUM_NEEDED, CSUM_VALID, OffloadLink, offload_link
from ..result import Error, IPError, Ok
from ..v1 import Buffer
from ..v1 import IPv4 as IPv4Protocol
from ..wire import checksum
from ..wire.ipv4 import HEADER
from ._arp import BROADCAST, Arp, ArpConfig, ip_multicast_mac
from ._ethif import Ethif
from ._fragment import Reassembler, ReassemblyConfig
from ._icmp import PROTO_UNREACHABLE, REASSEMBLY_TIME_EXCEEDED, TIME_EXCEEDED, Icmp
from ._ipid import IpIdGenerator
from ._iplayer import AddressCache, IPCommon
from ._ipopts import echo_options
from ._martian import bad_sources, is_unicast, martian_source, source_routed, subnet_broadcast
from ._pmtu import PathMtu
from ._timer import Wakeup

Addr = ipaddress.IPv4Address
Handler = Callable[[Addr, Addr, memoryview, bool], None]
"""A synchronous protocol handler: ``handler(src, dst, payload, verified)``; the payload
view is valid only during the call; ``verified``: the device vouched for the transport
checksum (offload), so the handler need not check it."""
PackedHandler = Callable[[bytes, bytes, memoryview, bool], None]
"""The same with packed (4-byte) addresses: no address object per packet."""
ErrorHandler = Callable[[int, int, bytes, bytes, memoryview, "int | None"], bool]
"""``handler(type, code, local, remote, quoted, mtu)``: an ICMP error about a packet we
sent (packed addresses; ``quoted`` is its transport header as far as quoted; ``mtu`` the
new path MTU after a "fragmentation needed", else None). True when the handler found the
quoted packet its own (only then is a path MTU kept)."""

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
_PROTO: Final = {"TCP": PROTO_TCP, "UDP": PROTO_UDP}
_ALL_ONES: Final = 0xFFFFFFFF
_ERRORS_ABOUT_US: Final = frozenset((3, 11, 12))  # unreachable, time exceeded, parameter
ETH_HLEN: Final = 14
_RX_FIELDS: Final = struct.Struct("!4xHH1xB2x4s4s")
_RX_PLAIN: Final = struct.Struct("!2xH2xHxB2x4s4s")  # length, flags+offset, proto, src, dst
_LEN_ID: Final = struct.Struct("!HH")
_ETYPE_IP: Final = struct.Struct("!HBBHHHBBH4s4s")  # the ethertype, then the IPv4 header
_LOCAL: Final[bytes] = bytes(bytearray(6))  # a distinct object, compared by identity
"""The route's 'MAC' for a destination that is this host (compared by identity)."""
_LOOPBACK_SRC: Final = 0x7F000001  # 127.0.0.1, the source towards 127.0.0.0/8


def _loop_rng(loop: asyncio.AbstractEventLoop) -> random.Random:
    """A generator seeded from a simulated loop's (``loop.rng()``), so that a simulation
    with the same seed repeats itself; from the OS otherwise."""
    loop_rng = getattr(loop, "rng", None)
    if callable(loop_rng):
        parent = loop_rng()
        if isinstance(parent, random.Random):
            return random.Random(parent.getrandbits(64))
    return random.Random()


@dataclass(slots=True)
class IPv4Counters:
    rx_packets: int = 0
    rx_short: int = 0
    rx_bad_version: int = 0
    rx_bad_length: int = 0  # header length or total length impossible
    rx_bad_checksum: int = 0
    rx_not_for_us: int = 0
    rx_martian: int = 0  # broadcast/multicast/loopback/own source (RFC 1122 3.2.1.3)
    rx_source_routed: int = 0  # LSRR/SSRR option (dropped, as Linux does)
    rx_tcp_not_unicast: int = 0  # TCP to a broadcast (RFC 1122 4.2.3.10)
    rx_fragments: int = 0
    rx_delivered: int = 0
    rx_no_protocol: int = 0
    tx_packets: int = 0
    tx_fragments: int = 0
    tx_no_route: int = 0
    tx_too_big: int = 0  # above the MTU with DF set
    rx_frag_needed: int = 0  # "fragmentation needed" that lowered a path MTU (RFC 1191)
    tx_offload: int = 0  # TCP packets whose checksum (and segmentation) the device does
    tx_offload_unresolved: int = 0  # TSO packets cut to one segment while ARP resolves
    tx_loopback: int = 0  # to our own address or 127.0.0.0/8: delivered here, never sent


class IPv4(IPCommon[ipaddress.IPv4Address, int]):
    """One IPv4 address on one Ethernet interface (the seed: a single address/netmask)."""

    port_unreachable: Final = 3
    """The ICMP code UDP passes to :meth:`reject_current` for a closed port."""
    _ICMP = PROTO_ICMP
    _ADDRS = (26, 23, 4)
    _ECN_SHIFT = 0

    def __init__(
        self,
        ethif: Ethif,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        rng: random.Random | None = None,
        ttl: int = 64,
        arp: ArpConfig | None = None,
        reassembly: ReassemblyConfig | None = None,
    ) -> None:
        self._ethif = ethif
        self._loop = loop or asyncio.get_running_loop()
        self.rng = rng or _loop_rng(self._loop)
        self._mac = ethif.mac().packed
        self.mtu = ethif.mtu
        self.generation = 0
        """Changes whenever a header from :meth:`prebuilt_header` may be stale: the
        configuration (address, netmask, gateways, TTL) or the ARP cache changed."""
        self._ttl = ttl
        self.counters = IPv4Counters()
        self._wakeup = Wakeup(self._loop, self._on_timer)
        self.arp = Arp(
            self._mac, ethif.sendv, wake=self._wakeup.at, config=arp, on_change=self._changed
        )
        self._neighbours = self.arp
        self.reassembler = Reassembler(
            wake=self._wakeup.at, config=reassembly, on_timeout=self._reassembly_timeout
        )
        self.icmp = Icmp()
        self._ip = 0
        self._ip_b = bytes(4)
        self._net = 0
        self._mask = 0
        self._prefix: ipaddress.IPv4Network | None = None
        self._gateways: list[Addr] = []
        self._bad_src: frozenset[bytes] = frozenset()
        self._looped = False  # receiving a packet of our own (loopback): not a martian
        self.ipid = IpIdGenerator(self.rng)
        """IPv4 IDs per destination, hashed (RFC 7739): no global counter to observe."""
        self.pmtu = PathMtu()
        """Path MTUs learnt from "fragmentation needed" (RFC 1191)."""
        self._error_handlers: dict[int, ErrorHandler] = {}
        self.address_lost: list[Callable[[bytes], None]] = []
        """Called with the packed old address when it is replaced or removed (DHCP): TCP
        ends the connections that used it."""
        self._handlers: dict[int, Handler] = {}
        self._packed_handlers: dict[int, PackedHandler] = {}
        self._icmp_handler: Handler | None = None
        self._addr = AddressCache(Addr)
        self._rx_packet: memoryview | None = None
        self.offload: OffloadLink | None = offload_link(ethif.link)
        """The device's checksum and segmentation offload, when it has them."""
        self.frame_input: Callable[[memoryview, int], bool] | None = None
        """A transport's shortcut for whole received frames (TCP without offload): the
        interface offers it every frame first, with the device's receive flags; it takes
        the usual ones (and counts them here as :meth:`receive` would) and returns False
        for the rest, which then go the general way. See :meth:`plain_input`."""
        self.rx_vouched = 0
        """Packets taken without verifying their checksums (the IPv4 header's and the
        transport's) because the device vouched for them (``CSUM_VALID``, e.g. a
        simulated switch): TCP's :attr:`frame_input` shortcut counts its frames here too.
        Not one of :attr:`counters`: the same run counts the same there with or without."""
        self.batch_done: Callable[[], None] | None = None
        """Called by the interface when the device's read batch is over (TAP): TCP
        hands over the batch's output then, in the reader's loop turn, not in the next."""
        self.batched = False
        """True while the interface's device hands frames over only in read batches whose
        end always calls :attr:`batch_done` (TAP): a frame need not schedule a flush."""

    @classmethod
    async def connect(
        cls,
        id: Ethif,
        *,
        ip: Addr | None = None,
        network: ipaddress.IPv4Network | None = None,
        gateways: Sequence[Addr] = (),
        rng: random.Random | None = None,
    ) -> Ok[Self] | Error[IPError]:
        self = cls(id, rng=rng)
        if network is not None:
            await self.set_ip_netmask(network)
        if ip is not None:
            await self.set_ip(ip)
        if gateways:
            await self.set_ip_gateways(list(gateways))
        return Ok(self)

    def id(self) -> Ethif:
        return self._ethif

    async def disconnect(self) -> None:
        self._wakeup.cancel()

    # --- configuration ---------------------------------------------------------------------

    async def set_ip(self, ip: Addr) -> None:
        self._set_ip(ip)

    @property
    def ttl(self) -> int:
        return self._ttl

    @ttl.setter
    def ttl(self, v: int) -> None:
        self._ttl = v
        self.generation += 1

    def _set_ip(self, ip: Addr) -> None:
        self.generation += 1
        old = self._ip_b
        self._ip = int(ip)
        self._ip_b = ip.packed
        self._update_martians()
        self.arp.ips = {self._ip} if self._ip else set()
        if self._ip:
            self.arp.announce(self._ip)
        if old != self._ip_b and any(old):
            for lost in list(self.address_lost):
                lost(old)

    def configure(
        self, iface: ipaddress.IPv4Interface | None, gateways: Sequence[Addr] = ()
    ) -> None:
        """Set the address, netmask and gateways at once, synchronously (for DHCP).

        ``None`` removes the address: the layer is then unconfigured (source 0.0.0.0,
        every destination on-link, every destination address accepted), which is how a
        DHCP client sends and receives before it has a lease.
        """
        if iface is None:
            iface = ipaddress.IPv4Interface("0.0.0.0/0")
        self.generation += 1
        self._prefix = iface.network
        self._net = int(iface.network.network_address)
        self._mask = int(iface.network.netmask)
        self._gateways = list(gateways)
        self._update_martians()
        if int(iface.ip) != self._ip:
            self._set_ip(iface.ip)

    def _update_martians(self) -> None:
        """The sources refused on input follow the address and netmask."""
        self._bad_src = bad_sources(self._ip, self._net, self._mask)
        self.arp.subnet_broadcast = subnet_broadcast(self._net, self._mask)

    def get_ip(self) -> list[Addr]:
        return [self._addr(self._ip)]

    async def set_ip_netmask(self, prefix: ipaddress.IPv4Network) -> None:
        self.generation += 1
        self._prefix = prefix
        self._net = int(prefix.network_address)
        self._mask = int(prefix.netmask)
        self._update_martians()

    def get_ip_netmasks(self) -> list[ipaddress.IPv4Network]:
        return [self._prefix] if self._prefix is not None else []

    async def set_ip_gateways(self, gateways: list[Addr]) -> None:
        self.generation += 1
        self._gateways = list(gateways)

    def get_ip_gateways(self) -> list[Addr]:
        return list(self._gateways)

    def get_source(self, *, dst: Addr) -> Addr:
        if int(dst) >> 24 == 127:
            return self._addr(_LOOPBACK_SRC)
        return self._addr(self._ip)

    def set_handler(self, proto: int, handler: Handler | None) -> None:
        """Register the synchronous input handler of IP protocol ``proto`` (e.g. 6, 17).

        For ``proto`` 1 the handler gets the ICMP messages that are not echo requests.
        """
        if proto == PROTO_ICMP:
            self._icmp_handler = handler
            return
        self._packed_handlers.pop(proto, None)
        if handler is None:
            self._handlers.pop(proto, None)
        else:
            self._handlers[proto] = handler

    def set_packed_handler(self, proto: int, handler: PackedHandler | None) -> None:
        """Like :meth:`set_handler` (replacing it), for a handler that takes packed
        addresses, ``handler(src, dst, payload)``: plain packets for our address reach it
        on a short path that builds no address objects (TCP's per-segment path)."""
        if proto == PROTO_ICMP:
            raise ValueError("proto: ICMP takes a handler with address objects")
        self._handlers.pop(proto, None)
        if handler is None:
            self._packed_handlers.pop(proto, None)
        else:
            self._packed_handlers[proto] = handler

    def set_error_handler(self, proto: int, handler: ErrorHandler | None) -> None:
        """Register who hears of ICMP errors about the packets of ``proto`` we sent
        (TCP: path MTU, and "unreachable" during the handshake)."""
        if handler is None:
            self._error_handlers.pop(proto, None)
        else:
            self._error_handlers[proto] = handler

    def path_mtu(self, dst: Addr) -> int:
        """The MTU towards ``dst``: the link's, or less after "fragmentation needed"."""
        return self.pmtu.get(int(dst), self.mtu, self._loop.time())

    def _is_broadcast(self, dst: int) -> bool:
        return dst == _ALL_ONES or (
            self._mask != 0 and dst == self._net | (~self._mask & _ALL_ONES)
        )

    # --- input -----------------------------------------------------------------------------

    def _parse_packet(
        self, pkt: memoryview, vouched: bool = False
    ) -> tuple[int, int, int, memoryview, memoryview] | None:
        """Validate one packet: (proto, src, dst, payload, whole packet), or None (counted).
        ``vouched``: the device vouched for the header's checksum, which is then not summed."""
        c = self.counters
        c.rx_packets += 1
        n = len(pkt)
        if n < 20:
            c.rx_short += 1
            return None
        b0 = pkt[0]
        if b0 >> 4 != 4:
            c.rx_bad_version += 1
            return None
        hl = (b0 & 0x0F) << 2
        tl = (pkt[2] << 8) | pkt[3]
        if hl < 20 or tl < hl or tl > n:
            c.rx_bad_length += 1
            return None
        if not vouched and checksum(pkt[:hl]) != 0:
            c.rx_bad_checksum += 1
            return None
        ident, ff, proto, src_b, dst_b = _RX_FIELDS.unpack_from(pkt)
        if dst_b != self._ip_b and self._ip:
            dst = int.from_bytes(dst_b, "big")
            if not self._is_broadcast(dst) and dst >> 24 != 127:
                c.rx_not_for_us += 1
                return None
        else:
            dst = self._ip if self._ip else int.from_bytes(dst_b, "big")
        if martian_source(src_b, self._bad_src) and not self._looped:
            c.rx_martian += 1
            return None
        if hl > 20 and source_routed(pkt[20:hl]):
            c.rx_source_routed += 1
            return None
        if proto == PROTO_TCP and dst != self._ip and not is_unicast(dst, self._net, self._mask):
            c.rx_tcp_not_unicast += 1  # never a connection to a broadcast (RFC 1122 4.2.3.10)
            return None
        src = int.from_bytes(src_b, "big")
        if tl < n:
            pkt = pkt[:tl]  # Ethernet padding
        if ff & 0x3FFF:
            c.rx_fragments += 1
            whole = self.reassembler.add(
                (src_b, dst_b, proto, ident),
                pkt[:hl],
                (ff & 0x1FFF) << 3,
                bool(ff & 0x2000),
                pkt[hl:],
                self._loop.time(),
            )
            if whole is None:
                return None
            pkt = memoryview(whole)
            hl = (pkt[0] & 0x0F) << 2
        c.rx_delivered += 1
        return proto, src, dst, pkt[hl:], pkt

    @property
    def tso_max(self) -> int:
        """The largest TCP payload one packet may carry for TSO (0: no offload)."""
        return 65535 - 20 - 60 if self.offload is not None else 0

    def receive(self, packet: memoryview, flags: int = 0) -> None:
        """The synchronous input path: one IPv4 packet (the Ethernet payload).

        ``flags`` (``CSUM_NEEDED``/``CSUM_VALID`` from an :class:`OffloadLink`) tell the
        transport not to verify its checksum (the handler's ``verified``); the packet may
        then exceed the MTU. With ``CSUM_VALID`` the header's checksum is not verified
        either (the packet is counted in :attr:`rx_vouched`).
        """
        n = len(packet)
        if n >= 20 and packet[0] == 0x45 and self._packed_handlers:
            # The usual packet: no IP options, not a fragment, unicast to our address,
            # for a handler of packed addresses. The same checks as _parse, in one go;
            # anything else (or any doubt) takes the general path, which counts it.
            tl, ff, proto, src_b, dst_b = _RX_PLAIN.unpack_from(packet)
            ph = self._packed_handlers.get(proto)
            if (
                ph is not None
                and 20 <= tl <= n
                and not ff & 0x3FFF
                and dst_b == self._ip_b
                and self._ip
                and src_b[0] < 224
                and src_b[0] != 127
                and src_b not in self._bad_src
                and (flags & CSUM_VALID or int.from_bytes(packet[:20], "big") % 0xFFFF == 0)
            ):
                c = self.counters
                c.rx_packets += 1
                c.rx_delivered += 1
                if flags & CSUM_VALID:
                    self.rx_vouched += 1
                pkt = packet[:tl] if tl < n else packet
                self._rx_packet = pkt
                try:
                    ph(src_b, dst_b, pkt[20:], flags != 0)
                finally:
                    self._rx_packet = None
                return
        vouched = flags & CSUM_VALID != 0
        r = self._parse_packet(packet, vouched)
        if r is None:
            return
        proto, src, dst, payload, pkt = r
        # A reassembled packet lives in a new buffer: the device's flags are not about it.
        verified = flags != 0 and pkt.obj is packet.obj
        if verified and vouched:
            self.rx_vouched += 1
        if proto == PROTO_ICMP:
            if (
                not self._icmp_input(src, dst, payload, pkt, verified and vouched)
                and self._icmp_handler is not None
            ):
                self._icmp_handler(self._addr(src), self._addr(dst), payload, verified and vouched)
            return
        h = self._handlers.get(proto)
        ph = None if h is not None else self._packed_handlers.get(proto)
        if h is None and ph is None:
            self.counters.rx_no_protocol += 1
            self._unreachable(PROTO_UNREACHABLE, pkt, src, dst)
            return
        self._rx_packet = pkt
        try:
            if h is not None:
                h(self._addr(src), self._addr(dst), payload, verified)
            elif ph is not None:
                ph(src.to_bytes(4, "big"), dst.to_bytes(4, "big"), payload, verified)
        finally:
            self._rx_packet = None

    def receive_arp(self, packet: memoryview, flags: int = 0) -> None:
        """One ARP packet (the Ethernet payload); ``flags`` as for :meth:`receive`, unused."""
        self.arp.input(packet, self._loop.time())

    def _icmp_input(
        self, src: int, dst: int, payload: memoryview, pkt: memoryview, verified: bool = False
    ) -> bool:
        """Answer echo requests; True when the message was consumed (or malformed).
        ``verified``: the device vouched for the checksum."""
        reply = self.icmp.input(payload, answer=dst == self._ip and src != 0, verified=verified)
        if reply is not None:
            hl = (pkt[0] & 0x0F) << 2
            opts = b""
            if hl > 20:  # record route, timestamps: returned updated (RFC 1122 3.2.2.6)
                opts = echo_options(pkt[20:hl], self._ip_b, int(self._loop.time() * 1000))
            if opts:
                frame = self.allocate_header(src.to_bytes(4, "big"), PROTO_ICMP, 34 + len(opts))
                frame[14] = 0x40 | (5 + len(opts) // 4)
                frame[34:] = opts
                self.send(frame, (reply,))
            else:
                self._send_proto(src, PROTO_ICMP, reply)
        if not self.icmp.consumed and payload[0] in _ERRORS_ABOUT_US and self._ours(dst):
            self._icmp_error(payload)
        return self.icmp.consumed

    def _icmp_error(self, msg: memoryview) -> None:
        """An ICMP error quoting a packet of ours: update the path MTU on "fragmentation
        needed" (RFC 1191, only for a packet sent with DF), then tell the protocol."""
        q = msg[8:]
        if len(q) < 28 or q[0] >> 4 != 4:
            return
        local = bytes(q[12:16])
        if not self._ours(int.from_bytes(local, "big")):
            return
        qhl = (q[0] & 0x0F) << 2
        if qhl < 20 or len(q) < qhl + 8:
            return
        proto = q[9]
        remote = bytes(q[16:20])
        icmp_type, code = msg[0], msg[1]
        mtu: int | None = None
        if icmp_type == 3 and code == 4:
            if not q[6] & 0x40:
                return  # we did not ask for it: DF was clear
            qlen = (q[2] << 8) | q[3]
            nh = (msg[6] << 8) | msg[7]
            now = self._loop.time()
            mtu = self.pmtu.lowered(int.from_bytes(remote, "big"), nh, qlen, self.mtu, now)
            if mtu is None:
                return
        h = self._error_handlers.get(proto)
        if h is None or not h(icmp_type, code, local, remote, q[qhl:], mtu):
            return
        if mtu is not None:
            self.pmtu.set(int.from_bytes(remote, "big"), mtu, self._loop.time())
            self.counters.rx_frag_needed += 1

    def _ours(self, addr: int) -> bool:
        """Our address; or 127.0.0.0/8 while a packet we sent ourselves is delivered (an
        ICMP error about one, or in answer to one, stays inside too)."""
        return (addr == self._ip and addr != 0) or (self._looped and addr >> 24 == 127)

    def _unreachable(self, code: int, pkt: memoryview, src: int, dst: int) -> None:
        if not self._ours(dst) or not src or not self._ip:
            return  # never about broadcasts (RFC 1122 3.2.2)
        msg = self.icmp.unreachable(code, pkt, self._loop.time())
        if msg is not None:
            self._send_proto(src, PROTO_ICMP, msg)

    def _reassembly_timeout(
        self, key: tuple[bytes, bytes, int, int], header: bytes, first: bytes
    ) -> None:
        """RFC 1122 3.3.2 (MUST) / RFC 792: time exceeded, code 1, to the source of a
        datagram whose first fragment came but never the rest."""
        src = int.from_bytes(key[0], "big")
        if key[1] != self._ip_b or not src or not self._ip:
            return  # never about broadcasts (RFC 1122 3.2.2)
        msg = self.icmp.error(
            TIME_EXCEEDED, REASSEMBLY_TIME_EXCEEDED, memoryview(header + first), self._loop.time()
        )
        if msg is not None:
            self._send_proto(src, PROTO_ICMP, msg)

    def reject_current(self, code: int) -> None:
        """Send ICMP destination-unreachable ``code`` about the packet being delivered.

        For protocol handlers (e.g. UDP with no listener on the port, code 3); does
        nothing outside a delivery.
        """
        pkt = self._rx_packet
        if pkt is None:
            return
        src = int.from_bytes(pkt[12:16], "big")
        dst = int.from_bytes(pkt[16:20], "big")
        self._unreachable(code, pkt, src, dst)

    async def input_arpv4(self, buf: memoryview) -> None:
        self.receive_arp(memoryview(buf))

    # --- output ----------------------------------------------------------------------------

    def _allocate(self, dst: int, proto: int) -> tuple[memoryview, int]:
        buf = bytearray(ETH_HLEN + self.mtu)
        buf[6:12] = self._mac
        buf[12:14] = b"\x08\x00"
        HEADER.pack_into(
            buf,
            ETH_HLEN,
            0x45,
            0,
            0,
            0,
            0,
            self.ttl,
            proto,
            0,
            (self._ip if dst >> 24 != 127 else _LOOPBACK_SRC).to_bytes(4, "big"),
            dst.to_bytes(4, "big"),
        )
        return memoryview(buf), ETH_HLEN + 20

    def allocate_header(
        self, dst: bytes, proto: int, size: int, src: bytes | None = None, *, df: bool = False
    ) -> memoryview:
        """A frame of ``size`` bytes with Ethernet and IPv4 headers (20 bytes) filled for
        packed address ``dst`` (from ``src``, by default our address), DF set if ``df``:
        the transport header goes at offset 34."""
        buf = bytearray(size)
        buf[6:12] = self._mac
        flags = 0x4000 if df else 0
        _ETYPE_IP.pack_into(
            buf, 12, 0x0800, 0x45, 0, 0, 0, flags, self.ttl, proto, 0, src or self._ip_b, dst
        )
        return memoryview(buf)

    def allocate_frame(self, *, dst: Addr, proto: Literal["TCP", "UDP"]) -> tuple[memoryview, int]:
        if proto not in _PROTO:
            raise ValueError(f"proto must be 'TCP' or 'UDP', got {proto!r}")
        return self._allocate(int(dst), _PROTO[proto])

    def _send_proto(self, dst: int, proto: int, payload: Buffer) -> None:
        frame, hl = self._allocate(dst, proto)
        self.send(frame[:hl], (payload,))

    def _route(self, dst: int) -> tuple[int, bytes | None] | None:
        """(next hop, fixed MAC or None for ARP), or None when there is no route.
        ``_LOCAL`` for this host: our address and 127.0.0.0/8 (RFC 1122 3.2.1.3)."""
        if (dst == self._ip and dst) or dst >> 24 == 127:
            return dst, _LOCAL
        if self._is_broadcast(dst):
            return dst, BROADCAST
        if dst >> 28 == 14:
            return dst, ip_multicast_mac(dst)
        if self._mask == 0 or (dst & self._mask) == self._net:
            return dst, None
        if self._gateways:
            return int(self._gateways[0]), None
        return None

    def send(self, frame: Buffer, bufs: Sequence[Buffer]) -> None:
        """The synchronous output path: ``frame`` from :meth:`allocate_frame` (its headers,
        possibly with transport bytes after the IP header), then ``bufs``."""
        f = memoryview(frame)
        c = self.counters
        hl = (f[ETH_HLEN] & 0x0F) << 2
        tl = len(f) - ETH_HLEN
        for b in bufs:
            tl += len(b)
        dst = int.from_bytes(f[30:34], "big")
        route = self._route(dst)
        if route is None:
            c.tx_no_route += 1
            return
        ident = self.ipid.next(dst)
        if tl <= self.mtu:
            f[16:18] = tl.to_bytes(2, "big")
            f[18:20] = ident.to_bytes(2, "big")
            f[24:26] = b"\0\0"
            f[24:26] = checksum(f[ETH_HLEN : ETH_HLEN + hl]).to_bytes(2, "big")
            c.tx_packets += 1
            self._emit([f, *bufs], *route)
            return
        if f[ETH_HLEN + 6] & 0x40:
            c.tx_too_big += 1
            return
        end = ETH_HLEN + hl
        payload = memoryview(b"".join([f[end:], *bufs]))
        chunk = (self.mtu - hl) & ~7
        total = len(payload)
        for off in range(0, total, chunk):
            piece = payload[off : off + chunk]
            hdr = bytearray(f[:end])
            flags = (0x2000 if off + chunk < total else 0) | (off >> 3)
            hdr[16:18] = (hl + len(piece)).to_bytes(2, "big")
            hdr[18:20] = ident.to_bytes(2, "big")
            hdr[20:22] = flags.to_bytes(2, "big")
            hdr[24:26] = b"\0\0"
            hdr[24:26] = checksum(memoryview(hdr)[ETH_HLEN:end]).to_bytes(2, "big")
            c.tx_fragments += 1
            self._emit([hdr, piece], *route)
        c.tx_packets += 1

    def send_frame(self, frame: memoryview) -> None:
        """The fast output path for one whole frame from :meth:`allocate_header` with the
        transport part filled in: length, ident, checksum, MAC, out (no list, no copy)."""
        f = frame
        tl = len(f) - ETH_HLEN
        if tl > self.mtu:
            self.send(f, ())  # fragments
            return
        dst = int.from_bytes(f[30:34], "big")
        route = self._route(dst)
        if route is None:
            self.counters.tx_no_route += 1
            return
        nexthop, mac = route
        if mac is None:
            mac = self.arp.lookup(nexthop, self._loop.time())
            if mac is None:
                self.send(f, ())  # waits for ARP
                return
        ident = self.ipid.next(dst)
        _LEN_ID.pack_into(f, 16, tl, ident)
        f[24:26] = checksum(f[ETH_HLEN : ETH_HLEN + 20]).to_bytes(2, "big")
        self.counters.tx_packets += 1
        if mac is _LOCAL:
            self._loopback((f,))
            return
        f[0:6] = mac
        self._ethif.send(f)

    # --- the seam for prebuilt headers (TCP's per-connection fast path) -------------------

    def prebuilt_header(
        self, dst: bytes, proto: int, now: float, *, df: bool = False
    ) -> tuple[bytes, float] | None:
        """The Ethernet and IPv4 headers (34 bytes) of a packet to packed address ``dst``
        (next hop's MAC, ours, no IP options, DF if ``df`` (path-MTU discovery), TTL,
        ``proto``, addresses; total length, ident and checksum zero) and until when the
        MAC may be kept (and while :attr:`generation` stays). ``None``: no route, or the
        next hop is not resolved."""
        route = self._route(int.from_bytes(dst, "big"))
        if route is None:
            return None
        nexthop, mac = route
        if mac is _LOCAL:
            return None  # to this host: the general path delivers it here
        until = float("inf")
        if mac is None:
            entry = self.arp.lookup_entry(nexthop, now)
            if entry is None:
                return None
            mac, until = entry
        flags = 0x4000 if df else 0
        ip = _ETYPE_IP.pack(0x0800, 0x45, 0, 0, 0, flags, self._ttl, proto, 0, self._ip_b, dst)
        return mac + self._mac + ip, until

    def _changed(self) -> None:
        self.generation += 1

    def plain_input(self) -> tuple[bytes, bytes, frozenset[bytes]] | None:
        """What :attr:`frame_input` checks a frame against, kept while :attr:`generation`
        stays: our MAC, our packed address and the sources refused (martians); ``None``
        without an address (then every frame goes the general way)."""
        if not self._ip:
            return None
        return self._mac, self._ip_b, self._bad_src

    def next_ident(self, dst: bytes) -> int:
        """Take the IP identification of the next packet to packed address ``dst``, from
        the per-destination hashed counters (:attr:`ipid`): a connection seeds its own
        counter with it."""
        return self.ipid.next(int.from_bytes(dst, "big"))

    def send_frames(self, frames: Sequence[Buffer]) -> None:
        """Send whole IPv4 frames (headers from :meth:`prebuilt_header`, the rest filled
        in) as one burst; each counts as a packet sent."""
        self.counters.tx_packets += len(frames)
        self._ethif.send_frames(frames)

    def send_split(self, heads: Sequence[bytes], bodies: Sequence[Buffer]) -> None:
        """:meth:`send_frames` of the frames ``heads[i] + bodies[i]`` (headers and
        payload apart: a ring-mapped device copies both into the slot, unjoined)."""
        self.counters.tx_packets += len(heads)
        self._ethif.send_split(heads, bodies)

    def send_offload(self, frame: memoryview, payload: Buffer, gso_size: int) -> None:
        """Send a TCP packet whose checksum field holds the pseudo-header sum only: the
        device completes it. ``frame`` holds the headers (Ethernet, IPv4 from
        :meth:`allocate_header`, TCP), ``payload`` the data. Above the MTU the device cuts
        it into segments of ``gso_size`` payload bytes (TSO); it is never fragmented."""
        link = self.offload
        if link is None:
            raise ValueError("send_offload: the device offers no offload")
        f = frame
        c = self.counters
        hl = (f[ETH_HLEN] & 0x0F) << 2
        tl = len(f) - ETH_HLEN + len(payload)
        if tl > 65535:
            raise ValueError(f"payload: a {tl}-byte packet exceeds 65535")
        dst = int.from_bytes(f[30:34], "big")
        route = self._route(dst)
        if route is None:
            c.tx_no_route += 1
            return
        nexthop, mac = route
        if mac is None:
            mac = self.arp.lookup(nexthop, self._loop.time())
            if mac is None:
                tcp = ETH_HLEN + hl
                if self._send_unresolved(f, tcp, payload, gso_size, self.mtu):
                    c.tx_offload_unresolved += 1
                return
        if tl <= self.mtu:
            gso_size = 0
        elif gso_size <= 0:
            raise ValueError(f"gso_size: {gso_size} for a {tl}-byte packet above the MTU")
        ident = self.ipid.next(dst)
        f[0:6] = mac
        _LEN_ID.pack_into(f, 16, tl, ident)
        f[24:26] = b"\0\0"
        f[24:26] = checksum(f[ETH_HLEN : ETH_HLEN + hl]).to_bytes(2, "big")
        c.tx_packets += 1
        if mac is _LOCAL:
            # The transport checksum is left unfinished, as the device would get it.
            self._loopback((f, payload), CSUM_NEEDED)
            return
        c.tx_offload += 1
        self._ethif.counters.tx_frames += 1
        link.send_offload((f, payload), csum_start=ETH_HLEN + hl, hdr_len=len(f), gso_size=gso_size)

    def _emit(self, parts: list[Buffer], hop: int, mac: bytes | None) -> None:
        if mac is _LOCAL:
            self._loopback(parts)
        else:
            super()._emit(parts, hop, mac)

    def _loopback(self, parts: Sequence[Buffer], flags: int = 0) -> None:
        """Deliver a packet to ourselves on the next turn of the loop (as a device's
        receive would), never on the wire."""
        self.counters.tx_loopback += 1
        packet = memoryview(b"".join(parts))[ETH_HLEN:]
        self._loop.call_soon(self._receive_looped, packet, flags)

    def _receive_looped(self, packet: memoryview, flags: int) -> None:
        """A packet we sent to ourselves: its source is ours or 127.0.0.0/8, which the
        martian check drops from the wire (RFC 1122 3.2.1.3), but here it is the point."""
        self._looped = True
        try:
            self.receive(packet, flags)
        finally:
            self._looped = False

    # --- timers ----------------------------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        self.arp.handle_timer(now)
        self.reassembler.handle_timer(now)
        nxt = [t for t in (self.arp.poll_at(), self.reassembler.poll_at()) if t is not None]
        if nxt:
            self._wakeup.at(min(nxt))


_check: type[IPv4Protocol] = IPv4
