"""``miragekit fat``: mkfs that decides before it writes; devices, partitions and names the
other FAT tools reach (block devices, ``IMAGE@@OFFSET``, NT case flags, truncated images,
trailing dots, ``mkdir -p``, ``ls -l`` dates, ``--no-sync``, trailing slashes)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.fat_util import TOOLS_ENV, FixedClock, assert_fsck_clean, ok, tool
from tests.test_fat_cli import run

from miragekit.block import MemoryBlock, SliceBlock
from miragekit.fs import FatFS, check_format, fat_name
from miragekit.fs._dirent import nt_case
from miragekit.result import Error, Unknown, UnknownError
from miragekit.testing import check_block, check_read_only_block
from miragekit.testing.block import MIN_SECTORS
from miragekit.v1 import Block

MiB = 1 << 20


def one_line_error(rc: int, err: str, *words: str) -> None:
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def sparse(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)


# --- the API underneath ------------------------------------------------------------------


def test_slice_block_is_a_window() -> None:
    async def go() -> None:
        disk = MemoryBlock("disk", 8192)  # 4 MiB
        disk.data[:] = b"\xaa" * len(disk.data)
        part = ok(await SliceBlock.connect((disk, 1 << 20, 2 << 20)))
        assert (await part.get_info()).size_sectors == 4096
        fs = ok(await FatFS.connect(part, clock=FixedClock(981173106.0)))
        ok(await fs.format(2 << 20, label="inside"))
        ok(await fs.create("/readme.txt"))
        ok(await fs.write("/readme.txt", 0, b"hi"))
        assert ok(await fs.listdir("/")) == ["readme.txt"]
        when = ok(await fs.modified("/readme.txt"))
        assert when is not None and when.isoformat() == "2001-02-03T04:05:06"
        assert ok(await fs.modified("/")) is None
        data = bytes(disk.data)
        assert data[: 1 << 20] == data[3 << 20 :] == b"\xaa" * (1 << 20)  # outside: untouched
        with pytest.raises(ValueError):
            await part.read(4096, [bytearray(512)])  # past the window's end
        for off, size in ((100, None), (4 << 20, None), (1 << 20, 4 << 20)):
            r = await SliceBlock.connect((disk, off, size))
            assert isinstance(r, Error) and isinstance(r.error, Unknown)

    asyncio.run(go())


def test_slice_block_passes_the_block_checks() -> None:
    async def make() -> Block:
        disk = MemoryBlock("disk", MIN_SECTORS + 64)
        return ok(await SliceBlock.connect((disk, 16 * 512, MIN_SECTORS * 512)))

    async def reconnect(old: Block) -> Block:
        """The same window over a new MemoryBlock holding the old one's bytes."""
        assert isinstance(old, SliceBlock)
        inner = old._inner
        assert isinstance(inner, MemoryBlock)
        disk = MemoryBlock("disk", MIN_SECTORS + 64)
        disk.data[:] = inner.data
        return ok(await SliceBlock.connect((disk, 16 * 512, MIN_SECTORS * 512)))

    async def make_ro() -> Block:
        disk = MemoryBlock("disk", 64, read_only=True)
        return ok(await SliceBlock.connect((disk, 512, 8 * 512)))

    asyncio.run(check_block(make, reconnect=reconnect))
    asyncio.run(check_read_only_block(make_ro))


def test_truncated_volume_reads_and_refuses_writes() -> None:
    async def go() -> None:
        whole = MemoryBlock("whole", 8192)
        fs = ok(await FatFS.connect(whole))
        ok(await fs.format(4 << 20))
        ok(await fs.create("/a"))
        ok(await fs.write("/a", 0, b"a" * 5000))
        ok(await fs.create("/b"))
        ok(await fs.write("/b", 0, b"b" * (3 << 20)))
        cut = MemoryBlock("cut", 4096)
        cut.data[:] = whole.data[: 2 << 20]
        fs = ok(await FatFS.connect(cut))
        assert fs.truncated and fs.fat_bits == 12
        got = ok(await fs.read("/a", 0, 5000))
        assert b"".join(bytes(b) for b in got) == b"a" * 5000
        r = await fs.read("/b", 0, 3 << 20)  # never a silently short read
        assert isinstance(r, Error) and isinstance(r.error, UnknownError)
        assert "past the end of the truncated image (2097152 bytes)" in r.error.msg
        for w in (fs.create("/c"), fs.destroy("/a"), fs.write("/a", 0, b"x")):
            refused = await w
            assert isinstance(refused, Error)
            assert "truncated (2097152 of 4194304 bytes)" in str(refused.error)
        assert bytes(cut.data) == bytes(whole.data[: 2 << 20])

    asyncio.run(go())


def test_names_flags_and_format_checks() -> None:
    assert nt_case("readme.txt") == 0x18 and nt_case("README.txt") == 0x10
    assert nt_case("readme.TXT") == 0x08 and nt_case("README.TXT") == 0
    assert nt_case("ReadMe.txt") is None and nt_case("long name.txt") is None
    assert nt_case("123.456") == 0 and nt_case("a1") == 0x08
    assert fat_name("notes. .") == "notes" and fat_name("a.b.") == "a.b"
    assert fat_name("...") is None and fat_name("a:b") is None
    assert check_format(4 << 20) is None and check_format(4 << 20, label="OK") is None
    assert "too small" in (check_format(10 << 10) or "")
    assert "bad volume label" in (check_format(4 << 20, label="x" * 12) or "")
    with pytest.raises(ValueError, match="bad volume label"):
        asyncio.run(_format_with_label("a/b"))


async def _format_with_label(label: str) -> None:
    fs = ok(await FatFS.connect(MemoryBlock("m", 8192)))
    await fs.format(4 << 20, label=label)


# --- mkfs --------------------------------------------------------------------------------


def test_mkfs_refuses_before_creating_or_growing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new.img"
    one_line_error(*run(capsys, "mkfs", str(new), "--size", "8M", "--label", "a*b")[::2], "label")
    assert not new.exists()
    one_line_error(*run(capsys, "mkfs", str(new), "--size", "12K")[::2], "too small")
    assert not new.exists()
    one_line_error(*run(capsys, "mkfs", str(new))[::2], "give --size")
    assert not new.exists()
    old = tmp_path / "old.img"
    content = os.urandom(MiB)
    old.write_bytes(content)
    for bad in (["--label", "TWELVE CHARS"], ["--label", "tab\there"], ["--label", "  "]):
        rc, _, err = run(capsys, "mkfs", str(old), "--size", "8M", *bad)
        one_line_error(rc, err, "bad volume label")
    one_line_error(*run(capsys, "mkfs", str(old), "--size", "5G", "--fat", "12")[::2], "FAT12")
    assert old.read_bytes() == content  # neither grown nor touched
    one_line_error(*run(capsys, "mkfs", str(tmp_path), "--size", "1M")[::2], "is a directory")


@pytest.mark.kernel
def test_mkfs_failing_midway_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk that fills during the format: the new file goes, a grown one shrinks back."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(small)], check=True)
    try:
        img = small / "a.img"
        rc, _, err = run(capsys, "mkfs", str(img), "--size", "64M")
        one_line_error(rc, err, "No space left on device")
        assert not img.exists()
        img.write_bytes(b"keep" * 1024)
        rc, _, err = run(capsys, "mkfs", str(img), "--size", "64M")
        one_line_error(rc, err, "No space left on device")
        assert img.stat().st_size == 4096  # shrunk back (its start is overwritten: a format)
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.tools
def test_mkfs_rounds_shrinks_and_defaults_to_the_file_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    assert run(capsys, "mkfs", str(img), "--size", "1000001")[0] == 0
    assert img.stat().st_size == 1000001 // 512 * 512
    assert_fsck_clean(img)
    sparse(img, 64 * MiB)
    assert run(capsys, "mkfs", str(img), "--size", "64M")[0] == 0
    assert run(capsys, "mkfs", str(img), "--size", "1440K")[0] == 0
    assert img.stat().st_size == 1440 * 1024
    assert "sectors per track: 18" in tool("minfo", "-i", str(img))  # floppy geometry
    assert_fsck_clean(img)
    os.truncate(img, 20 * MiB)
    assert run(capsys, "mkfs", str(img))[0] == 0  # no --size: the file's own size
    assert img.stat().st_size == 20 * MiB
    assert "FAT16" in tool("minfo", "-i", str(img))
    assert_fsck_clean(img)


@pytest.mark.tools
@pytest.mark.parametrize("fat", ["12", "16", "32"])
def test_mkfs_label_is_in_the_root_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fat: str
) -> None:
    img = tmp_path / "a.img"
    size = {"12": "4M", "16": "20M", "32": "40M"}[fat]
    rc = run(capsys, "mkfs", str(img), "--size", size, "--fat", fat, "--label", "Mirage Disk")[0]
    assert rc == 0
    assert tool("mlabel", "-s", "-i", str(img)).strip() == "Volume label is MIRAGE DISK"
    r = subprocess.run(["fatlabel", str(img)], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "MIRAGE DISK"
    assert "Volume in drive : is MIRAGE DISK" in tool("mdir", "-i", str(img), "::/")
    assert_fsck_clean(img)
    assert run(capsys, "ls", str(img))[1] == ""  # the label is no file
    src = tmp_path / "f.txt"
    src.write_text("x")
    assert run(capsys, "put", str(img), str(src), "/")[0] == 0
    assert run(capsys, "ls", str(img))[1] == "f.txt\n"
    assert tool("mlabel", "-s", "-i", str(img)).strip() == "Volume label is MIRAGE DISK"
    assert_fsck_clean(img)


# --- block devices and partitions --------------------------------------------------------


@contextmanager
def loop_device(image: Path) -> Iterator[str]:
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.mark.kernel
@pytest.mark.tools
def test_block_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "disk.img"
    sparse(img, 16 * MiB)
    src = tmp_path / "hello.txt"
    src.write_text("over a loop device\n")
    with loop_device(img) as dev:
        rc, _, err = run(capsys, "mkfs", dev, "--size", "32M")
        one_line_error(rc, err, "do not fit in 16777216 bytes")
        assert run(capsys, "mkfs", dev, "--label", "LOOPED")[0] == 0  # the device's size
        assert run(capsys, "put", dev, str(src), "/")[0] == 0
        assert run(capsys, "mkdir", "-p", dev, "/a/b")[0] == 0
        assert run(capsys, "ls", dev)[1] == "hello.txt\na\n"
        assert run(capsys, "cat", dev, "/hello.txt")[1] == "over a loop device\n"
    assert img.stat().st_size == 16 * MiB
    assert tool("mtype", "-i", str(img), "::/hello.txt") == "over a loop device\n"
    assert_fsck_clean(img)


def _partitioned(tmp_path: Path) -> Path:
    """A 48 MiB disk: partition 1 at 1 MiB (24 MiB, FAT by mkfs.fat --offset), 2 after it."""
    img = tmp_path / "disk.img"
    sparse(img, 48 * MiB)
    table = "label: dos\nstart=2048, size=49152, type=c\nstart=51200, type=c\n"
    subprocess.run(["sfdisk", "-q", str(img)], input=table, text=True, check=True)
    subprocess.run(
        ["mkfs.fat", "-n", "PART1", "--offset", "2048", str(img), str(24 * 1024)],
        check=True,
        capture_output=True,
    )
    return img


def _extract(img: Path, offset: int, size: int, out: Path) -> Path:
    with img.open("rb") as f:
        f.seek(offset)
        out.write_bytes(f.read(size))
    return out


@pytest.mark.tools
def test_partition_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _partitioned(tmp_path)
    table = subprocess.run(["sfdisk", "-d", str(img)], capture_output=True, text=True).stdout
    p1, p2 = f"{img}@@1M", f"{img}@@51200S"
    src = tmp_path / "notes.txt"
    src.write_text("inside partition one\n")
    assert run(capsys, "put", p1, str(src), "/")[0] == 0
    assert run(capsys, "ls", p1)[1] == "notes.txt\n"
    assert tool("mtype", "-i", p1, "::/notes.txt") == "inside partition one\n"
    tool("mcopy", "-i", p1, str(src), "::/by mtools.txt")
    assert run(capsys, "cat", p1, "/BY MTOOLS.TXT")[1] == "inside partition one\n"
    # the second partition: our mkfs inside it, the rest of the disk untouched
    before = img.read_bytes()
    assert run(capsys, "mkfs", p2, "--label", "PART2")[0] == 0
    after = img.read_bytes()
    assert after[: 51200 * 512] == before[: 51200 * 512]
    assert img.stat().st_size == 48 * MiB
    assert "Volume label is PART2" in tool("mlabel", "-s", "-i", p2)
    assert run(capsys, "put", p2, str(src), "/")[0] == 0
    assert tool("mdir", "-b", "-i", p2, "::/").split() == ["::/notes.txt"]
    assert (
        subprocess.run(["sfdisk", "-d", str(img)], capture_output=True, text=True).stdout == table
    )
    assert_fsck_clean(_extract(img, MiB, 24 * MiB, tmp_path / "p1.img"))
    assert_fsck_clean(_extract(img, 51200 * 512, 23 * MiB, tmp_path / "p2.img"))
    for bad, words in [
        (f"{img}@@1000", ("not a multiple of the 512-byte sector size",)),
        (f"{img}@@1G", ("past the end",)),
        (f"{img}@@lots", ("not an offset",)),
    ]:
        one_line_error(*run(capsys, "ls", bad)[::2], *words)


@pytest.mark.tools
@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_mkfs_of_a_partition_stops_at_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str
) -> None:
    """Not the last partition: mkfs fills it (from the MBR or GPT), not the rest of the disk."""
    img = tmp_path / "disk.img"
    sparse(img, 48 * MiB)
    table = f"label: {label}\nstart=2048, size=20480\nstart=26624, size=20480\n"
    subprocess.run(["sfdisk", "-q", str(img)], input=table, text=True, check=True)
    with img.open("r+b") as f:
        f.seek(26624 * 512)
        f.write(b"second partition" * 64)
    before = img.read_bytes()
    rc, _, err = run(capsys, "mkfs", f"{img}@@1M", "--size", "11M")
    one_line_error(rc, err, "larger than its partition (10485760 bytes)")
    assert img.read_bytes() == before
    assert run(capsys, "mkfs", f"{img}@@2048S", "--label", "FIRST")[0] == 0
    after = img.read_bytes()
    assert after[11 * MiB :] == before[11 * MiB :]  # the second partition and GPT backup
    assert after[: 1 * MiB] == before[: 1 * MiB]  # the table
    vol = _extract(img, MiB, 10 * MiB, tmp_path / "p1.img")
    assert_fsck_clean(vol)
    assert "Volume label is FIRST" in tool("mlabel", "-s", "-i", str(vol))
    boot = vol.read_bytes()[:512]
    total = int.from_bytes(boot[19:21], "little") or int.from_bytes(boot[32:36], "little")
    assert 20000 < total <= 20480  # the partition's sectors (less a partial track)


# --- names, listing, writing options -----------------------------------------------------


@pytest.mark.tools
def test_lowercase_83_names_use_nt_case_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "floppy.img"
    assert run(capsys, "mkfs", str(img), "--size", "1440K")[0] == 0
    src = tmp_path / "src"
    src.mkdir()
    names = [f"file{i:03}.txt" for i in range(221)] + ["README.txt", "notes.TXT", "x_1.y"]
    for n in names:
        (src / n).write_bytes(n.encode())
    rc, _, err = run(capsys, "put", str(img), str(src) + "/", "/")  # 224 files: the root's size
    assert rc == 0, err
    assert run(capsys, "ls", str(img))[1].splitlines() == sorted(names)
    listing = tool("mdir", "-i", str(img), "::/")
    assert "file000  txt" in listing and "file220  txt" in listing  # no long name beside
    assert "README   txt" in listing and "notes    TXT" in listing and "x_1      y" in listing
    assert "224 files" in listing
    raw = img.read_bytes()
    root = 19 * 512  # FAT12 floppy: 1 reserved + 2 x 9 FAT sectors
    slots = [raw[root + 32 * i : root + 32 * i + 32] for i in range(224)]  # all used
    flags = {s[:11]: s[12] for s in slots}
    assert len(flags) == 224 and all(s[11] == 0x20 for s in slots)  # no long-name slot
    assert flags[b"FILE000 TXT"] == 0x18 and flags[b"README  TXT"] == 0x10  # DIR_NTRes bits
    assert flags[b"NOTES   TXT"] == 0x08
    assert_fsck_clean(img)
    # a name that mixes cases inside its base still needs a long-name slot: 2 in all
    mixed = tmp_path / "Mixed.txt"
    mixed.write_text("m")
    assert run(capsys, "rm", str(img), "/file000.txt")[0] == 0
    one_line_error(*run(capsys, "put", str(img), str(mixed), "/")[::2], "no space")
    assert run(capsys, "rm", str(img), "/file001.txt")[0] == 0
    assert run(capsys, "put", str(img), str(mixed), "/")[0] == 0
    assert re.search(r"MIXED    TXT .* Mixed\.txt", tool("mdir", "-i", str(img), "::/"))
    assert_fsck_clean(img)


@pytest.mark.tools
def test_ls_long_shows_write_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.img"
    assert run(capsys, "mkfs", str(img), "--size", "2M")[0] == 0
    src = tmp_path / "old.txt"
    src.write_text("hello\n")
    os.utime(src, (981173106, 981173106))  # 2001-02-03 04:05:06 UTC
    env = {**TOOLS_ENV, "TZ": "UTC"}
    subprocess.run(["mcopy", "-m", "-i", str(img), str(src), "::/"], env=env, check=True)
    subprocess.run(["mmd", "-i", str(img), "::/Dir"], env=env, check=True)
    out = run(capsys, "ls", "-l", str(img))[1].splitlines()
    assert out[0] == "         6  2001-02-03 04:05  old.txt"
    assert re.fullmatch(r"     <DIR>  \d{4}-\d\d-\d\d \d\d:\d\d  Dir", out[1]), out
    assert run(capsys, "ls", "-l", str(img), "/old.txt")[1] == out[0] + "\n"


def test_mkdir_parents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = str(tmp_path / "a.img")
    assert run(capsys, "mkfs", img, "--size", "2M")[0] == 0
    assert run(capsys, "mkdir", "-p", img, "/a/b/c")[0] == 0
    assert run(capsys, "mkdir", "-p", img, "/a/b/c")[0] == 0  # exists: fine
    assert run(capsys, "mkdir", "-p", img, "/a/b/d")[0] == 0
    assert run(capsys, "ls", img, "/a/b")[1] == "c\nd\n"
    one_line_error(*run(capsys, "mkdir", img, "/a")[::2], "/a: already exists")
    f = tmp_path / "f"
    f.write_text("x")
    assert run(capsys, "put", img, str(f), "/a/file")[0] == 0
    one_line_error(*run(capsys, "mkdir", "-p", img, "/a/file/x")[::2], "/a/file: not a directory")


@pytest.mark.tools
def test_no_sync_writers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.img"
    assert run(capsys, "mkfs", "--no-sync", str(img), "--size", "8M")[0] == 0
    src = tmp_path / "t"
    (src / "d").mkdir(parents=True)
    data = [os.urandom(3000) for _ in range(50)]
    for i, d in enumerate(data):
        (src / "d" / f"f{i}").write_bytes(d)
    assert run(capsys, "put", "--no-sync", str(img), str(src), "/")[0] == 0
    assert run(capsys, "mkdir", "--no-sync", "-p", str(img), "/x/y")[0] == 0
    assert run(capsys, "rm", "--no-sync", str(img), "/t/d/f0")[0] == 0
    assert len(tool("mdir", "-b", "-i", str(img), "::/t/d").split()) == 49
    r = subprocess.run(["mtype", "-i", str(img), "::/t/d/f7"], env=TOOLS_ENV, capture_output=True)
    assert r.stdout == data[7]
    assert_fsck_clean(img)


# --- truncated images --------------------------------------------------------------------


@pytest.mark.tools
def test_truncated_image_reads_up_to_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    assert run(capsys, "mkfs", str(img), "--size", "8M")[0] == 0
    small, filler, big = tmp_path / "small.txt", tmp_path / "filler", tmp_path / "big.bin"
    small.write_text("near the start\n")
    filler.write_bytes(bytes(3 * MiB))
    big.write_bytes(os.urandom(3 * MiB))
    for f in (small, filler, big):
        assert run(capsys, "put", str(img), str(f), "/")[0] == 0
    os.truncate(img, 3 * MiB)  # big.bin lies wholly past the end
    whole = img.read_bytes()
    assert "small.txt" in tool("mdir", "-b", "-i", str(img), "::/")  # mtools reads it too
    assert run(capsys, "ls", str(img))[1] == "small.txt\nfiller\nbig.bin\n"
    assert run(capsys, "cat", str(img), "/small.txt")[1] == "near the start\n"
    rc, out, err = run(capsys, "cat", str(img), "/filler")  # cut by the end: what is there
    one_line_error(rc, err, "past the end of the truncated image")
    assert 2 * MiB < len(out) < 3 * MiB and out == "\0" * len(out)
    rc, _, err = run(capsys, "cat", str(img), "/big.bin")
    one_line_error(rc, err, "past the end of the truncated image")
    rc, _, err = run(capsys, "get", str(img), "/big.bin", str(tmp_path / "out.bin"))
    one_line_error(rc, err, "past the end of the truncated image")
    rc, _, err = run(capsys, "get", str(img), "/filler", str(tmp_path / "out.bin"))
    one_line_error(rc, err, "past the end of the truncated image")
    assert not (tmp_path / "out.bin").exists()  # a failed copy leaves no partial file
    dest = tmp_path / "dest"
    dest.mkdir()
    rc, _, err = run(capsys, "get", str(img), "/", str(dest))  # the rest goes on
    assert rc == 1 and err.count("past the end of the truncated image") == 2, err
    assert sorted(os.listdir(dest)) == ["small.txt"]
    for argv in (("put", str(img), str(small), "/again.txt"), ("rm", str(img), "/small.txt")):
        one_line_error(*run(capsys, *argv)[::2], "truncated", "read-only")
    assert img.read_bytes() == whole
    os.truncate(img, 2048)
    one_line_error(*run(capsys, "ls", str(img))[::2], "truncated")


@pytest.mark.kernel
def test_get_removes_a_copy_that_fails_on_a_full_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    assert run(capsys, "mkfs", str(img), "--size", "8M")[0] == 0
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a small one").write_text("fits\n")
    (tree / "too big").write_bytes(os.urandom(MiB))
    assert run(capsys, "put", str(img), str(tree), "/")[0] == 0
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        rc, _, err = run(capsys, "get", str(img), "/tree/too big", str(small / "big"))
        one_line_error(rc, err, f"{small / 'big'}: No space left on device")
        assert os.listdir(small) == []
        rc, _, err = run(capsys, "get", str(img), "/tree", str(small))
        one_line_error(rc, err, "/tree/too big: No space left on device")
        assert os.listdir(small / "tree") == ["a small one"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


# --- put: host names and targets ---------------------------------------------------------


@pytest.mark.tools
def test_trailing_dots_and_spaces_as_mcopy_stores_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    (src / "dir. ").mkdir(parents=True)
    for n in ["dot.", "space ", "a.b.", "dir. /inner. ", "plain"]:
        (src / n).write_text(n)
    ours, theirs = tmp_path / "ours.img", tmp_path / "theirs.img"
    for img in (ours, theirs):
        assert run(capsys, "mkfs", str(img), "--size", "2M")[0] == 0
    rc, _, err = run(capsys, "put", str(ours), str(src) + "/", "/")
    assert rc == 0, err
    files = [str(src / n) for n in sorted(os.listdir(src))]
    subprocess.run(["mcopy", "-s", "-i", str(theirs), *files, "::/"], env=TOOLS_ENV, check=True)

    def names(img: Path) -> set[str]:
        return {n.lower() for n in tool("mdir", "-b", "-s", "-i", str(img), "::/").split("\n")}

    assert names(ours) == {
        "",
        "::/a.b",
        "::/dir/",
        "::/dir/inner",
        "::/dot",
        "::/plain",
        "::/space",
    }
    # mcopy drops them too, except that it keeps a long name's trailing dot ("a.b."),
    # which Windows cannot open; we store "a.b" as Windows would.
    assert names(theirs) == names(ours) - {"::/a.b"} | {"::/a.b."}
    assert run(capsys, "cat", str(ours), "/dir/inner")[1] == "dir. /inner. "
    assert_fsck_clean(ours)
    # what FAT cannot hold is skipped with a reason; the rest goes on, the status says so
    (src / "...").write_text("only dots")
    (src / "plain.").write_text("clash")
    (src / "zz").write_text("after the bad ones")
    (src / "co:lon").write_text("a character FAT names cannot hold")
    fresh = tmp_path / "fresh.img"
    assert run(capsys, "mkfs", str(fresh), "--size", "2M")[0] == 0
    rc, _, err = run(capsys, "put", str(fresh), str(src), "/")
    assert rc == 1
    assert f"{src / '...'}: FAT names cannot hold this name (nothing left" in err
    assert f"{src / 'plain.'}: stored as 'plain', same name as 'plain' in the image" in err
    assert f"{src / 'co:lon'}: FAT names cannot hold this name (a name with ':'), skipped" in err
    assert run(capsys, "cat", str(fresh), "/src/zz")[1] == "after the bad ones"
    assert run(capsys, "cat", str(fresh), "/src/plain")[1] == "plain"
    assert_fsck_clean(fresh)


def test_put_directory_contents_and_trailing_slash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = str(tmp_path / "a.img")
    assert run(capsys, "mkfs", img, "--size", "2M")[0] == 0
    src = tmp_path / "Site"
    (src / "css").mkdir(parents=True)
    (src / "index.html").write_text("<h1>hi</h1>")
    (src / "css" / "a.css").write_text("a{}")
    assert run(capsys, "put", img, str(src) + "/", "/")[0] == 0  # DIR/: the contents
    assert run(capsys, "ls", img)[1] == "css\nindex.html\n"
    assert run(capsys, "put", img, str(src), "/")[0] == 0  # DIR: the directory itself
    assert run(capsys, "ls", img)[1] == "css\nindex.html\nSite\n"
    assert run(capsys, "put", img, f"{src}/.", "/Site")[0] == 0  # DIR/. is DIR/
    assert run(capsys, "ls", img, "/Site")[1] == "css\nindex.html\n"
    f = src / "index.html"
    one_line_error(*run(capsys, "put", img, str(f), "/newdir/")[::2], "/newdir/: no such directory")
    one_line_error(
        *run(capsys, "put", img, str(f), "/index.html/")[::2], "/index.html/: not a directory"
    )
    assert run(capsys, "ls", img)[1] == "css\nindex.html\nSite\n"  # nothing was made
    assert run(capsys, "mkdir", img, "/newdir")[0] == 0
    assert run(capsys, "put", img, str(f), "/newdir/")[0] == 0
    assert run(capsys, "ls", img, "/newdir")[1] == "index.html\n"
    assert run(capsys, "put", img, str(f), "/newfile")[0] == 0  # no slash: a file's name
    assert run(capsys, "cat", img, "/newfile")[1] == "<h1>hi</h1>"
