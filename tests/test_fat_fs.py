"""FatFS semantics: every seed error where it applies, writes, growth, both FATs, FSInfo."""

from __future__ import annotations

import asyncio
import calendar
import struct
from collections.abc import Sequence

import pytest
from tests.fat_util import FixedClock, fresh_fs, is_error, mount, ok, read_all, read_tree

from miragekit.block import MemoryBlock
from miragekit.fs import BootSector, FatFS
from miragekit.fs._dirent import parse_dir
from miragekit.result import (
    BlockDevice,
    BlockError,
    DirectoryNotEmpty,
    Error,
    FileAlreadyExists,
    FormatNotRecognised,
    IsADirectory,
    IsReadOnly,
    NoDirectoryEntry,
    NoSpace,
    NotADirectory,
    Ok,
    Unknown,
    UnknownError,
)
from miragekit.v1 import Buffer, Info

FATS = [(12, 4 << 20), (16, 20 << 20), (32, 40 << 20)]


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_unformatted_device_connects_and_refuses_until_formatted() -> None:
    async def go() -> None:
        blk = MemoryBlock("m", 8192)
        fs = ok(await FatFS.connect(blk))
        assert fs.fat_bits is None
        for r in (
            await fs.listdir("/"),
            await fs.create("/a"),
            await fs.stat("/"),
            await fs.read("/a", 0, 1),
        ):
            assert is_error(r, FormatNotRecognised), r
        ok(await fs.format(4 << 20))
        assert fs.fat_bits == 12
        assert ok(await fs.listdir("/")) == []

    run(go())


@pytest.mark.parametrize(("fat", "size"), FATS)
def test_errors_are_the_seed_variants(fat: int, size: int) -> None:
    async def go() -> None:
        fs, _ = await fresh_fs(size, fat)
        ok(await fs.create("/file.txt"))
        ok(await fs.mkdir("/dir"))
        ok(await fs.create("/dir/inner"))
        r = await fs.create("/FILE.TXT")
        assert isinstance(r, Error) and r.error == FileAlreadyExists("/FILE.TXT")
        assert is_error(await fs.mkdir("/file.txt"), FileAlreadyExists)
        assert is_error(await fs.mkdir("/"), FileAlreadyExists)
        r2 = await fs.create("/file.txt/x")
        assert isinstance(r2, Error) and r2.error == NotADirectory("/file.txt")
        assert is_error(await fs.listdir("/file.txt"), NotADirectory)
        for r3 in (
            await fs.read("/dir", 0, 1),
            await fs.write("/dir", 0, b"x"),
            await fs.size("/dir"),
            await fs.read("/", 0, 1),
        ):
            assert is_error(r3, IsADirectory), r3
        r4 = await fs.read("/dir/missing", 0, 1)
        assert isinstance(r4, Error) and r4.error == NoDirectoryEntry("/dir", "missing")
        r5 = await fs.create("/nodir/x")
        assert isinstance(r5, Error) and r5.error == NoDirectoryEntry("/", "nodir")
        assert is_error(await fs.destroy("/missing"), NoDirectoryEntry)
        r6 = await fs.destroy("/dir")
        assert isinstance(r6, Error) and r6.error == DirectoryNotEmpty("/dir")
        assert is_error(await fs.destroy("/"), UnknownError)
        for bad in ("a:b", "trailing.", "q?", "x" * 256, "a\x01b"):
            assert is_error(await fs.create("/" + bad), UnknownError), bad
        with pytest.raises(ValueError, match="offset"):
            await fs.read("/file.txt", -1, 1)
        with pytest.raises(ValueError, match="length"):
            await fs.read("/file.txt", 0, -1)
        with pytest.raises(ValueError, match="offset"):
            await fs.write("/file.txt", -1, b"")
        ok(await fs.destroy("/dir/inner"))
        ok(await fs.destroy("/dir"))
        assert ok(await fs.listdir("/")) == ["file.txt"]

    run(go())


def test_names_match_in_any_case_and_keep_their_case() -> None:
    async def go() -> None:
        fs, _ = await fresh_fs(4 << 20)
        ok(await fs.mkdir("/Mixed Dir"))
        ok(await fs.create("mixed dir/Hello.TXT"))  # relative to the root
        ok(await fs.write("/MIXED DIR/./hello.txt", 0, b"hi"))
        assert ok(await fs.listdir("/mixed dir")) == ["Hello.TXT"]
        st = ok(await fs.stat("/mixed dir/../Mixed Dir/HELLO.txt"))
        assert (st.filename, st.size, st.directory) == ("Hello.TXT", 2, False)
        assert ok(await fs.stat("/MIXEDD~1")).directory  # the generated 8.3 alias works
        ok(await fs.create("/ÆØÅ café"))
        assert ok(await fs.stat("/æøå CAFÉ")).filename == "ÆØÅ café"
        assert ok(await fs.stat("/")).directory

    run(go())


@pytest.mark.parametrize(("fat", "size"), FATS)
def test_write_overwrites_extends_and_fills_gaps_with_zeros(fat: int, size: int) -> None:
    async def go() -> None:
        blk = MemoryBlock("m", size // 512)
        blk.data[:] = b"\xaa" * len(blk.data)  # garbage everywhere, so zeros must be written
        fs = ok(await FatFS.connect(blk))
        ok(await fs.format(size, fat=fat))
        cb = fs.boot_sector.cluster_bytes if fs.boot_sector else 0
        ok(await fs.create("/f"))
        model = bytearray()

        async def w(off: int, data: bytes) -> None:
            ok(await fs.write("/f", off, data))
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off : off + len(data)] = data
            assert await read_all(fs, "/f") == bytes(model)
            assert ok(await fs.size("/f")) == len(model)

        await w(0, b"hello")
        await w(100, b"gap")  # gap inside the first cluster
        await w(2, b"LL")  # overwrite
        await w(3 * cb + 7, b"far")  # gap across clusters
        await w(cb - 3, b"x" * (cb + 6))  # across a cluster boundary, inside the file
        await w(len(model), bytes(range(256)) * 40)  # append
        got = ok(await fs.read("/f", 5, 10))
        assert b"".join(bytes(b) for b in got) == bytes(model[5:15])
        assert ok(await fs.read("/f", len(model) + 10, 5)) == []
        tail = ok(await fs.read("/f", len(model) - 3, 100))
        assert b"".join(bytes(b) for b in tail) == bytes(model[-3:])
        again = await mount(blk.data)
        assert await read_all(again, "/f") == bytes(model)

    run(go())


def test_nospace_writes_nothing() -> None:
    async def go() -> None:
        fs, blk = await fresh_fs(1 << 20)  # FAT12, about 1 MiB
        ok(await fs.create("/big"))
        free = fs.free_bytes()
        before = bytes(blk.data)
        r = await fs.write("/big", 0, b"z" * (free + 1))
        assert isinstance(r, Error) and r.error == NoSpace()
        assert bytes(blk.data) == before
        assert ok(await fs.size("/big")) == 0
        ok(await fs.write("/big", 0, b"z" * free))  # exactly fits
        assert fs.free_bytes() == 0
        before = bytes(blk.data)
        assert is_error(await fs.write("/big", free, b"!"), NoSpace)
        assert is_error(await fs.mkdir("/d"), NoSpace)
        assert bytes(blk.data) == before
        ok(await fs.create("/empty files still fit"))
        ok(await fs.destroy("/big"))
        assert fs.free_bytes() == free

    run(go())


def test_full_fixed_root_is_nospace_and_unchanged() -> None:
    async def go() -> None:
        fs, blk = await fresh_fs(2 << 20)
        slots = fs.boot_sector.root_entries if fs.boot_sector else 0
        for i in range(slots):
            ok(await fs.create(f"/F{i}"))
        before = bytes(blk.data)
        assert is_error(await fs.create("/ONEMORE"), NoSpace)
        assert bytes(blk.data) == before
        ok(await fs.destroy("/F7"))
        ok(await fs.create("/REUSED"))
        assert len(ok(await fs.listdir("/"))) == slots

    run(go())


@pytest.mark.parametrize(("fat", "size"), FATS)
def test_directories_grow_and_both_fats_stay_equal(fat: int, size: int) -> None:
    async def go() -> None:
        fs, blk = await fresh_fs(size, fat)
        ok(await fs.mkdir("/d"))
        names = [f"a long file name number {i}.text" for i in range(300)]
        for n in names:
            ok(await fs.create("/d/" + n))
            ok(await fs.write("/d/" + n, 0, n.encode()))
        for n in names[::5]:
            ok(await fs.destroy("/d/" + n))
        again = await mount(blk.data)
        tree = await read_tree(again, "/d")
        assert tree == {n: n.encode() for n in names if n not in names[::5]}
        bs = BootSector.parse(blk.data[:512])
        ss = bs.bytes_per_sector
        fat1 = bytes(
            blk.data[bs.first_fat_sector * ss : (bs.first_fat_sector + bs.fat_sectors) * ss]
        )
        off2 = bs.first_fat_sector + bs.fat_sectors
        fat2 = bytes(blk.data[off2 * ss : (off2 + bs.fat_sectors) * ss])
        assert fat1 == fat2
        if bs.fat_bits == 32:
            entries = struct.unpack_from(f"<{bs.cluster_count + 2}I", fat1)
            free = sum(1 for e in entries[2:] if e & 0x0FFFFFFF == 0)
            info = blk.data[bs.fsinfo_sector * ss : (bs.fsinfo_sector + 1) * ss]
            assert struct.unpack_from("<I", info, 488)[0] == free
            assert fs.free_bytes() == free * bs.cluster_bytes

    run(go())


def test_timestamps_come_from_the_clock() -> None:
    async def go() -> None:
        t = calendar.timegm((2024, 5, 6, 7, 8, 11, 0, 0, 0))
        blk = MemoryBlock("m", 8192)
        fs = ok(await FatFS.connect(blk, clock=FixedClock(t)))
        ok(await fs.format(4 << 20))
        ok(await fs.create("/STAMPED.TXT"))
        bs = BootSector.parse(blk.data[:512])
        root = bytes(blk.data[bs.root_dir_sector * 512 : bs.first_data_sector * 512])
        (e,) = parse_dir(root).entries
        assert e.cdate == e.mdate == e.adate == ((2024 - 1980) << 9) | (5 << 5) | 6
        assert e.ctime == e.mtime == (7 << 11) | (8 << 5) | 5
        assert e.ctime_cs == 100

    run(go())


class FlakyBlock(MemoryBlock):
    """A MemoryBlock whose reads and writes can be made to fail."""

    fail = False

    async def read(
        self, sector_start: int, buffers: Sequence[bytearray | memoryview]
    ) -> Ok[None] | Error[BlockError]:
        if self.fail:
            return Error(Unknown("injected read fault"))
        return await super().read(sector_start, buffers)

    async def write(
        self, sector_start: int, buffers: Sequence[Buffer]
    ) -> Ok[None] | Error[BlockError]:
        if self.fail:
            return Error(Unknown("injected write fault"))
        return await super().write(sector_start, buffers)


def test_block_errors_are_returned_and_the_fs_recovers() -> None:
    async def go() -> None:
        blk = FlakyBlock("m", 8192)
        fs = ok(await FatFS.connect(blk))
        ok(await fs.format(4 << 20))
        ok(await fs.create("/a"))
        blk.fail = True
        r = await fs.write("/a", 0, b"data")
        assert isinstance(r, Error) and r.error == BlockDevice(Unknown("injected write fault"))
        blk.fail = False
        assert ok(await fs.listdir("/")) == ["a"]
        ok(await fs.write("/a", 0, b"data"))
        assert await read_all(fs, "/a") == b"data"

    run(go())


def test_read_only_device() -> None:
    async def go() -> None:
        fs, blk = await fresh_fs(4 << 20)
        ok(await fs.create("/a"))
        ro = MemoryBlock("ro", 8192, read_only=True)
        ro._data[:] = blk.data  # a read-only copy of the same volume
        fs2 = ok(await FatFS.connect(ro))
        assert ok(await fs2.listdir("/")) == ["a"]
        r = await fs2.create("/b")
        assert isinstance(r, Error) and r.error == BlockDevice(IsReadOnly())
        assert is_error(await fs2.format(1 << 20), BlockDevice)
        info = await ro.get_info()
        assert info == Info(read_write=False, sector_size=512, size_sectors=8192)

    run(go())


def test_format_refuses_what_cannot_be_made() -> None:
    async def go() -> None:
        blk = MemoryBlock("m", 2048)
        fs = ok(await FatFS.connect(blk))
        assert is_error(await fs.format(2 << 20), NoSpace)  # larger than the device
        assert is_error(await fs.format(16 << 10), UnknownError)  # too small for FAT
        with pytest.raises(ValueError, match="fat"):
            await fs.format(1 << 20, fat=8)
        ok(await fs.format(1 << 20, label="MIRAGE"))
        assert fs.boot_sector is not None and fs.boot_sector.label == b"MIRAGE     "

    run(go())


def test_large_sector_device() -> None:
    async def go() -> None:
        blk = MemoryBlock("m", 8192, sector_size=4096)
        fs = ok(await FatFS.connect(blk))
        ok(await fs.format(32 << 20))
        ok(await fs.mkdir("/d"))
        ok(await fs.create("/d/file name.bin"))
        ok(await fs.write("/d/file name.bin", 1000, b"q" * 20000))
        again = ok(await FatFS.connect(blk))
        assert await read_all(again, "/d/file name.bin") == bytes(1000) + b"q" * 20000

    run(go())


def test_concurrent_calls_are_serialised() -> None:
    async def go() -> None:
        fs, blk = await fresh_fs(20 << 20, 16)
        ok(await fs.mkdir("/c"))

        async def one(i: int) -> None:
            p = f"/c/task {i} file"
            ok(await fs.create(p))
            for k in range(5):
                ok(await fs.write(p, k * 3000, bytes([i]) * 3000))

        await asyncio.gather(*(one(i) for i in range(30)))
        again = await mount(blk.data)
        tree = await read_tree(again, "/c")
        assert tree == {f"task {i} file": bytes([i]) * 15000 for i in range(30)}

    run(go())
