"""A BLOCK device over a host file: a regular file (an image) or a raw block device.

Where the system calls run
--------------------------
Each request is one ``preadv``/``pwritev`` over the caller's whole buffer list (no copy,
no intermediate buffer). Whether that call runs on the event loop or in a worker thread
was decided by measurement (``bench/block.py``: 64 KiB requests, ext4 on virtio, 2 CPUs):

* a page-cache read takes ~6 us inline, while the hop through the default executor costs
  ~65 us: threaded reads reach only ~5-10% of raw ``pread`` (0.5-0.9 vs 7-10 GB/s);
* a durable 64 KiB write on a quiet disk takes ~120 us inline, ~250 us in a thread
  (~50% of raw). On a disk shared with busy neighbours (writes of milliseconds) the
  threaded writes measured no slower, sometimes faster, than inline ones.

A hop costs as much as the work it would move off the loop, so the device picks per call:

* **reads** first try ``preadv(..., RWF_NOWAIT)`` inline: it copies what is in the page
  cache and never waits for the disk. Only the part that would block goes to a thread.
* **writes** run inline while they are cheap (the moving average of recent durable writes
  is at most :data:`INLINE_LIMIT` and the request at most :data:`INLINE_BYTES`); a slow
  disk (a real ``fdatasync`` of milliseconds) or a huge request moves them to a thread, so
  the loop is never blocked for long. Threaded writes keep being timed, so a device that
  speeds up comes back inline.

``offload=True`` forces every request that may block into a thread, ``offload=False``
runs everything inline.

Locking: the file gets an advisory ``flock`` for as long as the device is connected,
shared when opened read-only and exclusive when read-write, so two programs cannot write
one image at once (nor read it while it changes). A second opener fails with a one-line
reason at once, or after ``lock_wait`` seconds of waiting.

Durability: read-write opens use ``O_DSYNC``, so ``pwritev`` returns only once the data
(and the metadata needed to read it back) is on stable storage: one system call instead of
``pwritev`` + ``fdatasync``, measured equal or up to ~7% faster than that pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
import struct
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Final, Self

from ..result import BlockError, Disconnected, Error, IsReadOnly, Ok, Unknown
from ..v1 import Block, Buffer, Info
from ._checks import check_request

_OK: Final = Ok(None)  # immutable, so one instance serves every success

SECTOR_SIZE: Final = 512
"""Sector size of a regular file unless ``connect`` is told otherwise."""

INLINE_LIMIT: Final = 1e-3
"""Seconds: durable writes slower than this on average go to a worker thread."""

INLINE_BYTES: Final = 1 << 20
"""Writes larger than this always go to a worker thread (they take long anyway)."""

_BLKSSZGET: Final = 0x1268  # logical sector size, int
_BLKGETSIZE64: Final = 0x80081272  # device size in bytes, u64
_RWF_NOWAIT: Final[int] = getattr(os, "RWF_NOWAIT", 0)
_IOV_MAX: Final = 1024  # buffers per system call (Linux's UIO_MAXIOV)
_EWMA: Final = 0.125  # weight of the newest write in the average: one spike is no trend


def _advance(buffers: Sequence[Buffer], n: int) -> list[memoryview]:
    """The byte views left of ``buffers`` once their first ``n`` bytes are done."""
    rest: list[memoryview] = []
    for b in buffers:
        mv = memoryview(b).cast("B")
        if n >= len(mv):
            n -= len(mv)
        else:
            rest.append(mv[n:])
            n = 0
    return rest


def _read_all(fd: int, buffers: Sequence[Buffer], offset: int, done: int) -> None:
    """Fill ``buffers`` from ``offset``, the first ``done`` bytes being filled already."""
    views = _advance(buffers, done)
    pos = offset + done
    while views:
        n = os.preadv(fd, views[:_IOV_MAX], pos)
        if n == 0:
            raise OSError(errno.EIO, f"end of file at byte {pos} (did the file shrink?)")
        pos += n
        views = _advance(views, n)


def _write_all(fd: int, buffers: Sequence[Buffer], offset: int, size: int) -> None:
    """Write the ``size`` bytes of ``buffers`` at ``offset`` (durable: the fd is ``O_DSYNC``)."""
    n = 0
    if len(buffers) <= _IOV_MAX:
        n = os.pwritev(fd, buffers, offset)
        if n == size:
            return
    views = _advance(buffers, n)
    pos = offset + n
    while views:
        n = os.pwritev(fd, views[:_IOV_MAX], pos)
        if n == 0:
            raise OSError(errno.EIO, f"no progress writing at byte {pos}")
        pos += n
        views = _advance(views, n)


def _timed(job: list[object]) -> float | OSError:
    """Run ``job`` = ``[fn, *args]`` (in a worker thread); its duration, or its error.

    The job list is emptied before returning: the executor keeps its arguments a moment
    after the result is delivered, and the caller's buffers (an mmap, say) must be free
    to close as soon as the request completes.
    """
    t0 = perf_counter()
    try:
        job[0](*job[1:])  # type: ignore[operator]
    except OSError as e:
        return e.with_traceback(None)  # the traceback would pin the buffers' views
    finally:
        job.clear()
    return perf_counter() - t0


async def _lock(fd: int, *, exclusive: bool, wait: float) -> str | None:
    """Take the advisory lock on ``fd``, waiting up to ``wait`` seconds; why not, or None.

    Polled without blocking, so the event loop keeps running while it waits.
    """
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = perf_counter() + wait
    while True:
        try:
            fcntl.flock(fd, op)
            return None
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return None  # a file system without flock: nothing to coordinate with
            return f"cannot lock it ({e.strerror or e})"
        if perf_counter() >= deadline:
            waited = f" (waited {wait:g} s)" if wait > 0 else ""
            return f"another program is {'using' if exclusive else 'writing'} it{waited}"
        await asyncio.sleep(min(0.05, max(0.0, deadline - perf_counter())))


def _failed(what: str, sector_start: int, e: OSError) -> Error[BlockError]:
    return Error(Unknown(f"{what} at sector {sector_start} failed: {e.strerror or e}"))


class FileBlock:
    """A BLOCK device backed by a host file or raw block device; connect with :meth:`connect`."""

    __slots__ = (
        "_fd",
        "_name",
        "_nowait",
        "_offload",
        "_pending",
        "_read_only",
        "_sector_size",
        "_size_sectors",
        "_write_cost",
    )

    def __init__(
        self,
        name: str,
        fd: int,
        *,
        sector_size: int,
        size_sectors: int,
        read_only: bool,
        offload: bool | None,
    ) -> None:
        self._name = name
        self._fd = fd
        self._sector_size = sector_size
        self._size_sectors = size_sectors
        self._read_only = read_only
        self._offload = offload
        self._nowait = _RWF_NOWAIT != 0 and offload is not True
        self._write_cost = 0.0  # moving average of a durable write, seconds
        self._pending: set[asyncio.Future[float | OSError]] = set()

    @classmethod
    async def connect(
        cls,
        id: str | os.PathLike[str],
        *,
        read_only: bool = False,
        sector_size: int | None = None,
        offload: bool | None = None,
        durable: bool = True,
        lock_wait: float = 0.0,
        resize: int | None = None,
    ) -> Ok[Self] | Error[BlockError]:
        """Open ``id``: a regular file (its size rounded down to whole sectors) or a block device.

        A regular file has ``sector_size`` (default 512) byte sectors; a block device its
        own logical sector size (``sector_size`` may ask for a multiple of it). A missing or
        forbidden file is ``Error(Unknown(msg))``; a ``sector_size`` that is not a power of
        two raises ``ValueError``. ``offload``: see the module docstring.

        ``durable=False`` gives up the seed's promise that a completed write is on stable
        storage (for scratch images and benchmarks): writes land in the page cache and the
        file is synced once, on ``disconnect``.

        The file is locked (see the module docstring); if another process holds a
        conflicting lock, ``connect`` waits up to ``lock_wait`` seconds for it, then
        returns ``Error(Unknown(msg))`` saying the file is in use.

        ``resize`` (for a formatter): a regular file, created if missing, is made exactly
        that many bytes once the lock is held, so no one else sees it change size.
        """
        if sector_size is not None and (sector_size <= 0 or sector_size & (sector_size - 1)):
            raise ValueError(f"sector_size must be a power of two, got {sector_size}")
        path = os.fspath(id)
        sync = os.O_DSYNC if durable else 0
        flags = os.O_CLOEXEC | (os.O_RDONLY if read_only else os.O_RDWR | sync)
        mode = "read-only" if read_only else "read-write"
        if resize is not None and not read_only:
            flags |= os.O_CREAT
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as e:
            return Error(Unknown(f"cannot open {path!r} {mode}: {e.strerror or e}"))
        try:
            locked = await _lock(fd, exclusive=not read_only, wait=lock_wait)
        except BaseException:
            os.close(fd)
            raise
        if locked is not None:
            os.close(fd)
            return Error(Unknown(f"{path!r} is in use: {locked}"))
        try:
            st = os.fstat(fd)
            if stat.S_ISBLK(st.st_mode):
                hw = struct.unpack("i", fcntl.ioctl(fd, _BLKSSZGET, b"\0" * 4))[0]
                nbytes = struct.unpack("Q", fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8))[0]
                if sector_size is None:
                    sector_size = hw
                elif sector_size % hw:
                    raise ValueError(
                        f"sector_size {sector_size} is not a multiple of {path!r}'s "
                        f"logical sector size {hw}"
                    )
            elif stat.S_ISREG(st.st_mode):
                nbytes = st.st_size
                if resize is not None and resize != nbytes:
                    try:
                        os.ftruncate(fd, resize)
                    except OSError as e:
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, nbytes)  # as it was: a failed resize changes nothing
                        os.close(fd)
                        return Error(Unknown(f"cannot resize {path!r}: {e.strerror or e}"))
                    nbytes = resize
                sector_size = sector_size or SECTOR_SIZE
            else:
                os.close(fd)
                return Error(Unknown(f"{path!r} is neither a regular file nor a block device"))
        except OSError as e:
            os.close(fd)
            return Error(Unknown(f"cannot inspect {path!r}: {e.strerror or e}"))
        except BaseException:
            os.close(fd)
            raise
        dev = cls(
            path,
            fd,
            sector_size=sector_size,
            size_sectors=nbytes // sector_size,
            read_only=read_only,
            offload=offload,
        )
        return Ok(dev)

    def id(self) -> str:
        return self._name

    async def disconnect(self) -> None:
        """Refuse new requests, wait for those running in threads, then close the file."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        while self._pending:
            await asyncio.wait(list(self._pending))
        if not self._read_only:
            with contextlib.suppress(OSError):  # disconnect never fails
                os.fsync(fd)
        os.close(fd)

    async def get_info(self) -> Info:
        return Info(
            read_write=not self._read_only,
            sector_size=self._sector_size,
            size_sectors=self._size_sectors,
        )

    async def read(
        self, sector_start: int, buffers: Sequence[bytearray | memoryview]
    ) -> Ok[None] | Error[BlockError]:
        """Fill ``buffers`` in place from ``sector_start``; a system error is ``Unknown``."""
        fd = self._fd
        if fd < 0:
            return Error(Disconnected())
        ss = self._sector_size
        # Fast path for the usual request, one bytearray or one plain memoryview (the full
        # check costs ~4% at page-cache speed); anything else, or wrong, gets the full check.
        size = -1
        if len(buffers) == 1 and sector_start >= 0:
            b = buffers[0]
            if type(b) is bytearray:
                size = len(b)
            elif type(b) is memoryview and b.c_contiguous and not b.readonly:
                size = b.nbytes
        if size < 0 or size % ss or sector_start + size // ss > self._size_sectors:
            size = check_request(sector_start, buffers, ss, self._size_sectors, writable=True) * ss
        if not size:
            return _OK
        offset = sector_start * ss
        done = 0
        if self._nowait and len(buffers) <= _IOV_MAX:
            try:
                done = os.preadv(fd, buffers, offset, _RWF_NOWAIT)
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    return _failed("read", sector_start, e)
                self._nowait = False  # this file cannot say "would block": stop asking
            if done == size:
                return _OK
        if self._offload is False:
            try:
                _read_all(fd, buffers, offset, done)
            except OSError as e:
                return _failed("read", sector_start, e)
            return _OK
        outcome = await self._in_thread(_read_all, fd, buffers, offset, done)
        if isinstance(outcome, OSError):
            return _failed("read", sector_start, outcome)
        return _OK

    async def write(
        self, sector_start: int, buffers: Sequence[Buffer]
    ) -> Ok[None] | Error[BlockError]:
        """Write ``buffers`` at ``sector_start``; ``Ok`` once the data is on stable storage."""
        fd = self._fd
        if fd < 0:
            return Error(Disconnected())
        if self._read_only:
            return Error(IsReadOnly())
        ss = self._sector_size
        size = check_request(sector_start, buffers, ss, self._size_sectors, writable=False) * ss
        if not size:
            return _OK
        offset = sector_start * ss
        offload = self._offload
        if offload is False or (
            offload is None and size <= INLINE_BYTES and self._write_cost <= INLINE_LIMIT
        ):
            t0 = perf_counter()
            try:
                _write_all(fd, buffers, offset, size)
            except OSError as e:
                return _failed("write", sector_start, e)
            self._write_cost += (perf_counter() - t0 - self._write_cost) * _EWMA
            return _OK
        outcome = await self._in_thread(_write_all, fd, buffers, offset, size)
        if isinstance(outcome, OSError):
            return _failed("write", sector_start, outcome)
        self._write_cost += (outcome - self._write_cost) * _EWMA
        return _OK

    async def _in_thread(self, fn: Callable[..., None], *args: object) -> float | OSError:
        """Run ``fn`` in the default executor; ``disconnect`` waits for it before closing.

        Shielded: a request cannot be cancelled once submitted (the seed says so), and
        the thread keeps using the caller's buffers and our fd until it is done.
        """
        fut = asyncio.get_running_loop().run_in_executor(None, _timed, [fn, *args])
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return await asyncio.shield(fut)


_check: type[Block] = FileBlock
