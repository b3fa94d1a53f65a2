"""The FS conformance suite on FatFS over MemoryBlock, for each FAT type."""

from __future__ import annotations

import asyncio

import pytest
from tests.fat_util import fresh_fs

from miragekit.testing import FS_CHECKS, check_fs
from miragekit.v1 import FS

VOLUMES = {"fat12": (12, 4 << 20), "fat16": (16, 20 << 20), "fat32": (32, 40 << 20)}


@pytest.mark.parametrize("volume", sorted(VOLUMES))
@pytest.mark.parametrize("check", sorted(FS_CHECKS))
def test_fat_on_memory_block(volume: str, check: str) -> None:
    fat, size = VOLUMES[volume]

    async def go() -> None:
        fs, _blk = await fresh_fs(size, fat)
        await FS_CHECKS[check](fs)

    asyncio.run(go())


def test_check_fs_runs_everything() -> None:
    made = 0

    async def make() -> FS:
        nonlocal made
        made += 1
        fs, _ = await fresh_fs(1 << 20)
        return fs

    asyncio.run(check_fs(make))
    assert made == len(FS_CHECKS)
