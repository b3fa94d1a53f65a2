"""What the fd-backed NETWORK backends (TAP, VXLAN) share around their receive loops.

Why this split: the per-frame receive loop is each backend's own (a per-frame decode hook
would cost a Python call per frame, about 1% of the budget at MTU 1500; docs/design.md),
so :class:`FdLink` owns everything around it: the fd's reader/writer registration, the
reusable receive buffer, the bounded transmit queue drained on writability, the
:class:`~miragekit.v1.Stats`, connect/disconnect bookkeeping and the seed's async
``listen``/``write``/``writev`` on top of the :class:`FrameLink` fast path.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from ..macaddr import MacAddr
from ..v1 import Buffer, FrameCallback, Stats
from ._frame import FrameReceiver
from ._listen import FrameListener


class LinkCounters(Protocol):
    """The losses every fd-backed backend counts besides :class:`~miragekit.v1.Stats`."""

    rx_dropped: int  # the async listen queue had no room
    tx_queued: int  # waited for the fd to become writable
    tx_dropped: int  # queue full, error or disconnected
    tx_errors: int


Q = TypeVar("Q")  # what the transmit queue holds
C = TypeVar("C", bound=LinkCounters)


class FdLink(ABC, Generic[Q, C]):
    """A non-blocking fd on the event loop; subclasses read it (``_on_readable``), write it
    (``send``/``sendv``, ``_on_writable``) and close it (``_close_fd``)."""

    def __init__(
        self,
        fd: int,
        *,
        loop: asyncio.AbstractEventLoop,
        mtu: int,
        mac: MacAddr,
        counters: C,
        rbuf_size: int,
        tx_queue_limit: int,
        rx_queue_limit: int,
    ) -> None:
        self._fd = fd
        self._loop = loop
        self._mtu = mtu
        self._mac = mac
        self.counters = counters
        self._rbuf = bytearray(rbuf_size)
        self._rview = memoryview(self._rbuf)
        self._receiver: FrameReceiver | None = None
        self._reading = False
        self._txq: deque[Q] = deque()
        self._tx_limit = tx_queue_limit
        self._writing = False
        self._stats = Stats()
        self._listener = FrameListener(rx_queue_limit, self._rx_drop)
        self._connected = True

    @abstractmethod
    def _on_readable(self) -> None:
        """Read a batch of frames (until EAGAIN) and hand each to the receiver."""

    @abstractmethod
    def _on_writable(self) -> None:
        """Drain ``_txq``; remove the writer and clear ``_writing`` once it is empty."""

    @abstractmethod
    def _close_fd(self) -> None: ...

    @abstractmethod
    def send(self, frame: Buffer) -> None: ...

    @abstractmethod
    def sendv(self, bufs: Sequence[Buffer]) -> None: ...

    # --- DEVICE ------------------------------------------------------------------------

    async def disconnect(self) -> None:
        if not self._connected:
            return
        self._connected = False
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self.counters.tx_dropped += len(self._txq)
        self._txq.clear()
        self._close_fd()
        self._listener.close()

    @property
    def connected(self) -> bool:
        return self._connected

    # --- FrameLink fast path --------------------------------------------------------------

    @property
    def mtu(self) -> int:
        return self._mtu

    def set_receiver(self, fn: FrameReceiver | None) -> None:
        self._receiver = fn
        self._watch(fn is not None)

    def _watch(self, on: bool) -> None:
        if not self._connected:
            return
        if on and not self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        elif not on and self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _enqueue(self, item: Q) -> None:
        """Queue what the fd would not take now (EAGAIN, or frames already waiting)."""
        if len(self._txq) >= self._tx_limit:
            self.counters.tx_dropped += 1
            return
        self._txq.append(item)
        self.counters.tx_queued += 1
        if not self._writing:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writing = True

    # --- NETWORK ---------------------------------------------------------------------------

    async def write(self, buf: Buffer) -> None:
        self.send(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self.sendv(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        """Call ``fn`` with a copy of every frame, in order, until :meth:`disconnect`."""
        await self._listener.run(self, fn, installed=self._installed)

    def _installed(self) -> FrameReceiver | None:
        return self._receiver

    def _rx_drop(self) -> None:
        self.counters.rx_dropped += 1

    def mac(self) -> MacAddr:
        return self._mac

    def get_stats_counters(self) -> Stats:
        return self._stats

    def reset_stats_counters(self) -> None:
        self._stats.rx_bytes = self._stats.rx_pkts = 0
        self._stats.tx_bytes = self._stats.tx_pkts = 0
