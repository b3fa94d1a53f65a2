"""ARP (RFC 826) for one Ethernet interface, sans-I/O.

The cache maps IPv4 addresses (as ints) to MACs with an expiry and a bounded size
(oldest entry evicted). Packets towards an unresolved address wait in a bounded
per-destination queue while requests are retried; when retries run out the queue is
dropped and counted. Time comes in as ``now``; frames go out through ``transmit``; a new
deadline is announced through ``wake(when)`` so a driver can set one timer.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..v1 import Buffer

Transmit = Callable[[Sequence[Buffer]], None]
Observer = Callable[[int, bytes, int, int], None]
"""``observer(op, sender_mac, sender_ip, target_ip)`` for every well-formed ARP packet
from another host (DHCP's address check watches these, RFC 5227)."""

BROADCAST: Final = b"\xff" * 6
ZERO_MAC: Final = b"\0" * 6
_ETH_ARP: Final = struct.Struct("!6s6sHHHBBH6s4s6s4s")
_ARP_FIELDS: Final = struct.Struct("!8s6sI6sI")  # the fixed head, sha, spa, tha, tpa
_ARP_HEAD: Final = struct.Struct("!HHBBH")  # htype, ptype, hlen, plen, op
# In an Ethernet frame: the destination's first byte, the ethertype, head, sha, spa, tpa.
_FRAME_FIELDS: Final = struct.Struct("!B11xH8s6sI6xI")
_ETHERTYPE_ARP: Final = 0x0806
_REQUEST_HEAD: Final = bytes.fromhex("0001080006040001")  # Ethernet, IPv4, 6, 4, request
_REPLY_HEAD: Final = bytes.fromhex("0001080006040002")
ARP_FRAME_LEN: Final = 14 + 28
DEFEND_INTERVAL: Final = 10.0
"""RFC 5227 2.4 (b): at most one defending announcement per this many seconds."""
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class ArpConfig:
    max_entries: int = 512
    entry_ttl: float = 60.0
    retry_interval: float = 1.0
    retries: int = 3  # requests sent before giving up
    queue_packets: int = 64  # per destination
    queue_bytes: int = 128 * 1024  # per destination
    max_pending: int = 128  # destinations being resolved at once
    reachable_time: float = 30.0
    """How long an entry counts as confirmed (Linux's base_reachable_time); used after
    that, it is checked with unicast requests to the MAC we know (RFC 1122 2.3.2.1)."""
    unicast_probes: int = 3  # unanswered checks before the entry is dropped


@dataclass(slots=True)
class ArpCounters:
    rx_packets: int = 0
    rx_malformed: int = 0  # short, or not Ethernet/IPv4
    rx_ignored: int = 0  # unknown operation, from ourselves, or a probe we do not answer
    requests_sent: int = 0
    replies_sent: int = 0
    gratuitous_sent: int = 0
    probes_sent: int = 0
    resolved: int = 0
    resolution_failed: int = 0
    queued: int = 0
    dropped_queue_full: int = 0
    dropped_unresolved: int = 0
    evicted: int = 0
    unicast_probes: int = 0  # requests sent to a known MAC to check the entry
    stale_dropped: int = 0  # entries dropped after unanswered checks
    conflicts: int = 0  # someone else claims our address
    defended: int = 0  # announcements sent to defend our address (RFC 5227 2.4)
    rx_martian: int = 0  # sender address broadcast, multicast or loopback
    rx_unsolicited: int = 0  # replies that nothing asked for (not cached, as Linux)


@dataclass(slots=True)
class _Pending:
    next_at: float
    tries: int = 1
    size: int = 0
    frames: deque[bytearray] = field(default_factory=deque)


_READ: Final[dict[memoryview, tuple[bool, bytes, object, object]]] = {}
"""What :meth:`Arp.passes_by` read of recent broadcasts (views of bytes, keyed by their
content; see :func:`_request_fields`): a switch hands one view of a broadcast to every
port, so each frame is read once, not once per host (a view's hash is computed once and
kept in it)."""
_READ_MAX: Final = 4096


def _request_fields(frame: memoryview) -> tuple[bool, bytes, object, object]:
    """(whether it may pass by any host, sha, spa, tpa) of an Ethernet frame of an ARP
    frame's full length: what :meth:`Arp.passes_by` asks of the frame alone (a broadcast
    or multicast ARP request from a unicast sender neither multicast nor loopback),
    answered once for all the hosts it reaches. The addresses stay Python ints
    (``object``): a compiled caller would box them anew for each set or dict it looks
    them up in."""
    dst, etype, head, sha, spa, tpa = _FRAME_FIELDS.unpack_from(frame)
    first = spa >> 24
    ok = (
        dst & 1 == 1
        and etype == _ETHERTYPE_ARP
        and head == _REQUEST_HEAD
        and not sha[0] & 1
        and first < 224
        and first != 127
    )
    return ok, sha, spa, tpa


def ip_multicast_mac(ip: int) -> bytes:
    """The RFC 1112 MAC for multicast group ``ip``."""
    return bytes((0x01, 0x00, 0x5E, (ip >> 16) & 0x7F, (ip >> 8) & 0xFF, ip & 0xFF))


class Arp:
    """The ARP state of one interface with MAC ``mac``."""

    def __init__(
        self,
        mac: bytes,
        transmit: Transmit,
        *,
        wake: Callable[[float], None] = lambda when: None,
        config: ArpConfig | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.mac = bytes(mac)
        self._on_change = on_change
        self._transmit = transmit
        self._wake = wake
        self.config = config or ArpConfig()
        self.counters = ArpCounters()
        self.ips: set[int] = set()
        self._cache: dict[int, tuple[bytes, float]] = {}
        self.generation = 0
        """Bumped whenever a cache entry is added, removed or gets another MAC (and
        ``on_change`` called): whoever keeps a MAC from :meth:`lookup_entry` looks it up
        again. A refresh with the same MAC leaves it (the holder asks again at ``until``)."""
        self._pending: dict[int, _Pending] = {}
        self._confirmed: dict[int, float] = {}  # ip: confirmed until
        self._checking: dict[int, tuple[int, float]] = {}  # ip: (checks sent, next at)
        self.observer: Observer | None = None
        self.subnet_broadcast: int | None = None
        """The directed broadcast of our subnet: never a sender address (IPv4 sets it)."""
        self._defended_at = -DEFEND_INTERVAL

    # --- the cache ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Addresses being resolved, with packets waiting for them."""
        return len(self._pending)

    def _changed(self) -> None:
        self.generation += 1
        if self._on_change is not None:
            self._on_change()

    def lookup(self, ip: int, now: float) -> bytes | None:
        e = self._cache.get(ip)
        if e is None:
            return None
        if e[1] <= now:
            self._forget(ip)
            return None
        if self._confirmed.get(ip, 0.0) <= now and ip not in self._checking:
            self._check(ip, e[0], 0, now)
        return e[0]

    def lookup_entry(self, ip: int, now: float) -> tuple[bytes, float] | None:
        """``(mac, until)`` of a live entry: the MAC may be kept until ``until``, or
        until :attr:`generation` changes, whichever comes first (``until`` is when the
        entry next needs a check, so that a sender keeping it asks again)."""
        if self.lookup(ip, now) is None:
            return None
        mac, expiry = self._cache[ip]
        c = self._checking.get(ip)
        until = c[1] if c is not None else self._confirmed.get(ip, expiry)
        return mac, min(expiry, until)

    def _forget(self, ip: int) -> None:
        if self._cache.pop(ip, None) is not None:
            self._changed()
        self._confirmed.pop(ip, None)
        self._checking.pop(ip, None)

    def _check(self, ip: int, mac: bytes, sent: int, now: float) -> None:
        """Ask ``ip`` at the MAC we know whether it is still there (a unicast request);
        after :attr:`ArpConfig.unicast_probes` unanswered ones the entry goes, and the
        next packet asks the whole link again (a host that changed its MAC is found)."""
        cfg = self.config
        if sent >= cfg.unicast_probes:
            self.counters.stale_dropped += 1
            self._forget(ip)
            return
        nxt = now + cfg.retry_interval
        self._checking[ip] = (sent + 1, nxt)
        self.counters.unicast_probes += 1
        self._transmit((self._frame(mac, 1, self._source_ip(), mac, ip),))
        self._wake(nxt)

    def entries(self, now: float) -> dict[int, bytes]:
        return {ip: m for ip, (m, exp) in self._cache.items() if exp > now}

    def add_static(self, ip: int, mac: bytes, now: float) -> None:
        """An entry set by hand: never checked (it still expires with the others)."""
        self._learn(ip, mac, now)
        self._confirmed[ip] = float("inf")

    def _learn(self, ip: int, mac: bytes, now: float) -> None:
        cache = self._cache
        old = cache.get(ip)
        if old is not None:
            del cache[ip]  # re-insert at the end: the dict order is the eviction order
        elif len(cache) >= self.config.max_entries:
            self._forget(next(iter(cache)))
            self.counters.evicted += 1
        cache[ip] = (mac, now + self.config.entry_ttl)
        self._confirmed[ip] = now + self.config.reachable_time
        self._checking.pop(ip, None)
        if old is None or old[0] != mac:
            # A refresh that confirms the MAC we had changes nothing a holder kept: its
            # `until` (lookup_entry) only comes sooner than the refreshed entry's. At 500
            # hosts every broadcast from a known sender refreshed, and so invalidated
            # every prebuilt header of the host.
            self._changed()
        p = self._pending.pop(ip, None)
        if p is not None:
            self.counters.resolved += 1
            for frame in p.frames:
                frame[0:6] = mac
                self._transmit((frame,))

    # --- output ------------------------------------------------------------------------

    def send(self, ip: int, bufs: Sequence[Buffer], now: float) -> None:
        """Send an Ethernet frame (``bufs``, first 6 bytes = destination MAC) to ``ip``.

        ``bufs[0]`` must be writable when the MAC is known (it is filled in place);
        otherwise the frame is copied and waits for the resolution.
        """
        mac = self.lookup(ip, now)
        if mac is not None:
            head = bufs[0]
            assert isinstance(head, bytearray | memoryview)
            head[0:6] = mac
            self._transmit(bufs)
            return
        p = self._pending.get(ip)
        if p is None:
            if len(self._pending) >= self.config.max_pending:
                self.counters.dropped_queue_full += 1
                return
            p = self._pending[ip] = _Pending(next_at=now + self.config.retry_interval)
            self._request(ip)
            self._wake(p.next_at)
        size = sum(len(b) for b in bufs)
        cfg = self.config
        if len(p.frames) >= cfg.queue_packets or p.size + size > cfg.queue_bytes:
            self.counters.dropped_queue_full += 1
            return
        p.frames.append(bytearray(b"".join(bufs)))
        p.size += size
        self.counters.queued += 1

    def _source_ip(self) -> int:
        return min(self.ips) if self.ips else 0

    def _request(self, ip: int) -> None:
        self.counters.requests_sent += 1
        self._transmit((self._frame(BROADCAST, 1, self._source_ip(), ZERO_MAC, ip),))

    def _frame(self, eth_dst: bytes, op: int, spa: int, tha: bytes, tpa: int) -> bytes:
        return _ETH_ARP.pack(
            eth_dst,
            self.mac,
            0x0806,
            1,
            0x0800,
            6,
            4,
            op,
            self.mac,
            spa.to_bytes(4, "big"),
            tha,
            tpa.to_bytes(4, "big"),
        )

    def probe(self, ip: int) -> None:
        """Send an ARP probe for ``ip``: sender address 0.0.0.0 (RFC 5227 2.1.1)."""
        self.counters.probes_sent += 1
        self._transmit((self._frame(BROADCAST, 1, 0, ZERO_MAC, ip),))

    def announce(self, ip: int) -> None:
        """Send a gratuitous ARP request for ``ip`` (on a new address, RFC 5227 2.4)."""
        self.counters.gratuitous_sent += 1
        self._transmit((self._frame(BROADCAST, 1, ip, ZERO_MAC, ip),))

    # --- timers ------------------------------------------------------------------------

    def poll_at(self) -> float | None:
        times = [p.next_at for p in self._pending.values()]
        times += [c[1] for c in self._checking.values()]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for ip, (sent, at) in list(self._checking.items()):
            e = self._cache.get(ip)
            if e is None:
                del self._checking[ip]
            elif at <= now:
                self._check(ip, e[0], sent, now)
        for ip, p in list(self._pending.items()):
            if p.next_at > now:
                continue
            if p.tries >= self.config.retries:
                del self._pending[ip]
                self.counters.resolution_failed += 1
                self.counters.dropped_unresolved += len(p.frames)
                continue
            p.tries += 1
            p.next_at = now + self.config.retry_interval
            self._request(ip)

    # --- input -------------------------------------------------------------------------

    def passes_by(self, frame: memoryview) -> bool:
        """Whether Ethernet ``frame`` is a broadcast (or multicast) ARP request for another
        host's address from a sender we have no entry for: RFC 826 neither merges nor
        answers it, so :meth:`input` would only count it. Counted here as it would be there; the caller
        skips the rest of the input path.

        Why: on a segment of hundreds of hosts nearly every frame a host receives is
        one of these (each host's requests reach every port), and this is the only
        question to ask of them. Never true for what :meth:`input` would do more with
        (an observer, a conflict, a martian sender, a malformed packet).
        """
        try:
            # Found when the frame's contents are a kept frame's: the very view (the
            # switch hands one view of a broadcast to every port), or one whose bytes
            # compare equal now. Only views of bytes are kept, whose contents never
            # change, so the fields found are the frame's. Its buffer is asked of only
            # when it is not found.
            fields = _READ.get(frame)
        except (ValueError, TypeError):  # a view of a mutable buffer (a device's): no hash
            if len(frame) < ARP_FRAME_LEN:
                return False
            fields = _request_fields(frame)
        else:
            if fields is None:
                if len(frame) < ARP_FRAME_LEN:
                    return False
                fields = _request_fields(frame)
                if type(frame.obj) is bytes:  # immutable: its fields can be kept
                    if len(_READ) >= _READ_MAX:
                        _READ.clear()
                    _READ[frame] = fields
        ok, sha, spa, tpa = fields
        if not ok or sha == self.mac or self.observer is not None:
            return False
        ips = self.ips
        if tpa in ips or spa in ips or spa in self._cache or spa in self._pending:
            return False
        if spa == self.subnet_broadcast:
            return False
        self.counters.rx_packets += 1
        return True

    def input(self, packet: memoryview, now: float) -> None:
        """Handle one received ARP packet (the Ethernet payload). Never raises."""
        c = self.counters
        c.rx_packets += 1
        if len(packet) < 28:
            c.rx_malformed += 1
            return
        # One unpack gives the addresses as ints: on a shared segment most ARP is other
        # hosts' requests for other addresses, and they cost only these checks.
        head, sha, spa, _tha, tpa = _ARP_FIELDS.unpack_from(packet)
        if head != _REQUEST_HEAD and head != _REPLY_HEAD:
            htype, ptype, hlen, plen, _op = _ARP_HEAD.unpack(head)
            if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
                c.rx_malformed += 1
            else:
                c.rx_ignored += 1  # an operation other than request and reply
            return
        op = head[7]
        if sha == self.mac or sha[0] & 1:
            c.rx_ignored += 1
            return
        if self.observer is not None:
            self.observer(op, sha, spa, tpa)
        if spa in self.ips:
            self._conflict(spa, sha, now)
            return
        first = spa >> 24
        if first >= 224 or first == 127 or spa == self.subnet_broadcast:
            c.rx_martian += 1  # no host has that address: neither answer nor learn
            return
        for_us = tpa in self.ips
        # RFC 826 merge: refresh a known sender; learn it from a request for us or a
        # reply to a pending request of ours. Like Linux with arp_accept=0, a reply
        # nothing asked for creates no entry.
        if spa != 0 and ((for_us and op == 1) or spa in self._cache or spa in self._pending):
            self._learn(spa, sha, now)
        if op == 1 and for_us:
            c.replies_sent += 1
            self._transmit((self._frame(sha, 2, tpa, sha, spa),))
        elif op == 2 and spa not in self._cache:
            c.rx_unsolicited += 1

    def _conflict(self, ip: int, mac: bytes, now: float) -> None:
        """Another host claims our address: log it, and defend the address with one
        announcement unless we did within :data:`DEFEND_INTERVAL` (RFC 5227 2.4 (b))."""
        self.counters.conflicts += 1
        if now - self._defended_at < DEFEND_INTERVAL:
            return
        self._defended_at = now
        _log.warning(
            "ARP: %s claims our address %s; defending it",
            ":".join(f"{b:02x}" for b in mac),
            ipaddress.IPv4Address(ip),
        )
        self.counters.defended += 1
        self.announce(ip)
