"""CONSOLE on file descriptors (stdin/stdout by default): a full FLOW plus ``log``.

Reads and writes never block the event loop and never change how the terminal or a
parent shell sees the descriptors: pipes and ttys are reopened through
``/proc/self/fd`` as a *private* non-blocking open file description and driven with
``loop.add_reader``/``add_writer``; regular files are read and written directly (they
never block for long); anything else falls back to a non-blocking ``dup`` whose flag is
restored on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import stat
from typing import Self

from . import v1
from .buffers import flat
from .result import EOF, ConsoleError, Eof, Error, InvalidConsole, Ok

READ_CHUNK = 65536


class _Fd:
    """One direction of the console: the descriptor we use and how to wait on it."""

    def __init__(self, fd: int, *, write: bool, was_blocking: bool) -> None:
        self.orig = fd
        self.fd = fd
        self.private = False  # we opened self.fd and must close it
        self.restore_blocking: bool | None = None  # the flag to put back on close
        self.pollable = False  # True: non-blocking, wait with add_reader/add_writer
        st = os.fstat(fd)
        if write and not _writable(fd):
            raise OSError(f"fd {fd} is not open for writing")
        if not write and not _readable(fd):
            raise OSError(f"fd {fd} is not open for reading")
        mode = st.st_mode
        if stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
            return
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            access = os.O_WRONLY if write else os.O_RDONLY
            flags = access | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            with contextlib.suppress(OSError):
                self.fd = os.open(f"/proc/self/fd/{fd}", flags)
                self.private = True
                self.pollable = True
                return
        # A socket (or no /proc): a dup shares the description, so its flag changes for
        # everyone until close puts back what it was before the console touched it.
        self.fd = os.dup(fd)
        self.private = True
        self.restore_blocking = was_blocking
        os.set_blocking(self.fd, False)
        self.pollable = True

    def release(self, *, close_orig: bool) -> None:
        if self.private:
            if self.restore_blocking is not None:
                with contextlib.suppress(OSError):
                    os.set_blocking(self.fd, self.restore_blocking)
            with contextlib.suppress(OSError):
                os.close(self.fd)
        if close_orig:
            with contextlib.suppress(OSError):
                os.close(self.orig)


def _accmode(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def _readable(fd: int) -> bool:
    return _accmode(fd) in (os.O_RDONLY, os.O_RDWR)


def _writable(fd: int) -> bool:
    return _accmode(fd) in (os.O_WRONLY, os.O_RDWR)


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


class Console:
    """The CONSOLE device over ``stdin_fd``/``stdout_fd`` (0 and 1 by default).

    ``stdin_fd=None`` gives a console with no input (``read`` is ``EOF``). With
    ``close_fds=True`` the descriptors themselves are closed by :meth:`close`, so a peer
    on a pipe sees the end; by default they stay open (stdin/stdout belong to the process).
    """

    def __init__(
        self,
        name: str = "console",
        *,
        stdin_fd: int | None = 0,
        stdout_fd: int = 1,
        close_fds: bool = False,
    ) -> None:
        self._name = name
        self._close_fds = close_fds
        # Read both flags before either side changes one (they may share a description).
        in_blocking = os.get_blocking(stdin_fd) if stdin_fd is not None else True
        out_blocking = os.get_blocking(stdout_fd)
        self._in = (
            _Fd(stdin_fd, write=False, was_blocking=in_blocking) if stdin_fd is not None else None
        )
        try:
            self._out = _Fd(stdout_fd, write=True, was_blocking=out_blocking)
        except BaseException:
            if self._in is not None:
                self._in.release(close_orig=False)
            raise
        self._closing = False  # reads and new writes give EOF
        self._closed = False  # descriptors released
        self._rlock = asyncio.Lock()
        self._wlock = asyncio.Lock()
        self._waiters: set[asyncio.Future[None]] = set()

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        stdin_fd: int | None = 0,
        stdout_fd: int = 1,
        close_fds: bool = False,
    ) -> Ok[Self] | Error[ConsoleError]:
        """Attach to the descriptors; ``Error(InvalidConsole)`` if they are not usable."""
        try:
            return Ok(cls(id, stdin_fd=stdin_fd, stdout_fd=stdout_fd, close_fds=close_fds))
        except OSError as e:
            return Error(InvalidConsole(f"console {id!r}: {e}"))

    def id(self) -> str:
        return self._name

    async def disconnect(self) -> None:
        await self.close()

    # --- FLOW ----------------------------------------------------------------------------

    async def read(self) -> Ok[memoryview] | Eof | Error[ConsoleError]:
        """What is available on the input now (waiting for some), or ``EOF``."""
        side = self._in
        if side is None or self._closing:
            return EOF
        async with self._rlock:
            while True:
                if self._closing:
                    return EOF
                try:
                    data = os.read(side.fd, READ_CHUNK)
                except BlockingIOError:
                    await self._wait(side, write=False)
                    continue
                except OSError as e:
                    return Error(InvalidConsole(f"read: {e}"))
                if not data:
                    return EOF
                return Ok(memoryview(data))

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[ConsoleError]:
        """Write all of ``buf``; ``EOF`` once closed or when the reader has gone."""
        return await self._write(flat(buf))

    async def writev(self, bufs: v1.Buffers) -> Ok[None] | Eof | Error[ConsoleError]:
        """Write all of ``bufs``, in order, without another write in between."""
        return await self._write(memoryview(b"".join(map(flat, bufs))))

    async def close(self) -> None:
        """End: ``read`` and ``write`` give ``EOF``, those waiting too (a write waiting for
        a stalled reader ends with what was written so far)."""
        if self._closing:
            return
        self._closing = True
        self._wake_all()  # pending reads return EOF
        async with self._wlock:
            self._release()

    # --- CONSOLE -------------------------------------------------------------------------

    def log(self, s: str) -> None:
        """Write ``s`` then ``"\\r\\n"``, synchronously (waiting for the output if needed).

        Never raises for an output fault (a closed reader, a full disk): the line is lost.
        """
        if self._closing:
            return
        data = memoryview(_encode(s) + b"\r\n")
        fd = self._out.fd
        while data:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                p = select.poll()
                p.register(fd, select.POLLOUT)
                p.poll()
                continue
            except OSError:
                return
            data = data[n:]

    async def log_s(self, s: str) -> None:
        """Write ``s + "\\r\\n"``; an output fault loses the line, never raises."""
        await self._write(memoryview(_encode(s) + b"\r\n"))

    # --- internals -----------------------------------------------------------------------

    async def _write(self, data: memoryview) -> Ok[None] | Eof | Error[ConsoleError]:
        if self._closing:
            return EOF
        side = self._out
        async with self._wlock:
            if self._closed:
                return EOF
            while data:
                try:
                    n = os.write(side.fd, data)
                except BlockingIOError:
                    await self._wait(side, write=True)
                    if self._closing:  # close() does not wait for a reader that stalls
                        return EOF
                    continue
                except BrokenPipeError:
                    return EOF
                except OSError as e:
                    return Error(InvalidConsole(f"write: {e}"))
                data = data[n:]
            return Ok(None)

    async def _wait(self, side: _Fd, *, write: bool) -> None:
        """Wait until ``side`` is ready (or the console closes)."""
        loop = asyncio.get_running_loop()
        if not side.pollable:
            await asyncio.sleep(0.01)
            return
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        add, remove = (
            (loop.add_writer, loop.remove_writer)
            if write
            else (loop.add_reader, loop.remove_reader)
        )
        try:
            add(side.fd, ready)
        except (OSError, ValueError, NotImplementedError):
            # Not pollable (e.g. /dev/null under epoll): it is always ready; poll slowly.
            side.pollable = False
            return
        self._waiters.add(fut)
        try:
            await fut
        finally:
            self._waiters.discard(fut)
            if not self._closed:
                remove(side.fd)

    def _wake_all(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_all()
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for side in (self._in, self._out):
                if side is not None and side.pollable:
                    loop.remove_reader(side.fd)
                    loop.remove_writer(side.fd)
        same = self._in is not None and self._in.orig == self._out.orig
        if self._in is not None:
            self._in.release(close_orig=self._close_fds and not same)
        self._out.release(close_orig=self._close_fds)


_check: type[v1.Console] = Console

__all__ = ["READ_CHUNK", "Console"]
