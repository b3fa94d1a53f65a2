"""``TapNetif``'s read loop: frames read one per call in batches of at most
``READ_BATCH``, each handed to the receiver whole and in order, and the device's
:class:`~miragekit.v1.Stats` (added up once per batch) counting every frame read."""

from __future__ import annotations

import asyncio
import sys

import pytest
from tests.kernelnet import KernelNet, run

from miragekit.link import TapNetif
from miragekit.link._tap import READ_BATCH
from miragekit.result import Ok

pytestmark = pytest.mark.kernel

COUNT = 2 * READ_BATCH + 88  # three batches at least

# The kernel's side writes raw frames into the TAP (a packet socket on its interface):
# each reaches our fd as one read. Sizes vary, so a frame cut or run together shows.
SENDER = """
import socket, sys
tap, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((tap, 0))
dst = bytes.fromhex(sys.argv[3])
for i in range(n):
    s.send(dst + bytes(6) + b"\\x88\\xb5" + i.to_bytes(4, "big") + bytes([i % 251]) * (i % 1400 + 42))
"""


def _frame_len(i: int) -> int:
    return 14 + 4 + i % 1400 + 42


def test_every_frame_read_is_handed_over_and_counted(knet: KernelNet) -> None:
    async def main() -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        dev = r.value
        knet.move_in()
        got: list[bytes] = []
        done = asyncio.get_running_loop().create_future()

        def receive(frame: memoryview) -> None:
            if bytes(frame[12:14]) != b"\x88\xb5":
                return  # not ours (none expected with IPv6 off, but not asserted)
            got.append(bytes(frame))
            if len(got) == COUNT and not done.done():
                done.set_result(None)

        dev.set_receiver(receive)
        before = dev.get_stats_counters()
        pkts0, bytes0 = before.rx_pkts, before.rx_bytes
        rc, out = await knet.exec(
            sys.executable, "-c", SENDER, knet.tap, str(COUNT), dev.mac().packed.hex()
        )
        assert rc == 0, out
        await asyncio.wait_for(done, 10)
        assert [int.from_bytes(f[14:18], "big") for f in got] == list(range(COUNT))
        assert [len(f) for f in got] == [_frame_len(i) for i in range(COUNT)]
        assert all(f[18:] == bytes([i % 251]) * (len(f) - 18) for i, f in enumerate(got))
        st = dev.get_stats_counters()
        # Every frame the device read (ours and any other) counted once, with its bytes.
        assert st.rx_pkts - pkts0 >= COUNT
        assert st.rx_bytes - bytes0 >= sum(_frame_len(i) for i in range(COUNT))
        assert st.rx_pkts - pkts0 - COUNT < 5
        await dev.disconnect()

    run(main())


def test_a_receiver_removed_mid_batch_stops_the_reads(knet: KernelNet) -> None:
    """The receiver taken away while a batch is read: the batch ends there, the frame
    in hand counted, the rest left in the device (and nothing handed to no one)."""

    async def main() -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        dev = r.value
        knet.move_in()
        got: list[int] = []
        others = 0

        def receive(frame: memoryview) -> None:
            nonlocal others
            if bytes(frame[12:14]) != b"\x88\xb5":
                others += 1
                return
            got.append(int.from_bytes(frame[14:18], "big"))
            if len(got) == 3:
                dev.set_receiver(None)

        # Frames queue in the device before anyone reads them: one batch finds them all.
        rc, out = await knet.exec(
            sys.executable, "-c", SENDER, knet.tap, "20", dev.mac().packed.hex()
        )
        assert rc == 0, out
        pkts0 = dev.get_stats_counters().rx_pkts
        dev.set_receiver(receive)
        await asyncio.sleep(0.3)
        assert got == [0, 1, 2]
        assert dev.get_stats_counters().rx_pkts - pkts0 == 3 + others
        await dev.disconnect()

    run(main())
