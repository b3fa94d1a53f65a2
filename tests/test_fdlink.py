"""FdLink, the machinery TAP and VXLAN share, on a UNIX datagram socketpair (no root)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from miragekit.link import VxlanConfig, VxlanNetif
from miragekit.link._fd import FdLink
from miragekit.macaddr import MacAddr
from miragekit.result import Ok
from miragekit.v1 import Buffer


@dataclass(slots=True)
class _Counters:
    rx_dropped: int = 0
    tx_queued: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0


class PairLink(FdLink[bytes, _Counters]):
    """The smallest backend: one datagram a frame on one end of a socketpair."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(
            sock.fileno(),
            loop=loop,
            mtu=1500,
            mac=MacAddr.local(b"\x02\0\0\0\0\x01"),
            counters=_Counters(),
            rbuf_size=2048,
            tx_queue_limit=3,
            rx_queue_limit=2,
        )
        self._sock = sock

    def _on_readable(self) -> None:
        n = os.readv(self._fd, [self._rbuf])
        self._stats.rx_pkts += 1
        if self._receiver is not None:
            self._receiver(self._rview[:n])

    def _on_writable(self) -> None:
        while self._txq:
            os.write(self._fd, self._txq.popleft())
            self._stats.tx_pkts += 1
        self._loop.remove_writer(self._fd)
        self._writing = False

    def _close_fd(self) -> None:
        self._sock.close()

    def send(self, frame: Buffer) -> None:
        self._enqueue(bytes(frame))  # always through the queue, to exercise it

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        self.send(b"".join(bufs))


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_queue_is_bounded_drained_on_writable_and_dropped_on_disconnect() -> None:
    async def go() -> None:
        a, b = _pair()
        link = PairLink(a, asyncio.get_running_loop())
        for i in range(5):
            await link.write(bytes([i]) * 20)
        assert link.counters.tx_queued == 3 and link.counters.tx_dropped == 2
        await asyncio.sleep(0.05)
        assert link.get_stats_counters().tx_pkts == 3 and not link._writing
        assert [b.recv(100)[0] for _ in range(3)] == [0, 1, 2]
        link.send(b"x" * 20)
        await link.disconnect()  # before the loop drained it
        assert link.counters.tx_dropped == 3 and not link.connected
        await link.disconnect()  # a second disconnect changes nothing
        assert link.counters.tx_dropped == 3
        b.close()

    asyncio.run(go())


def test_listen_copies_frames_in_order_counts_overflow_and_ends_on_disconnect() -> None:
    async def go() -> None:
        a, b = _pair()
        link = PairLink(a, asyncio.get_running_loop())
        got: list[bytes] = []
        first = asyncio.Event()

        async def fn(frame: memoryview) -> None:
            got.append(bytes(frame))
            first.set()
            await asyncio.sleep(0.05)  # slow: the queue (limit 2) overflows meanwhile

        task = asyncio.create_task(link.listen(fn))
        await asyncio.sleep(0)
        b.send(b"one")
        await first.wait()
        for f in (b"two", b"three", b"four"):
            b.send(f)
        await asyncio.sleep(0.01)
        assert link.counters.rx_dropped == 1
        await asyncio.sleep(0.2)
        assert got == [b"one", b"two", b"three"]
        await link.disconnect()
        await asyncio.wait_for(task, 1)
        await link.listen(fn)  # returns at once once disconnected
        b.close()

    asyncio.run(go())


def test_listen_leaves_a_receiver_set_by_someone_else() -> None:
    async def go() -> None:
        res = await VxlanNetif.connect(VxlanConfig(vni=5, local=("127.0.0.1", 0)))
        assert isinstance(res, Ok)
        dev = res.value

        async def fn(frame: memoryview) -> None:
            pass

        task = asyncio.create_task(dev.listen(fn))
        await asyncio.sleep(0)

        def other(frame: memoryview) -> None:
            pass

        dev.set_receiver(other)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert dev._receiver is other and dev._reading
        dev.set_receiver(None)
        assert not dev._reading
        await dev.disconnect()

    asyncio.run(go())
