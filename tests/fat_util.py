"""Helpers shared by the FAT tests: images on MemoryBlock, whole-tree reads, the tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, TypeVar

from miragekit.block import MemoryBlock
from miragekit.clock import Clock
from miragekit.fs import FatFS
from miragekit.result import Error, Ok
from miragekit.v1 import FS

T = TypeVar("T")

Tree = dict[str, "bytes | Tree"]

TOOLS_ENV = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MTOOLS_SKIP_CHECK": "1"}


def block_from_bytes(data: bytes) -> MemoryBlock:
    blk = MemoryBlock("img", len(data) // 512)
    blk.data[:] = data
    return blk


async def fresh_fs(size: int, fat: int | None = None) -> tuple[FatFS, MemoryBlock]:
    blk = MemoryBlock("mem", size // 512)
    fs = ok(await FatFS.connect(blk))
    ok(await fs.format(size, fat=fat))
    return fs, blk


async def mount(data: bytes | memoryview) -> FatFS:
    return ok(await FatFS.connect(block_from_bytes(bytes(data))))


def ok(r: Ok[T] | Error[Any]) -> T:
    return r.expect("expected Ok")


async def read_all(fs: FS, path: str) -> bytes:
    r = await fs.size(path)
    assert isinstance(r, Ok), (path, r)
    got = await fs.read(path, 0, r.value)
    assert isinstance(got, Ok), (path, got)
    return b"".join(bytes(b) for b in got.value)


async def read_tree(fs: FS, path: str = "/") -> Tree:
    out: Tree = {}
    names = await fs.listdir(path)
    assert isinstance(names, Ok), (path, names)
    for name in names.value:
        p = path.rstrip("/") + "/" + name
        st = await fs.stat(p)
        assert isinstance(st, Ok), (p, st)
        out[name] = await read_tree(fs, p) if st.value.directory else await read_all(fs, p)
    return out


def host_tree(root: Path) -> Tree:
    out: Tree = {}
    for p in root.iterdir():
        out[p.name] = host_tree(p) if p.is_dir() else p.read_bytes()
    return out


def fsck(image: Path) -> tuple[int, str]:
    """``fsck.fat -n`` on an image: return code and the findings (header lines dropped)."""
    r = subprocess.run(
        ["fsck.fat", "-n", str(image)], capture_output=True, text=True, env=TOOLS_ENV, check=False
    )
    lines = [
        ln
        for ln in (r.stdout + r.stderr).splitlines()
        if ln.strip() and not ln.startswith("fsck.fat ") and not ln.startswith(str(image) + ":")
    ]
    return r.returncode, "\n".join(lines)


def assert_fsck_clean(image: Path) -> None:
    rc, out = fsck(image)
    assert rc == 0 and out == "", out


def tool(*args: str) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, env=TOOLS_ENV, check=False)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def is_error(r: object, kind: type) -> bool:
    return isinstance(r, Error) and isinstance(r.error, kind)


def FixedClock(t: float) -> Clock:
    """A CLOCK that always says ``t`` (seconds since the epoch, UTC)."""
    return Clock(lambda: t)
