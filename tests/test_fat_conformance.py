"""The FS conformance suite on FatFS over MemoryBlock, for each FAT type."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.fat_util import fresh_fs, ok

from miragekit.block import FileBlock
from miragekit.fs import FatFS
from miragekit.result import Ok
from miragekit.testing import FS_CHECKS, check_fs
from miragekit.v1 import FS

VOLUMES = {"fat12": (12, 4 << 20), "fat16": (16, 20 << 20), "fat32": (32, 40 << 20)}


async def remount(old: FS) -> FS:
    """FatFS again on the block device of a filesystem the suite disconnected."""
    assert isinstance(old, FatFS)
    return ok(await FatFS.connect(old.id()))


@pytest.mark.parametrize("volume", sorted(VOLUMES))
@pytest.mark.parametrize("check", FS_CHECKS)
def test_fat_on_memory_block(volume: str, check: str) -> None:
    fat, size = VOLUMES[volume]

    async def make() -> FS:
        fs, _blk = await fresh_fs(size, fat)
        return fs

    asyncio.run(check_fs(make, reconnect=remount, only=[check]))


@pytest.mark.parametrize("check", FS_CHECKS)
def test_fat_on_an_image_file(check: str, tmp_path: Path) -> None:
    """The same suite on a file-backed block device (the CLI's image file), remounting
    by reopening the file."""
    img = tmp_path / "fat.img"
    img.write_bytes(bytes(20 << 20))
    blocks: list[FileBlock] = []

    async def make() -> FS:
        blk = ok(await FileBlock.connect(str(img)))
        blocks.append(blk)
        fs = ok(await FatFS.connect(blk))
        ok(await fs.format(20 << 20))
        return fs

    async def reopen(old: FS) -> FS:
        await blocks[-1].disconnect()
        blk = ok(await FileBlock.connect(str(img)))
        blocks.append(blk)
        return ok(await FatFS.connect(blk))

    async def go() -> None:
        await check_fs(make, reconnect=reopen, only=[check])
        for blk in blocks:
            await blk.disconnect()
        again = ok(await FileBlock.connect(str(img)))
        assert isinstance(await (ok(await FatFS.connect(again))).listdir("/"), Ok)
        await again.disconnect()

    asyncio.run(go())


def test_check_fs_runs_everything() -> None:
    made = 0

    async def make() -> FS:
        nonlocal made
        made += 1
        fs, _ = await fresh_fs(1 << 20)
        return fs

    asyncio.run(check_fs(make, reconnect=remount))
    assert made == len(FS_CHECKS)
