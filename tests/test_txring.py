"""The shared-memory ring that hands TAP writes to a helper process.

A datagram socketpair stands in for the TAP device: like it, it keeps frame boundaries,
and its small buffer makes the consumer meet EAGAIN and the producer a full ring.
"""

from __future__ import annotations

import os
import random
import socket
import time

import pytest

from miragekit.net._txring import RingError, TxRing


def frames(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [i.to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 1500)) for i in range(n)]


def read_all(sock: socket.socket, n: int, timeout: float = 30.0) -> list[bytes]:
    sock.settimeout(timeout)
    return [sock.recv(4096) for _ in range(n)]


def settle(ring: TxRing) -> None:
    """Wait (bounded) until the helper has written and counted everything queued."""
    deadline = time.monotonic() + 10
    while ring.pending or ring.counters()[0] + ring.counters()[1] < ring._tail:
        assert time.monotonic() < deadline, "the helper did not catch up"
        time.sleep(0.001)


def drain(sock: socket.socket, into: list[bytes]) -> None:
    """Read what has arrived, without waiting."""
    sock.setblocking(False)
    try:
        while True:
            into.append(sock.recv(4096))
    except BlockingIOError:
        pass


def test_every_frame_arrives_once_in_order() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    ring = TxRing(a.fileno(), slot_size=1504, slots=64)
    try:
        want = frames(5000, 1)
        got: list[bytes] = []
        for i, f in enumerate(want):
            if i % 2:
                ring.put(f)
            else:
                ring.putv([f[:3], memoryview(f)[3:], b""])
            drain(b, got)  # read as we go: the socket buffer holds few frames
        got += read_all(b, len(want) - len(got))
        assert got == want
        settle(ring)  # the helper counts after the write that we have already read
        written, errors, _ = ring.counters()
        assert (written, errors) == (len(want), 0)
        assert ring.pending == 0
    finally:
        ring.close()
        a.close()
        b.close()


def test_a_full_ring_waits_for_a_slow_reader_and_loses_nothing() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ring = TxRing(a.fileno(), slot_size=1504, slots=8)
    want = frames(400, 2)
    got: list[bytes] = []
    try:
        for f in want:
            ring.put(f)  # waits (bounded) while the reader lags
            drain(b, got)
        got += read_all(b, len(want) - len(got))
        assert got == want
        settle(ring)
        _, errors, eagain = ring.counters()
        assert errors == 0 and eagain > 0  # the consumer met a full socket and waited
    finally:
        ring.close()
        a.close()
        b.close()


def test_close_writes_what_is_queued_then_stops_the_helper() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    ring = TxRing(a.fileno(), slot_size=256, slots=256)
    want = [bytes([i]) * 100 for i in range(200)]
    for f in want:
        ring.put(f)
    proc = ring._proc
    ring.close()
    assert proc.returncode == 0
    assert read_all(b, len(want), timeout=5) == want
    ring.close()  # twice is harmless
    a.close()
    b.close()


def test_oversized_frame_is_refused_and_changes_nothing() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ring = TxRing(a.fileno(), slot_size=100, slots=4)
    try:
        with pytest.raises(ValueError, match="do not fit"):
            ring.put(bytes(ring.slot_size))
        with pytest.raises(ValueError, match="do not fit"):
            ring.putv([bytes(60), bytes(ring.slot_size)])
        assert ring.pending == 0
        ring.put(b"ok")
        assert read_all(b, 1) == [b"ok"]
    finally:
        ring.close()
        a.close()
        b.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="slots"):
        TxRing(0, slot_size=1500, slots=100)
    with pytest.raises(ValueError, match="slot_size"):
        TxRing(0, slot_size=10)


def test_a_dead_helper_is_noticed() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ring = TxRing(a.fileno(), slot_size=100, slots=4)
    try:
        ring._proc.kill()
        ring._proc.wait()
        with pytest.raises(RingError):
            for _ in range(10):  # noticed at the latest when the ring is full
                ring.put(b"x")
    finally:
        ring.close(timeout=0)
        a.close()
        b.close()


def test_the_helper_exits_when_its_owner_dies() -> None:
    """The stop pipe closes with the owner's process, whatever way it ends."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the owner: start a ring, report the helper's pid, die without cleanup
        a, _ = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ring = TxRing(a.fileno(), slot_size=100, slots=4)
        os.write(w, str(ring._proc.pid).encode())
        os._exit(0)
    os.close(w)
    helper = int(os.read(r, 64))
    os.close(r)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{helper}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # exited; nobody has reaped it yet
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the helper outlived its owner")


def test_an_idle_helper_sleeps() -> None:
    """After a burst the helper polls for 0.2 ms, then naps: idle, it costs ~no CPU."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ring = TxRing(a.fileno(), slot_size=100, slots=4)
    try:
        ring.put(b"x")
        assert read_all(b, 1) == [b"x"]

        def cpu_ticks() -> int:
            with open(f"/proc/{ring._proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        before = cpu_ticks()
        time.sleep(1.0)
        used = cpu_ticks() - before
        assert used <= 10, f"{used} ticks of {os.sysconf('SC_CLK_TCK')} in 1 s while idle"
        ring.put(b"y")  # and it still wakes up for the next frame
        assert read_all(b, 1, timeout=5) == [b"y"]
    finally:
        ring.close()
        a.close()
        b.close()


def test_a_burst_is_published_once_in_order_with_its_prefix() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    ring = TxRing(a.fileno(), slot_size=1600, slots=16)
    try:
        want = frames(300, 3)
        got: list[bytes] = []
        for i in range(0, len(want), 50):  # bursts larger than the ring: it publishes early
            assert ring.put_many(want[i : i + 50], b"HDR") == sum(
                3 + len(f) for f in want[i : i + 50]
            )
            drain(b, got)
        got += read_all(b, len(want) - len(got))
        assert got == [b"HDR" + f for f in want]
        staged = ring._tail
        with pytest.raises(ValueError, match="larger than"):
            ring.put_many([b"ok", bytes(ring.slot_size)])
        assert ring._tail == staged  # the refused burst queued nothing
        ring.put(b"next")
        assert read_all(b, 1) == [b"next"]
    finally:
        ring.close()
        a.close()
        b.close()
