"""Impaired links: latency, jitter, loss, duplication, reordering, corruption, a rate.

Why here and not in the switch: an impairment belongs to a link, whatever the device at
its ends. The virtual switch applies it to each of its ports' links; :class:`ImpairedLink`
wraps any other :class:`FrameLink` device (a TAP, a VXLAN port) in the same model, so a
test against the kernel or a remote peer can see a slow or lossy path too.

Every random draw comes from a ``random.Random`` owned by one direction of the link, a
fixed number per frame whatever the impairments do to it, so the decisions for the n-th
frame on a direction depend only on the seed, the link and n: a seeded run repeats itself. Times come from
the running loop's clock, so the model works in real time and on :mod:`miragekit.sim`
virtual time alike.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Self

from ..result import Error, NetworkError, Ok, Unknown
from ..sim import current as current_sim
from ..v1 import Buffer, FrameCallback, Network
from ._frame import FrameLink, FrameNetwork, FrameReceiver
from ._listen import SpawnedListens
from ._wrap import Wrapper

Frame = bytes | memoryview
"""A frame on a link: immutable bytes, or a view of a buffer nobody writes again."""

# A link generator's draws through the methods themselves (its type's, called with the
# generator first): compiled code calls a method by name with a look-up in the type at
# every call, several hundred instructions, twice a frame. The generators are
# random.Random's (link_rng), whose methods these are.
_random: Final = random.Random.random
_getrandbits: Final = random.Random.getrandbits
_PROBABILITIES: Final = ("loss", "duplicate", "reorder", "corrupt", "mark")
_DURATIONS: Final = ("latency", "jitter", "reorder_delay")


@dataclass(slots=True)
class LinkParams:
    """Impairments of one link, applied to each direction on its own.

    Mutable at run time (``vif.link.loss = 0.3``, ``vif.link.up = False``); a change
    applies to frames sent afterwards. Probabilities are per frame and per crossing.

    * ``latency``: seconds of propagation delay.
    * ``jitter``: extra delay drawn uniformly from ``[0, jitter]``; frames still leave
      the link in order (jitter alone never reorders).
    * ``loss``, ``duplicate``, ``corrupt`` (flip one random bit): probabilities.
    * ``loss_burst``: the mean length of a run of lost frames. 1 (the default) loses
      frames independently; above 1, losses come in bursts (a two-state Gilbert-Elliott
      chain) while the long-run loss rate stays ``loss``.
    * ``mark``: probability that an ECN-capable IP packet (ECT(0) or ECT(1)) is marked
      Congestion Experienced; other packets pass unharmed.
    * ``ecn``: a frame that ``loss`` picks is marked CE instead of dropped when it is an
      ECN-capable IP packet (what an AQM with ECN does); other frames are still dropped.
    * ``reorder``: probability that a frame is held back ``reorder_delay`` seconds, so
      frames sent after it overtake it.
    * ``rate``: bits per second (``None``: unlimited). A frame takes ``len*8/rate`` to
      serialise; frames queue behind each other, and beyond ``queue_frames`` waiting
      frames the newest is dropped.
    * ``up``: ``False`` cuts the cable: frames are dropped both ways, including those
      in flight when they arrive.
    """

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    loss_burst: float = 1.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.001
    corrupt: float = 0.0
    mark: float = 0.0
    ecn: bool = False
    rate: float | None = None
    queue_frames: int = 1000
    up: bool = True
    ideal: bool = field(default=True, init=False, repr=False, compare=False)
    plain: bool = field(default=True, init=False, repr=False, compare=False)
    """Up, and at most ``latency`` and independent ``loss``: :func:`impair`'s short path."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.init:
                _check_param(f.name, getattr(self, f.name))
        self._update_ideal()

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in ("ideal", "plain"):
            _check_param(name, value)
        object.__setattr__(self, name, value)
        if name not in ("ideal", "plain") and hasattr(self, "plain"):
            self._update_ideal()

    def _update_ideal(self) -> None:
        plain = (
            self.up
            and self.jitter == 0
            and self.loss_burst == 1
            and self.duplicate == 0
            and self.reorder == 0
            and self.corrupt == 0
            and self.mark == 0
            and not self.ecn
            and self.rate is None
        )
        object.__setattr__(self, "plain", plain)
        object.__setattr__(self, "ideal", plain and self.latency == 0 and self.loss == 0)


def _check_param(name: str, value: Any) -> None:
    if name in _PROBABILITIES:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"LinkParams.{name} must be a probability in [0, 1], got {value!r}")
    elif name in _DURATIONS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"LinkParams.{name} must be >= 0 seconds, got {value!r}")
    elif name == "rate":
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
        ):
            raise ValueError(f"LinkParams.rate must be > 0 bits/s or None, got {value!r}")
    elif name == "loss_burst":
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
            raise ValueError(f"LinkParams.loss_burst must be >= 1 frames, got {value!r}")
    elif name == "queue_frames":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"LinkParams.queue_frames must be an int >= 1, got {value!r}")
    elif name in ("up", "ecn") and not isinstance(value, bool):
        raise TypeError(f"LinkParams.{name} must be a bool, got {value!r}")


@dataclass(slots=True)
class ImpairCounters:
    """What the impairments of one link did to its frames."""

    dropped_down: int = 0  # link down
    dropped_loss: int = 0  # random loss
    dropped_queue: int = 0  # bandwidth queue full
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0
    marked_ce: int = 0  # ECN: marked Congestion Experienced (by `mark`, or `loss` with `ecn`)

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


class Flood:
    """The idle plain links a flooded frame (a broadcast) reaches at the same instant,
    drained by one loop timer instead of one each (at 500 hosts every ARP request is
    carried to 499 ports). Their timers would have been consecutive in the loop (one
    deadline, sequence numbers taken one after another), so the order is the same: each
    member's :meth:`_Direction.drain` in turn, unless its link was cleared meanwhile."""

    __slots__ = ("item", "members", "when")

    def __init__(self) -> None:
        self.when = 0.0
        self.members: list[_Direction] = []
        # The (time, frame) entry the links' fifos hold, one for all the links the frame
        # is due on at the same time (a tuple is never changed): at 500 hosts a flood
        # made 499 of them, each a tracked object for the collector.
        self.item: tuple[float, Frame] | None = None

    def join(self, d: _Direction, t: float, loop: asyncio.AbstractEventLoop) -> bool:
        """Make the timer of idle direction ``d``, with its frame due at ``t``, this
        flood's; False when ``t`` is not the flood's instant (then ``d`` needs its own)."""
        members = self.members
        if not members:
            self.when = t
            loop.call_at(t, self.drain, loop, context=contextvars.Context())
        elif t != self.when:
            return False
        members.append(d)
        d.timer = self
        return True

    def carry(
        self,
        d: _Direction,
        link: LinkParams,
        c: ImpairCounters,
        data: Frame,
        now: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """``d.carry(link, c, data, now, loop, self)`` in one call instead of three (its
        :meth:`_Direction.lost` and :meth:`join` written out): the same draws, times and
        timers. A switch's flood makes one such call per port it reaches."""
        rng = d.rng
        lost = _random(rng) < link.loss
        _getrandbits(rng, 384)  # as _Direction.lost
        if lost:
            c.dropped_loss += 1
            return
        t = now + link.latency
        if t < d.last_arrival:
            t = d.last_arrival
        d.last_arrival = t
        item = self.item
        if item is None or item[0] != t or item[1] is not data:
            item = self.item = (t, data)
        d.append(item)
        if d.timer is None:
            members = self.members
            if not members:
                self.when = t
                loop.call_at(t, self.drain, loop, context=contextvars.Context())
            elif t != self.when:
                d.arm(t, loop)
                return
            members.append(d)
            d.timer = self

    def drain(self, loop: asyncio.AbstractEventLoop) -> None:
        self.item = None  # the fifos hold it now, or have let go of it
        now = loop.time()  # one reading for them all: at 500 hosts a flood has 499
        for d in self.members:
            if d.timer is self:
                fifo = d.fifo
                if len(fifo) == 1:  # the flooded frame alone: what drain does with it
                    d.timer = None
                    d.deliver(d.popleft()[1])
                    if fifo:  # carried onto it during the delivery
                        d.resume(loop, now)
                else:
                    d.drain(loop, now)


class _Direction:
    """One direction of a link: serialisation state and the frames on the wire.

    Frames leave the wire in order (``fifo``, arrival times never decrease), so one timer
    for the head of the queue serves them all; only frames held back by ``reorder`` get
    their own timer.
    """

    __slots__ = (
        "again",
        "again_loop",
        "append",
        "bad",
        "busy_until",
        "deliver",
        "drain_cb",
        "fifo",
        "last_arrival",
        "popleft",
        "queue",
        "rng",
        "spare",
        "timer",
    )

    def __init__(self, deliver: Callable[[Frame], None], rng: random.Random) -> None:
        self.rng = rng  # this direction's own draws: the other direction's timing cannot shift them
        self.busy_until = 0.0
        self.last_arrival = float("-inf")
        self.queue: deque[float] = deque()  # departure times of frames not yet sent
        self.fifo: deque[tuple[float, Frame]] = deque()
        # fifo's append and popleft, found once: compiled, ``fifo.append`` is a look-up
        # by name in the deque's type at every call (a flood makes one per port it
        # reaches, and its timer one popleft each).
        self.append: Callable[[tuple[float, Frame]], None] = self.fifo.append
        self.popleft: Callable[[], tuple[float, Frame]] = self.fifo.popleft
        self.timer: asyncio.TimerHandle | Flood | None = None
        self.deliver = deliver
        self.bad = False  # in a loss burst
        # The drain timer that fired last (in no queue): on a loop that has
        # call_at_again (a SimLoop), the next drain's timer is that one scheduled again,
        # not a new one. ``again`` is ``again_loop``'s call_at_again (looked up once).
        self.spare: asyncio.TimerHandle | Flood | None = None  # a TimerHandle when set
        self.again: Callable[..., asyncio.TimerHandle] | None = None
        self.again_loop: asyncio.AbstractEventLoop | None = None
        # The bound drain, made once: compiled, ``self.drain`` makes a method object
        # each time, and the loop is handed it for every timer scheduled again.
        self.drain_cb: Callable[..., None] = self.drain

    def push(self, t: float, data: Frame, loop: asyncio.AbstractEventLoop) -> None:
        fifo = self.fifo
        fifo.append((t, data))
        if self.timer is None:
            self.arm(t, loop)

    def carry(
        self,
        link: LinkParams,
        c: ImpairCounters,
        data: Frame,
        now: float,
        loop: asyncio.AbstractEventLoop,
        flood: Flood | None = None,
    ) -> None:
        """:func:`impair` on a plain link (``link.plain``: up, latency and independent
        loss only) at time ``now``: the same draws and the same outcome, with only what
        such a link uses. Callers that carry one frame over many links (a switch's
        flood) read the clock once, and pass a :class:`Flood` that times them all."""
        rng = self.rng  # what lost does, without its call: every frame comes this way
        lost = _random(rng) < link.loss
        _getrandbits(rng, 384)
        if lost:
            c.dropped_loss += 1
            return
        t = now + link.latency
        if t < self.last_arrival:
            t = self.last_arrival
        self.last_arrival = t
        self.append((t, data))
        if self.timer is None and (flood is None or not flood.join(self, t, loop)):
            # What arm does, without its call: every frame comes this way.
            if loop is not self.again_loop:
                self.again_loop = loop
                self.again = getattr(loop, "call_at_again", None)
                self.spare = None
            again = self.again
            if again is None:
                self.timer = loop.call_at(t, self.drain, loop, context=contextvars.Context())
            else:
                spare = self.spare
                self.spare = None
                self.timer = again(spare, t, self.drain_cb, (loop,), contextvars.Context())

    def lost(self, link: LinkParams, c: ImpairCounters) -> bool:
        """The draws :func:`impair` makes for a frame on a plain link, and its loss (counted
        in ``c``): what :meth:`carry` decides before it times the frame."""
        rng = self.rng
        lost = _random(rng) < link.loss
        _getrandbits(rng, 384)  # the six draws it does not use: 2 words of 32 bits each
        if lost:
            c.dropped_loss += 1
        return lost

    def drain(self, loop: asyncio.AbstractEventLoop, now: float | None = None) -> None:
        """Deliver the frames due by ``now`` (by default ``loop``'s time), then time the
        next. The timers pass their loop: asking for the running loop costs a system call
        (``getpid``, asyncio's check for a fork) per frame."""
        if now is None:  # the loop runs this timer (a flood passes ``now``)
            self.spare = self.timer
            now = loop.time()
        self.timer = None
        # What resume does, without its call: a drain is a loop timer per frame and link.
        fifo = self.fifo
        deliver = self.deliver
        popleft = self.popleft
        while fifo and fifo[0][0] <= now:
            deliver(popleft()[1])
        if fifo and self.timer is None:
            self.arm(fifo[0][0], loop)

    def arm(self, t: float, loop: asyncio.AbstractEventLoop) -> None:
        """Time the drain at ``t``: with the timer that fired last, scheduled again, when
        ``loop`` can (the same place in the loop's order as a new timer's). Each timer
        runs in an empty context of its own, as a new one would: what a stack starts
        for a frame it receives belongs to no host."""
        if loop is not self.again_loop:
            self.again_loop = loop
            self.again = getattr(loop, "call_at_again", None)
            self.spare = None  # made on another loop
        again = self.again
        if again is None:
            self.timer = loop.call_at(t, self.drain, loop, context=contextvars.Context())
            return
        spare = self.spare
        self.spare = None
        self.timer = again(spare, t, self.drain_cb, (loop,), contextvars.Context())

    def resume(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        """:meth:`drain` after its timer is forgotten: deliver what is due, time the rest."""
        fifo = self.fifo
        deliver = self.deliver
        popleft = self.popleft
        while fifo and fifo[0][0] <= now:
            deliver(popleft()[1])
        if fifo and self.timer is None:
            self.arm(fifo[0][0], loop)

    def clear(self) -> None:
        """Forget the frames on the wire and the link's timing (a new clock starts)."""
        self.fifo.clear()
        timer = self.timer
        if timer is not None:
            if not isinstance(timer, Flood):  # a flood passes over a cleared member
                timer.cancel()
            self.timer = None
        self.queue.clear()
        self.busy_until = 0.0
        self.last_arrival = float("-inf")
        self.bad = False


def impair(
    link: LinkParams,
    c: ImpairCounters,
    d: _Direction,
    data: Frame,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Carry ``data`` across direction ``d`` of a link with impairments ``link``, then hand
    it to ``d.deliver``; drops and alterations are counted in ``c``.

    Why a fixed number of draws per frame: the decisions for the n-th frame on a direction
    then depend only on the seed, the link's name and n (and the parameters), never on
    which other frames were dropped, queued or timed out before it.
    """
    if link.plain:
        d.carry(link, c, data, loop.time(), loop)
        return
    r = d.rng.random
    u_loss, u_mark, u_corrupt, u_bit, u_jitter, u_dup, u_reorder = (
        r(), r(), r(), r(), r(), r(), r(),
    )  # fmt: skip
    if not link.up:
        c.dropped_down += 1
        return
    loss = link.loss
    if loss:
        burst = link.loss_burst
        if burst == 1:
            lost = u_loss < loss
        elif loss >= 1:
            lost = True
        else:
            # Gilbert-Elliott: leave a burst with 1/burst, enter one so that the
            # stationary share of lost frames is `loss`.
            if d.bad:
                d.bad = u_loss >= 1 / burst
            else:
                d.bad = u_loss < loss / (burst * (1 - loss))
            lost = d.bad
        if lost:
            marked = mark_ce(data) if link.ecn else None
            if marked is None:
                c.dropped_loss += 1
                return
            data = marked
            c.marked_ce += 1
    if link.mark and u_mark < link.mark:
        marked = mark_ce(data)
        if marked is not None:
            data = marked
            c.marked_ce += 1
    now = loop.time()
    t = now
    rate = link.rate
    if rate is not None:
        q = d.queue
        while q and q[0] <= now:
            q.popleft()
        if len(q) >= link.queue_frames:
            c.dropped_queue += 1
            return
        t = max(now, d.busy_until) + len(data) * 8 / rate
        d.busy_until = t
        q.append(t)
    if link.corrupt and u_corrupt < link.corrupt:
        b = bytearray(data)
        bit = int(u_bit * len(b) * 8)
        b[bit >> 3] ^= 1 << (bit & 7)
        data = bytes(b)
        c.corrupted += 1
    t += link.latency
    if link.jitter:
        t += u_jitter * link.jitter
    if t < d.last_arrival:
        t = d.last_arrival  # the wire keeps order; only `reorder` breaks it
    d.last_arrival = t
    copies = 1
    if link.duplicate and u_dup < link.duplicate:
        copies = 2
        c.duplicated += 1
    held = link.reorder and u_reorder < link.reorder
    for _ in range(copies):
        if held:
            loop.call_at(t + link.reorder_delay, d.deliver, data, context=contextvars.Context())
        else:
            # Never delivered inside the sender's call, even with no delay: a stack that
            # answered at once would re-enter the sender mid-operation (an ARP reply
            # arriving before the packet that asked was queued lost that packet).
            d.push(t, data, loop)
    if held:
        c.reordered += 1


_ETH_IPV4: Final = b"\x08\x00"
_ETH_IPV6: Final = b"\x86\xdd"


def mark_ce(data: Frame) -> bytes | None:
    """A copy of Ethernet frame ``data`` with its IP packet marked Congestion Experienced
    (RFC 3168), or None when the packet is not ECN-capable (not ECT(0)/ECT(1), or not IP).

    IPv4's header checksum is updated incrementally (RFC 1624): only the TOS byte changes.
    """
    if len(data) < 34:
        return None
    etype = data[12:14]
    if etype == _ETH_IPV4:
        tos = data[15]
        if tos & 3 not in (1, 2):
            return None
        b = bytearray(data)
        old = (b[14] << 8) | tos
        new = old | 3
        b[15] = tos | 3
        hc = (b[24] << 8) | b[25]
        s = (~hc & 0xFFFF) + (~old & 0xFFFF) + new
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        hc = ~s & 0xFFFF
        b[24], b[25] = hc >> 8, hc & 0xFF
        return bytes(b)
    if etype == _ETH_IPV6 and len(data) >= 54:
        if (data[15] >> 4) & 3 not in (1, 2):
            return None
        b = bytearray(data)
        b[15] |= 0x30
        return bytes(b)
    return None


def fresh_seed() -> int:
    """A seed from the running :class:`~miragekit.sim.SimLoop`'s generator (a simulation
    repeats itself), or from the OS outside one."""
    loop = current_sim()
    return loop.rng().getrandbits(64) if loop is not None else random.SystemRandom().getrandbits(64)


def link_rng(seed: int, name: str, direction: str) -> random.Random:
    """The generator of one ``direction`` of the link called ``name`` among those seeded
    with ``seed``."""
    return random.Random(f"{seed}/{name}/{direction}")


class ImpairedLink(Wrapper):
    """Any FrameLink device (TAP, VXLAN, ...) behind a link with :class:`LinkParams`.

    Frames we send cross the link's outward direction before reaching ``netif``; frames
    ``netif`` receives cross the inward direction before reaching our receiver. ``link``
    is mutable at run time as on a switch port; ``counters`` says what it dropped or
    altered. The wrapper offers the plain FrameLink only (no checksum or segmentation
    offload): an impaired link carries real frames, each on its own.
    """

    def __init__(
        self, netif: FrameNetwork, link: LinkParams | None = None, *, seed: int | None = None
    ) -> None:
        if link is not None and not isinstance(link, LinkParams):
            raise TypeError(f"link must be a LinkParams, got {link!r}")
        super().__init__(netif)
        self.link = replace(link) if link is not None else LinkParams()  # its own copy
        self.counters = ImpairCounters()
        seed = fresh_seed() if seed is None else seed
        self._out = _Direction(self._leave, link_rng(seed, "ImpairedLink", "out"))
        self._in = _Direction(self._arrive, link_rng(seed, "ImpairedLink", "in"))
        self._receiver: FrameReceiver | None = None
        self._listens = SpawnedListens()
        netif.set_receiver(self._on_frame)

    # --- DEVICE -----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        id: LinkParams | None = None,
        *,
        netif: FrameNetwork | None = None,
        seed: int | None = None,
    ) -> Ok[Self] | Error[NetworkError]:
        """Impair ``netif`` with the parameters ``id``."""
        if netif is None:
            return Error(Unknown("ImpairedLink.connect needs the device to wrap: netif="))
        return Ok(cls(netif, id, seed=seed))

    async def disconnect(self) -> None:
        """Forget the frames in flight, end ``listen``, disconnect the wrapped device."""
        self._out.clear()
        self._in.clear()
        self._receiver = None
        self._listens.close()
        await self._inner.disconnect()

    # --- FrameLink --------------------------------------------------------------------------

    def set_receiver(self, fn: FrameReceiver | None) -> None:
        self._receiver = fn

    def send(self, frame: Buffer) -> None:
        if self.link.ideal:
            self._inner.send(frame)
        else:
            # The caller may reuse its buffer once we return: the link keeps a copy.
            data = frame if type(frame) is bytes else bytes(frame)
            impair(self.link, self.counters, self._out, data, _loop())

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        if self.link.ideal:
            self._inner.sendv(bufs)
        else:
            impair(self.link, self.counters, self._out, b"".join(bufs), _loop())

    def _leave(self, data: Frame) -> None:
        self._inner.send(data)

    def _on_frame(self, frame: memoryview) -> None:
        if self.link.ideal:
            self._arrive(frame)
        else:
            # The device's view is valid only during this call.
            impair(self.link, self.counters, self._in, bytes(frame), _loop())

    def _arrive(self, data: Frame) -> None:
        fn = self._receiver
        if fn is not None:
            fn(data if type(data) is memoryview else memoryview(data))

    # --- NETWORK ----------------------------------------------------------------------------

    async def write(self, buf: Buffer) -> None:
        self.send(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self.sendv(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        """Run ``fn`` (as a task) on every frame that crosses the link, until
        :meth:`disconnect`."""
        await self._listens.run(fn, self.set_receiver, lambda: self._receiver)

    def reset_stats_counters(self) -> None:
        self._inner.reset_stats_counters()
        self.counters.reset()


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


_check_network: type[Network] = ImpairedLink
_check_link: type[FrameLink] = ImpairedLink
