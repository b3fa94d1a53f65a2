"""Crash consistency: stop the device after N block writes, for every N in a workload.

After each stop ``fsck.fat -n`` finds no cross-linked, invalid or looping chains, a fresh
mount reads every file, and every file the workload did not touch is unchanged.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from tests.fat_util import block_from_bytes, fresh_fs, fsck, is_error, ok, read_all, read_tree

from miragekit.block import MemoryBlock
from miragekit.fs import FatFS
from miragekit.result import (
    BlockError,
    Disconnected,
    Error,
    IsADirectory,
    NoDirectoryEntry,
    Ok,
)
from miragekit.v1 import Buffer

pytestmark = pytest.mark.tools

BAD = re.compile(
    r"cross-link|invalid|loop|bad (start )?cluster|contains a free cluster|beyond|unreadable", re.I
)


class StopAfter(MemoryBlock):
    """A MemoryBlock that stops (every later write fails, unwritten) after ``budget`` writes."""

    def __init__(self, data: bytes, budget: int | None) -> None:
        super().__init__("crash", len(data) // 512)
        self.data[:] = data
        self.budget = budget
        self.writes = 0

    async def write(
        self, sector_start: int, buffers: Sequence[Buffer]
    ) -> Ok[None] | Error[BlockError]:
        if self.budget is not None and self.writes >= self.budget:
            return Error(Disconnected())
        self.writes += 1
        return await super().write(sector_start, buffers)


KEPT = {
    "/keep one.txt": b"first file that must survive\n" * 30,
    "/Keep Dir/second.bin": os.urandom(9000),
    "/Keep Dir/third": b"3",
}


async def base_image(fat: int, size: int) -> bytes:
    fs, blk = await fresh_fs(size, fat)
    ok(await fs.mkdir("/Keep Dir"))
    ok(await fs.mkdir("/work"))
    ok(await fs.create("/work/appended.log"))
    ok(await fs.write("/work/appended.log", 0, b"log line\n" * 100))
    for path, data in KEPT.items():
        ok(await fs.create(path))
        ok(await fs.write(path, 0, data))
    return bytes(blk.data)


async def workload(fs: FatFS) -> None:
    """Stops at the first error, as a machine that lost its disk would."""
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: fs.create("/work/new file with a long name.dat"),
        lambda: fs.write("/work/new file with a long name.dat", 0, os.urandom(6000)),
        lambda: fs.write("/work/appended.log", 900, b"more\n" * 900),
        lambda: fs.mkdir("/work/sub dir"),
        lambda: fs.create("/work/sub dir/inner"),
        lambda: fs.write("/work/sub dir/inner", 3000, b"after a gap"),
        lambda: fs.write("/work/new file with a long name.dat", 100, b"overwrite"),
        *[
            (lambda i=i: fs.create(f"/work/sub dir/entry number {i} with a long name"))
            for i in range(12)
        ],
        lambda: fs.destroy("/work/new file with a long name.dat"),
        lambda: fs.destroy("/work/sub dir/inner"),
        lambda: fs.create("/at the root now"),
        lambda: fs.write("/at the root now", 0, b"r" * 2500),
    ]
    for step in steps:
        if isinstance(await step(), Error):
            return


async def crash_at(image: bytes, budget: int | None) -> tuple[bytes, int]:
    blk = StopAfter(image, budget)
    fs = ok(await FatFS.connect(blk))
    await workload(fs)
    return bytes(blk.data), blk.writes


@pytest.mark.parametrize(("fat", "size"), [(12, 2 << 20), (16, 9 << 20), (32, 4 << 20)])
def test_stop_after_every_write(fat: int, size: int, tmp_path: Path) -> None:
    base = asyncio.run(base_image(fat, size))
    _, total = asyncio.run(crash_at(base, None))
    assert total > 30
    img = tmp_path / "crashed.img"
    for n in range(total + 1):
        crashed, writes = asyncio.run(crash_at(base, n))
        assert writes == n
        img.write_bytes(crashed)
        _rc, out = fsck(img)
        assert not BAD.search(out), f"after {n} of {total} writes:\n{out}"

        async def check(crashed: bytes, n: int) -> None:
            fs = ok(await FatFS.connect(block_from_bytes(crashed)))
            await read_tree(fs)  # every chain reachable from a directory reads back
            for path, data in KEPT.items():
                assert await read_all(fs, path) == data, (n, path)
            log = await read_all(fs, "/work/appended.log")
            assert log[:900] == (b"log line\n" * 100)[:900]

        asyncio.run(check(crashed, n))


@pytest.mark.parametrize("fat", [12, 32])
def test_replace_leaves_the_old_or_the_new_contents_whole(fat: int, tmp_path: Path) -> None:
    """``FatFS.replace`` (how ``fat put`` swaps a finished copy in): stop after any write."""
    old, new = b"old contents\n" * 400, os.urandom(7000)

    async def base() -> bytes:
        fs, blk = await fresh_fs(4 << 20, fat)
        ok(await fs.mkdir("/work"))
        for path, data in (("/work/Target File.txt", old), ("/work/.new copy.tmp", new)):
            ok(await fs.create(path))
            ok(await fs.write(path, 0, data))
        assert is_error(await fs.replace("/work", "/work/Target File.txt"), IsADirectory)
        assert is_error(await fs.replace("/work/.new copy.tmp", "/work"), IsADirectory)
        assert is_error(await fs.replace("/work/nope", "/work/Target File.txt"), NoDirectoryEntry)
        return bytes(blk.data)

    async def swap(image: bytes, budget: int | None) -> tuple[bytes, int]:
        blk = StopAfter(image, budget)
        fs = ok(await FatFS.connect(blk))
        await fs.replace("/work/.new copy.tmp", "/work/target file.TXT")
        return bytes(blk.data), blk.writes

    image = asyncio.run(base())
    done, total = asyncio.run(swap(image, None))
    assert total >= 3
    img = tmp_path / "swap.img"
    for n in range(total + 1):
        crashed, _ = asyncio.run(swap(image, n)) if n < total else (done, total)
        img.write_bytes(crashed)
        _rc, out = fsck(img)
        assert not BAD.search(out), f"after {n} of {total} writes:\n{out}"

        async def check(crashed: bytes, n: int) -> None:
            fs = ok(await FatFS.connect(block_from_bytes(crashed)))
            got = await read_all(fs, "/work/Target File.txt")
            assert got in (old, new), n
            names = ok(await fs.listdir("/work"))
            if got == old:
                assert n < total
            if n == total:
                assert got == new and names == ["Target File.txt"]
                before = ok(await FatFS.connect(block_from_bytes(image))).free_bytes()
                assert fs.free_bytes() >= before + len(old)  # the old chain was freed

        asyncio.run(check(crashed, n))
    img.write_bytes(done)
    rc, out = fsck(img)
    findings = [ln for ln in out.splitlines() if "FAT32" not in ln and not ln.startswith("  ")]
    assert rc == 0 and findings == [], out  # nothing lost or left over once it completes
