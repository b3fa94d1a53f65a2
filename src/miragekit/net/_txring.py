"""Hand TAP writes to a helper process through a shared-memory ring.

Why: a ``write`` to a TAP device runs the kernel's whole receive path for that frame
(IP, TCP, waking the reader) in the writing thread: at MTU 1500 that was ~40% of our
stack's time when sending in bulk (docs/performance.md). A thread cannot take it over,
because it needs the GIL back after every frame; a second *process* has its own
interpreter, so it writes the frames on the other core while our stack builds the next
ones. This is the vhost idea: the datapath's system calls leave the stack's thread.

The ring lives in a ``memfd`` shared by the two processes. One producer (the stack's
thread, :class:`TxRing`) and one consumer (:func:`serve`, run as ``python -I -S
_txring.py``) pass frames in FIFO order, so nothing is reordered. Layout::

    [0:8)     tail   frames published by the producer (u64, only it writes)
    [64:72)   head   frames written by the consumer (u64, only it writes)
    [128:136) 1 while the consumer is asleep on the wake-up eventfd
    [192:216) written, errors, eagain: the consumer's counters (u64 each)
    [4096:)   slots: u32 length, then the frame

Memory ordering: the producer stores a frame, then the tail; the consumer loads the tail,
then the frame. On x86-64 (TSO) stores are seen in order, which is what this relies on;
:func:`supported` says where it may be used. The consumer's sleep is a timed wait, so a
wake-up lost to the store-load race costs at most ``NAP_MAX_SECONDS``, never a frame.

This module imports only the standard library: the consumer runs it as a script.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import select
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Final

# The shared words are read and written through ``memoryview.cast("Q")``: CPython moves
# such an item with one aligned 8-byte load or store, which the other process cannot see
# half-done. (``struct.pack_into`` will not do: it zeroes the field before filling it.)
_TAIL: Final = 0  # word indexes, one cache line apart
_HEAD: Final = 8
_ASLEEP: Final = 16
_WRITTEN: Final = 24
_ERRORS: Final = 25
_EAGAIN: Final = 26
_U32: Final = struct.Struct("I")  # a slot's length, written before the tail publishes it
_SLOTS: Final = 4096
SPIN_SECONDS: Final = 0.0002
"""How long the consumer polls an empty ring before it sleeps on the eventfd."""
NAP_SECONDS: Final = 0.001
"""The consumer's first timed sleep on an idle ring; it doubles while the ring stays idle"""
NAP_MAX_SECONDS: Final = 0.01
"""... up to this: the bound on a lost wake-up, and 100 idle wake-ups a second."""
FULL_WAIT_SECONDS: Final = 1.0
"""How long the producer waits on a full ring before it declares the consumer stuck."""


def supported() -> bool:
    """Whether the ring's memory-ordering assumption holds here (x86-64 Linux)."""
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


class RingError(Exception):
    """The consumer process is gone or stuck; the ring no longer takes frames."""


class TxRing:
    """The producer end: ``put``/``putv`` copy a frame into the ring and return at once."""

    def __init__(self, fd: int, *, slot_size: int, slots: int = 512) -> None:
        if slots & (slots - 1) or slots <= 0:
            raise ValueError(f"slots: must be a power of two, got {slots}")
        if slot_size < 64:
            raise ValueError(f"slot_size: at least 64 bytes, got {slot_size}")
        self.slot_size = (slot_size + 4 + 63) // 64 * 64
        self.slots = slots
        self._mask = slots - 1
        size = _SLOTS + self.slots * self.slot_size
        self._memfd = os.memfd_create("miragekit-txring", os.MFD_CLOEXEC)
        os.ftruncate(self._memfd, size)
        self._mm = mmap.mmap(self._memfd, size)
        self._view = memoryview(self._mm)
        self._words = self._view[:_SLOTS].cast("Q")
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._tail = 0
        self._head = 0  # the consumer's head as last read
        self._closed = False
        stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        fds = (fd, self._memfd, self._wake, stop_r)
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, *map(str, fds), str(self.slots),
             str(self.slot_size)],
            pass_fds=fds,
        )  # fmt: skip
        os.close(stop_r)

    @property
    def pending(self) -> int:
        """Frames published but not yet written by the consumer."""
        return self._tail - self._words[_HEAD]

    def counters(self) -> tuple[int, int, int]:
        """(written, errors, eagain) as the consumer counted them."""
        w = self._words
        return w[_WRITTEN], w[_ERRORS], w[_EAGAIN]

    def _slot(self) -> int:
        """The offset of the next free slot, waiting (bounded) if the ring is full."""
        t = self._tail
        if not t & self._mask and self._proc.poll() is not None:  # once per lap
            raise RingError("the TAP writer process has exited")
        if t - self._head >= self.slots:
            self._head = self._words[_HEAD]
            if t - self._head >= self.slots:
                self._wait_for_room()
        return _SLOTS + (t & self._mask) * self.slot_size

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + FULL_WAIT_SECONDS
        words, t, n = self._words, self._tail, self.slots
        words[_TAIL] = t  # what a burst staged so far must go out to make room
        while True:
            if words[_ASLEEP]:
                os.eventfd_write(self._wake, 1)
            self._head = words[_HEAD]
            if t - self._head < n:
                return
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RingError("the TAP writer process is gone or stuck")
            time.sleep(0)

    def _publish(self) -> None:
        self._tail += 1
        words = self._words
        words[_TAIL] = self._tail
        if words[_ASLEEP]:
            os.eventfd_write(self._wake, 1)

    def put(self, frame: bytes | bytearray | memoryview) -> None:
        """Queue one frame; :class:`RingError` if the consumer is gone."""
        n = len(frame)
        if n > self.slot_size - 4:
            raise ValueError(f"frame: {n} bytes do not fit a {self.slot_size - 4}-byte slot")
        off = self._slot()
        _U32.pack_into(self._mm, off, n)
        self._view[off + 4 : off + 4 + n] = frame
        self._publish()

    def putv(self, bufs: Sequence[bytes | bytearray | memoryview]) -> int:
        """Queue the concatenation of ``bufs`` as one frame; returns its length."""
        n = sum(map(len, bufs))
        if n > self.slot_size - 4:
            raise ValueError(f"frame: {n} bytes do not fit a {self.slot_size - 4}-byte slot")
        off = self._slot()
        _U32.pack_into(self._mm, off, n)
        view = self._view
        p = off + 4
        for b in bufs:
            q = p + len(b)
            view[p:q] = b
            p = q
        self._publish()
        return n

    def put_many(
        self, frames: Sequence[bytes | bytearray | memoryview], prefix: bytes = b""
    ) -> int:
        """Queue each of ``frames`` (after ``prefix``, e.g. a virtio-net header) and publish
        them at once: one tail store and one wake-up check per burst. Returns the bytes
        queued, prefixes included. A frame too large for a slot refuses the whole burst."""
        p = len(prefix)
        room = self.slot_size - 4 - p
        if any(len(f) > room for f in frames):
            raise ValueError(f"frame: larger than a {room}-byte slot")
        u32_pack, mm, view = _U32.pack_into, self._mm, self._view
        total = 0
        for f in frames:
            off = self._slot()
            n = p + len(f)
            u32_pack(mm, off, n)
            if p:
                view[off + 4 : off + 4 + p] = prefix
            view[off + 4 + p : off + 4 + n] = f
            self._tail += 1
            total += n
        words = self._words
        words[_TAIL] = self._tail
        if words[_ASLEEP]:
            os.eventfd_write(self._wake, 1)
        return total

    def close(self, timeout: float = 5.0) -> None:
        """Let the consumer write what is queued, then stop it and free the ring."""
        if self._closed:
            return
        self._closed = True
        os.close(self._stop_w)
        os.eventfd_write(self._wake, 1)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._words.release()
        self._view.release()
        self._mm.close()
        os.close(self._memfd)
        os.close(self._wake)


def serve(fd: int, memfd: int, wake: int, stop: int, slots: int, slot_size: int) -> None:
    """The consumer: write every published frame to ``fd`` in order until ``stop`` closes.

    After ``stop`` reaches end of file the frames already published are still written,
    so closing loses nothing that was queued.
    """
    size = _SLOTS + slots * slot_size
    mm = mmap.mmap(memfd, size)
    view = memoryview(mm)
    words = view[:_SLOTS].cast("Q")
    mask = slots - 1
    head = words[_HEAD]
    written = errors = eagain = 0
    u32_unpack = _U32.unpack_from
    write = os.write
    stopping = False
    nap = NAP_SECONDS
    poller = select.poll()
    poller.register(wake, select.POLLIN)
    poller.register(stop, select.POLLIN)
    while True:
        tail = words[_TAIL]
        if not 0 <= tail - head <= slots:
            raise RuntimeError(f"ring: tail {tail} is not within {slots} of head {head}")
        if tail != head:
            while head != tail:
                off = _SLOTS + (head & mask) * slot_size
                n = u32_unpack(mm, off)[0]
                frame = view[off + 4 : off + 4 + n]
                while True:
                    try:
                        write(fd, frame)
                        written += 1
                    except BlockingIOError:
                        eagain += 1
                        select.select([], [fd], [], NAP_SECONDS)
                        continue
                    except OSError:
                        errors += 1
                    break
                head += 1
                words[_HEAD] = head
            words[_WRITTEN], words[_ERRORS], words[_EAGAIN] = written, errors, eagain
            nap = NAP_SECONDS
            continue
        if stopping:
            return
        # Empty: poll a little (the next burst is usually microseconds away), then sleep.
        deadline = time.monotonic() + SPIN_SECONDS
        while words[_TAIL] == head and time.monotonic() < deadline:
            pass
        if words[_TAIL] != head:
            continue
        words[_ASLEEP] = 1
        if words[_TAIL] == head:
            for rfd, _ in poller.poll(nap * 1000):
                if rfd == wake:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(wake)
                elif not os.read(stop, 1):
                    stopping = True
        words[_ASLEEP] = 0
        nap = min(2 * nap, NAP_MAX_SECONDS)


if __name__ == "__main__":
    _a = [int(x) for x in sys.argv[1:7]]
    with contextlib.suppress(KeyboardInterrupt):
        serve(*_a)
