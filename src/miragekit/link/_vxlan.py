"""A NETWORK backend that carries Ethernet frames in VXLAN (RFC 7348) over a UDP socket.

This is how stacks leave one process or one machine and join overlays the industry already
runs: the Linux kernel's ``vxlan`` devices and Open vSwitch speak the same protocol.

Why this shape (docs/DATAPATH): the socket is non-blocking; one ``add_reader`` wake-up
reads a batch of datagrams into one reusable buffer until EAGAIN and hands each inner
frame to the synchronous :class:`FrameLink` receiver; sends are direct ``sendmsg`` calls
with the 8-byte header as a separate buffer (no copy), queued (bounded) only on EAGAIN.

Forwarding, as the kernel's vxlan device does it:

* a unicast destination MAC learned from incoming traffic (source MAC -> the sender's
  UDP endpoint, expiring after ``learn_ttl``, at most ``learn_limit`` entries) goes to
  that endpoint only;
* broadcast, multicast and unknown unicast are flooded: to the multicast ``group`` if one
  is configured, else to every static remote and every learned endpoint (head-end
  replication).

Received datagrams that are short, have flags other than exactly the I flag (strict, like
the kernel: other bits announce extensions whose payload may not be Ethernet), or carry
another VNI are dropped and counted per reason; so are frames with our own source MAC
(multicast echo or a loop).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import math
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Self

from ..macaddr import MacAddr
from ..result import Error, NetworkError, Ok, Unknown
from ..v1 import Buffer, Network
from ..wire import vxlan as wire
from ._fd import FdLink
from ._frame import FrameLink
from ._netns import in_netns

Endpoint = tuple[str, int]

DEFAULT_MTU: Final = 1500 - wire.OVERHEAD_V4
"""1450: the inner MTU over a 1500-byte IPv4 underlay (the kernel's default too)."""
READ_BATCH: Final = 256
"""Datagrams read per wake-up at most, so one busy socket cannot starve the loop."""

_HDR = struct.Struct("!II6x6s")  # flags word, VNI word, inner destination, inner source
_FLAGS_WORD: Final = wire.FLAG_I << 24


@dataclass(frozen=True, slots=True)
class VxlanConfig:
    """Where a :class:`VxlanNetif` sits on the underlay and which segment it joins.

    ``local`` is the UDP address to bind (port 0 picks a free one); ``remotes`` are the
    static flood endpoints; ``group`` a multicast group to flood to and join instead;
    ``mtu`` the inner Ethernet MTU (default 1450 = 1500 - 50); ``learn_ttl`` 0 turns
    learning off; ``netns`` opens the socket inside that named network namespace
    (``/var/run/netns/<name>``), where the underlay lives.

    ``dstport`` is the UDP port of learned endpoints. VTEPs send from a source port that
    is a hash of the inner flow (RFC 7348 5.) and listen on the segment's port, so a
    learned endpoint is the sender's IP and ``dstport``: by default our own local port
    (every member of a segment normally uses the same one). With a local port of 0
    (members on one address, each on its own port), the default is the port each
    datagram came from: miragekit sends from the port it listens on.
    """

    vni: int
    local: Endpoint = ("0.0.0.0", wire.UDP_PORT)
    remotes: Sequence[Endpoint] = ()
    group: str | None = None
    mac: MacAddr | str | None = None
    mtu: int | None = None
    learn_ttl: float = 300.0
    learn_limit: int = 4096
    netns: str | None = None
    dstport: int | None = None
    tx_queue_limit: int = 1024
    rx_queue_limit: int = 1024

    def __post_init__(self) -> None:
        if not 0 <= self.vni <= wire.VNI_MAX:
            raise ValueError(f"vni: {self.vni} is outside 0..{wire.VNI_MAX}")
        fam = _check_endpoint("local", self.local, allow_port0=True)
        object.__setattr__(self, "local", _normal(self.local))
        rs = []
        for r in self.remotes:
            if _check_endpoint("remotes", r) != fam:
                raise ValueError(f"remotes: {r!r} is not of the local address's family")
            if ipaddress.ip_address(r[0]).is_multicast:
                raise ValueError(f"remotes: {r[0]} is multicast; use group=")
            rs.append(_normal(r))
        object.__setattr__(self, "remotes", tuple(rs))
        if self.group is not None:
            g = _ip("group", self.group)
            if not g.is_multicast:
                raise ValueError(f"group: {self.group} is not a multicast address")
            if g.version != fam:
                raise ValueError(f"group: {self.group} is not of the local address's family")
        if self.mac is not None:
            mac = MacAddr(self.mac) if isinstance(self.mac, str) else self.mac
            if mac.is_multicast:
                raise ValueError(f"mac: {mac} is a multicast address")
            object.__setattr__(self, "mac", mac)
        if self.mtu is not None and not 68 <= self.mtu <= 65535 - wire.OVERHEAD_V6:
            raise ValueError(f"mtu: {self.mtu} is outside 68..{65535 - wire.OVERHEAD_V6}")
        if self.netns is not None and (self.netns in ("", ".", "..") or "/" in self.netns):
            raise ValueError(f"netns: {self.netns!r} is not a namespace name")
        if self.dstport is not None and not 1 <= self.dstport <= 65535:
            raise ValueError(f"dstport: {self.dstport} is outside 1..65535")
        if not (self.learn_ttl >= 0 and math.isfinite(self.learn_ttl)):
            raise ValueError(f"learn_ttl: {self.learn_ttl} is not a finite number >= 0")
        for name in ("learn_limit", "tx_queue_limit", "rx_queue_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.local[0]).version


def _ip(what: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IP address") from None


def _normal(ep: tuple[Any, Any]) -> Endpoint:
    """The endpoint as sockets report it (so that ``::0:1`` and ``::1`` compare equal)."""
    return (str(ipaddress.ip_address(ep[0])), int(ep[1]))


def _check_endpoint(what: str, ep: Any, *, allow_port0: bool = False) -> int:
    if not (isinstance(ep, tuple) and len(ep) == 2 and isinstance(ep[1], int)):
        raise ValueError(f"{what}: {ep!r} is not an (ip, port) pair")
    lo = 0 if allow_port0 else 1
    if not lo <= ep[1] <= 65535:
        raise ValueError(f"{what}: port {ep[1]} is outside {lo}..65535")
    return _ip(what, str(ep[0])).version


def parse_vxlan_spec(text: str) -> VxlanConfig:
    """Parse the runner's ``vxlan:VNI@LOCAL_ADDR[:PORT][,REMOTE[:PORT]]...[,key=value]...``.

    The ``vxlan:`` prefix is optional. IPv6 addresses go in brackets (``[::1]:4789``).
    A remote without a port uses the local port; the local port defaults to 4789. Keys:
    ``group``, ``mac``, ``mtu``, ``ttl`` (the learning TTL in seconds; 0 turns it off),
    ``netns``, ``dstport`` (see :class:`VxlanConfig`). Example: ``vxlan:42@10.0.0.1:4789,10.0.0.2,10.0.0.3:8472,mtu=1400``.
    """
    body = text.strip()
    if body.startswith("vxlan:"):
        body = body[len("vxlan:") :]
    vni_s, at, rest = body.partition("@")
    if not at:
        raise ValueError(f"vxlan spec {text!r}: expected VNI@LOCAL_ADDR[:PORT],REMOTE...")
    try:
        vni = int(vni_s, 0)
    except ValueError:
        raise ValueError(f"vxlan spec {text!r}: VNI {vni_s!r} is not a number") from None
    if not 0 <= vni <= wire.VNI_MAX:
        raise ValueError(f"vxlan spec {text!r}: VNI {vni} is outside 0..{wire.VNI_MAX}")
    items = [i.strip() for i in rest.split(",")]
    if not items[0]:
        raise ValueError(f"vxlan spec {text!r}: the local address is missing")
    local = _parse_endpoint(text, "local address", items[0], wire.UDP_PORT)
    remotes: list[Endpoint] = []
    opts: dict[str, Any] = {}
    for item in items[1:]:
        if not item:
            raise ValueError(f"vxlan spec {text!r}: an empty item between commas")
        key, eq, value = item.partition("=")
        if not eq:
            remotes.append(_parse_endpoint(text, "remote", item, local[1]))
            continue
        try:
            if key == "group":
                opts["group"] = value
            elif key == "mac":
                opts["mac"] = MacAddr(value)
            elif key == "mtu":
                opts["mtu"] = int(value)
            elif key == "ttl":
                opts["learn_ttl"] = float(value)
            elif key == "netns":
                opts["netns"] = value
            elif key == "dstport":
                opts["dstport"] = int(value)
            else:
                raise ValueError("known keys are group, mac, mtu, ttl, netns, dstport")
        except ValueError as e:
            raise ValueError(f"vxlan spec {text!r}: option {key!r}: {e}") from None
    try:
        return VxlanConfig(vni=vni, local=local, remotes=remotes, **opts)
    except ValueError as e:
        raise ValueError(f"vxlan spec {text!r}: {e}") from None


def _parse_endpoint(text: str, what: str, item: str, default_port: int) -> Endpoint:
    if item.startswith("["):
        host, close, port_s = item[1:].partition("]")
        if not close or (port_s and not port_s.startswith(":")):
            raise ValueError(f"vxlan spec {text!r}: {what} {item!r}: write [IPv6]:PORT")
        port_s = port_s[1:]
    else:
        host, _, port_s = item.partition(":")
        if ":" in port_s:
            raise ValueError(f"vxlan spec {text!r}: {what} {item!r}: put IPv6 in brackets")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"vxlan spec {text!r}: {what} {host!r} is not an IP address") from None
    if not port_s:
        return (host, default_port)
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"vxlan spec {text!r}: {what} port {port_s!r} is not in 0..65535")
    return (host, int(port_s))


def _open_socket(cfg: VxlanConfig) -> socket.socket:
    v6 = cfg.family == 6
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        host, port = cfg.local
        if cfg.group is None:
            s.bind((host, port))
        else:
            # Multicast is only delivered to sockets bound to the wildcard (or the group).
            # SO_REUSEADDR lets the port be shared with other listeners (a kernel vxlan
            # device, another member): each gets the multicast, but unicast goes to one
            # only: one member in group mode per host (network namespace).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if v6 else "0.0.0.0", port))
            g = ipaddress.ip_address(cfg.group).packed
            if v6:
                mreq = g + struct.pack("@I", 0)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            else:
                ifaddr = ipaddress.IPv4Address(host).packed
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, g + ifaddr)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, ifaddr)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if not v6:
            # Like the kernel's vxlan without ``df set``: let the underlay fragment.
            s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    except BaseException:
        s.close()
        raise
    return s


@dataclass(slots=True)
class VxlanCounters:
    """What :class:`~miragekit.v1.Stats` does not count: drops, errors, learning."""

    rx_short: int = 0  # shorter than the VXLAN header plus an Ethernet header
    rx_bad_flags: int = 0  # flags other than exactly the I flag
    rx_bad_vni: int = 0  # another segment's VNI
    rx_looped: int = 0  # our own source MAC came back (multicast echo, a loop)
    rx_dropped: int = 0  # the async listen queue had no room
    rx_errors: int = 0  # errors the socket reported on receive
    tx_datagrams: int = 0  # UDP datagrams handed to the socket (replicas included)
    tx_oversize: int = 0  # frames above the MTU, dropped
    tx_no_remote: int = 0  # frames with nowhere to go (no remote, group or entry)
    tx_queued: int = 0  # datagrams that waited for the socket to become writable
    tx_dropped: int = 0  # datagrams/frames dropped: queue full, error or disconnected
    tx_errors: int = 0
    learned: int = 0  # new MAC -> endpoint entries
    moved: int = 0  # a known MAC seen from a new endpoint
    expired: int = 0
    learn_full: int = 0  # new MACs not learned because the table was full


@dataclass(slots=True)
class _Entry:
    endpoint: Any  # the sockaddr as the socket reports it
    seen: float = field(default=0.0)


class VxlanNetif(FdLink[tuple[bytes, Any], VxlanCounters]):
    """One VXLAN tunnel endpoint (VTEP) for one VNI; ``mac()`` is our stack's MAC."""

    def __init__(
        self, sock: socket.socket, config: VxlanConfig, *, loop: asyncio.AbstractEventLoop
    ) -> None:
        mac = config.mac if isinstance(config.mac, MacAddr) else MacAddr.local(os.urandom(6))
        super().__init__(
            sock.fileno(),
            loop=loop,
            mtu=config.mtu if config.mtu is not None else DEFAULT_MTU,
            mac=mac,
            counters=VxlanCounters(),
            rbuf_size=65536,
            tx_queue_limit=config.tx_queue_limit,
            rx_queue_limit=config.rx_queue_limit,
        )
        self.config = config
        self._sock = sock
        self._v6 = config.family == 6
        self._mac_b = mac.packed
        self._hdr = wire.header(config.vni)
        self._vni_word = config.vni << 8
        self._ttl = config.learn_ttl
        self._learn = config.learn_ttl > 0
        self._learn_port = config.dstport if config.dstport is not None else config.local[1]
        self._limit = config.learn_limit
        self._fdb: dict[bytes, _Entry] = {}
        # The same member list may be given to every member: we are not our own remote.
        self._static: dict[Any, None] = dict.fromkeys(
            r for r in config.remotes if r != config.local
        )
        self._group: Any = (config.group, config.local[1]) if config.group else None
        self._flood: tuple[Any, ...] = ()
        self._flood_until = -math.inf

    # --- DEVICE ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, id: VxlanConfig | str) -> Ok[Self] | Error[NetworkError]:
        """Open the tunnel endpoint: ``id`` is a :class:`VxlanConfig` or a spec string
        for :func:`parse_vxlan_spec`. Socket errors (address in use, no such namespace)
        are returned as ``Error(Unknown(...))``."""
        if isinstance(id, str):
            cfg = parse_vxlan_spec(id)
        elif isinstance(id, VxlanConfig):
            cfg = id
        else:
            raise TypeError(f"id: expected a VxlanConfig or a spec string, got {id!r}")
        loop = asyncio.get_running_loop()
        try:
            if cfg.netns is not None:
                netns = cfg.netns
                sock = in_netns(netns, lambda: _open_socket(cfg))
            else:
                sock = _open_socket(cfg)
        except OSError as e:
            where = f" in netns {cfg.netns}" if cfg.netns else ""
            msg = e.strerror or str(e)
            return Error(Unknown(f"vxlan {cfg.local[0]}:{cfg.local[1]}{where}: {msg}"))
        return Ok(cls(sock, cfg, loop=loop))

    def id(self) -> str:
        host, port = self.local_addr
        h = f"[{host}]" if self._v6 else host
        return f"vxlan:{self.config.vni}@{h}:{port}"

    @property
    def local_addr(self) -> Endpoint:
        """The bound UDP address (with the real port when the config asked for 0)."""
        a = self._sock.getsockname() if self._connected else self.config.local
        return (str(a[0]), int(a[1]))

    def _close_fd(self) -> None:
        self._sock.close()

    # --- forwarding table ------------------------------------------------------------------

    def add_remote(self, endpoint: Endpoint) -> None:
        """Add a static flood endpoint (like ``bridge fdb append 00:00:00:00:00:00``)."""
        fam = _check_endpoint("endpoint", endpoint)
        if fam != self.config.family:
            raise ValueError(f"endpoint: {endpoint!r} is not of the local address's family")
        if ipaddress.ip_address(endpoint[0]).is_multicast:
            raise ValueError(f"endpoint: {endpoint[0]} is multicast; use group=")
        ep = _normal(endpoint)
        if ep != self.local_addr:
            self._static[ep] = None
            self._flood_until = -math.inf

    def remove_remote(self, endpoint: Endpoint) -> None:
        self._static.pop(_normal(endpoint), None)
        self._flood_until = -math.inf

    def remotes(self) -> list[Endpoint]:
        """The static flood endpoints."""
        return list(self._static)

    def fdb(self) -> dict[MacAddr, Endpoint]:
        """The live learned entries: remote MAC -> UDP endpoint."""
        now = self._loop.time()
        return {
            MacAddr(m): (str(e.endpoint[0]), int(e.endpoint[1]))
            for m, e in self._fdb.items()
            if now - e.seen < self._ttl
        }

    def flood_targets(self) -> list[Endpoint]:
        """Where broadcast and unknown unicast go now."""
        return [(str(a[0]), int(a[1])) for a in self._flood_targets(self._loop.time())]

    def _flood_targets(self, now: float) -> tuple[Any, ...]:
        if now < self._flood_until:
            return self._flood
        ttl, until = self._ttl, math.inf
        expired = [m for m, e in self._fdb.items() if now - e.seen >= ttl]
        for m in expired:
            del self._fdb[m]
        self.counters.expired += len(expired)
        targets: dict[Any, None] = dict(self._static)
        if self._group is not None:
            targets = {self._group: None, **targets}
        for e in self._fdb.values():
            until = min(until, e.seen + ttl)
            if self._group is None:
                targets[e.endpoint] = None
        self._flood = tuple(targets)
        self._flood_until = until
        return self._flood

    def _learn_entry(self, src: bytes, endpoint: Any, now: float) -> None:
        e = self._fdb.get(src)
        if e is not None:
            if e.endpoint != endpoint:
                self.counters.moved += 1
                e.endpoint = endpoint
                self._flood_until = -math.inf
            e.seen = now
            return
        if len(self._fdb) >= self._limit:
            self._flood_until = -math.inf
            self._flood_targets(now)  # purges the expired entries
            if len(self._fdb) >= self._limit:
                self.counters.learn_full += 1
                return
        self._fdb[src] = _Entry(endpoint, now)
        self.counters.learned += 1
        self._flood_until = -math.inf

    # --- FrameLink fast path --------------------------------------------------------------

    def _on_readable(self) -> None:
        recv, buf, view = self._sock.recvfrom_into, self._rbuf, self._rview
        st, c, unpack = self._stats, self.counters, _HDR.unpack_from
        vni_word, mac, v6 = self._vni_word, self._mac_b, self._v6
        fdb, learn, learn_port = self._fdb, self._learn, self._learn_port
        now = self._loop.time()
        for _ in range(READ_BATCH):
            try:
                n, addr = recv(buf)
            except BlockingIOError:
                return
            except OSError as err:
                c.rx_errors += 1
                if err.errno in (errno.EBADF, errno.ENOTSOCK):
                    self.set_receiver(None)
                    return
                continue
            if n < 22:
                c.rx_short += 1
                continue
            flags, vni, src = unpack(buf)
            if flags & 0xFF000000 != _FLAGS_WORD:
                c.rx_bad_flags += 1
                continue
            if vni & 0xFFFFFF00 != vni_word:
                c.rx_bad_vni += 1
                continue
            if src == mac:
                c.rx_looped += 1
                continue
            if learn and not src[0] & 1:
                if learn_port:
                    addr = (addr[0], learn_port)
                elif v6:
                    addr = addr[:2]
                e = fdb.get(src)
                if e is not None and e.endpoint == addr:
                    e.seen = now
                else:
                    self._learn_entry(src, addr, now)
            st.rx_pkts += 1
            st.rx_bytes += n - 8
            fn = self._receiver
            if fn is None:
                return
            fn(view[8:n])

    def send(self, frame: Buffer) -> None:
        self.sendv((frame,))

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        """Send one frame to its learned endpoint or flood it, now, without awaiting.

        ``tx_pkts``/``tx_bytes`` count frames accepted for transmission (once, however
        many replicas); datagrams the socket then refuses are ``counters.tx_dropped``.
        """
        c = self.counters
        if not self._connected:
            c.tx_dropped += 1
            return
        n = 0
        for b in bufs:
            n += len(b)
        if n - 14 > self._mtu:
            c.tx_oversize += 1
            return
        if n < 14:
            c.tx_dropped += 1
            return
        first = bufs[0]
        if len(first) < 6:
            first = b"".join(bufs)
        dst = bytes(first[:6])
        now = self._loop.time()
        e = self._fdb.get(dst)
        targets: tuple[Any, ...]
        if e is not None and now - e.seen < self._ttl:
            targets = (e.endpoint,)
        else:
            targets = self._flood_targets(now)
            if not targets:
                c.tx_no_remote += 1
                return
        parts = [self._hdr, *bufs]
        sendmsg = self._sock.sendmsg
        for addr in targets:
            if self._txq:
                self._enqueue((b"".join(parts), addr))
                continue
            try:
                sendmsg(parts, (), 0, addr)
            except BlockingIOError:
                self._enqueue((b"".join(parts), addr))
                continue
            except OSError:
                c.tx_errors += 1
                c.tx_dropped += 1
                continue
            c.tx_datagrams += 1
        self._stats.tx_pkts += 1
        self._stats.tx_bytes += n

    def _on_writable(self) -> None:
        q, c, sendto = self._txq, self.counters, self._sock.sendto
        while q:
            datagram, addr = q[0]
            try:
                sendto(datagram, addr)
            except BlockingIOError:
                return
            except OSError:
                c.tx_errors += 1
                c.tx_dropped += 1
            else:
                c.tx_datagrams += 1
            q.popleft()
        self._loop.remove_writer(self._fd)
        self._writing = False


_check: type[Network] = VxlanNetif
_check_link: type[FrameLink] = VxlanNetif
