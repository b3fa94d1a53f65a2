"""An in-process virtual Ethernet switch with impaired links.

Why: tests and simulations need many stacks on one L2 segment without root, TAP devices or
the kernel, and they need the network to misbehave on demand (latency, loss, a slow link,
a partition) in a way that is the same on every run.

Each :class:`VnetIf` is plugged into the switch by a full-duplex link whose
:class:`LinkParams` apply to each direction separately: a frame from A to B crosses A's
link (towards the switch) and then B's link (towards B), so an impairment set on both
links applies twice. The switch learns source MACs and floods broadcast, multicast and
unknown destinations. Delivery is scheduled with ``loop.call_at`` on the running loop's
clock, so the switch works in real time and on :mod:`miragekit.sim` virtual time alike.
Every random draw comes from a per-direction ``random.Random`` seeded from the switch's
seed, the interface name and the direction, so each link's impairments are reproducible
on their own. :meth:`VnetSwitch.block` is a one-way partition.

Frames are dropped, never raised: each drop is counted on the link where it happens
(:class:`VnetCounters`, ``VnetIf.counters``).

A receiver installed with ``set_receiver_flags`` learns which frames the switch vouches
for (``CSUM_VALID``): all of them, until a port not marked with :meth:`VnetIf.vouch`
sends a frame or a frame crosses a link whose ``corrupt`` is set; from then on none, until
the switch starts over on a new event loop (no frame is in flight then).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Self

from ..compiled import mypyc_attr
from ..macaddr import MacAddr
from ..result import Error, NetworkError, Ok, Unknown
from ..v1 import Buffer, FrameCallback, Network, Stats
from ._frame import CSUM_VALID, FrameLink, FrameReceiver, MetaReceiver
from ._impair import (
    Flood,
    Frame,
    ImpairCounters,
    LinkParams,
    _Direction,
    _getrandbits,
    _random,
    fresh_seed,
    impair,
    link_rng,
)
from ._listen import SpawnedListens
from ._pool import _POOL_MIN, ETH_HEADER, MAX_MTU, VLAN_TAG, _BufferPool
from ._portstats import PortStats

_TPID_8021Q: Final = b"\x81\x00"
# The builtin, in a constant: compiled code looks a builtin it has no operation for up
# by name in the builtins module at each use (twice per delivered frame).
_memoryview: Final = memoryview


@dataclass(slots=True)
class VnetCounters(ImpairCounters):
    """Why frames on one link were dropped or altered (beyond the seed's stats)."""

    dropped_malformed: int = 0  # shorter than an Ethernet header
    dropped_mtu: int = 0  # larger than this interface's MTU
    dropped_partition: int = 0  # switch would not forward across a partition
    dropped_no_receiver: int = 0  # arrived while nobody listened
    dropped_disconnected: int = 0  # sent after disconnect


_registry: weakref.WeakValueDictionary[str, VnetSwitch] = weakref.WeakValueDictionary()


# A regular class when compiled: named switches are kept in a weak registry.
@mypyc_attr(native_class=False)
class VnetSwitch:
    """A learning Ethernet switch between in-process interfaces.

    ``seed`` seeds every link's impairments; ``None`` takes one from the running
    :class:`~miragekit.sim.SimLoop`'s generator, or from the OS outside a simulation.
    A ``name`` registers the switch so ``VnetIf.connect("name/ifname")`` can find it.
    ``aging`` is how long (seconds) a learned MAC stays valid without traffic.
    """

    def __init__(self, name: str | None = None, *, seed: int | None = None, aging: float = 300.0):
        if aging <= 0:
            raise ValueError(f"aging must be > 0 seconds, got {aging}")
        if seed is None:
            seed = fresh_seed()
        self._name = name
        self._seed = seed
        self._fabric = _Fabric(aging)
        self._next_index = 1
        try:
            home: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            home = None
        # The loop the switch was made on: its name is free again once that loop is closed
        # (the next ``sim.run`` in the same process may make its own "lan").
        self._home = None if home is None else weakref.ref(home)
        if name is not None:
            if VnetSwitch.named(name) is not None:
                raise ValueError(f"name: a switch named {name!r} already exists")
            _registry[name] = self

    def _stale(self) -> bool:
        if self._home is None:
            return False
        loop = self._home()
        return loop is None or loop.is_closed()

    @classmethod
    def named(cls, name: str) -> VnetSwitch | None:
        """The live switch registered under ``name``, if any (not one whose event loop
        has been closed)."""
        sw = _registry.get(name)
        if sw is not None and sw._stale():
            del _registry[name]
            return None
        return sw

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def trusted(self) -> bool:
        """Whether the switch vouches for the checksums of the frames it delivers now
        (``CSUM_VALID`` to receivers that asked, see :meth:`VnetIf.set_receiver_flags`)."""
        return self._fabric._trusted

    def distrust(self) -> None:
        """Stop vouching for good: every receiver verifies every frame from now on."""
        self._fabric._trusted = False
        self._fabric._distrusted = True

    def add_interface(
        self,
        name: str,
        mac: MacAddr | str | None = None,
        mtu: int = 1500,
        link: LinkParams | None = None,
        *,
        mirror: bool = False,
    ) -> VnetIf:
        """Plug in a new interface (its MAC defaults to ``02:6d:6b:`` + its port index).

        A ``mirror`` interface gets one copy of every frame any other interface sends into
        the switch, whatever its destination and across partitions (a SPAN port: wrap it
        in :class:`PcapNetif` to capture a whole simulated segment in one file).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        fabric = self._fabric
        if name in fabric._ports:
            raise ValueError(f"name: interface {name!r} already exists on this switch")
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= MAX_MTU:
            raise ValueError(f"mtu must be an int in [68, {MAX_MTU}], got {mtu!r}")
        if link is not None and not isinstance(link, LinkParams):
            raise TypeError(f"link must be a LinkParams, got {link!r}")
        index = self._next_index
        if mac is None:
            mac = MacAddr(b"\x02\x6d\x6b" + index.to_bytes(3, "big"))
        elif isinstance(mac, str):
            mac = MacAddr(mac)
        elif not isinstance(mac, MacAddr):
            raise TypeError(f"mac must be a MacAddr or str, got {mac!r}")
        self._next_index += 1
        # A copy: interfaces made from one LinkParams must not share it (cutting one
        # cable would cut them all); change ``port.link`` afterwards.
        port = VnetIf(self, name, mac, mtu, replace(link) if link is not None else LinkParams())
        fabric._ports[name] = port
        if mirror:
            port._mirror = True
            fabric._mirrors.append(port)
        fabric._flood_to = None
        return port

    def interfaces(self) -> list[VnetIf]:
        """The connected interfaces, in the order they were added."""
        return list(self._fabric._ports.values())

    def interface(self, name: str) -> VnetIf:
        try:
            return self._fabric._ports[name]
        except KeyError:
            raise ValueError(f"name: no interface {name!r} on this switch") from None

    def fdb(self) -> dict[MacAddr, str]:
        """The learned MAC table: address to interface name (expired entries excluded)."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            now = None
        fabric = self._fabric
        return {
            MacAddr(mac): e.port.name
            for mac, e in fabric._fdb.items()
            if now is None or now - e.seen <= fabric._aging
        }

    # --- partitions -----------------------------------------------------------------

    def partition(self, *groups: Iterable[VnetIf | str]) -> None:
        """Split the switch: frames only pass between interfaces of the same group.

        Interfaces named in no group form one more group together. Replaces any earlier
        partition; :meth:`heal` removes it.
        """
        mapping: dict[VnetIf, int] = {}
        for i, group in enumerate(groups):
            for member in group:
                port = self._resolve(member)
                if port in mapping:
                    raise ValueError(f"groups: interface {port.name!r} is in two groups")
                mapping[port] = i
        self._fabric._groups = mapping

    def block(self, src: VnetIf | str, dst: VnetIf | str) -> None:
        """A one-way partition: frames from ``src`` no longer reach ``dst`` (the other way
        still works), on top of any :meth:`partition`; :meth:`heal` removes it."""
        fabric = self._fabric
        fabric._blocked = fabric._blocked | {(self._resolve(src), self._resolve(dst))}

    def heal(self) -> None:
        """Remove the partition and every one-way block."""
        self._fabric._groups = {}
        self._fabric._blocked = set()

    def _resolve(self, member: VnetIf | str) -> VnetIf:
        if isinstance(member, VnetIf):
            if member._switch is not self or self._fabric._ports.get(member.name) is not member:
                raise ValueError(f"groups: {member.name!r} is not on this switch")
            return member
        if isinstance(member, str):
            return self.interface(member)
        raise TypeError(f"groups: members must be VnetIf or str, got {member!r}")


class _Learned:
    """A learned MAC address: the port it was last seen behind, and when.

    Why an object updated in place rather than a ``(port, time)`` tuple: every frame
    refreshes its sender's entry, and a new tuple (and time) per frame freed an old one
    that, in a large simulation, nothing had touched for a simulated second: cold in
    every cache, as were the collector's links of its neighbours. Compiled, ``seen`` is
    a plain double in the object."""

    __slots__ = ("port", "seen")

    def __init__(self, port: VnetIf, seen: float) -> None:
        self.port = port
        self.seen = seen


class _Fabric:
    """What a switch's frame path reads and writes: a native class when compiled (its
    fields in the object, not in a dict looked up by name). The public
    :class:`VnetSwitch` stays a regular class (named switches are kept in a weak registry,
    and a compiled native class cannot be weakly referenced) and holds one of these."""

    def __init__(self, aging: float) -> None:
        self._aging = aging
        self._ports: dict[str, VnetIf] = {}
        # What a flood reads of each port it may reach, in the ports' order (mirrors
        # left out: they have their copy): made again after a port comes or goes.
        self._flood_to: list[tuple[VnetIf, _Direction, VnetCounters, int]] | None = None
        self._fdb: dict[bytes, _Learned] = {}
        self._groups: dict[VnetIf, int] = {}
        self._blocked: set[tuple[VnetIf, VnetIf]] = set()
        self._pool = _BufferPool()
        self._mirrors: list[VnetIf] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every frame on the way was sent by a vouching port over links that do not
        # corrupt (see VnetIf.vouch): receivers may skip the checksums. Only ever cleared
        # while the switch runs on one loop: a frame sent before a change may still be
        # on the wire after it.
        self._trusted = True
        self._distrusted = False  # distrust() was called: for good

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start over on a new event loop: times from the old clock mean nothing here."""
        self._loop = loop
        self._fdb.clear()
        for port in self._ports.values():
            port._reset_link_state()
        self._trusted = not self._distrusted  # nothing is on the wire any more

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, the switch bound to it (:meth:`_bind`).

        Why not ``asyncio.get_running_loop()`` for every frame: it costs a system call
        (``getpid``, asyncio's check for a fork). The loop the switch is bound to, when it
        is running, is the running one: one thread runs one loop at a time, and the
        switch is not for two threads at once."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                self._bind(loop)
        return loop

    def _forward(self, src: VnetIf, data: Frame, loop: asyncio.AbstractEventLoop) -> None:
        """A frame arrives at the switch from ``src``'s link."""
        if src._closed:
            return
        if self._mirrors:
            for m in self._mirrors:
                if m is not src:
                    m._egress(data, loop)
        now = loop.time()
        fdb = self._fdb
        if type(data) is bytes:  # a frame a stack sent: its addresses without a copy of both
            smac = data[6:12]
            dmac = data[0:6]
        else:
            head = bytes(data[:12])
            smac = head[6:12]
            dmac = head[0:6]
        if not smac[0] & 1:
            learned = fdb.get(smac)
            if learned is not None and learned.port is src:
                learned.seen = now
            else:
                fdb[smac] = _Learned(src, now)
        groups = self._groups
        blocked = self._blocked
        if not dmac[0] & 1:
            entry = fdb.get(dmac)
            if entry is not None and now - entry.seen <= self._aging:
                dst = entry.port
                if dst is src or dst._mirror:
                    return  # filtered: behind the port it came from, or a mirror (has it)
                if groups and groups.get(src, -1) != groups.get(dst, -1):
                    dst.counters.dropped_partition += 1
                    return
                if blocked and (src, dst) in blocked:
                    dst.counters.dropped_partition += 1
                    return
                link = dst.link
                if link.plain and not link.ideal and len(data) <= dst._max_frame:
                    dst._down.carry(link, dst.counters, data, now, loop)  # _egress, shortened
                else:
                    dst._egress(data, loop)
                return
        sgroup = groups.get(src, -1) if groups else -1
        n = len(data)
        if type(data) is bytes:
            # One view for every port: each receiver is handed this one, not a view of
            # its own (a frame is never written again), and ARP reads each broadcast
            # once for all the hosts it reaches (Arp.passes_by).
            data = _memoryview(data)
        flood = Flood()
        targets = self._flood_to
        if targets is None:
            targets = self._flood_to = [
                (p, p._down, p.counters, p._max_frame)
                for p in self._ports.values()
                if not p._mirror
            ]
        # Read once, not per flood and port (at 500 hosts every broadcast comes this way
        # 499 times).
        for dst, down, counters, max_frame in targets:
            if dst is src:
                continue
            if groups and groups.get(dst, -1) != sgroup:
                counters.dropped_partition += 1
                continue
            if blocked and (src, dst) in blocked:
                counters.dropped_partition += 1
                continue
            # What _egress does, shortened for a plain link: one clock reading for them all.
            link = dst.link
            if link.plain and not link.ideal and n <= max_frame:
                flood.carry(down, link, counters, data, now, loop)
            else:
                dst._egress(data, loop)
                flood = Flood()  # a timer of its own came between: keep the order

    def _remove(self, port: VnetIf) -> None:
        if self._ports.get(port.name) is port:
            del self._ports[port.name]
        self._flood_to = None
        for mac in [m for m, e in self._fdb.items() if e.port is port]:
            del self._fdb[mac]
        self._groups.pop(port, None)
        self._blocked = {b for b in self._blocked if port not in b}
        if port in self._mirrors:
            self._mirrors.remove(port)


class VnetIf:
    """One interface of a :class:`VnetSwitch`: a NETWORK device and a FrameLink.

    Made by :meth:`VnetSwitch.add_interface` (or :meth:`connect`). ``link`` holds its
    impairments, ``counters`` its drop reasons; :meth:`get_stats_counters` the seed's
    stats (frames and bytes accepted for sending, and handed to a receiver).

    A native class when compiled: the frame path reads its fields from the object, not
    from a dict by name (so it cannot be weakly referenced, nor patched per instance).
    """

    def __init__(
        self, switch: VnetSwitch, name: str, mac: MacAddr, mtu: int, link: LinkParams
    ) -> None:
        self._switch = switch
        self._fabric = switch._fabric
        self._name = name
        self._mac = mac
        self._mtu = mtu
        self._max_frame = mtu + ETH_HEADER
        self.link = link
        self.counters = VnetCounters()
        # The NETWORK stats, counted here (native fields) and read through _stats.
        self._rx_bytes = 0
        self._rx_pkts = 0
        self._tx_bytes = 0
        self._tx_pkts = 0
        self._stats: Stats = PortStats(self)
        self._up = _Direction(self._arrive_at_switch, link_rng(switch.seed, name, "up"))
        self._down = _Direction(self._deliver, link_rng(switch.seed, name, "down"))
        self._receiver: FrameReceiver | None = None
        self._tap: Callable[[memoryview, int], None] | None = None
        self._pending: list[Frame] = []
        self._flush_handle: asyncio.Handle | None = None
        self._closed = False
        self._mirror = False
        self._listens = SpawnedListens()
        # What link._ports keeps for a port bridged to an offload-capable TAP device.
        self._bridge: object | None = None
        self._vouched = False  # see vouch
        # The switch's frame path, when the receiver takes (frame, flags)
        # (set_receiver_flags): one attribute read per frame says both.
        self._flags_sw: _Fabric | None = None

    def __repr__(self) -> str:
        return f"<VnetIf {self._name} {self._mac} mtu={self._mtu}>"

    # --- DEVICE -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        mac: MacAddr | str | None = None,
        mtu: int = 1500,
        link: LinkParams | None = None,
    ) -> Ok[Self] | Error[NetworkError]:
        """Plug a new interface into a named switch: ``id`` is ``"switch/ifname"``."""
        sw_name, sep, if_name = id.partition("/")
        if not sep or not if_name:
            return Error(Unknown(f"VnetIf id must be 'switch/ifname', got {id!r}"))
        switch = VnetSwitch.named(sw_name)
        if switch is None:
            return Error(Unknown(f"no virtual switch named {sw_name!r}"))
        if if_name in switch._fabric._ports:
            return Error(Unknown(f"interface {if_name!r} already exists on {sw_name!r}"))
        port = switch.add_interface(if_name, mac=mac, mtu=mtu, link=link)
        assert isinstance(port, cls)
        return Ok(port)

    def id(self) -> str:
        return f"{self._switch.name or ''}/{self._name}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def switch(self) -> VnetSwitch:
        return self._switch

    @property
    def connected(self) -> bool:
        return not self._closed

    async def disconnect(self) -> None:
        """Unplug: ``listen`` returns, frames in flight to this interface are lost."""
        self.unplug()

    def unplug(self) -> None:
        """:meth:`disconnect`, synchronously: from now on nothing leaves or arrives (a
        simulated host that crashes vanishes between two events)."""
        if self._closed:
            return
        self._closed = True
        self._fabric._remove(self)
        self._receiver = None
        self._reset_link_state()
        self._listens.close()

    # --- FrameLink ------------------------------------------------------------------------

    @property
    def mtu(self) -> int:
        return self._mtu

    def set_receiver(self, fn: FrameReceiver | None) -> None:
        self._receiver = fn
        self._flags_sw = None

    def set_receiver_flags(self, fn: MetaReceiver | None) -> None:
        """Like :meth:`set_receiver`, but ``fn(frame, flags)``: ``flags`` is ``CSUM_VALID``
        while the switch vouches for every frame's checksums (:attr:`VnetSwitch.trusted`),
        else 0 (see :class:`~miragekit.link.FlagsLink`)."""
        self._receiver = fn  # type: ignore[assignment]  # called with flags: _flags_sw
        self._flags_sw = None if fn is None else self._fabric

    def vouch(self) -> None:
        """Promise that every frame sent on this port carries correct checksums (a
        miragekit stack's port, which never sends anything else): the switch then keeps
        vouching for its frames. A port that sends without this promise (one that sends
        hand-made frames) ends the switch's vouching, as a link that corrupts does."""
        self._vouched = True

    def set_tap(self, fn: Callable[[memoryview, int], None] | None) -> None:
        """Show ``fn(frame, size)`` every frame handed to the receiver, just before it (a
        simulated host's observer: one call per frame fewer than a wrapper around the
        receiver), with its size in bytes."""
        self._tap = fn

    def send(self, frame: Buffer) -> None:
        if type(frame) is bytes:
            self._send(frame)
            return
        n = len(frame) if type(frame) is bytearray else memoryview(frame).nbytes
        self._send(bytes(frame) if n < _POOL_MIN else self._fabric._pool.copy((frame,), n))

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        n = 0
        for b in bufs:
            n += len(b) if type(b) is bytes else memoryview(b).nbytes
        self._send(b"".join(bufs) if n < _POOL_MIN else self._fabric._pool.copy(bufs, n))

    def send_frames(self, frames: Sequence[Buffer]) -> None:
        """A burst of whole frames, in order (what a stack's flush hands over). The
        methods are called, not looked up once: a compiled call is direct, and a bound
        method made per burst costs more than the calls save."""
        for f in frames:
            if type(f) is bytes:
                self._send(f)  # what send does with bytes
            else:
                self.send(f)

    def _send(self, data: Frame) -> None:
        if self._closed:
            self.counters.dropped_disconnected += 1
            return
        n = len(data)
        if n < ETH_HEADER:
            self.counters.dropped_malformed += 1
            return
        if n > self._max_frame and not (
            n <= self._max_frame + VLAN_TAG and data[12:14] == _TPID_8021Q
        ):
            self.counters.dropped_mtu += 1
            return
        self._tx_pkts += 1
        self._tx_bytes += n
        sw = self._fabric
        loop = sw._loop  # what _running_loop gives, without its call when it is running
        if loop is None or not loop.is_running():
            loop = sw._running_loop()
        if not self._vouched:
            sw._trusted = False  # a frame nobody vouches for is on its way
        link = self.link
        if link.ideal:
            sw._forward(self, data, loop)
        elif link.plain:
            up = self._up
            if link.latency == 0 and not up.fifo:
                # The frame reaches the switch at once, as on an ideal link (the switch
                # never hands it back inside this call: the receiver's link defers it),
                # after the same draws: one loop timer a frame less. The draws are
                # _Direction.lost's, without its call.
                rng = up.rng
                lost = _random(rng) < link.loss
                _getrandbits(rng, 384)
                if lost:
                    self.counters.dropped_loss += 1
                else:
                    sw._forward(self, data, loop)
            else:
                up.carry(link, self.counters, data, loop.time(), loop)
        else:
            if link.corrupt:
                sw._trusted = False  # this frame may arrive corrupted
            impair(link, self.counters, self._up, data, loop)

    def _arrive_at_switch(self, data: Frame) -> None:
        if not self.link.up:
            self.counters.dropped_down += 1
            return
        sw = self._fabric
        loop = sw._loop
        if loop is None or not loop.is_running():  # see _Fabric._running_loop
            loop = asyncio.get_running_loop()
        sw._forward(self, data, loop)

    # --- NETWORK --------------------------------------------------------------------------

    async def write(self, buf: Buffer) -> None:
        self.send(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self.sendv(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        """Run ``fn`` (as a task) on every received frame until :meth:`disconnect`."""
        if self._closed:
            return
        await self._listens.run(fn, self.set_receiver, lambda: self._receiver)

    def mac(self) -> MacAddr:
        return self._mac

    def get_stats_counters(self) -> Stats:
        return self._stats

    def reset_stats_counters(self) -> None:
        self._rx_bytes = self._rx_pkts = self._tx_bytes = self._tx_pkts = 0
        self.counters.reset()

    # --- the link towards this interface --------------------------------------------------

    def _reset_link_state(self) -> None:
        self._pending.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._up.clear()
        self._down.clear()

    def _egress(self, data: Frame, loop: asyncio.AbstractEventLoop) -> None:
        """The switch sends ``data`` down this interface's link."""
        if len(data) > self._max_frame and not (
            len(data) <= self._max_frame + VLAN_TAG and data[12:14] == _TPID_8021Q
        ):
            self.counters.dropped_mtu += 1
            return
        if self.link.ideal:
            self._pending.append(data)
            if self._flush_handle is None:
                # In an empty context: a frame does not carry the sender's context
                # variables (a simulated host's binding) into the receiver's code.
                self._flush_handle = loop.call_soon(self._flush, context=contextvars.Context())
        else:
            if self.link.corrupt:
                self._fabric._trusted = False  # this frame may arrive corrupted
            impair(self.link, self.counters, self._down, data, loop)

    def _flush(self) -> None:
        self._flush_handle = None
        batch = self._pending
        self._pending = []
        if not self.link.up:
            self.counters.dropped_down += len(batch)
            return
        for data in batch:
            self._deliver(data)

    def _deliver(self, data: Frame) -> None:
        """Hand a frame that crossed the link to the receiver (one call per frame: at
        500 hosts every broadcast comes this way 499 times). A frame in a view is handed
        on in it: a flood makes one view of a broadcast for all its ports."""
        if self._closed:
            return
        if not self.link.up:
            self.counters.dropped_down += 1
            return
        fn = self._receiver
        if fn is None:
            self.counters.dropped_no_receiver += 1
            return
        n = len(data)
        self._rx_pkts += 1
        self._rx_bytes += n
        try:
            view = data if type(data) is _memoryview else _memoryview(data)
            tap = self._tap
            if tap is not None:
                tap(view, n)
            sw = self._flags_sw
            if sw is not None:
                fn(view, CSUM_VALID if sw._trusted else 0)  # type: ignore[call-arg]
            else:
                fn(view)
        except Exception as exc:
            self._receiver_failed(exc)

    def _receiver_failed(self, exc: Exception) -> None:
        asyncio.get_running_loop().call_exception_handler(
            {"message": f"exception in the receiver of {self!r}", "exception": exc}
        )


_check_network: type[Network] = VnetIf
_check_link: type[FrameLink] = VnetIf
