"""A simulated host's port: its stack's view of the switch, watched by its observer.

Why a module of its own: it builds on :mod:`miragekit.link`, which imports this package,
so it is imported when a network starts, not when :mod:`miragekit.sim` is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..link import FrameNetwork, FrameReceiver, MetaReceiver, Wrapper, send_frames
from ..v1 import Buffer, FrameCallback
from ._observe import HostObserver


class HostPort(Wrapper):
    """A host's stack's view of its switch port: everything passes through, and the
    host's :class:`HostObserver` sees it. A new one for each boot of the host; once the
    host crashes (:meth:`dead`) nothing it sends is counted or recorded, since nothing
    leaves.

    The port vouches for what it sends (``VnetIf.vouch``): only the host's stack sends
    on it, and a stack's frames carry correct checksums, so the switch may tell the
    receivers not to verify them."""

    def __init__(self, netif: FrameNetwork, observer: HostObserver) -> None:
        super().__init__(netif)
        self._obs = observer
        self._receiver: FrameReceiver | None = None
        self._alive = True
        # A switch port shows the observer each frame itself (see VnetIf.set_tap): the
        # receiver is then the stack's own, with no call of ours in between.
        self._set_tap: Callable[[Callable[[memoryview, int], None] | None], None] | None = getattr(
            netif, "set_tap", None
        )
        if self._set_tap is not None:
            self._set_tap(observer.seen)
        vouch: Callable[[], None] | None = getattr(netif, "vouch", None)
        if vouch is not None:
            vouch()
        # The port's own burst method, found once (send_frames looks it up per burst).
        self._batch: Callable[[Sequence[Buffer]], None] | None = getattr(netif, "send_frames", None)

    def dead(self) -> None:
        self._alive = False
        if self._set_tap is not None:
            self._set_tap(None)

    def set_receiver(self, fn: FrameReceiver | None) -> None:
        self._receiver = fn
        if self._set_tap is not None:
            self._inner.set_receiver(fn)
        else:
            self._inner.set_receiver(None if fn is None else self._on_frame)

    def set_receiver_flags(self, fn: MetaReceiver | None) -> None:
        """``fn(frame, flags)`` with the switch's ``CSUM_VALID`` (see
        :class:`~miragekit.link.FlagsLink`); ``flags`` 0 behind a port without them."""
        flags_rx: Callable[[MetaReceiver | None], None] | None = getattr(
            self._inner, "set_receiver_flags", None
        )
        if flags_rx is None or self._set_tap is None:
            self.set_receiver(None if fn is None else lambda frame: fn(frame, 0))
            return
        self._receiver = None
        flags_rx(fn)

    def _on_frame(self, frame: memoryview) -> None:
        if self._alive:
            self._obs.received(frame)
        fn = self._receiver
        if fn is not None:
            fn(frame)

    def send(self, frame: Buffer) -> None:
        if self._alive:
            self._obs.sent((frame,))
        self._inner.send(frame)

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        if self._alive:
            self._obs.sent(bufs)
        self._inner.sendv(bufs)

    def send_frames(self, frames: Sequence[Buffer]) -> None:
        """A burst, passed on as one (the switch's batch path, if it has one)."""
        if self._alive:
            self._obs.sent_frames(frames)
        if self._batch is not None:
            self._batch(frames)
        else:
            send_frames(self._inner, frames)

    def send_split(self, heads: Sequence[bytes], bodies: Sequence[Buffer]) -> None:
        """:meth:`send_frames` of the frames ``heads[i] + bodies[i]`` (what a stack's
        flush of data hands over): joined here, with no look-up of a ``send_split`` the
        switch port does not have on the way."""
        self.send_frames([h + b for h, b in zip(heads, bodies, strict=True)])

    async def write(self, buf: Buffer) -> None:
        if self._alive:
            self._obs.sent((buf,))
        await self._inner.write(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        if self._alive:
            self._obs.sent(bufs)
        await self._inner.writev(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        async def seen(frame: memoryview) -> None:
            if self._alive:
                self._obs.received(frame)
            await fn(frame)

        await self._inner.listen(seen)

    async def disconnect(self) -> None:
        await self._inner.disconnect()

    def reset_stats_counters(self) -> None:
        self._inner.reset_stats_counters()
