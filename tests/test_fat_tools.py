"""FatFS against the real tools: mkfs.fat + mcopy images read back exactly, and what
FatFS writes passes ``fsck.fat -n`` and reads back through mdir/mtype/mcopy."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from tests.fat_util import (
    Tree,
    assert_fsck_clean,
    fresh_fs,
    host_tree,
    mount,
    ok,
    read_tree,
    tool,
)

from miragekit.fs import FatFS

pytestmark = pytest.mark.tools

SIZES = {12: "4M", 16: "20M", 32: "40M"}

TREE: Tree = {
    "Mixed Case Name.TxT": b"hello\n",
    "UPPER.TXT": b"UP",
    "lower.txt": b"low",
    "empty": b"",
    "a much longer file name than eight dot three allows.markdown": os.urandom(3000),
    "Sub Dir": {
        "naïve café.txt": "unicode ✓".encode(),
        "日本語のファイル名.bin": os.urandom(513),
        "deeper": {
            "big file.bin": os.urandom(70000),
            "x": b"x",
            "Another Dir": {},
        },
    },
    "many": {f"File Number {i:03}.dat": os.urandom(i * 7) for i in range(40)},
}


def write_host(root: Path, tree: Tree) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, v in tree.items():
        if isinstance(v, dict):
            write_host(root / name, v)
        else:
            (root / name).write_bytes(v)


async def write_fs(fs: FatFS, path: str, tree: Tree) -> None:
    for name, v in tree.items():
        p = path.rstrip("/") + "/" + name
        if isinstance(v, dict):
            ok(await fs.mkdir(p))
            await write_fs(fs, p, v)
        else:
            ok(await fs.create(p))
            if v:
                ok(await fs.write(p, 0, v))


def norm(tree: Tree) -> dict[str, object]:
    """Compare trees ignoring order."""
    return {k: norm(v) if isinstance(v, dict) else v for k, v in sorted(tree.items())}


@pytest.mark.parametrize("fat", [12, 16, 32])
def test_reads_mkfs_and_mcopy_images(tmp_path: Path, fat: int) -> None:
    img = tmp_path / "t.img"
    src = tmp_path / "src"
    write_host(src, TREE)
    tool("truncate", "-s", SIZES[fat], str(img))
    tool("mkfs.fat", "-F", str(fat), str(img))
    tool("mcopy", "-s", "-i", str(img), *[str(p) for p in sorted(src.iterdir())], "::/")

    async def go() -> None:
        fs = await mount(img.read_bytes())
        assert fs.fat_bits == fat
        assert norm(await read_tree(fs)) == norm(host_tree(src))
        st = ok(await fs.stat("/MIXED CASE NAME.txt"))
        assert st.filename == "Mixed Case Name.TxT"  # kept as written, matched in any case

    asyncio.run(go())


@pytest.mark.parametrize("fat", [12, 16, 32])
def test_written_images_pass_fsck_and_mtools(tmp_path: Path, fat: int) -> None:
    img = tmp_path / "t.img"
    size = int(SIZES[fat][:-1]) << 20

    async def go() -> None:
        fs, blk = await fresh_fs(size, fat)
        await write_fs(fs, "/", TREE)
        # Remove some and rewrite some, so freed slots and clusters are reused.
        for i in range(0, 40, 3):
            ok(await fs.destroy(f"/many/File Number {i:03}.dat"))
        ok(await fs.write("/many/File Number 004.dat", 10, b"overwritten"))
        ok(await fs.create("/many/a new name after deletes.txt"))
        ok(await fs.write("/many/a new name after deletes.txt", 0, b"new"))
        img.write_bytes(blk.data)

    asyncio.run(go())
    assert_fsck_clean(img)
    out = tmp_path / "out"
    out.mkdir()
    tool("mcopy", "-s", "-i", str(img), "::/*", str(out))
    expect = dict(TREE)
    many = dict(TREE["many"])  # type: ignore[arg-type]
    for i in range(0, 40, 3):
        del many[f"File Number {i:03}.dat"]
    b = bytearray(many["File Number 004.dat"])  # type: ignore[arg-type]
    b[10:21] = b"overwritten"
    many["File Number 004.dat"] = bytes(b)
    many["a new name after deletes.txt"] = b"new"
    expect["many"] = many
    assert norm(host_tree(out)) == norm(expect)
    assert tool("mtype", "-i", str(img), "::/Mixed Case Name.TxT") == "hello\n"
    listing = tool("mdir", "-b", "-i", str(img), "::/Sub Dir").splitlines()
    assert sorted(listing) == sorted(
        ["::/Sub Dir/naïve café.txt", "::/Sub Dir/日本語のファイル名.bin", "::/Sub Dir/deeper/"]
    )


@pytest.mark.parametrize("fat", [12, 16, 32])
def test_writes_on_mkfs_images_pass_fsck(tmp_path: Path, fat: int) -> None:
    img = tmp_path / "t.img"
    tool("truncate", "-s", SIZES[fat], str(img))
    tool("mkfs.fat", "-F", str(fat), str(img))

    async def go() -> None:
        from tests.fat_util import block_from_bytes

        blk = block_from_bytes(img.read_bytes())
        fs = ok(await FatFS.connect(blk))
        await write_fs(fs, "/", {"Sub Dir": TREE["Sub Dir"], "a.txt": b"a" * 5000})
        img.write_bytes(blk.data)

    asyncio.run(go())
    assert_fsck_clean(img)
    assert tool("mtype", "-i", str(img), "::/a.txt") == "a" * 5000


FORMAT_CASES = [
    (size, fat)
    for size in ["40K", "41K", "1440K", "2880K", "1M", "4M", "5M", "9M", "16M", "33M", "100M"]
    for fat in (None, 12, 16, 32)
] + [("256M", None), ("256M", 32), ("300M", 16), ("600M", None), ("600M", 16)]


@pytest.mark.parametrize(("size", "fat"), FORMAT_CASES)
def test_format_picks_what_mkfs_picks(tmp_path: Path, size: str, fat: int | None) -> None:
    import subprocess

    from miragekit.fs._format import FormatError, plan

    img = tmp_path / "t.img"
    tool("truncate", "-s", size, str(img))
    r = subprocess.run(
        ["mkfs.fat", *(["-F", str(fat)] if fat else []), str(img)], capture_output=True, check=False
    )
    try:
        bs = plan(img.stat().st_size, fat_bits=fat)
    except FormatError:
        assert r.returncode != 0
        return
    assert r.returncode == 0
    raw = img.read_bytes()[:512]
    from miragekit.fs import BootSector

    theirs = BootSector.parse(raw)
    for f in (
        "sectors_per_cluster",
        "reserved_sectors",
        "root_entries",
        "total_sectors",
        "media",
        "fat_sectors",
        "fat_bits",
        "sectors_per_track",
        "heads",
        "root_cluster",
        "fsinfo_sector",
        "backup_boot_sector",
    ):
        assert getattr(bs, f) == getattr(theirs, f), f


@pytest.mark.parametrize("fat", [12, 16, 32])
def test_fresh_format_is_clean(tmp_path: Path, fat: int) -> None:
    img = tmp_path / "t.img"

    async def go() -> None:
        _fs, blk = await fresh_fs(int(SIZES[fat][:-1]) << 20, fat)
        img.write_bytes(blk.data)

    asyncio.run(go())
    assert_fsck_clean(img)
    assert tool("mdir", "-b", "-i", str(img), "::/") == ""
