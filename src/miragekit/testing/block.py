"""A conformance suite for BLOCK devices, runnable against any implementation.

Give it a factory returning a fresh, connected device, and for a read-write device a way
to connect again to the same storage once the suite has disconnected one (the
durability check writes, disconnects, reconnects and reads back)::

    async def make() -> v1.Block:
        return (await FileBlock.connect(path)).expect("connect")

    async def reconnect(old: v1.Block) -> v1.Block:
        return (await FileBlock.connect(path)).expect("reconnect")

    await check_block(make, reconnect=reconnect)   # a read-write device
    await check_read_only_block(make_ro)           # a read-only one

The checks run in order (:data:`BLOCK_CHECKS`, :data:`READ_ONLY_BLOCK_CHECKS`; ``only=``
picks some, so a test framework can report them one by one); each connects its own
device and disconnects it. A read-write device must have at least :data:`MIN_SECTORS`
sectors and may be overwritten freely; a read-only device is only read. A failure raises
:class:`~miragekit.testing.ConformanceError` naming the check and what was expected.
"""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import random
from collections.abc import Awaitable, Callable, Collection, Sequence

from ..result import Disconnected, Error, IsReadOnly, Ok
from ..v1 import Block, Buffer, Info
from ._conformance import expect, fail, run_checks

MakeBlock = Callable[[], Awaitable[Block]]
"""A factory: returns a fresh device, already connected."""

ReconnectBlock = Callable[[Block], Awaitable[Block]]
"""Given a device the suite has disconnected, connect a new one to the same storage."""

_Check = Callable[[MakeBlock], Awaitable[None]]

MIN_SECTORS = 16
"""The smallest read-write device the suite accepts."""


def pattern(sector: int, count: int, sector_size: int, salt: int = 0) -> bytes:
    """``count`` sectors of data unique to their sector number and ``salt``."""
    return b"".join(
        random.Random(salt * 1_000_003 + s).randbytes(sector_size)
        for s in range(sector, sector + count)
    )


async def _ok(what: str, call: Awaitable[Ok[None] | Error[object]]) -> None:
    res = await call
    expect(res == Ok(None), f"{what}: expected Ok(None), got {res!r}")


async def _read(dev: Block, sector: int, count: int, sector_size: int) -> bytes:
    buf = bytearray(count * sector_size)
    await _ok(f"read({sector}, {count} sectors)", dev.read(sector, [buf]))
    return bytes(buf)


async def _info(dev: Block) -> Info:
    info = await dev.get_info()
    expect(isinstance(info, Info), f"get_info returned {info!r}")
    ss = info.sector_size
    expect(ss > 0 and ss & (ss - 1) == 0, f"sector_size {ss} is not a power of two")
    expect(info.size_sectors >= 0, f"size_sectors {info.size_sectors} is negative")
    return info


async def _rw(make_device: MakeBlock) -> tuple[Block, int, int]:
    dev = await make_device()
    info = await _info(dev)
    expect(info.read_write, "a read-write device reports read_write=False")
    expect(
        info.size_sectors >= MIN_SECTORS,
        f"the suite needs >= {MIN_SECTORS} sectors, the device has {info.size_sectors}",
    )
    return dev, info.sector_size, info.size_sectors


def _split(data: bytes, sector_size: int, counts: Sequence[int]) -> list[bytes]:
    out, off = [], 0
    for c in counts:
        out.append(data[off : off + c * sector_size])
        off += c * sector_size
    return out


# --- read-write checks --------------------------------------------------------------------


async def _check_info(make_device: MakeBlock) -> None:
    """get_info is consistent over calls; id() is available."""
    dev, ss, size = await _rw(make_device)
    try:
        dev.id()
        again = await dev.get_info()
        expect(
            again == Info(read_write=True, sector_size=ss, size_sectors=size),
            f"get_info changed between calls: {again!r}",
        )
    finally:
        await dev.disconnect()


async def _check_round_trip_edges(make_device: MakeBlock) -> None:
    """Writes at the first and last sectors read back exactly, and touch nothing else."""
    dev, ss, size = await _rw(make_device)
    try:
        base = pattern(0, 4, ss, salt=1) + pattern(size - 4, 4, ss, salt=1)
        await _ok("write first 4", dev.write(0, [base[: 4 * ss]]))
        await _ok("write last 4", dev.write(size - 4, [base[4 * ss :]]))
        first, last = pattern(0, 1, ss, salt=2), pattern(size - 1, 1, ss, salt=2)
        await _ok("write sector 0", dev.write(0, [first]))
        await _ok(f"write sector {size - 1}", dev.write(size - 1, [bytearray(last)]))
        expect(await _read(dev, 0, 1, ss) == first, "sector 0 does not read back")
        expect(await _read(dev, size - 1, 1, ss) == last, f"sector {size - 1} does not read back")
        expect(await _read(dev, 1, 3, ss) == base[ss : 4 * ss], "sectors 1-3 were changed")
        expect(
            await _read(dev, size - 4, 3, ss) == base[4 * ss : 7 * ss],
            "the sectors before the last were changed",
        )
        whole = await _read(dev, size - 4, 4, ss)
        expect(whole == base[4 * ss : 7 * ss] + last, "last 4 sectors in one read differ")
    finally:
        await dev.disconnect()


async def _check_multi_buffer(make_device: MakeBlock) -> None:
    """A list of buffers of different whole-sector sizes is one contiguous request."""
    dev, ss, _ = await _rw(make_device)
    try:
        data = pattern(3, 10, ss, salt=3)
        parts = _split(data, ss, [1, 3, 2, 4])
        bufs: list[Buffer] = [parts[0], bytearray(parts[1]), memoryview(parts[2]), parts[3]]
        await _ok("write of 4 buffers", dev.write(3, bufs))
        expect(await _read(dev, 3, 10, ss) == data, "multi-buffer write did not read back")
        outs = [bytearray(c * ss) for c in (4, 1, 5)]
        await _ok("read into 3 buffers", dev.read(3, outs))
        expect(b"".join(outs) == data, "multi-buffer read differs from the data written")
        views = [memoryview(bytearray(c * ss)) for c in (2, 8)]
        await _ok("read into 2 memoryviews", dev.read(3, views))
        expect(b"".join(bytes(v) for v in views) == data, "read into memoryviews differs")
        empty: list[bytearray] = []
        await _ok("read of no buffers", dev.read(0, empty))
        await _ok("write of no buffers", dev.write(0, []))
        await _ok("write with an empty buffer", dev.write(3, [b"", parts[0]]))
        expect(await _read(dev, 3, 10, ss) == data, "an empty write changed the data")
    finally:
        await dev.disconnect()


async def _check_many_buffers(make_device: MakeBlock) -> None:
    """One sector per buffer over the whole device (more buffers than IOV_MAX if it is big)."""
    dev, ss, size = await _rw(make_device)
    try:
        n = min(size, 1100)
        data = pattern(0, n, ss, salt=4)
        await _ok(f"write of {n} one-sector buffers", dev.write(0, _split(data, ss, [1] * n)))
        outs = [bytearray(ss) for _ in range(n)]
        await _ok(f"read into {n} one-sector buffers", dev.read(0, outs))
        expect(b"".join(outs) == data, f"{n} one-sector buffers did not round-trip")
    finally:
        await dev.disconnect()


def _page_address(mm: mmap.mmap) -> int:
    c = ctypes.c_char.from_buffer(mm)
    try:
        return ctypes.addressof(c)
    finally:
        del c


async def _check_page_aligned(make_device: MakeBlock) -> None:
    """Reads fill memoryviews over page-aligned mmap memory in place; writes take them too."""
    dev, ss, _ = await _rw(make_device)
    page = mmap.PAGESIZE
    nbytes = max(2 * page, 8 * ss)
    count = min(nbytes // ss, MIN_SECTORS)
    nbytes = count * ss
    mm = mmap.mmap(-1, -(-nbytes // page) * page + page)
    try:
        expect(_page_address(mm) % page == 0, "mmap memory is not page-aligned")
        data = pattern(0, count, ss, salt=5)
        src = mmap.mmap(-1, len(mm))
        try:
            src[:nbytes] = data
            with memoryview(src) as sv:
                await _ok("write from mmap memory", dev.write(0, [sv[:nbytes]]))
        finally:
            src.close()
        with memoryview(mm) as view:
            half = (count // 2) * ss
            await _ok("read into mmap views", dev.read(0, [view[:half], view[half:nbytes]]))
            expect(bytes(view[:nbytes]) == data, "the mmap memory was not filled in place")
            expect(bytes(view[nbytes:]) == bytes(len(mm) - nbytes), "read past the buffers")
    finally:
        mm.close()
        await dev.disconnect()


async def _check_concurrent(make_device: MakeBlock) -> None:
    """Concurrent requests on disjoint sectors all complete and all land."""
    dev, ss, size = await _rw(make_device)
    try:
        n = min(size // 2, 8)
        chunks = [pattern(2 * i, 2, ss, salt=6) for i in range(n)]
        results = await asyncio.gather(*(dev.write(2 * i, [c]) for i, c in enumerate(chunks)))
        expect(all(r == Ok(None) for r in results), f"concurrent writes: {results!r}")
        outs = [bytearray(2 * ss) for _ in range(n)]
        results = await asyncio.gather(*(dev.read(2 * i, [o]) for i, o in enumerate(outs)))
        expect(all(r == Ok(None) for r in results), f"concurrent reads: {results!r}")
        expect([bytes(o) for o in outs] == chunks, "concurrent writes/reads mixed up data")
    finally:
        await dev.disconnect()


async def _raises(
    kind: type[Exception], what: str, fn: Callable[..., Awaitable[object]], *args: object
) -> None:
    try:
        res = await fn(*args)
    except kind:
        return
    fail(f"{what}: expected {kind.__name__}, got {res!r}")


async def _check_bad_requests(make_device: MakeBlock) -> None:
    """Out of range, negative, partial-sector and read-only-buffer requests raise, touching nothing."""
    dev, ss, size = await _rw(make_device)
    try:
        before = pattern(0, 2, ss, salt=7), pattern(size - 2, 2, ss, salt=7)
        await _ok("write head", dev.write(0, [before[0]]))
        await _ok("write tail", dev.write(size - 2, [before[1]]))
        new = pattern(0, 2, ss, salt=8)
        cases: list[tuple[type[Exception], str, int, list[bytes]]] = [
            (ValueError, "sector_start = size_sectors", size, [new[:ss]]),
            (ValueError, "request running past the end", size - 1, [new]),
            (ValueError, "request running past the end (two buffers)", size - 1, [new[:ss]] * 2),
            (ValueError, "negative sector_start", -1, [new[:ss]]),
            (ValueError, "buffer of sector_size - 1 bytes", 0, [new[: ss - 1]]),
            (ValueError, "buffer of sector_size + 1 bytes", 0, [new[: ss + 1]]),
            (ValueError, "good buffer then a partial one", 0, [new[:ss], new[: ss // 2]]),
        ]
        for kind, what, sector, bufs in cases:
            await _raises(kind, f"write with {what}", dev.write, sector, bufs)
            outs = [bytearray(len(b)) for b in bufs]
            await _raises(kind, f"read with {what}", dev.read, sector, outs)
            expect(
                all(o == bytes(len(o)) for o in outs), f"a refused read ({what}) wrote into buffers"
            )
        # A strided view cannot be read into in place: BLOCK refuses one (both ways alike).
        strided = memoryview(bytearray(2 * ss))[::2]
        await _raises(ValueError, "write of a strided memoryview", dev.write, 0, [strided])
        await _raises(ValueError, "read into a strided memoryview", dev.read, 0, [strided])
        await _raises(TypeError, "read into bytes", dev.read, 0, [bytes(ss)])
        await _raises(TypeError, "read into one buffer, not a list", dev.read, 0, bytearray(ss))
        expect(await _read(dev, 0, 2, ss) == before[0], "a refused write changed sectors 0-1")
        expect(await _read(dev, size - 2, 2, ss) == before[1], "a refused write changed the tail")
        ok = await dev.read(size - 2, [bytearray(2 * ss)])
        expect(ok == Ok(None), f"the device is unusable after refused requests: {ok!r}")
    finally:
        await dev.disconnect()


def _spread(size: int, n: int) -> list[int]:
    """``n`` distinct sectors spread over the device, away from its first and last."""
    rng = random.Random(size * 7919 + n)
    inner = range(1, size - 1)
    fixed = {1, 2, size // 2, size // 2 + 1, size - 3, size - 2}
    picks = fixed | set(rng.sample(inner, min(n, len(inner))))
    return sorted(s for s in picks if 0 < s < size - 1)[: max(n, len(fixed))]


async def _check_single_sectors(make_device: MakeBlock) -> None:
    """One-sector writes anywhere on the device (not only its ends) read back."""
    dev, ss, size = await _rw(make_device)
    try:
        sectors = _spread(size, 24)
        for s in sectors:
            await _ok(f"write sector {s}", dev.write(s, [pattern(s, 1, ss, salt=11)]))
        for s in sectors:
            got = await _read(dev, s, 1, ss)
            expect(got == pattern(s, 1, ss, salt=11), f"sector {s} did not read back")
    finally:
        await dev.disconnect()


async def _check_many_writes(make_device: MakeBlock) -> None:
    """Hundreds of small writes in a row all land (none dropped after some count)."""
    dev, ss, size = await _rw(make_device)
    try:
        n = min(size, 300)
        for i in range(n):
            await _ok(f"write {i + 1} of {n}", dev.write(i, [pattern(i, 1, ss, salt=12)]))
        data = await _read(dev, 0, n, ss)
        for i in range(n):
            expect(
                data[i * ss : (i + 1) * ss] == pattern(i, 1, ss, salt=12),
                f"write {i + 1} of {n} (sector {i}) did not read back",
            )
    finally:
        await dev.disconnect()


async def _check_durable(make_device: MakeBlock, reconnect: ReconnectBlock) -> None:
    """What was written before disconnect reads back on a new connection to the storage."""
    dev, ss, size = await _rw(make_device)
    sectors = [0, *_spread(size, 12), size - 1]
    try:
        for s in sectors:
            await _ok(f"write sector {s}", dev.write(s, [pattern(s, 1, ss, salt=13)]))
        run = [size // 3 + i for i in range(8)]
        await _ok(
            f"write sectors {run[0]}-{run[-1]}", dev.write(run[0], [pattern(run[0], 8, ss, 13)])
        )
    finally:
        await dev.disconnect()
    again = await reconnect(dev)
    try:
        info = await _info(again)
        expect(info.size_sectors == size, f"reconnected device has {info.size_sectors} sectors")
        for s in sorted({*sectors, *run}):
            got = await _read(again, s, 1, ss)
            expect(
                got == pattern(s, 1, ss, salt=13),
                f"sector {s} written before disconnect reads differently after reconnect",
            )
    finally:
        await again.disconnect()


async def _check_disconnect(make_device: MakeBlock) -> None:
    """After disconnect, read and write return Error(Disconnected()) and touch no buffer."""
    dev, ss, _ = await _rw(make_device)
    await _ok("write", dev.write(0, [pattern(0, 1, ss, salt=9)]))
    await dev.disconnect()
    buf = bytearray(ss)
    res = await dev.read(0, [buf])
    expect(res == Error(Disconnected()), f"read after disconnect: {res!r}")
    expect(buf == bytes(ss), "read after disconnect filled the buffer")
    res = await dev.write(0, [bytes(ss)])
    expect(res == Error(Disconnected()), f"write after disconnect: {res!r}")
    await dev.disconnect()  # a second disconnect is harmless


_RW_CHECKS: dict[str, _Check] = {
    "info": _check_info,
    "round_trip_edges": _check_round_trip_edges,
    "single_sectors": _check_single_sectors,
    "many_writes": _check_many_writes,
    "multi_buffer": _check_multi_buffer,
    "many_buffers": _check_many_buffers,
    "page_aligned": _check_page_aligned,
    "concurrent": _check_concurrent,
    "bad_requests": _check_bad_requests,
    "durable": _check_info,  # replaced in check_block: it needs the caller's reconnect
    "disconnect": _check_disconnect,
}

BLOCK_CHECKS: tuple[str, ...] = tuple(_RW_CHECKS)
"""The names of the read-write checks :func:`check_block` runs, in order."""


def _bind(check: _Check, make_device: MakeBlock) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await check(make_device)

    return run


async def check_block(
    make_device: MakeBlock,
    *,
    reconnect: ReconnectBlock,
    only: Collection[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Run the read-write checks (all, or those named in ``only``) against ``make_device``.

    ``reconnect`` connects again to the storage of a device the suite disconnected.
    """

    async def durable() -> None:
        await _check_durable(make_device, reconnect)

    checks = {name: _bind(c, make_device) for name, c in _RW_CHECKS.items()}
    checks["durable"] = durable
    await run_checks(checks, only, timeout)


# --- read-only checks ---------------------------------------------------------------------


async def _ro(make_device: MakeBlock) -> tuple[Block, int, int]:
    dev = await make_device()
    info = await _info(dev)
    expect(not info.read_write, "a read-only device reports read_write=True")
    expect(info.size_sectors >= 1, "the suite needs a read-only device of >= 1 sector")
    return dev, info.sector_size, info.size_sectors


async def _check_read_only_refuses_writes(make_device: MakeBlock) -> None:
    """Writes give Error(IsReadOnly()) and change nothing; reads still work."""
    dev, ss, size = await _ro(make_device)
    try:
        n = min(size, 8)
        head = await _read(dev, 0, n, ss)
        tail = await _read(dev, size - 1, 1, ss)
        for sector, count in ((0, 1), (0, n), (size - 1, 1)):
            data = bytes(b ^ 0xFF for b in pattern(sector, count, ss, salt=10))
            res = await dev.write(sector, [data])
            expect(res == Error(IsReadOnly()), f"write({sector}) on a read-only device: {res!r}")
        expect(await _read(dev, 0, n, ss) == head, "a refused write changed the device")
        expect(await _read(dev, size - 1, 1, ss) == tail, "a refused write changed the device")
        res = await dev.write(0, [])
        expect(res in (Ok(None), Error(IsReadOnly())), f"empty write on read-only: {res!r}")
    finally:
        await dev.disconnect()


async def _check_read_only_disconnect(make_device: MakeBlock) -> None:
    """A read-only device also says Disconnected once disconnected."""
    dev, ss, _ = await _ro(make_device)
    await dev.disconnect()
    res = await dev.read(0, [bytearray(ss)])
    expect(res == Error(Disconnected()), f"read after disconnect: {res!r}")
    res = await dev.write(0, [bytes(ss)])
    expect(res == Error(Disconnected()), f"write after disconnect: {res!r}")


_RO_CHECKS: dict[str, _Check] = {
    "read_only_refuses_writes": _check_read_only_refuses_writes,
    "read_only_disconnect": _check_read_only_disconnect,
}

READ_ONLY_BLOCK_CHECKS: tuple[str, ...] = tuple(_RO_CHECKS)
"""The names of the read-only checks :func:`check_read_only_block` runs, in order."""


async def check_read_only_block(
    make_device: MakeBlock, *, only: Collection[str] | None = None, timeout: float = 60.0
) -> None:
    """Run the read-only checks (all, or those named in ``only``) against ``make_device``."""
    checks = {name: _bind(c, make_device) for name, c in _RO_CHECKS.items()}
    await run_checks(checks, only, timeout)


__all__ = [
    "BLOCK_CHECKS",
    "MIN_SECTORS",
    "READ_ONLY_BLOCK_CHECKS",
    "MakeBlock",
    "ReconnectBlock",
    "check_block",
    "check_read_only_block",
    "pattern",
]
