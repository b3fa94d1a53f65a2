"""FatKV: KV_RO over a FAT volume."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from tests.fat_util import fresh_fs, ok

from miragekit import v1
from miragekit.block import MemoryBlock
from miragekit.fs import FatFS, FatKV
from miragekit.result import Error, Ok, UnknownKey
from miragekit.testing import KV_RO_CHECKS, check_kv_ro


def test_reads_files_by_path_and_refuses_everything_else() -> None:
    async def go() -> None:
        fs, blk = await fresh_fs(4 << 20)
        ok(await fs.mkdir("/www"))
        ok(await fs.create("/www/Index.html"))
        ok(await fs.write("/www/Index.html", 0, b"<h1>hello</h1>"))
        kv = ok(await FatKV.connect(blk))
        assert ok(await kv.size("/www/Index.html")) == 14
        got = ok(await kv.read("www/Index.html", 4, 5))
        assert b"".join(bytes(b) for b in got) == b"hello"
        assert ok(await kv.read("/www/Index.html", 14, 5)) == []
        aliases = ["/www/index.html", "WWW/Index.html", "www/../www/Index.html", "./www/Index.html"]
        aliases += ["www//Index.html", "www/Index.html/", "www/./Index.html", "../www/Index.html"]
        for key in ("/www", "/missing", "/www/Index.html/x", "/", *aliases):
            assert await kv.size(key) == Error(UnknownKey(key))
            assert await kv.read(key, 0, 1) == Error(UnknownKey(key))
        assert kv.id() is blk
        again = ok(await FatKV.connect(fs))
        assert again.fs is fs
        with pytest.raises(ValueError, match="offset"):
            await kv.read("/www/Index.html", -1, 1)
        await kv.disconnect()

    asyncio.run(go())


async def fat_store(contents: Mapping[str, bytes]) -> v1.KVRO:
    """A FAT volume holding exactly ``contents`` (directories made as needed)."""
    fs, blk = await fresh_fs(16 << 20)
    for key, value in contents.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            if not isinstance(await fs.stat(d), Ok):
                ok(await fs.mkdir(d))
        ok(await fs.create("/" + key))
        if value:
            ok(await fs.write("/" + key, 0, value))
    return ok(await FatKV.connect(blk))


@pytest.mark.parametrize("check", KV_RO_CHECKS)
def test_fatkv_conformance(check: str) -> None:
    asyncio.run(check_kv_ro(fat_store, only=[check]))


def test_a_device_without_fat_is_refused() -> None:
    async def go() -> None:
        r = await FatKV.connect(MemoryBlock("blank", 2048))
        assert isinstance(r, Error) and isinstance(r.error, UnknownKey)
        fs = ok(await FatFS.connect(MemoryBlock("blank", 2048)))
        assert isinstance(await FatKV.connect(fs), Error)
        ok(await fs.format(1 << 20))
        assert isinstance(await FatKV.connect(fs), Ok)

    asyncio.run(go())
