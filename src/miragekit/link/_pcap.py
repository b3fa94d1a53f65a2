"""A NETWORK wrapper that records every frame, both ways, to a pcap file.

Why: a capture is the fastest way to see what a stack really did, and in a simulation the
capture is also a fingerprint of the run. Timestamps come from the running loop's clock on
a :class:`~miragekit.sim.SimLoop` (so the same seed gives a byte-identical file) and from
the wall clock otherwise. The format is classic libpcap (``LINKTYPE_ETHERNET``, little
endian, micro- or nanosecond timestamps), which ``tshark``, ``tcpdump`` and Wireshark read.

Records are kept in a bounded buffer and written out when it fills, within
``flush_interval`` (one second) of the first record buffered while a loop runs, on
:meth:`flush`, and on :meth:`disconnect`/:meth:`close`: a capture being written can be read
as it grows, and a killed program loses at most the last second.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Sequence
from typing import IO, Self

from ..result import Error, NetworkError, Ok, Unknown
from ..sim import current as current_sim
from ..v1 import Buffer, FrameCallback, Network
from ._frame import FrameLink, FrameNetwork, FrameReceiver
from ._wrap import Wrapper

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    """A pcap file being written: what :class:`PcapNetif` records into, and what a
    simulation keeps per host across restarts (one file while devices come and go).

    ``file`` is a path (created or truncated; closed by us) or a binary file object
    (flushed, left open). ``snaplen`` caps the bytes kept per frame; ``buffer_size`` caps
    the bytes held before writing out.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        nanosecond: bool = False,
        snaplen: int = 262144,
        buffer_size: int = 1 << 20,
        flush_interval: float = 1.0,
    ) -> None:
        if isinstance(snaplen, bool) or not isinstance(snaplen, int) or not 1 <= snaplen < 2**31:
            raise ValueError(f"snaplen must be an int in [1, 2**31), got {snaplen!r}")
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 0:
            raise ValueError(f"buffer_size must be an int >= 0, got {buffer_size!r}")
        if isinstance(file, str | os.PathLike):
            self._file: IO[bytes] | None = open(file, "wb")  # noqa: SIM115 (closed in close())
            self._owns_file = True
            self._path: str | None = os.fspath(file)
        else:
            self._file = file
            self._owns_file = False
            self._path = getattr(file, "name", None)
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        self._snaplen = snaplen
        self._limit = buffer_size
        self._interval = flush_interval
        self._timer: asyncio.TimerHandle | None = None
        self._buf = bytearray()
        self._buf += _FILE_HEADER.pack(
            PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET
        )
        self.records = 0
        self.error: OSError | None = None  # why recording stopped, if it failed

    def _timestamp(self) -> tuple[int, int]:
        loop = current_sim()
        if loop is not None:
            units = round(loop.time() * self._scale)
        else:
            units = time.time_ns() // (1_000_000_000 // self._scale)
        return divmod(units, self._scale)

    def record(self, parts: Sequence[Buffer]) -> None:
        """Add one frame (given in pieces) stamped with the current time."""
        if self._file is None:
            return
        sec, frac = self._timestamp()
        n = 0
        for p in parts:
            n += memoryview(p).nbytes
        incl = min(n, self._snaplen)
        buf = self._buf
        buf += _RECORD_HEADER.pack(sec & 0xFFFFFFFF, frac, incl, n)
        left = incl
        for p in parts:
            if left <= 0:
                break
            v = memoryview(p).cast("B")
            take = v if len(v) <= left else v[:left]
            buf += take
            left -= len(take)
        self.records += 1
        if len(buf) >= self._limit:
            self._write_out()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: written when the buffer fills or on close
            self._timer = loop.call_later(self._interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._write_out()

    def _write_out(self) -> None:
        try:
            self.flush()
        except OSError as e:
            # A failing capture must not break the network path: stop recording.
            self.error = e
            self._buf.clear()
            self._file = None

    def flush(self) -> None:
        """Write the buffered records to the file."""
        f = self._file
        if f is None or not self._buf:
            return
        f.write(self._buf)
        f.flush()
        self._buf.clear()

    def close(self) -> None:
        """Flush and stop recording; closes a file we opened."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._file is None:
            return
        self.flush()
        if self._owns_file:
            self._file.close()
        self._file = None

    @property
    def path(self) -> str | None:
        return self._path


class PcapNetif(Wrapper):
    """Wraps ``netif`` and records what it sends and receives into ``file`` (a
    :class:`PcapWriter`'s arguments)."""

    def __init__(
        self,
        netif: FrameNetwork,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        nanosecond: bool = False,
        snaplen: int = 262144,
        buffer_size: int = 1 << 20,
        flush_interval: float = 1.0,
    ) -> None:
        self._writer = PcapWriter(
            file,
            nanosecond=nanosecond,
            snaplen=snaplen,
            buffer_size=buffer_size,
            flush_interval=flush_interval,
        )
        super().__init__(netif)
        self._record = self._writer.record
        self._receiver: FrameReceiver | None = None
        # Record what arrives even while the application does not listen, as tcpdump does.
        netif.set_receiver(self._on_frame)

    @property
    def records(self) -> int:
        return self._writer.records

    @property
    def error(self) -> OSError | None:
        """Why recording stopped, if it failed."""
        return self._writer.error

    def flush(self) -> None:
        """Write the buffered records to the file."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and stop recording (frames still pass through); closes a file we opened."""
        self._writer.close()

    @property
    def path(self) -> str | None:
        return self._writer.path

    # --- DEVICE -----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, id: str, *, netif: FrameNetwork | None = None, nanosecond: bool = False
    ) -> Ok[Self] | Error[NetworkError]:
        """Record ``netif`` into the file named ``id``."""
        if netif is None:
            return Error(Unknown("PcapNetif.connect needs the device to wrap: netif="))
        try:
            return Ok(cls(netif, id, nanosecond=nanosecond))
        except OSError as e:
            return Error(Unknown(f"cannot open {id!r}: {e}"))

    async def disconnect(self) -> None:
        """Flush and close the capture, then disconnect the wrapped device."""
        self.close()
        await self._inner.disconnect()

    # --- FrameLink --------------------------------------------------------------------------

    def set_receiver(self, fn: FrameReceiver | None) -> None:
        self._receiver = fn
        self._inner.set_receiver(self._on_frame)

    def _on_frame(self, frame: memoryview) -> None:
        self._record((frame,))
        fn = self._receiver
        if fn is not None:
            fn(frame)

    def send(self, frame: Buffer) -> None:
        self._record((frame,))
        self._inner.send(frame)

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        self._record(bufs)
        self._inner.sendv(bufs)

    # --- NETWORK ----------------------------------------------------------------------------

    async def write(self, buf: Buffer) -> None:
        self._record((buf,))
        await self._inner.write(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self._record(bufs)
        await self._inner.writev(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        """The wrapped device's ``listen``, recording each frame as it is handed over."""

        async def recording(frame: memoryview) -> None:
            self._record((frame,))
            await fn(frame)

        try:
            await self._inner.listen(recording)
        finally:
            self._inner.set_receiver(self._on_frame)

    def reset_stats_counters(self) -> None:
        self._inner.reset_stats_counters()


_check_network: type[Network] = PcapNetif
_check_link: type[FrameLink] = PcapNetif
