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
