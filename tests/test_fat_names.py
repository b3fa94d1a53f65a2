"""Random long names written by FatFS read back through mtools, and fsck.fat is clean."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fat_util import assert_fsck_clean, fresh_fs, ok, tool

from miragekit.fs._dirent import lookup_key, valid_long_name
from miragekit.result import Error, IsADirectory, NoDirectoryEntry, NotADirectory, UnknownError

pytestmark = pytest.mark.tools

name_chars = st.characters(
    codec="utf-8",
    exclude_categories=("Cs", "Cc", "Co", "Cn", "Zl", "Zp"),
    max_codepoint=0xFFFF,
    exclude_characters='"*/:<>?\\|',
)
names = st.text(name_chars, min_size=1, max_size=40).filter(valid_long_name)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(names, min_size=1, max_size=25, unique_by=lookup_key))
def test_random_names_read_back_through_mtools(chosen: list[str]) -> None:
    async def go() -> bytes:
        fs, blk = await fresh_fs(20 << 20, 16)
        ok(await fs.mkdir("/d"))
        for n in chosen:
            ok(await fs.create("/d/" + n))
            ok(await fs.write("/d/" + n, 0, n.encode()))
        assert sorted(ok(await fs.listdir("/d"))) == sorted(chosen)
        return bytes(blk.data)

    image = asyncio.run(go())
    with tempfile.TemporaryDirectory() as d:
        img = Path(d) / "img"
        img.write_bytes(image)
        assert_fsck_clean(img)
        listed = tool("mdir", "-b", "-i", str(img), "::/d").splitlines()
        assert sorted(x.removeprefix("::/d/") for x in listed) == sorted(chosen)


def test_paths_are_checked_like_the_systems() -> None:
    """A trailing / names a directory, a .. must leave a directory that exists, and a
    name with a lone surrogate (not text) is refused."""

    async def go() -> None:
        fs, _ = await fresh_fs(4 << 20)
        ok(await fs.mkdir("/d"))
        assert await fs.create("/d/g.txt/") == Error(IsADirectory("/d/g.txt/"))
        assert await fs.create("/d/g.txt/.") == Error(IsADirectory("/d/g.txt/."))
        ok(await fs.create("/d/g.txt"))
        assert await fs.stat("/nope/..") == Error(NoDirectoryEntry("/", "nope"))
        assert await fs.listdir("/nope/../d") == Error(NoDirectoryEntry("/", "nope"))
        assert await fs.stat("/d/g.txt/") == Error(NotADirectory("/d/g.txt/"))
        assert await fs.size("/d/g.txt/") == Error(NotADirectory("/d/g.txt/"))
        assert await fs.stat("/d/g.txt/..") == Error(NotADirectory("/d/g.txt"))
        r = await fs.create("/d/x\udcff.txt")
        assert isinstance(r, Error) and isinstance(r.error, UnknownError), r
        assert "invalid file name" in r.error.msg
        ok(await fs.mkdir("/e/"))
        assert ok(await fs.stat("/d/../e/")).directory
        assert sorted(ok(await fs.listdir("/"))) == ["d", "e"]
        assert ok(await fs.listdir("/d")) == ["g.txt"]

    asyncio.run(go())
