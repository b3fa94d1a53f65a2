"""The QEMU socket devices' framing at the byte level (a real QEMU guest is in
tests/test_switch_qemu.py): frames split across reads, a bad length, reconnection."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

from miragekit.link import QemuStreamNetif
from miragekit.link._qemu import MAX_FRAME
from miragekit.result import Ok


def test_stream_frames_split_anywhere_and_a_bad_length_drops_the_connection(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "vm.sock")

    async def main() -> None:
        res = await QemuStreamNetif.connect(path)
        assert isinstance(res, Ok)
        dev = res.value
        got: list[bytes] = []
        dev.set_receiver(lambda f: got.append(bytes(f)))
        frames = [bytes([i]) * n for i, n in enumerate((60, 1514, 9000, 65549), 1)]
        wire = b"".join(struct.pack(">I", len(f)) + f for f in frames)
        loop = asyncio.get_running_loop()
        vm = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        vm.setblocking(False)
        await loop.sock_connect(vm, path)
        for cut in (1, 3, 5, 70, 1600, 20000, len(wire)):  # pieces of odd sizes
            piece, wire = wire[:cut], wire[cut:]
            await loop.sock_sendall(vm, piece)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert got == frames
        # The other way: a 4-byte big-endian length before the frame.
        dev.sendv((b"\xaa" * 10, b"\xbb" * 50))
        head = await loop.sock_recv(vm, 4)
        assert struct.unpack(">I", head)[0] == 60
        body = b""
        while len(body) < 60:
            body += await loop.sock_recv(vm, 60 - len(body))
        assert body == b"\xaa" * 10 + b"\xbb" * 50
        # A length no QEMU would send: the connection is closed and counted.
        await loop.sock_sendall(vm, struct.pack(">I", MAX_FRAME + 1))
        await asyncio.sleep(0.05)
        assert dev.counters.rx_malformed == 1 and not dev.peer_connected
        assert await loop.sock_recv(vm, 10) == b""
        vm.close()
        # A restarted VM connects again.
        vm2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        vm2.setblocking(False)
        await loop.sock_connect(vm2, path)
        await loop.sock_sendall(vm2, struct.pack(">I", 60) + bytes(60))
        await asyncio.sleep(0.05)
        assert dev.counters.connects == 2 and got[-1] == bytes(60)
        vm2.close()
        await dev.disconnect()
        assert not Path(path).exists()

    asyncio.run(main())
