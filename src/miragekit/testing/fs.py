"""A conformance suite for the FS signature.

Run it against any implementation: each check takes a *fresh, empty* filesystem from the
factory and raises ``AssertionError`` when the implementation departs from the seed::

    await check_fs(lambda: make_empty_fs())

or, for one test per check, iterate over :data:`FS_CHECKS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..result import (
    DirectoryNotEmpty,
    Error,
    FileAlreadyExists,
    IsADirectory,
    NoDirectoryEntry,
    NotADirectory,
    Ok,
)
from ..v1 import FS, Stat

FSFactory = Callable[[], Awaitable[FS]]
Check = Callable[[FS], Awaitable[None]]


def _ok(r: object, what: str) -> object:
    assert isinstance(r, Ok), f"{what}: expected Ok, got {r!r}"
    return r.value


def _err(r: object, kind: type, what: str) -> object:
    assert isinstance(r, Error) and isinstance(r.error, kind), (
        f"{what}: expected Error({kind.__name__}), got {r!r}"
    )
    return r.error


async def _contents(fs: FS, path: str) -> bytes:
    size = _ok(await fs.size(path), f"size {path}")
    assert isinstance(size, int)
    bufs = _ok(await fs.read(path, 0, size + 10), f"read {path}")
    assert isinstance(bufs, list)
    for b in bufs:
        assert isinstance(b, memoryview), "read must return memoryviews"
    return b"".join(bytes(b) for b in bufs)


async def check_empty_root(fs: FS) -> None:
    assert _ok(await fs.listdir("/"), "listdir /") == []
    st = _ok(await fs.stat("/"), "stat /")
    assert isinstance(st, Stat) and st.directory


async def check_create_is_empty(fs: FS) -> None:
    _ok(await fs.create("/empty.txt"), "create")
    st = _ok(await fs.stat("/empty.txt"), "stat")
    assert isinstance(st, Stat)
    assert (st.filename, st.directory, st.size) == ("empty.txt", False, 0)
    assert _ok(await fs.size("/empty.txt"), "size") == 0
    assert await _contents(fs, "/empty.txt") == b""
    assert _ok(await fs.listdir("/"), "listdir") == ["empty.txt"]


async def check_write_read(fs: FS) -> None:
    _ok(await fs.create("/f"), "create")
    data = bytes(range(256)) * 400  # 100 KiB, several clusters on any volume
    _ok(await fs.write("/f", 0, data), "write")
    assert await _contents(fs, "/f") == data
    part = _ok(await fs.read("/f", 1000, 5000), "read part")
    assert isinstance(part, list)
    assert b"".join(bytes(b) for b in part) == data[1000:6000]
    short = _ok(await fs.read("/f", len(data) - 7, 100), "read past the end")
    assert isinstance(short, list)
    assert b"".join(bytes(b) for b in short) == data[-7:], "fewer bytes mean the end"
    beyond = _ok(await fs.read("/f", len(data) + 100, 10), "read beyond the end")
    assert isinstance(beyond, list)
    assert b"".join(bytes(b) for b in beyond) == b""


async def check_overwrite_extend_gap(fs: FS) -> None:
    _ok(await fs.create("/f"), "create")
    _ok(await fs.write("/f", 0, b"abcdef"), "write")
    _ok(await fs.write("/f", 2, b"XY"), "overwrite")
    assert await _contents(fs, "/f") == b"abXYef"
    _ok(await fs.write("/f", 4, b"0123456789"), "extend")
    assert await _contents(fs, "/f") == b"abXY0123456789"
    _ok(await fs.write("/f", 20000, b"end"), "write past the end")
    assert await _contents(fs, "/f") == b"abXY0123456789" + bytes(20000 - 14) + b"end"
    assert _ok(await fs.size("/f"), "size") == 20003
    _ok(await fs.write("/f", 0, memoryview(bytearray(b"mv"))), "write a memoryview")
    assert (await _contents(fs, "/f"))[:4] == b"mvXY"


async def check_directories(fs: FS) -> None:
    _ok(await fs.mkdir("/d"), "mkdir")
    _ok(await fs.mkdir("/d/e"), "mkdir nested")
    _ok(await fs.create("/d/e/f"), "create nested")
    _ok(await fs.write("/d/e/f", 0, b"deep"), "write nested")
    st = _ok(await fs.stat("/d/e"), "stat dir")
    assert isinstance(st, Stat) and st.directory and st.filename == "e"
    assert _ok(await fs.listdir("/d"), "listdir") == ["e"]
    assert _ok(await fs.listdir("/d/e"), "listdir") == ["f"]
    assert await _contents(fs, "d/e/f") == b"deep", "paths relative to the root"
    names = [f"file {i}" for i in range(50)]
    for n in names:
        _ok(await fs.create("/d/" + n), "create many")
    listed = _ok(await fs.listdir("/d"), "listdir many")
    assert isinstance(listed, list) and sorted(listed) == sorted([*names, "e"])


async def check_destroy(fs: FS) -> None:
    _ok(await fs.mkdir("/d"), "mkdir")
    _ok(await fs.create("/d/f"), "create")
    _ok(await fs.write("/d/f", 0, b"x" * 10000), "write")
    _err(await fs.destroy("/d"), DirectoryNotEmpty, "destroy a non-empty directory")
    _ok(await fs.destroy("/d/f"), "destroy a file")
    _err(await fs.stat("/d/f"), NoDirectoryEntry, "stat a destroyed file")
    _ok(await fs.destroy("/d"), "destroy an empty directory")
    assert _ok(await fs.listdir("/"), "listdir") == []
    _ok(await fs.create("/d"), "the name is free again")


async def check_errors(fs: FS) -> None:
    _ok(await fs.create("/file"), "create")
    _ok(await fs.mkdir("/dir"), "mkdir")
    _err(await fs.create("/file"), FileAlreadyExists, "create twice")
    _err(await fs.mkdir("/dir"), FileAlreadyExists, "mkdir twice")
    _err(await fs.mkdir("/file"), FileAlreadyExists, "mkdir over a file")
    _err(await fs.create("/file/x"), NotADirectory, "create under a file")
    _err(await fs.listdir("/file"), NotADirectory, "listdir a file")
    _err(await fs.read("/dir", 0, 1), IsADirectory, "read a directory")
    _err(await fs.write("/dir", 0, b"x"), IsADirectory, "write a directory")
    for what, r in [
        ("read", await fs.read("/missing", 0, 1)),
        ("write", await fs.write("/missing", 0, b"x")),
        ("size", await fs.size("/missing")),
        ("stat", await fs.stat("/missing")),
        ("listdir", await fs.listdir("/missing")),
        ("destroy", await fs.destroy("/missing")),
        ("create", await fs.create("/missing/x")),
    ]:
        e = _err(r, NoDirectoryEntry, f"{what} a missing path")
        assert isinstance(e, NoDirectoryEntry) and e.name == "missing"


FS_CHECKS: dict[str, Check] = {
    "empty_root": check_empty_root,
    "create_is_empty": check_create_is_empty,
    "write_read": check_write_read,
    "overwrite_extend_gap": check_overwrite_extend_gap,
    "directories": check_directories,
    "destroy": check_destroy,
    "errors": check_errors,
}


async def check_fs(make: FSFactory) -> None:
    """Run every check, each on a fresh empty filesystem from ``make``."""
    for check in FS_CHECKS.values():
        await check(await make())
