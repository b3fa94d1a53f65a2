"""CHANNEL: a buffered byte stream (lines, delimiters, writes) over any FLOW.

Why this shape:

* The receive side keeps the flow's latest piece as an immutable ``bytes`` object plus a
  read offset. A line found inside it is returned as a ``memoryview`` slice of it: no
  copy, and safe to keep, since nothing ever writes into that memory again. Only a line
  that spans two reads is copied (once) into a fresh buffer.
* Memory is bounded: a line (or a ``read_until`` scan) longer than ``max_line`` raises
  :class:`LineTooLong` and leaves the data in the channel, so the refused call changes
  nothing and the caller may drain it with :meth:`Channel.read_some`. The output buffer
  starts a background flush past ``flush_threshold`` bytes and refuses writes that would
  take it past ``max_buffer`` (await :meth:`Channel.flush` to make room).
* Flow failures are exceptions here (the OCaml channel raises too): :class:`ChannelError`
  carries the flow's error value, or ``EOF`` when a flush finds the flow closed. Data
  already received stays readable first; a failed read is remembered and raised again.
* One reader and one writer at a time (each may be a different task).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final, Self

from .result import EOF, Eof, Ok
from .v1 import Buffer, Flow
from .v1 import Channel as ChannelSignature

__all__ = [
    "DEFAULT_FLUSH_THRESHOLD",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_LINE",
    "Channel",
    "ChannelError",
    "LineTooLong",
    "OutputFull",
]

DEFAULT_MAX_LINE: Final = 1024 * 1024
DEFAULT_FLUSH_THRESHOLD: Final = 64 * 1024
DEFAULT_MAX_BUFFER: Final = 16 * 1024 * 1024

_LF: Final = 10
_CR: Final = 13
_EMPTY: Final = memoryview(b"")


class ChannelError(Exception):
    """The flow under a channel failed; ``error`` is the flow's error value (or ``EOF``)."""

    def __init__(self, error: object) -> None:
        super().__init__(f"flow failed: {error!r}")
        self.error = error


class LineTooLong(ValueError):
    """A line or ``read_until`` scan exceeded ``max_line``; the data stays unread."""


class OutputFull(ValueError):
    """A write would take the output buffer past ``max_buffer``; await ``flush`` first."""


def _as_bytes(s: str | Buffer, what: str) -> bytes | bytearray | memoryview:
    if isinstance(s, str):
        return s.encode()
    if isinstance(s, bytes | bytearray | memoryview):
        return s
    raise TypeError(f"{what} must be str or a bytes-like object, got {type(s).__name__}")


class Channel:
    """A buffered reader and writer over a ``v1.Flow`` (see the module docstring)."""

    __slots__ = (
        "_bg",
        "_buf",
        "_closed",
        "_eof",
        "_flow",
        "_flush_threshold",
        "_flushed",
        "_line_window",
        "_max_buffer",
        "_max_line",
        "_mv",
        "_out",
        "_pos",
        "_rerror",
        "_werror",
        "_wlock",
        "_written",
    )

    def __init__(
        self,
        flow: Flow[Any],
        *,
        max_line: int = DEFAULT_MAX_LINE,
        flush_threshold: int = DEFAULT_FLUSH_THRESHOLD,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        if flush_threshold < 1:
            raise ValueError(f"flush_threshold must be >= 1, got {flush_threshold}")
        if max_buffer < flush_threshold:
            raise ValueError(f"max_buffer must be >= flush_threshold, got {max_buffer}")
        self._flow = flow
        self._max_line = max_line
        # A LF inside this window ends a line of at most max_line bytes for sure.
        self._line_window = max_line + 1
        self._flush_threshold = flush_threshold
        self._max_buffer = max_buffer
        self._buf: bytes = b""
        self._mv: memoryview = _EMPTY
        self._pos = 0
        self._eof = False
        self._rerror: object = None
        self._out = bytearray()
        self._written = 0  # bytes ever put in the output buffer
        self._flushed = 0  # bytes ever handed to the flow
        self._werror: object = None
        self._wlock = asyncio.Lock()
        self._bg: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def create(
        cls,
        flow: Flow[Any],
        *,
        max_line: int = DEFAULT_MAX_LINE,
        flush_threshold: int = DEFAULT_FLUSH_THRESHOLD,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> Self:
        """A channel over ``flow`` (the seed's ``create``); see the class for the limits."""
        return cls(flow, max_line=max_line, flush_threshold=flush_threshold, max_buffer=max_buffer)

    def to_flow(self) -> Flow[Any]:
        return self._flow

    @property
    def max_line(self) -> int:
        return self._max_line

    # --- reading ---------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Replace the (fully consumed) buffer with the flow's next piece; False at EOF."""
        if self._eof:
            return False
        if self._rerror is not None:
            raise ChannelError(self._rerror)
        flow = self._flow
        while True:
            r = await flow.read()
            if isinstance(r, Ok):
                v = r.value
                n = v.nbytes
                if not n:
                    continue
                obj = v.obj
                # A view of a whole immutable object is kept as it is; anything else is
                # copied, since the flow may reuse its memory.
                buf = obj if type(obj) is bytes and len(obj) == n else v.tobytes()
                self._buf = buf
                self._mv = memoryview(buf)
                self._pos = 0
                return True
            if isinstance(r, Eof):
                self._eof = True
                return False
            self._rerror = r.error
            raise ChannelError(r.error)

    def _unread(self, acc: bytearray) -> None:
        """Put ``acc`` back in front of the unread data (after a refused or failed scan)."""
        if acc:
            self._buf = bytes(acc) + self._mv[self._pos :]
            self._mv = memoryview(self._buf)
            self._pos = 0

    async def _scan(self, sep: int, strip_cr: bool) -> tuple[bool, memoryview]:
        """Consume data up to and including ``sep``; return (found, data before it).

        The general path: the separator may be pieces away. At most ``max_line`` bytes
        (plus a CR to be stripped) are held; on any exception they go back unread.
        """
        max_line = self._max_line
        limit = max_line + 1 if strip_cr else max_line
        acc = bytearray()
        try:
            while True:
                buf, pos, n = self._buf, self._pos, len(acc)
                i = buf.find(sep, pos, pos + limit + 1 - n)
                if i >= 0:
                    end = i
                    cr_in_acc = False
                    if strip_cr:
                        if i > pos:
                            if buf[i - 1] == _CR:
                                end = i - 1
                        elif n and acc[-1] == _CR:
                            cr_in_acc = True
                    size = n + end - pos - cr_in_acc
                    if size > max_line:
                        raise LineTooLong(f"line longer than max_line={max_line} bytes")
                    self._pos = i + 1
                    if not n:
                        return True, self._mv[pos:end]
                    if cr_in_acc:
                        del acc[-1]
                    acc += self._mv[pos:end]
                    return True, memoryview(acc)
                if n + len(buf) - pos > limit:
                    raise LineTooLong(f"line longer than max_line={max_line} bytes")
                acc += self._mv[pos:]
                self._pos = len(buf)
                if not await self._fill():
                    if len(acc) > max_line:  # no LF: a final CR is data, not stripped
                        raise LineTooLong(f"line longer than max_line={max_line} bytes")
                    return False, memoryview(acc)
        except BaseException:
            self._unread(acc)
            raise

    async def read_char(self) -> bytes:
        """One byte; ``EOFError`` at the end of the flow."""
        pos = self._pos
        if pos >= len(self._buf) and not await self._fill():
            raise EOFError("end of flow")
        pos = self._pos
        self._pos = pos + 1
        return self._buf[pos : pos + 1]

    async def read_until(self, ch: bytes) -> tuple[bool, memoryview]:
        """Data before ``ch`` (which is consumed); ``found`` is False at end of flow.

        At the end of the flow the data is everything that was left. More than
        ``max_line`` bytes before ``ch`` raises :class:`LineTooLong`.
        """
        if not isinstance(ch, bytes | bytearray) or len(ch) != 1:
            raise ValueError(f"ch must be a single byte, got {ch!r}")
        return await self._scan(ch[0], False)

    async def read_some(self, len: int | None = None) -> memoryview:
        """Up to ``len`` bytes of what is buffered (reading once if nothing is); empty at EOF."""
        if len is not None and len < 1:
            raise ValueError(f"len must be >= 1 or None, got {len}")
        pos = self._pos
        avail = self._buf.__len__() - pos
        if avail <= 0:
            if not await self._fill():
                return _EMPTY
            pos = 0
            avail = self._buf.__len__()
        n = avail if len is None or len > avail else len
        self._pos = pos + n
        return self._mv[pos : pos + n]

    async def read_stream(self, len: int | None = None) -> AsyncIterator[memoryview]:
        """Successive :meth:`read_some` results (each up to ``len``) until the end of flow."""
        if len is not None and len < 1:
            raise ValueError(f"len must be >= 1 or None, got {len}")
        while True:
            v = await self.read_some(len)
            if not v:
                return
            yield v

    async def read_line(self) -> list[memoryview]:
        """One line without its LF and a CR before it; at EOF what is left ([] if nothing).

        A line of more than ``max_line`` bytes raises :class:`LineTooLong`.
        """
        buf = self._buf
        pos = self._pos
        i = buf.find(b"\n", pos, pos + self._line_window)
        if i >= 0:
            self._pos = i + 1
            if i > pos and buf[i - 1] == _CR:
                return [self._mv[pos : i - 1]]
            return [self._mv[pos:i]]
        found, v = await self._scan(_LF, True)
        return [v] if found or v else []

    # --- writing ---------------------------------------------------------------------

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ValueError("write on a closed channel")
        n = len(data) if type(data) is not memoryview else data.nbytes
        out = self._out
        if out.__len__() + n > self._max_buffer:
            raise OutputFull(
                f"output buffer would exceed max_buffer={self._max_buffer} bytes; await flush()"
            )
        out += data
        self._written += n
        if out.__len__() >= self._flush_threshold:
            self._start_background_flush()

    def write_char(self, ch: bytes) -> None:
        if not isinstance(ch, bytes | bytearray) or len(ch) != 1:
            raise ValueError(f"ch must be a single byte, got {ch!r}")
        self._append(ch)

    def write_string(self, s: str | Buffer, off: int, len: int) -> None:
        """Write ``s[off:off+len]`` (characters of a ``str``, encoded as UTF-8)."""
        size = s.__len__() if isinstance(s, str) else memoryview(s).nbytes
        if off < 0 or off > size:
            raise ValueError(f"off must be in 0..{size}, got {off}")
        if len < 0 or off + len > size:
            raise ValueError(f"len must be in 0..{size - off}, got {len}")
        if isinstance(s, str):
            self._append(s[off : off + len].encode())
        else:
            self._append(memoryview(s).cast("B")[off : off + len])

    def write_buffer(self, buf: Buffer) -> None:
        """Copy ``buf`` into the output buffer."""
        self._append(_as_bytes(buf, "buf"))

    def write_line(self, s: str | Buffer) -> None:
        """Write ``s`` and a LF."""
        data = _as_bytes(s, "s")
        n = len(data) if type(data) is not memoryview else data.nbytes
        if self._out.__len__() + n + 1 > self._max_buffer:
            raise OutputFull(
                f"output buffer would exceed max_buffer={self._max_buffer} bytes; await flush()"
            )
        self._append(data)
        self._append(b"\n")

    def _start_background_flush(self) -> None:
        if self._bg is not None and not self._bg.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next flush() sends it
        self._bg = loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._out and self._werror is None:
                await self._flush_once()
        except ChannelError:
            pass  # remembered in _werror; the next flush() raises it

    async def _flush_once(self) -> None:
        async with self._wlock:
            if self._werror is not None:
                raise ChannelError(self._werror)
            data = self._out
            if not data:
                return
            self._out = bytearray()
            r = await self._flow.write(data)
            if not isinstance(r, Ok):
                self._werror = EOF if isinstance(r, Eof) else r.error
                raise ChannelError(self._werror)
            self._flushed += len(data)

    async def flush(self) -> None:
        """Write everything buffered so far to the flow (``ChannelError`` if it fails)."""
        target = self._written
        while self._flushed < target:
            await self._flush_once()
        if self._werror is not None:
            raise ChannelError(self._werror)

    async def close(self) -> None:
        """Flush, then close the flow (even if the flush raised)."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            self._eof = True
            self._buf, self._mv, self._pos = b"", _EMPTY, 0
            await self._flow.close()


_check: type[ChannelSignature] = Channel
