"""A conformance suite for the FS signature.

Run it against any implementation: each check takes a *fresh, empty* filesystem from the
factory; ``reconnect`` mounts again the storage of a filesystem the suite disconnected
(the durability check writes, disconnects, remounts and looks)::

    await check_fs(make_empty_fs, reconnect=remount)

``only=`` picks checks by name (:data:`FS_CHECKS`), for one test per check. A failure
raises :class:`~miragekit.testing.ConformanceError` naming the check and what differed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

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
from ._conformance import expect, fail, run_on_fresh

FSFactory = Callable[[], Awaitable[FS]]
ReconnectFS = Callable[[FS], Awaitable[FS]]
"""Given a filesystem the suite has disconnected, mount its storage again."""

Check = Callable[[FS], Awaitable[None]]


def _ok(r: object, what: str) -> Any:
    if not isinstance(r, Ok):
        fail(f"{what}: expected Ok, got {r!r}")
    return r.value


def _err(r: object, kind: type, what: str) -> object:
    if not (isinstance(r, Error) and isinstance(r.error, kind)):
        fail(f"{what}: expected Error({kind.__name__}), got {r!r}")
    return r.error


def _eq(got: object, want: object, what: str) -> None:
    if got != want:
        g, w = repr(got), repr(want)
        fail(f"{what}: got {g[:200]}, expected {w[:200]}")


async def _contents(fs: FS, path: str) -> bytes:
    size = _ok(await fs.size(path), f"size {path}")
    expect(isinstance(size, int), f"size {path} must be an int, got {size!r}")
    bufs = _ok(await fs.read(path, 0, size + 10), f"read {path}")
    expect(isinstance(bufs, list), f"read {path} must give a list, got {bufs!r}")
    for b in bufs:
        expect(isinstance(b, memoryview), "read must return memoryviews")
    return b"".join(bytes(b) for b in bufs)


async def _check_empty_root(fs: FS) -> None:
    _eq(_ok(await fs.listdir("/"), "listdir /"), [], "listdir /")
    st = _ok(await fs.stat("/"), "stat /")
    expect(isinstance(st, Stat) and st.directory, f"stat / must be a directory, got {st!r}")


async def _check_create_is_empty(fs: FS) -> None:
    _ok(await fs.create("/empty.txt"), "create")
    st = _ok(await fs.stat("/empty.txt"), "stat")
    expect(isinstance(st, Stat), f"stat must give a Stat, got {st!r}")
    _eq(
        (st.filename, st.directory, st.size),
        ("empty.txt", False, 0),
        "stat /empty.txt (filename, directory, size)",
    )
    _eq(_ok(await fs.size("/empty.txt"), "size"), 0, "size /empty.txt")
    _eq(await _contents(fs, "/empty.txt"), b"", "contents of /empty.txt")
    _eq(_ok(await fs.listdir("/"), "listdir"), ["empty.txt"], "listdir /")


async def _check_write_read(fs: FS) -> None:
    _ok(await fs.create("/f"), "create")
    data = bytes(range(256)) * 400  # 100 KiB, several clusters on any volume
    _ok(await fs.write("/f", 0, data), "write")
    _eq(await _contents(fs, "/f"), data, "contents of /f")
    part = _ok(await fs.read("/f", 1000, 5000), "read part")
    expect(isinstance(part, list), "read must give a list")
    _eq(b"".join(bytes(b) for b in part), data[1000:6000], "read of 5000 bytes at 1000")
    short = _ok(await fs.read("/f", len(data) - 7, 100), "read past the end")
    expect(isinstance(short, list), "read must give a list")
    expect(b"".join(bytes(b) for b in short) == data[-7:], "fewer bytes mean the end")
    beyond = _ok(await fs.read("/f", len(data) + 100, 10), "read beyond the end")
    expect(isinstance(beyond, list), "read must give a list")
    _eq(b"".join(bytes(b) for b in beyond), b"", "read beyond the end")


async def _check_overwrite_extend_gap(fs: FS) -> None:
    _ok(await fs.create("/f"), "create")
    _ok(await fs.write("/f", 0, b"abcdef"), "write")
    _ok(await fs.write("/f", 2, b"XY"), "overwrite")
    _eq(await _contents(fs, "/f"), b"abXYef", "contents after an overwrite")
    _ok(await fs.write("/f", 4, b"0123456789"), "extend")
    _eq(await _contents(fs, "/f"), b"abXY0123456789", "contents after extending")
    _ok(await fs.write("/f", 20000, b"end"), "write past the end")
    want = b"abXY0123456789" + bytes(20000 - 14) + b"end"
    _eq(await _contents(fs, "/f"), want, "contents after a write past the end")
    _eq(_ok(await fs.size("/f"), "size"), 20003, "size /f")
    _ok(await fs.write("/f", 0, memoryview(bytearray(b"mXvX"))[::2]), "write a strided memoryview")
    _eq((await _contents(fs, "/f"))[:4], b"mvXY", "contents after writing a memoryview")


async def _check_directories(fs: FS) -> None:
    _ok(await fs.mkdir("/d"), "mkdir")
    _ok(await fs.mkdir("/d/e"), "mkdir nested")
    _ok(await fs.create("/d/e/f"), "create nested")
    _ok(await fs.write("/d/e/f", 0, b"deep"), "write nested")
    st = _ok(await fs.stat("/d/e"), "stat dir")
    _eq(
        isinstance(st, Stat) and st.directory and st.filename,
        "e",
        "stat of directory /d/e",
    )
    _eq(_ok(await fs.listdir("/d"), "listdir"), ["e"], "listdir /d")
    _eq(_ok(await fs.listdir("/d/e"), "listdir"), ["f"], "listdir /d/e")
    expect(await _contents(fs, "d/e/f") == b"deep", "paths relative to the root")
    names = [f"file {i}" for i in range(50)]
    for n in names:
        _ok(await fs.create("/d/" + n), "create many")
    listed = _ok(await fs.listdir("/d"), "listdir many")
    _eq(
        isinstance(listed, list) and sorted(listed),
        sorted([*names, "e"]),
        "isinstance(listed, list) and sorted(listed)",
    )


async def _check_destroy(fs: FS) -> None:
    _ok(await fs.mkdir("/d"), "mkdir")
    _ok(await fs.create("/d/f"), "create")
    _ok(await fs.write("/d/f", 0, b"x" * 10000), "write")
    _err(await fs.destroy("/d"), DirectoryNotEmpty, "destroy a non-empty directory")
    _ok(await fs.destroy("/d/f"), "destroy a file")
    _err(await fs.stat("/d/f"), NoDirectoryEntry, "stat a destroyed file")
    _ok(await fs.destroy("/d"), "destroy an empty directory")
    _eq(_ok(await fs.listdir("/"), "listdir"), [], "listdir /")
    _ok(await fs.create("/d"), "the name is free again")


async def _check_errors(fs: FS) -> None:
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
        _eq(
            isinstance(e, NoDirectoryEntry) and e.name,
            "missing",
            "isinstance(e, NoDirectoryEntry) and e.name",
        )


async def _check_many_entries(fs: FS) -> None:
    names = sorted(f"entry {i:03}" for i in range(150))
    _ok(await fs.mkdir("/many"), "mkdir")
    for n in names:
        _ok(await fs.create(f"/many/{n}"), f"create /many/{n}")
    listed = _ok(await fs.listdir("/many"), "listdir /many")
    expect(
        sorted(listed) == names,
        f"listdir of a directory of {len(names)} entries gave {len(listed)}",
    )


async def _check_names_kept(fs: FS) -> None:
    names = ["README.TXT", "UPPER", "lower.txt", "MiXed.Txt", "A", "x.y", "long name.data"]
    for n in names:
        _ok(await fs.create("/" + n), f"create /{n}")
        _ok(await fs.write("/" + n, 0, n.encode()), f"write /{n}")
    listed = _ok(await fs.listdir("/"), "listdir /")
    expect(sorted(listed) == sorted(names), f"listdir / gave {sorted(listed)}, want {names}")
    for n in names:
        st = _ok(await fs.stat("/" + n), f"stat /{n}")
        expect(st.filename == n, f"stat /{n} names it {st.filename!r}")
        _eq(await _contents(fs, "/" + n), n.encode(), f"contents of /{n}")


async def _check_sizes(fs: FS) -> None:
    for n, size in (("zero", 0), ("one", 1), ("mid", 5000), ("big", 70_001)):
        _ok(await fs.create("/" + n), f"create /{n}")
        if size:
            _ok(await fs.write("/" + n, 0, bytes([7]) * size), f"write /{n}")
        _eq(_ok(await fs.size("/" + n), f"size /{n}"), size, f"size of /{n}")
        st = _ok(await fs.stat("/" + n), f"stat /{n}")
        _eq(st.size, size, f"stat(/{n}).size")
    _ok(await fs.write("/mid", 10_000, b"z"), "extend /mid")
    _eq(_ok(await fs.stat("/mid"), "stat /mid").size, 10_001, "stat(/mid).size after extending")


async def _fill_for_durability(fs: FS) -> dict[str, bytes]:
    files = {"/top.txt": b"top", "/d/e/deep.bin": bytes(range(256)) * 40, "/d/EMPTY": b""}
    _ok(await fs.mkdir("/d"), "mkdir /d")
    _ok(await fs.mkdir("/d/e"), "mkdir /d/e")
    for path, data in files.items():
        _ok(await fs.create(path), f"create {path}")
        if data:
            _ok(await fs.write(path, 0, data), f"write {path}")
    _ok(await fs.mkdir("/gone"), "mkdir /gone")
    _ok(await fs.destroy("/gone"), "destroy /gone")
    return files


async def _check_durable(fs: FS, reconnect: ReconnectFS) -> None:
    files = await _fill_for_durability(fs)
    await fs.disconnect()
    again = await reconnect(fs)
    try:
        root = _ok(await again.listdir("/"), "listdir / after remount")
        _eq(sorted(root), ["d", "top.txt"], "listdir / after remount")
        _eq(sorted(_ok(await again.listdir("/d"), "listdir /d")), ["EMPTY", "e"], "listdir /d")
        for path, data in files.items():
            _eq(await _contents(again, path), data, f"contents of {path} after remount")
            _eq(_ok(await again.stat(path), f"stat {path}").size, len(data), f"stat({path}).size")
    finally:
        await again.disconnect()


_CHECKS: dict[str, Check] = {
    "empty_root": _check_empty_root,
    "create_is_empty": _check_create_is_empty,
    "write_read": _check_write_read,
    "overwrite_extend_gap": _check_overwrite_extend_gap,
    "directories": _check_directories,
    "destroy": _check_destroy,
    "errors": _check_errors,
    "many_entries": _check_many_entries,
    "names_kept": _check_names_kept,
    "sizes": _check_sizes,
}


FS_CHECKS: tuple[str, ...] = (*_CHECKS, "durable")
"""The names of the checks :func:`check_fs` runs, in order."""


async def check_fs(
    make: FSFactory,
    *,
    reconnect: ReconnectFS,
    only: Collection[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Run the checks (all, or those named in ``only``), each on a fresh empty
    filesystem from ``make``; raise :class:`ConformanceError` for the first failure."""

    async def durable(fs: FS) -> None:
        await _check_durable(fs, reconnect)

    async def disconnect(fs: FS) -> None:
        await fs.disconnect()

    await run_on_fresh(make, {**_CHECKS, "durable": durable}, disconnect, only, timeout)


__all__ = ["FS_CHECKS", "FSFactory", "ReconnectFS", "check_fs"]
