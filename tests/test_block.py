"""BLOCK: the conformance suite against MemoryBlock and FileBlock (file and loop device),
plus what only FileBlock has: opening, geometry, durability flags, threads and shrinking files."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miragekit import v1
from miragekit.block import FileBlock, MemoryBlock, _file
from miragekit.result import Disconnected, Error, IsReadOnly, Ok, Unknown
from miragekit.testing import (
    BLOCK_CHECKS,
    READ_ONLY_BLOCK_CHECKS,
    check_block,
    check_read_only_block,
)
from miragekit.testing.block import MakeBlock, ReconnectBlock, pattern

SECTORS = 2048


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


async def connect(path: str | Path, **kw: Any) -> FileBlock:
    return (await FileBlock.connect(path, **kw)).expect(f"connect({path})")


def image(path: Path, sectors: int = SECTORS, sector_size: int = 512, salt: int = 0) -> Path:
    path.write_bytes(pattern(0, sectors, sector_size, salt=salt))
    return path


# --- the conformance suite on every backend ----------------------------------------------


async def memory_make() -> v1.Block:
    return MemoryBlock("mem", SECTORS)


async def memory_reconnect(old: v1.Block) -> v1.Block:
    """A new MemoryBlock over a copy of the old one's bytes: the same storage."""
    assert isinstance(old, MemoryBlock)
    new = MemoryBlock(old.id(), SECTORS)
    new.data[:] = old.data
    return new


def file_factory(tmp_path: Path, **kw: Any) -> tuple[MakeBlock, ReconnectBlock]:
    counter = iter(range(1_000_000))

    async def make() -> v1.Block:
        path = tmp_path / f"disk{next(counter)}.img"
        path.write_bytes(bytes(SECTORS * 512))
        return await connect(path, **kw)

    async def reconnect(old: v1.Block) -> v1.Block:
        return await connect(old.id(), **kw)

    return make, reconnect


@pytest.mark.parametrize("check", BLOCK_CHECKS)
def test_memory_block(check: str) -> None:
    run(check_block(memory_make, reconnect=memory_reconnect, only=[check]))


@pytest.mark.parametrize("offload", [None, True, False], ids=["auto", "thread", "inline"])
@pytest.mark.parametrize("check", BLOCK_CHECKS)
def test_file_block(check: str, offload: bool | None, tmp_path: Path) -> None:
    make, reconnect = file_factory(tmp_path, offload=offload)
    run(check_block(make, reconnect=reconnect, only=[check]))


@pytest.mark.parametrize("check", BLOCK_CHECKS)
def test_file_block_4k_sectors(check: str, tmp_path: Path) -> None:
    make, reconnect = file_factory(tmp_path, sector_size=4096)
    run(check_block(make, reconnect=reconnect, only=[check]))


@pytest.mark.parametrize("check", READ_ONLY_BLOCK_CHECKS)
def test_memory_block_read_only(check: str) -> None:
    async def make() -> v1.Block:
        dev = MemoryBlock("ro", 64, read_only=True)
        dev.data[:] = pattern(0, 64, 512)
        return dev

    run(check_read_only_block(make, only=[check]))


@pytest.mark.parametrize("check", READ_ONLY_BLOCK_CHECKS)
def test_file_block_read_only(check: str, tmp_path: Path) -> None:
    path = image(tmp_path / "ro.img", 64)

    async def make() -> v1.Block:
        return await connect(path, read_only=True)

    run(check_read_only_block(make, only=[check]))
    assert path.read_bytes() == pattern(0, 64, 512), "a read-only device changed its file"


# --- a real block device (loop device over a file) -----------------------------------------


@contextlib.contextmanager
def loop_device(backing: Path, *extra: str) -> Iterator[str]:
    dev = subprocess.run(
        ["losetup", "--find", "--show", *extra, str(backing)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], check=True)


@pytest.mark.kernel
def test_loop_device(tmp_path: Path) -> None:
    backing = image(tmp_path / "loop.img", SECTORS, salt=11)
    with loop_device(backing) as dev:

        async def main() -> None:
            blk = await connect(dev)
            assert await blk.get_info() == v1.Info(True, 512, SECTORS)
            buf = bytearray(4 * 512)
            assert await blk.read(SECTORS - 4, [buf]) == Ok(None)
            assert buf == pattern(SECTORS - 4, 4, 512, salt=11), "loop device reads the file"
            await blk.disconnect()

            await check_block(lambda: connect(dev), reconnect=lambda _: connect(dev))
            await check_block(
                lambda: connect(dev, sector_size=4096),
                reconnect=lambda _: connect(dev, sector_size=4096),
            )
            await check_block(
                lambda: connect(dev, offload=True), reconnect=lambda _: connect(dev, offload=True)
            )
            await check_read_only_block(lambda: connect(dev, read_only=True))
            with pytest.raises(ValueError, match="multiple"):
                await FileBlock.connect(dev, sector_size=256)

        run(main())


@pytest.mark.kernel
def test_loop_device_own_sector_size(tmp_path: Path) -> None:
    """The sector size of a block device comes from the device (BLKSSZGET), not a default."""
    backing = image(tmp_path / "loop4k.img", SECTORS)
    with loop_device(backing, "--sector-size", "4096") as dev:

        async def main() -> None:
            blk = await connect(dev)
            info = await blk.get_info()
            assert info == v1.Info(True, 4096, SECTORS * 512 // 4096)
            await blk.disconnect()
            await check_block(lambda: connect(dev), reconnect=lambda _: connect(dev))
            with pytest.raises(ValueError, match="multiple"):
                await FileBlock.connect(dev, sector_size=512)

        run(main())


# --- FileBlock specifics -------------------------------------------------------------------


def test_connect_missing_file(tmp_path: Path) -> None:
    res = run(FileBlock.connect(tmp_path / "nope.img"))
    assert isinstance(res, Error) and isinstance(res.error, Unknown)
    assert "nope.img" in res.error.msg and "No such file" in res.error.msg


def test_connect_permission_denied(tmp_path: Path) -> None:
    path = image(tmp_path / "locked.img", 8)
    if os.geteuid() == 0:  # root ignores modes; an immutable file still refuses writers
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o400)
    try:
        res = run(FileBlock.connect(path))
        assert isinstance(res, Error) and isinstance(res.error, Unknown), res
        assert "cannot open" in res.error.msg and "read-write" in res.error.msg
        assert "not permitted" in res.error.msg or "denied" in res.error.msg, res.error.msg
        ro = run(connect(path, read_only=True))  # reading is still allowed
        run(ro.disconnect())
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_connect_directory_and_char_device(tmp_path: Path) -> None:
    for path, read_only in ((tmp_path, False), (tmp_path, True), ("/dev/null", False)):
        res = run(FileBlock.connect(path, read_only=read_only))
        assert isinstance(res, Error) and isinstance(res.error, Unknown), (path, res)


def test_connect_bad_sector_size(tmp_path: Path) -> None:
    path = image(tmp_path / "d.img", 8)
    for bad in (0, -512, 1000):
        with pytest.raises(ValueError, match="sector_size"):
            run(FileBlock.connect(path, sector_size=bad))


def test_geometry_of_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(10_000))

    async def main() -> None:
        for kw, expect in (({}, 19), ({"sector_size": 4096}, 2), ({"sector_size": 8192}, 1)):
            dev = await connect(path, **kw)
            info = await dev.get_info()
            assert info.size_sectors == expect and info.read_write, (kw, info)
            assert dev.id() == str(path)
            await dev.disconnect()
        dev = await connect(path, sector_size=16384)
        assert (await dev.get_info()).size_sectors == 0
        with pytest.raises(ValueError):
            await dev.read(0, [bytearray(16384)])
        await dev.disconnect()

    run(main())


def test_write_is_durable_and_visible_in_the_file(tmp_path: Path) -> None:
    path = image(tmp_path / "d.img", 64)

    async def main() -> None:
        dev = await connect(path)
        assert fcntl.fcntl(dev._fd, fcntl.F_GETFL) & os.O_DSYNC, "writes must be synchronous"
        data = pattern(5, 3, 512, salt=99)
        assert await dev.write(5, [data[:512], data[512:]]) == Ok(None)
        await dev.disconnect()

    run(main())
    raw = path.read_bytes()
    assert raw[5 * 512 : 8 * 512] == pattern(5, 3, 512, salt=99)
    assert raw[: 5 * 512] + raw[8 * 512 :] == (pattern(0, 5, 512) + pattern(8, 56, 512)), (
        "write touched sectors outside the request"
    )


def test_read_fills_views_in_place(tmp_path: Path) -> None:
    path = image(tmp_path / "d.img", 64)
    arena = bytearray(b"\xee" * 4096)
    view = memoryview(arena)

    async def main() -> None:
        dev = await connect(path)
        assert await dev.read(10, [view[512:1024], view[2048:3072]]) == Ok(None)
        await dev.disconnect()

    run(main())
    assert arena[512:1024] == pattern(10, 1, 512)
    assert arena[2048:3072] == pattern(11, 2, 512)
    assert arena[:512] + arena[1024:2048] + arena[3072:] == b"\xee" * 2560


def test_read_only_file_refuses_writes(tmp_path: Path) -> None:
    path = image(tmp_path / "d.img", 8)

    async def main() -> None:
        dev = await connect(path, read_only=True)
        assert fcntl.fcntl(dev._fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        assert await dev.write(0, [bytes(512)]) == Error(IsReadOnly())
        await dev.disconnect()

    run(main())
    assert path.read_bytes() == pattern(0, 8, 512)


@pytest.mark.parametrize("offload", [None, True, False], ids=["auto", "thread", "inline"])
def test_file_shrunk_underneath(tmp_path: Path, offload: bool | None) -> None:
    """A file truncated after connect gives Error(Unknown), not a half-filled Ok."""
    path = image(tmp_path / "d.img", 8)

    async def main() -> None:
        dev = await connect(path, offload=offload)
        os.truncate(path, 6 * 512 + 100)
        buf = bytearray(2 * 512)
        res = await dev.read(5, [buf])
        assert isinstance(res, Error) and isinstance(res.error, Unknown), res
        assert "end of file" in res.error.msg
        assert await dev.read(0, [bytearray(512)]) == Ok(None)
        await dev.disconnect()

    run(main())


def test_writes_move_to_a_thread_when_slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adaptive policy: cheap writes inline, slow or huge ones in a worker thread."""
    path = image(tmp_path / "d.img", 8192)
    seen: list[bool] = []
    write_all = _file._write_all

    def spy(*args: Any) -> None:
        seen.append(threading.current_thread() is threading.main_thread())
        write_all(*args)

    monkeypatch.setattr(_file, "_write_all", spy)
    monkeypatch.setattr(_file, "INLINE_LIMIT", 0.05)  # robust to a slow disk under test

    async def main() -> None:
        dev = await connect(path)
        assert await dev.write(0, [bytes(512)]) == Ok(None)
        assert await dev.write(0, [bytes(_file.INLINE_BYTES + 512)]) == Ok(None)
        dev._write_cost = 1.0  # as if the disk took a second per write
        assert await dev.write(0, [bytes(512)]) == Ok(None)
        for _ in range(40):  # fast writes in the thread bring the average back down
            assert await dev.write(0, [bytes(512)]) == Ok(None)
        assert dev._write_cost < 0.05
        await dev.disconnect()

    run(main())
    assert seen[:3] == [True, False, False], seen
    assert seen[-1] is True, "fast writes did not come back inline"


def test_disconnect_waits_for_threaded_requests(tmp_path: Path) -> None:
    path = image(tmp_path / "d.img", 64)
    data = pattern(0, 64, 512, salt=5)

    async def main() -> None:
        dev = await connect(path, offload=True)
        fd = dev._fd
        write = asyncio.create_task(dev.write(0, [data]))
        cancelled = asyncio.create_task(dev.write(32, [data[: 32 * 512]]))
        await asyncio.sleep(0)  # both are now in threads
        cancelled.cancel()
        await dev.disconnect()
        with pytest.raises(OSError):
            os.fstat(fd)
        assert await write == Ok(None)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await dev.read(0, [bytearray(512)]) == Error(Disconnected())

    run(main())
    raw = path.read_bytes()
    assert raw[: 32 * 512] == data[: 32 * 512]
    assert raw[32 * 512 :] == data[: 32 * 512], "a submitted write was not completed"


def test_static_conformance() -> None:
    checked: type[v1.Block] = FileBlock
    assert checked is _file._check
    assert checked is FileBlock


def short_io(real: Callable[..., int], limit: int) -> Callable[..., int]:
    """Wrap os.preadv/os.pwritev so that each call moves at most ``limit`` bytes."""

    def call(fd: int, buffers: list[Any], offset: int, *flags: int) -> int:
        views, left = [], limit
        for b in buffers:
            mv = memoryview(b).cast("B")
            if left <= 0:
                break
            views.append(mv[:left])
            left -= len(views[-1])
        return real(fd, views, offset, *flags)

    return call


@pytest.mark.parametrize("offload", [None, True, False], ids=["auto", "thread", "inline"])
def test_short_reads_and_writes_are_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offload: bool | None
) -> None:
    """The kernel may move fewer bytes than asked (signals, huge requests): we loop."""
    path = image(tmp_path / "d.img", 64)
    monkeypatch.setattr(os, "preadv", short_io(os.preadv, 1000))
    monkeypatch.setattr(os, "pwritev", short_io(os.pwritev, 777))
    data = pattern(3, 20, 512, salt=3)

    async def main() -> None:
        dev = await connect(path, offload=offload)
        bufs = [data[: 3 * 512], data[3 * 512 : 4 * 512], data[4 * 512 :]]
        assert await dev.write(3, bufs) == Ok(None)
        outs = [bytearray(512), bytearray(7 * 512), bytearray(12 * 512)]
        assert await dev.read(3, outs) == Ok(None)
        assert b"".join(outs) == data
        await dev.disconnect()

    run(main())
    assert path.read_bytes()[3 * 512 : 23 * 512] == data


def test_no_rwf_nowait_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot take RWF_NOWAIT (EOPNOTSUPP) is read the blocking way from then on."""
    path = image(tmp_path / "d.img", 16)
    real = os.preadv
    calls: list[tuple[int, ...]] = []

    def preadv(fd: int, buffers: Any, offset: int, *flags: int) -> int:
        calls.append(flags)
        if flags and flags[0]:
            raise OSError(errno.EOPNOTSUPP, "not supported")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)

    async def main() -> None:
        dev = await connect(path)
        for sector in (2, 9):
            buf = bytearray(2 * 512)
            assert await dev.read(sector, [buf]) == Ok(None)
            assert buf == pattern(sector, 2, 512)
        await dev.disconnect()

    run(main())
    assert [bool(f and f[0]) for f in calls] == [True, False, False], calls


def test_io_error_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error from the system (a failing disk) is Error(Unknown), not an exception."""
    path = image(tmp_path / "d.img", 16)

    def fail(*args: Any) -> int:
        raise OSError(errno.EIO, "Input/output error")

    async def main() -> None:
        dev = await connect(path)
        monkeypatch.setattr(os, "preadv", fail)
        monkeypatch.setattr(os, "pwritev", fail)
        for res in (await dev.read(1, [bytearray(512)]), await dev.write(1, [bytes(512)])):
            assert isinstance(res, Error) and isinstance(res.error, Unknown), res
            assert "sector 1" in res.error.msg and "Input/output error" in res.error.msg
        dev._offload = True
        res = await dev.write(1, [bytes(512)])
        assert isinstance(res, Error) and isinstance(res.error, Unknown), res
        await dev.disconnect()

    run(main())


# --- FileBlock behaves like MemoryBlock (model-based) ----------------------------------------

Op = tuple[str, int, list[int]]


def ops() -> st.SearchStrategy[list[Op]]:
    """Random reads and writes over a 64-sector device, each split into random buffers."""
    op = st.tuples(
        st.sampled_from(["read", "write"]),
        st.integers(0, 63),
        st.lists(st.integers(0, 5), min_size=0, max_size=4),
    ).filter(lambda o: o[1] + sum(o[2]) <= 64)
    return st.lists(op, max_size=12)


@settings(max_examples=60, deadline=None)
@given(script=ops(), offload=st.sampled_from([None, True, False]))
def test_file_block_matches_memory_block(script: list[Op], offload: bool | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.img"
        before = pattern(0, 64, 512, salt=12)
        path.write_bytes(before)
        model = MemoryBlock("model", 64)
        model.data[:] = before

        async def main() -> None:
            dev = await connect(path, offload=offload)
            for i, (kind, sector, counts) in enumerate(script):
                if kind == "write":
                    data = pattern(sector, sum(counts), 512, salt=100 + i)
                    bufs, off = [], 0
                    for c in counts:
                        bufs.append(data[off : off + c * 512])
                        off += c * 512
                    assert await dev.write(sector, bufs) == await model.write(sector, bufs)
                else:
                    got = [bytearray(c * 512) for c in counts]
                    want = [bytearray(c * 512) for c in counts]
                    assert await dev.read(sector, got) == await model.read(sector, want)
                    assert got == want, f"op {i}: read({sector}, {counts}) differs"
            await dev.disconnect()

        run(main())
        assert path.read_bytes() == bytes(model.data)


def test_public_names() -> None:
    import miragekit.block
    import miragekit.testing

    assert miragekit.block.__all__ == ["FileBlock", "MemoryBlock"]
    assert miragekit.testing.check_block is check_block
    assert miragekit.testing.check_read_only_block is check_read_only_block
    assert {"bad_requests", "disconnect", "durable", "single_sectors"} <= set(BLOCK_CHECKS)


def test_non_durable_file_block_syncs_on_disconnect(tmp_path: Path) -> None:
    img = tmp_path / "scratch.img"
    img.write_bytes(bytes(4096))

    async def main() -> None:
        from miragekit.block import FileBlock

        r = await FileBlock.connect(str(img), durable=False)
        assert isinstance(r, Ok)
        dev = r.value
        assert not fcntl.fcntl(dev._fd, fcntl.F_GETFL) & os.O_DSYNC
        assert await dev.write(1, [b"\x5a" * 512]) == Ok(None)
        await dev.disconnect()

    asyncio.run(main())
    assert img.read_bytes()[512:1024] == b"\x5a" * 512
