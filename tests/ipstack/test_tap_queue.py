"""TapNetif's batching and back-pressure on a SEQPACKET socket pair standing in for the
TAP fd (same semantics: one read or write per frame, EAGAIN when full). No root needed."""

from __future__ import annotations

import asyncio
import os
import socket

from miragekit.link import TapNetif
from miragekit.macaddr import MacAddr


def pair() -> tuple[int, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fd = os.dup(a.fileno())
    a.close()
    os.set_blocking(fd, False)
    b.setblocking(False)
    return fd, b


def test_batched_receive_and_bounded_send_queue() -> None:
    async def main() -> None:
        fd, peer = pair()
        loop = asyncio.get_running_loop()
        dev = TapNetif(
            fd, "pair", mtu=1500, mac=MacAddr("02:00:00:00:00:01"), loop=loop, tx_queue_limit=8
        )
        got: list[bytes] = []
        dev.set_receiver(lambda f: got.append(bytes(f)))
        i = 0
        while i < 300:
            try:
                peer.send(b"frame %d" % i)
                i += 1
            except BlockingIOError:
                await asyncio.sleep(0.001)  # let the reader drain a batch
        await asyncio.sleep(0.01)
        assert got == [b"frame %d" % i for i in range(300)]  # in order, in batches
        st = dev.get_stats_counters()
        assert st.rx_pkts == 300 and st.rx_bytes == sum(len(f) for f in got)

        frame = bytes(1000)
        sent = 0
        while dev.counters.tx_queued == 0:
            dev.sendv([frame[:14], frame[14:]])
            sent += 1
        for _ in range(20):  # the queue holds 8; the rest are dropped and counted
            dev.send(frame)
        assert dev.counters.tx_queued == 8 and dev.counters.tx_dropped == 21 - 8
        received = 0
        for _ in range(200):
            await asyncio.sleep(0.001)
            while True:
                try:
                    received += len(peer.recv(2000)) > 0
                except BlockingIOError:
                    break
            if received == sent + 7:
                break
        # Everything written or queued arrives; the queue drained through add_writer.
        assert received == sent - 1 + 8
        assert dev.get_stats_counters().tx_pkts == received
        await dev.disconnect()
        dev.send(frame)
        assert dev.counters.tx_dropped == 21 - 8 + 1
        peer.close()

    asyncio.run(main())
