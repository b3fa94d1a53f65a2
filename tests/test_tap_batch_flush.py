"""The TAP device's read batch ends with the TCP driver's flush (``TapNetif.set_batch_done``,
``IPv4.batch_done``): what the batch's frames asked for (a request's data for the
application, ACKs) is handed over in the reader's loop turn, not in the next one. Over a
UNIX datagram socketpair standing in for the TAP file descriptor (no root): the peer's
frames are built here, as the kernel would send them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from typing import Any, cast

from miragekit import aio
from miragekit.link import TapNetif
from miragekit.macaddr import MacAddr
from miragekit.net import IPv4Stack
from miragekit.net._tcp import TCP
from miragekit.stack import DirectStackV4
from miragekit.wire import ones_sum

OURS, PEER = ipaddress.IPv4Address("10.9.0.2"), ipaddress.IPv4Address("10.9.0.1")
OUR_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")


def _frame(seq: int, ack: int, flags: int, opts: bytes, payload: bytes) -> bytes:
    """A frame from the peer (port 40000) to our port 80, both checksums right."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, seq, ack, (20 + len(opts)) << 2, flags, 502, 0, 0)
    tcp += opts + payload
    pseudo = PEER.packed + OURS.packed + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", 0xFFFF - ones_sum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                     PEER.packed, OURS.packed)  # fmt: skip
    ip = ip[:10] + struct.pack("!H", 0xFFFF - ones_sum(ip)) + ip[12:]
    return OUR_MAC + PEER_MAC + b"\x08\x00" + ip + tcp


def test_a_read_batch_hands_its_data_over_before_the_reader_returns() -> None:
    got: list[bytes] = []

    async def main() -> tuple[list[bytes], list[bytes]]:
        _, tap, _, peer, iss, rest = await _served(got)
        ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 0)
        before = list(got)
        # Two requests in one batch, read by the reader callback itself (as the loop
        # calls it): their data reaches the protocol before it returns.
        peer.send(_frame(5001, iss + 1, 0x18, ts, b"GET /a"))
        peer.send(_frame(5007, iss + 1, 0x18, ts, b"GET /b"))
        tap._on_readable()
        during = list(got)
        await _close(peer, rest)
        return before, during

    before, during = aio.run(main())
    assert before == []
    assert b"".join(during) == b"GET /aGET /b"


async def _served(got: list[bytes]) -> tuple[Any, ...]:
    """A TAP stack over a socketpair serving a protocol that notes its data, with one
    handshake done: (loop, tap, tcp, peer socket, the ISS, what to close)."""

    class Note(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.append(data)

    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    peer.setblocking(False)
    tap = TapNetif(ours.fileno(), "pair", mtu=1500, mac=MacAddr(OUR_MAC), loop=loop)
    ip = await IPv4Stack.connect(tap, cidr=f"{OURS}/24")
    ip.ipv4.arp.add_static(int(PEER), PEER_MAC, loop.time())
    tcp = TCP(ip.ipv4)
    stack = DirectStackV4(cast(Any, None), ip, tcp)
    with aio.bind(stack):
        server = await loop.create_server(Note, str(OURS), 80)
    await asyncio.sleep(0.05)
    while True:  # the gratuitous ARP
        try:
            peer.recv(2048)
        except BlockingIOError:
            break
    ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 0)
    syn_opts = struct.pack("!BBH", 2, 4, 1460) + bytes([4, 2]) + bytes([8, 10])
    peer.send(_frame(5000, 0, 0x02, syn_opts + struct.pack("!II", 1000, 0) + b"\1\3\3\7", b""))
    await asyncio.sleep(0.05)
    synack = peer.recv(2048)
    iss = struct.unpack_from("!I", synack, 38)[0]
    peer.send(_frame(5001, iss + 1, 0x10, ts, b""))
    await asyncio.sleep(0.05)
    return loop, tap, tcp, peer, iss, (server, stack, ours)


async def _close(peer: socket.socket, rest: tuple[Any, ...]) -> None:
    server, stack, ours = rest
    server.close()
    await stack.disconnect()
    ours.close()
    peer.close()


def test_a_read_batch_makes_no_flush_callback_of_its_own() -> None:
    """The batch's end runs the flush its frames asked for: no loop callback is made for
    it (and cancelled at the end) while the batch is read; only the flush after the
    served application is scheduled."""
    got: list[bytes] = []
    ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1001, 0)

    async def main() -> list[str]:
        loop, tap, tcp, peer, iss, rest = await _served(got)
        made: list[str] = []
        real = loop.call_soon
        reading = [False]

        def call_soon(cb: Any, *args: Any, **kw: Any) -> asyncio.Handle:
            if cb == tcp._flush:
                made.append("in batch" if reading[0] else "after")
            return cast(asyncio.Handle, real(cb, *args, **kw))

        loop.call_soon = call_soon
        real_read = tap._read_batch

        def read() -> None:
            reading[0] = True
            try:
                real_read()
            finally:
                reading[0] = False

        tap._read_batch = read
        peer.send(_frame(5001, iss + 1, 0x18, ts, b"GET /a"))
        tap._on_readable()
        loop.call_soon = real
        await _close(peer, rest)
        return made

    made = aio.run(main())
    assert got == [b"GET /a"]
    assert made == ["after"]  # the re-flush for the served application, no other


def test_a_batch_that_raises_still_flushes_its_frames() -> None:
    """A receiver that raises ends the batch early: the end's hook still runs, so the
    frames it took are handed over (their flush was left to the batch's end)."""
    got: list[bytes] = []
    ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1001, 0)

    async def main() -> None:
        _, tap, _, peer, iss, rest = await _served(got)
        real = tap._receiver
        assert real is not None

        def boom(frame: memoryview) -> None:
            real(frame)
            raise RuntimeError("a receiver's bug")

        tap._receiver = boom
        peer.send(_frame(5001, iss + 1, 0x18, ts, b"GET /a"))
        with contextlib.suppress(RuntimeError):
            tap._on_readable()
        tap._receiver = real
        assert got == [b"GET /a"]
        await _close(peer, rest)

    aio.run(main())


def test_after_disconnect_a_batch_still_gets_its_segments_answered() -> None:
    """``disconnect`` takes the batch's end (``IPv4.batch_done``) from the driver: a
    segment that arrives afterwards (the peer's FIN for ours) is answered from a loop
    callback of its own, at once, not left for a timer."""
    got: list[bytes] = []
    ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1001, 0)

    async def main() -> list[bytes]:
        _, tap, tcp, peer, _, rest = await _served(got)
        server, stack, ours = rest
        server.close()
        await tcp.disconnect()  # the driver only: the device is still read
        await asyncio.sleep(0.01)
        fins = []
        while True:
            try:
                fins.append(peer.recv(2048))
            except BlockingIOError:
                break
        assert fins and fins[-1][47] & 0x01, "our FIN"
        our_fin = struct.unpack_from("!I", fins[-1], 38)[0]
        peer.send(_frame(5001, our_fin + 1, 0x11, ts, b""))  # ACK of our FIN, and the peer's
        tap._on_readable()
        for _ in range(3):
            await asyncio.sleep(0)
        out = []
        while True:
            try:
                out.append(peer.recv(2048))
            except BlockingIOError:
                break
        await stack.disconnect()
        ours.close()
        peer.close()
        return out

    out = aio.run(main())
    assert [f[47] for f in out] == [0x10]  # the ACK of the peer's FIN, in a loop turn
