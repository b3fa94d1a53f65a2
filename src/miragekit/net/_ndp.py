"""Neighbour discovery (RFC 4861) and stateless address autoconfiguration (RFC 4862),
sans-I/O, for one Ethernet interface.

What it keeps: the neighbour cache with the NUD states (INCOMPLETE, REACHABLE, STALE,
DELAY, PROBE), bounded in entries and, per neighbour, in queued packets and bytes; the
default routers and on-link prefixes learnt from router advertisements; our addresses
with their DAD state and lifetimes. Time comes in as ``now``; whole Ethernet frames go
out through ``transmit``; every new deadline is announced through ``wake(when)``.
Addresses are 16-byte ``bytes`` throughout (cheap to hash and compare).
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from ..macaddr import MacAddr
from ..v1 import Buffer
from ..wire.icmpv6 import (
    INFINITE,
    Icmpv6Packet,
    Icmpv6Repr,
    LinkAddrOption,
    MtuOption,
    NdpOption,
    NdpRepr,
    NeighborAdvert,
    NeighborSolicit,
    PrefixInfo,
    RdnssOption,
    Redirect,
    RouterAdvert,
    RouterSolicit,
    link_addr,
)
from ..wire.ipv6 import Ipv6Packet, Ipv6Repr, interface_id, multicast_mac, solicited_node

Transmit = Callable[[Sequence[Buffer]], None]
Addr = ipaddress.IPv6Address

UNSPECIFIED: Final = bytes(16)
ALL_NODES: Final = Addr("ff02::1").packed
ALL_ROUTERS: Final = Addr("ff02::2").packed
LINK_LOCAL_PREFIX: Final = ipaddress.IPv6Network("fe80::/64")
TWO_HOURS: Final = 7200.0


class State(IntEnum):
    INCOMPLETE = 0
    REACHABLE = 1
    STALE = 2
    DELAY = 3
    PROBE = 4


@dataclass(slots=True)
class NdpConfig:
    """RFC 4861 10 and RFC 4862 5.1 constants, and our bounds."""

    max_entries: int = 512
    max_incomplete: int = 128  # neighbours being resolved at once
    queue_packets: int = 64  # per neighbour
    queue_bytes: int = 128 * 1024  # per neighbour
    reachable_time: float = 30.0  # BASE_REACHABLE_TIME (an RA may change it)
    retrans_timer: float = 1.0  # RETRANS_TIMER (an RA may change it)
    delay_first_probe: float = 5.0
    max_multicast_solicit: int = 3
    max_unicast_solicit: int = 3
    stale_timeout: float = 600.0  # a STALE entry unused this long is forgotten
    dad_transmits: int = 1  # DupAddrDetectTransmits; 0 turns DAD off
    max_dad_delay: float = 1.0  # the random delay before the first DAD probe
    rtr_solicitations: int = 3
    rtr_solicitation_interval: float = 4.0
    max_rtr_solicitation_delay: float = 1.0
    max_redirects: int = 256
    slaac: bool = True


@dataclass(slots=True)
class NdpCounters:
    rx_messages: int = 0
    rx_invalid: int = 0  # fails the RFC 4861 validity checks
    ns_sent: int = 0
    na_sent: int = 0
    rs_sent: int = 0
    ras_received: int = 0
    redirects_received: int = 0
    resolved: int = 0
    resolution_failed: int = 0
    unreachable: int = 0  # a known neighbour stopped answering probes (NUD)
    queued: int = 0
    dropped_queue_full: int = 0
    dropped_unresolved: int = 0
    dropped_no_source: int = 0  # nothing to send a solicitation from
    evicted: int = 0
    dad_started: int = 0
    dad_succeeded: int = 0
    dad_failed: int = 0
    address_conflicts: int = 0  # an advertisement for one of our preferred addresses
    addresses_autoconfigured: int = 0


@dataclass(slots=True)
class Neighbor:
    state: State
    mac: bytes | None
    deadline: float
    router: bool = False
    probes: int = 0
    size: int = 0
    queue: deque[bytearray] = field(default_factory=deque)


@dataclass(slots=True)
class Address:
    """One of our addresses. ``dad_left`` probes remain while it is tentative."""

    addr: bytes
    prefix_len: int
    tentative: bool
    preferred_until: float
    valid_until: float
    autoconf: bool = False
    dad_at: float = math.inf
    dad_left: int = 0

    def deprecated(self, now: float) -> bool:
        return self.preferred_until <= now


class Ndp:
    """The neighbour-discovery state of the interface with MAC ``mac``."""

    def __init__(
        self,
        mac: bytes,
        transmit: Transmit,
        *,
        wake: Callable[[float], None] = lambda when: None,
        config: NdpConfig | None = None,
        rng: random.Random | None = None,
        on_addresses: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_addresses()`` is called whenever an address is added, confirmed or
        removed (the IP layer then updates its multicast groups)."""
        self.mac = bytes(mac)
        self._transmit = transmit
        self._driver_wake = wake
        self.config = cfg = config or NdpConfig()
        self.rng = rng or random.Random()
        self._on_addresses = on_addresses
        self.counters = NdpCounters()
        self.iid = interface_id(self.mac)
        self.cache: dict[bytes, Neighbor] = {}
        self.addresses: dict[bytes, Address] = {}
        self.duplicates: set[bytes] = set()  # addresses DAD found in use
        self.routers: dict[bytes, float] = {}  # learnt default routers: expiry
        self.static_routers: list[bytes] = []
        self.prefixes: dict[ipaddress.IPv6Network, float] = {}  # on-link: expiry
        self.dns_servers: dict[bytes, float] = {}  # from RAs (RFC 8106): expiry
        self.redirects: dict[bytes, bytes] = {}  # destination: better first hop
        self.hop_limit = 64
        self.mtu: int | None = None  # from an RA's MTU option
        self.max_mtu: int | None = None  # the link's own MTU (set by the IP layer)
        self.base_reachable = cfg.reachable_time
        self.reachable = self._random_reachable()
        self.retrans = cfg.retrans_timer
        self._rs_at = math.inf
        self._rs_left = 0
        self._incomplete = 0

    def _wake(self, when: float) -> None:
        if when != math.inf:  # infinite lifetimes need no timer
            self._driver_wake(when)

    def _random_reachable(self) -> float:
        return self.base_reachable * self.rng.uniform(0.5, 1.5)

    # --- frames --------------------------------------------------------------------------

    def icmp_frame(
        self, dst_mac: bytes, src: bytes, dst: bytes, msg: Icmpv6Repr, hop_limit: int = 255
    ) -> bytearray:
        """A whole Ethernet frame carrying ICMPv6 ``msg`` from ``src`` to ``dst``."""
        n = msg.buffer_len()
        buf = bytearray(54 + n)
        buf[0:6] = dst_mac
        buf[6:12] = self.mac
        buf[12:14] = b"\x86\xdd"
        s, d = Addr(src), Addr(dst)
        view = memoryview(buf)
        Ipv6Repr(s, d, 58, n, hop_limit).emit(Ipv6Packet(view[14:]))
        msg.emit(Icmpv6Packet(view[54:]), s, d)
        return buf

    def _send_ndp(self, dst_mac: bytes, src: bytes, dst: bytes, msg: NdpRepr) -> None:
        self._transmit((self.icmp_frame(dst_mac, src, dst, msg.to_icmp()),))

    def _solicit(self, target: bytes, src: bytes, *, unicast_mac: bytes | None) -> None:
        self.counters.ns_sent += 1
        opts: tuple[NdpOption, ...] = ()
        if src != UNSPECIFIED:
            opts = (LinkAddrOption(True, MacAddr(self.mac)),)
        if unicast_mac is not None:
            self._send_ndp(unicast_mac, src, target, NeighborSolicit(Addr(target), opts))
        else:
            group = solicited_node(Addr(target)).packed
            self._send_ndp(multicast_mac(group), src, group, NeighborSolicit(Addr(target), opts))

    # --- our addresses and DAD (RFC 4862) ------------------------------------------------

    def add_address(
        self,
        addr: bytes,
        prefix_len: int,
        now: float,
        *,
        valid: float = math.inf,
        preferred: float = math.inf,
        autoconf: bool = False,
    ) -> bool:
        """Add ``addr`` as tentative and start DAD; False if already there or known duplicate."""
        if addr in self.addresses or addr in self.duplicates:
            return False
        cfg = self.config
        a = Address(addr, prefix_len, True, now + preferred, now + valid, autoconf)
        self.addresses[addr] = a
        if cfg.dad_transmits <= 0:
            self._confirm(a, now)
        else:
            self.counters.dad_started += 1
            a.dad_left = cfg.dad_transmits
            a.dad_at = now + self.rng.uniform(0.0, cfg.max_dad_delay)
            self._wake(a.dad_at)
        self._on_addresses()
        return True

    def remove_address(self, addr: bytes) -> None:
        if self.addresses.pop(addr, None) is not None:
            self._on_addresses()

    def _confirm(self, a: Address, now: float) -> None:
        a.tentative = False
        a.dad_at = math.inf
        self.counters.dad_succeeded += 1
        if a.addr[:2] == b"\xfe\x80" and self.config.rtr_solicitations > 0:
            self._rs_left = self.config.rtr_solicitations
            self._rs_at = now + self.rng.uniform(0.0, self.config.max_rtr_solicitation_delay)
            self._wake(self._rs_at)

    def _dad_failed(self, addr: bytes) -> None:
        self.counters.dad_failed += 1
        self.duplicates.add(addr)
        self.remove_address(addr)

    def link_local(self) -> bytes | None:
        """Our link-local address once DAD confirmed it."""
        for a in self.addresses.values():
            if not a.tentative and a.addr[:2] == b"\xfe\x80":
                return a.addr
        return None

    def is_ours(self, addr: bytes) -> bool:
        a = self.addresses.get(addr)
        return a is not None and not a.tentative

    def select_source(self, dst: bytes, now: float) -> bytes:
        """Our source address towards ``dst`` (RFC 6724, simplified): link-local scope
        for link-local and link-scope multicast destinations, otherwise the preferred
        address sharing the longest prefix with ``dst``; ``::`` when there is none."""
        best, best_key = UNSPECIFIED, (-1, -1, -1)
        link_scope = dst[:2] == b"\xfe\x80" or (dst[0] == 0xFF and dst[1] & 0x0F <= 2)
        d = int.from_bytes(dst, "big")
        for a in self.addresses.values():
            if a.tentative:
                continue
            ll = a.addr[:2] == b"\xfe\x80"
            scope_ok = ll == link_scope
            common = 128 - (int.from_bytes(a.addr, "big") ^ d).bit_length()
            key = (int(scope_ok), int(not a.deprecated(now)), common)
            if key > best_key:
                best, best_key = a.addr, key
        return best

    # --- on-link determination and next hop ------------------------------------------------

    def on_link(self, dst: bytes, now: float) -> bool:
        if dst[:8] == b"\xfe\x80" + bytes(6):
            return True
        d = Addr(dst)
        return any(exp > now and d in net for net, exp in self.prefixes.items())

    def default_router(self, now: float) -> bytes | None:
        """A router whose reachability is not known to have failed (RFC 4861 6.3.6)."""
        fallback = None
        for r in [*self.static_routers, *(r for r, exp in self.routers.items() if exp > now)]:
            e = self.cache.get(r)
            if e is not None and e.state != State.INCOMPLETE:
                return r
            if fallback is None:
                fallback = r
        return fallback

    def next_hop(self, dst: bytes, now: float) -> bytes | None:
        hop = self.redirects.get(dst)
        if hop is not None:
            return hop
        if self.on_link(dst, now):
            return dst
        return self.default_router(now)

    # --- the neighbour cache ------------------------------------------------------------

    def lookup(self, ip: bytes) -> bytes | None:
        e = self.cache.get(ip)
        return e.mac if e is not None else None

    def state(self, ip: bytes) -> State | None:
        e = self.cache.get(ip)
        return e.state if e is not None else None

    def _new_entry(self, ip: bytes, e: Neighbor) -> None:
        cache = self.cache
        if len(cache) >= self.config.max_entries:
            victim = next((k for k, v in cache.items() if v.state != State.INCOMPLETE), None)
            if victim is None:
                victim = next(iter(cache))
            self._forget(victim)
            self.counters.evicted += 1
        cache[ip] = e
        if e.state == State.INCOMPLETE:
            self._incomplete += 1
        self._wake(e.deadline)

    def _forget(self, ip: bytes) -> Neighbor:
        e = self.cache.pop(ip)
        if e.state == State.INCOMPLETE:
            self._incomplete -= 1
        return e

    def _set(self, e: Neighbor, state: State, deadline: float) -> None:
        if e.state == State.INCOMPLETE and state != State.INCOMPLETE:
            self._incomplete -= 1
        e.state = state
        e.deadline = deadline
        self._wake(deadline)

    def _flush(self, e: Neighbor) -> None:
        mac = e.mac
        assert mac is not None
        while e.queue:
            frame = e.queue.popleft()
            frame[0:6] = mac
            self._transmit((frame,))
        e.size = 0

    def confirm_reachable(self, ip: bytes, now: float) -> None:
        """Upper-layer reachability confirmation (RFC 4861 7.3.1), e.g. from TCP."""
        e = self.cache.get(ip)
        if e is not None and e.mac is not None:
            self._set(e, State.REACHABLE, now + self.reachable)

    def address(self, ip: bytes, head: bytearray | memoryview, now: float) -> bool:
        """Put the MAC of neighbour ``ip`` into the frame ``head`` (its first 6 bytes) and
        count the use as :meth:`send` does (RFC 4861 7.3.3: STALE goes to DELAY); False
        while the neighbour is not resolved. For a caller that writes the frame itself
        (TCP segmentation offload)."""
        e = self.cache.get(ip)
        if e is None or e.mac is None:
            return False
        head[0:6] = e.mac
        st = e.state
        if st == State.STALE or (st == State.REACHABLE and e.deadline <= now):
            self._set(e, State.DELAY, now + self.config.delay_first_probe)
        return True

    def send(self, ip: bytes, bufs: Sequence[Buffer], now: float) -> None:
        """Send an Ethernet frame (``bufs``: first the Ethernet and IPv6 headers, whose
        destination MAC is filled in place) to the on-link neighbour ``ip``."""
        head = bufs[0]
        assert isinstance(head, bytearray | memoryview)
        if self.address(ip, head, now):
            self._transmit(bufs)
            return
        e = self.cache.get(ip)
        cfg = self.config
        if e is None:
            src = bytes(head[22:38]) if len(head) >= 38 else UNSPECIFIED
            if not self.is_ours(src):
                src = self.select_source(ip, now)
            if src == UNSPECIFIED:
                self.counters.dropped_no_source += 1
                return
            if self._incomplete >= cfg.max_incomplete:
                self.counters.dropped_queue_full += 1
                return
            e = Neighbor(State.INCOMPLETE, None, now + self.retrans, probes=1)
            self._new_entry(ip, e)
            self._solicit(ip, src, unicast_mac=None)
        size = sum(len(b) for b in bufs)
        if len(e.queue) >= cfg.queue_packets or e.size + size > cfg.queue_bytes:
            self.counters.dropped_queue_full += 1
            return
        e.queue.append(bytearray(b"".join(bufs)))
        e.size += size
        self.counters.queued += 1

    def _learn(self, ip: bytes, mac: bytes, now: float, *, router: bool | None = None) -> None:
        """A link-layer address from an NS, RA or redirect (RFC 4861 7.2.3, 6.3.4, 8.3)."""
        e = self.cache.get(ip)
        if e is None:
            e = Neighbor(State.STALE, mac, now + self.config.stale_timeout)
            self._new_entry(ip, e)
        elif e.mac != mac:
            e.mac = mac
            self._set(e, State.STALE, now + self.config.stale_timeout)
            if e.queue:
                self.counters.resolved += 1
                self._flush(e)
        if router is not None:
            e.router = router

    # --- timers --------------------------------------------------------------------------

    def poll_at(self) -> float | None:
        t = min((e.deadline for e in self.cache.values()), default=math.inf)
        for a in self.addresses.values():
            t = min(t, a.dad_at, a.valid_until, a.preferred_until)
        t = min(t, self._rs_at, *self.routers.values(), *self.prefixes.values())
        return None if math.isinf(t) else t

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        for ip, e in list(self.cache.items()):
            if e.deadline > now:
                continue
            st = e.state
            if st == State.INCOMPLETE:
                if e.probes >= cfg.max_multicast_solicit:
                    self._forget(ip)
                    self.counters.resolution_failed += 1
                    self.counters.dropped_unresolved += len(e.queue)
                    continue
                src = self.select_source(ip, now)
                e.probes += 1
                e.deadline = now + self.retrans
                if src != UNSPECIFIED:
                    self._solicit(ip, src, unicast_mac=None)
            elif st == State.REACHABLE:
                self._set(e, State.STALE, now + cfg.stale_timeout)
            elif st == State.STALE:
                self._forget(ip)
            elif st == State.DELAY or (st == State.PROBE and e.probes < cfg.max_unicast_solicit):
                e.probes = 1 if st == State.DELAY else e.probes + 1
                self._set(e, State.PROBE, now + self.retrans)
                self._solicit(ip, self.select_source(ip, now), unicast_mac=e.mac)
            else:  # PROBE, out of probes: the neighbour is unreachable
                self._forget(ip)
                self.counters.unreachable += 1
        changed = False
        for a in list(self.addresses.values()):
            if a.valid_until <= now:
                del self.addresses[a.addr]
                changed = True
            elif a.tentative and a.dad_at <= now:
                if a.dad_left > 0:
                    a.dad_left -= 1
                    a.dad_at = now + self.retrans
                    self._solicit(a.addr, UNSPECIFIED, unicast_mac=None)
                else:
                    self._confirm(a, now)
                    changed = True
        if self._rs_at <= now:
            self._router_solicit(now)
        for r in [r for r, exp in self.routers.items() if exp <= now]:
            del self.routers[r]
        for p in [p for p, exp in self.prefixes.items() if exp <= now]:
            del self.prefixes[p]
        if changed:
            self._on_addresses()

    def _router_solicit(self, now: float) -> None:
        self._rs_left -= 1
        self._rs_at = now + self.config.rtr_solicitation_interval if self._rs_left > 0 else math.inf
        src = self.link_local()
        if src is None:
            return
        self.counters.rs_sent += 1
        msg = RouterSolicit((LinkAddrOption(True, MacAddr(self.mac)),))
        self._send_ndp(multicast_mac(ALL_ROUTERS), src, ALL_ROUTERS, msg)

    # --- input ---------------------------------------------------------------------------

    def input(self, src: bytes, dst: bytes, hop_limit: int, msg: NdpRepr, now: float) -> None:
        """Handle one received NDP message (checksum, code and options already checked)."""
        c = self.counters
        c.rx_messages += 1
        if hop_limit != 255:
            c.rx_invalid += 1
            return
        if isinstance(msg, NeighborSolicit):
            self._input_ns(src, dst, msg, now)
        elif isinstance(msg, NeighborAdvert):
            self._input_na(dst, msg, now)
        elif isinstance(msg, RouterAdvert):
            self._input_ra(src, msg, now)
        elif isinstance(msg, Redirect):
            self._input_redirect(src, msg, now)
        # Router solicitations are for routers; a host ignores them (RFC 4861 6.2.6).

    def _input_ns(self, src: bytes, dst: bytes, ns: NeighborSolicit, now: float) -> None:
        c = self.counters
        sll = link_addr(ns.options, source=True)
        dad = src == UNSPECIFIED
        if dad and (dst[:13] != solicited_node(ns.target).packed[:13] or sll is not None):
            c.rx_invalid += 1
            return
        target = ns.target.packed
        a = self.addresses.get(target)
        if a is None:
            return
        if a.tentative:
            if dad:  # someone else is probing for the same address (RFC 4862 5.4.3)
                self._dad_failed(target)
            return
        if sll is not None:
            self._learn(src, sll.packed, now)
        tll = (LinkAddrOption(False, MacAddr(self.mac)),)
        c.na_sent += 1
        if dad:
            na = NeighborAdvert(False, False, True, ns.target, tll)
            self._send_ndp(multicast_mac(ALL_NODES), target, ALL_NODES, na)
            return
        na = NeighborAdvert(False, True, True, ns.target, tll)
        frame = self.icmp_frame(bytes(6), target, src, na.to_icmp())
        if sll is not None:
            frame[0:6] = sll.packed
            self._transmit((frame,))
        else:
            self.send(src, (frame,), now)

    def _input_na(self, dst: bytes, na: NeighborAdvert, now: float) -> None:
        c = self.counters
        if na.solicited and dst[0] == 0xFF:
            c.rx_invalid += 1
            return
        target = na.target.packed
        a = self.addresses.get(target)
        if a is not None:
            if a.tentative:
                self._dad_failed(target)
            else:
                c.address_conflicts += 1
            return
        e = self.cache.get(target)
        if e is None:
            return
        tll = link_addr(na.options, source=False)
        mac = tll.packed if tll is not None else None
        if e.state == State.INCOMPLETE:
            if mac is None:
                return
            e.mac = mac
            if na.solicited:
                self._set(e, State.REACHABLE, now + self.reachable)
            else:
                self._set(e, State.STALE, now + self.config.stale_timeout)
            e.router = na.router
            c.resolved += 1
            self._flush(e)
            return
        different = mac is not None and mac != e.mac
        if not na.override and different:
            if e.state == State.REACHABLE:
                self._set(e, State.STALE, now + self.config.stale_timeout)
            return
        if different:
            e.mac = mac
        if na.solicited:
            e.probes = 0
            self._set(e, State.REACHABLE, now + self.reachable)
        elif different:
            self._set(e, State.STALE, now + self.config.stale_timeout)
        if e.router and not na.router:
            self.routers.pop(target, None)
        e.router = na.router

    def _input_ra(self, src: bytes, ra: RouterAdvert, now: float) -> None:
        c = self.counters
        if src[:2] != b"\xfe\x80":
            c.rx_invalid += 1
            return
        c.ras_received += 1
        self._rs_at, self._rs_left = math.inf, 0
        if ra.hop_limit:
            self.hop_limit = ra.hop_limit
        if ra.reachable_time and ra.reachable_time / 1000 != self.base_reachable:
            self.base_reachable = ra.reachable_time / 1000
            self.reachable = self._random_reachable()
        if ra.retrans_timer:
            self.retrans = ra.retrans_timer / 1000
        if ra.router_lifetime:
            self.routers[src] = now + ra.router_lifetime
            self._wake(self.routers[src])
        else:
            self.routers.pop(src, None)
        for o in ra.options:
            if isinstance(o, LinkAddrOption) and o.source:
                self._learn(src, o.mac.packed, now, router=True)
            elif isinstance(o, MtuOption):
                # RFC 4861 6.3.4: only a value the link can carry (a larger one is
                # ignored, not clamped: it must not undo a smaller one).
                if o.mtu >= 1280 and (self.max_mtu is None or o.mtu <= self.max_mtu):
                    self.mtu = o.mtu
            elif isinstance(o, PrefixInfo):
                self._prefix(o, now)
            elif isinstance(o, RdnssOption):
                self._rdnss(o, now)

    def _rdnss(self, o: RdnssOption, now: float) -> None:
        """RFC 8106 5.1: servers for ``lifetime`` seconds; 0 withdraws them."""
        for a in o.servers:
            if o.lifetime == 0:
                self.dns_servers.pop(a.packed, None)
            else:
                life = math.inf if o.lifetime == INFINITE else float(o.lifetime)
                self.dns_servers[a.packed] = now + life

    def dns_servers_at(self, now: float) -> list[bytes]:
        """The DNS servers router advertisements offered that are still valid."""
        return [a for a, until in self.dns_servers.items() if until > now]

    def _prefix(self, pi: PrefixInfo, now: float) -> None:
        """RFC 4861 6.3.4 (on-link prefixes) and RFC 4862 5.5.3 (autoconfiguration)."""
        if pi.prefix.is_link_local:
            return
        net = pi.network
        valid = math.inf if pi.valid_lifetime == INFINITE else float(pi.valid_lifetime)
        pref = math.inf if pi.preferred_lifetime == INFINITE else float(pi.preferred_lifetime)
        if pi.on_link:
            if valid == 0:
                self.prefixes.pop(net, None)
            else:
                self.prefixes[net] = now + valid
                self._wake(now + valid)
        if not (pi.autonomous and self.config.slaac) or pref > valid or pi.prefix_len != 64:
            return
        addr = net.network_address.packed[:8] + self.iid
        a = self.addresses.get(addr)
        if a is None:
            if valid > 0 and self.add_address(
                addr, 64, now, valid=valid, preferred=pref, autoconf=True
            ):
                self.counters.addresses_autoconfigured += 1
            return
        if not a.autoconf:
            return
        a.preferred_until = now + pref
        remaining = a.valid_until - now
        if valid > TWO_HOURS or valid > remaining:
            a.valid_until = now + valid
        elif remaining > TWO_HOURS:
            a.valid_until = now + TWO_HOURS
        self._wake(min(a.preferred_until, a.valid_until))

    def _input_redirect(self, src: bytes, rd: Redirect, now: float) -> None:
        """RFC 4861 8.3: only from our current first hop towards that destination."""
        c = self.counters
        dest, target = rd.dest.packed, rd.target.packed
        if src[:2] != b"\xfe\x80" or (target != dest and target[:2] != b"\xfe\x80"):
            c.rx_invalid += 1
            return
        if self.next_hop(dest, now) != src:
            c.rx_invalid += 1
            return
        c.redirects_received += 1
        if len(self.redirects) >= self.config.max_redirects:
            del self.redirects[next(iter(self.redirects))]
        self.redirects[dest] = target
        tll = link_addr(rd.options, source=False)
        if tll is not None:
            self._learn(target, tll.packed, now, router=target != dest)
