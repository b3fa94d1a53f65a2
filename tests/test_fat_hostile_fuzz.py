"""Hostile FAT images: random corruption of the boot sector, the FATs and directory
entries (cluster loops, clusters out of range, lying sizes, flipped attributes, broken
names) of volumes made by FatFS.format, then a read-only walk of the whole tree.

Every call returns ``Ok`` or an ``Error`` value, nothing raises, nothing hangs (the walk
runs in a thread with a time limit, so a loop without a bound fails the test instead of
stalling it), and the walk writes nothing: the device counts writes, and the image's
bytes are compared afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miragekit.block import MemoryBlock
from miragekit.fs import FatFS
from miragekit.fs._bpb import BootSector
from miragekit.result import Error, Ok
from miragekit.v1 import Buffer

WALK_SECONDS = 20.0
MAX_READ = 1 << 20  # a lying size may claim 4 GiB: read at most this much of a file
MAX_VISITS = 400


class CountingBlock(MemoryBlock):
    """A MemoryBlock that counts write calls (a read-only walk must make none)."""

    writes = 0

    async def write(self, sector_start: int, buffers: Sequence[Buffer]) -> Any:
        self.writes += 1
        return await super().write(sector_start, buffers)


TREE: dict[str, bytes] = {
    "/empty.txt": b"",
    "/one.bin": b"1",
    "/a/small.txt": b"small file\n" * 50,
    "/a/b/c/deep.bin": bytes(range(256)) * 20,
    "/a/A long name with spaces.txt": b"long " * 1000,
    "/big.bin": bytes(i * 7 & 0xFF for i in range(70_000)),
}


async def build(size: int, fat: int) -> bytes:
    blk = MemoryBlock("img", size // 512)
    fs = await FatFS.connect(blk)
    assert isinstance(fs, Ok), fs
    assert await fs.value.format(size, fat=fat) == Ok(None)
    for path, data in TREE.items():
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            await fs.value.mkdir("/" + "/".join(parts[:i]))
        assert await fs.value.create(path) == Ok(None), path
        assert await fs.value.write(path, 0, data) == Ok(None), path
    await fs.value.disconnect()
    return bytes(blk.data)


SIZES = {12: 1 << 20, 16: 16 << 20, 32: 4 << 20}
IMAGES = {fat: asyncio.run(build(size, fat)) for fat, size in SIZES.items()}


def walk_image(image: bytes) -> tuple[int, int, bytes]:
    """Mount ``image`` and walk all of it read-only in a thread with a time limit;
    (calls made, writes made, the image's bytes afterwards). Fails on any exception, on
    a result that is neither Ok nor Error, or when the walk does not end in time."""
    blk = CountingBlock("hostile", len(image) // 512)
    blk.data[:] = image
    calls = 0
    failure: list[BaseException] = []

    def result(r: Any, what: str) -> Any:
        nonlocal calls
        calls += 1
        assert isinstance(r, Ok | Error), (what, r)
        return r.value if isinstance(r, Ok) else None

    async def walk() -> None:
        fs = result(await FatFS.connect(blk), "connect")
        if fs is None:
            return
        todo, seen = ["/"], 0
        while todo and seen < MAX_VISITS:
            path = todo.pop()
            seen += 1
            names = result(await fs.listdir(path), f"listdir {path}")
            for name in names or []:
                p = path.rstrip("/") + "/" + name
                st_ = result(await fs.stat(p), f"stat {p}")
                if st_ is None:
                    continue
                if st_.directory:
                    if p.count("/") < 12:
                        todo.append(p)
                    continue
                size = result(await fs.size(p), f"size {p}")
                if size is not None:
                    data = result(await fs.read(p, 0, min(size, MAX_READ)), f"read {p}")
                    if data is not None:
                        assert sum(len(b) for b in data) <= min(size, MAX_READ)
                result(await fs.read(p, 2**31, 10), f"read far {p}")
        result(await fs.read("/a/../..", 0, 1), "read ..")
        await fs.disconnect()

    def thread() -> None:
        try:
            asyncio.run(walk())
        except BaseException as e:  # reported to the test below
            failure.append(e)

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    t.join(WALK_SECONDS)
    assert not t.is_alive(), f"the walk did not end within {WALK_SECONDS} s (a loop?)"
    if failure:
        raise failure[0]
    return calls, blk.writes, bytes(blk.data)


# --- corruption -------------------------------------------------------------------------


def fat_entry_set(img: bytearray, b: BootSector, cluster: int, value: int, copy: int) -> None:
    base = (b.first_fat_sector + copy * b.fat_sectors) * b.bytes_per_sector
    if b.fat_bits == 12:
        off = base + cluster * 3 // 2
        old = int.from_bytes(img[off : off + 2], "little")
        v = value & 0xFFF
        new = (old & 0x000F) | (v << 4) if cluster & 1 else (old & 0xF000) | v
        img[off : off + 2] = new.to_bytes(2, "little")
    elif b.fat_bits == 16:
        off = base + cluster * 2
        img[off : off + 2] = (value & 0xFFFF).to_bytes(2, "little")
    else:
        off = base + cluster * 4
        img[off : off + 4] = (value & 0x0FFFFFFF).to_bytes(4, "little")


def dir_slots(img: bytes, b: BootSector) -> list[int]:
    """Byte offsets of the live 32-byte entries in the root directory and the first data
    clusters (where format and the tree above put the subdirectories)."""
    starts = [b.root_dir_sector * b.bytes_per_sector] if b.fat_bits != 32 else []
    span = b.root_dir_sectors * b.bytes_per_sector if b.fat_bits != 32 else 0
    regions = [(s, s + span) for s in starts]
    for c in range(2, 40):
        s = b.cluster_sector(c) * b.bytes_per_sector
        regions.append((s, s + b.cluster_bytes))
    out = []
    for lo, hi in regions:
        for off in range(lo, min(hi, len(img)), 32):
            if img[off] not in (0x00, 0xE5) and img[off + 11] != 0x0F:
                out.append(off)
    return out


@st.composite
def corruption(draw: Any, image: bytes) -> bytearray:
    img = bytearray(image)
    b = BootSector.parse(image[:512])
    slots = dir_slots(image, b)
    top = b.cluster_count + 1
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["boot", "fat", "fat", "dirent", "dirent", "raw"]))
        if kind == "boot":
            i = draw(st.integers(11, 89))  # the BPB and the extended fields
            img[i] = draw(st.sampled_from([0, 1, 2, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif kind == "fat":
            c = draw(st.integers(2, min(top, 300)))
            value = draw(
                st.sampled_from(
                    [0, 1, c, c - 1, 2, top, top + 1, 0xFF7, 0xFFF7, 0x0FFFFFF7, 0xFFFF, 0x0FFFFFFF]
                )
                | st.integers(0, 0x0FFFFFFF)
            )
            fat_entry_set(img, b, c, value, draw(st.sampled_from([0, 0, 1])))
        elif kind == "dirent" and slots:
            off = draw(st.sampled_from(slots))
            field = draw(st.sampled_from(["cluster", "size", "attr", "name"]))
            if field == "cluster":
                c = draw(st.sampled_from([0, 1, 2, top, top + 1, 0xFFFF, 0x0FFFFFF8]))
                img[off + 26 : off + 28] = (c & 0xFFFF).to_bytes(2, "little")
                img[off + 20 : off + 22] = (c >> 16 & 0xFFFF).to_bytes(2, "little")
            elif field == "size":
                n = draw(st.sampled_from([0, 1, 511, 4096, 2**31, 2**32 - 1]))
                img[off + 28 : off + 32] = n.to_bytes(4, "little")
            elif field == "attr":
                img[off + 11] ^= draw(st.sampled_from([0x10, 0x08, 0x0F, 0x01, 0x04]))
            else:
                i = draw(st.integers(0, 10))
                img[off + i] = draw(st.sampled_from([0x00, 0x05, 0x2E, 0x2F, 0x5C, 0xE5, 0x20]))
        else:
            i = draw(st.integers(0, min(len(img), 64 * 1024) - 1))
            img[i] = draw(st.integers(0, 255))
    return img


@pytest.mark.parametrize("fat", sorted(IMAGES))
def test_the_pristine_images_walk_clean(fat: int) -> None:
    calls, writes, after = walk_image(IMAGES[fat])
    assert calls > 3 * len(TREE) and writes == 0 and after == IMAGES[fat]


@settings(max_examples=200)
@given(st.sampled_from(sorted(IMAGES)).flatmap(lambda fat: corruption(IMAGES[fat])))
def test_a_hostile_image_is_walked_without_raising_hanging_or_writing(img: bytearray) -> None:
    calls, writes, after = walk_image(bytes(img))
    assert calls >= 1
    assert writes == 0 and after == img
