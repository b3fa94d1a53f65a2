"""KV_RO: DirKV and TarKV through the conformance suite, plus escapes and error paths."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tarfile
from collections.abc import Mapping
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from miragekit import io_page, v1
from miragekit.kv import DirKV, KVListable, TarKV
from miragekit.result import Error, Ok, UnknownKey
from miragekit.testing import check_kv_ro
from miragekit.testing.kv import default_contents

_n = count()


def write_tree(root: Path, contents: Mapping[str, bytes]) -> None:
    for key, value in contents.items():
        p = root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(value)


def write_tar(path: Path, contents: Mapping[str, bytes], mode: str) -> None:
    with tarfile.open(str(path), mode) as tar:  # type: ignore[call-overload]
        for key, value in contents.items():
            info = tarfile.TarInfo(key)
            info.size = len(value)
            tar.addfile(info, io.BytesIO(value))


async def connect_dir(path: Path) -> DirKV:
    return (await DirKV.connect(str(path))).expect(f"connect {path}")


async def connect_tar(path: Path) -> TarKV:
    return (await TarKV.connect(str(path))).expect(f"connect {path}")


def test_conformance_declared() -> None:
    d: type[v1.KVRO] = DirKV
    t: type[v1.KVRO] = TarKV
    assert d is not t


# --- the conformance suite against every implementation ---------------------------------


def test_dirkv_conformance(tmp_path: Path) -> None:
    async def make(contents: Mapping[str, bytes]) -> v1.KVRO:
        root = tmp_path / f"store{next(_n)}"
        root.mkdir()
        write_tree(root, contents)
        return await connect_dir(root)

    asyncio.run(check_kv_ro(make))


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz", "w|gz"])
def test_tarkv_conformance(tmp_path: Path, mode: str) -> None:
    async def make(contents: Mapping[str, bytes]) -> v1.KVRO:
        path = tmp_path / f"store{next(_n)}.tar"
        write_tar(path, contents, mode)
        return await connect_tar(path)

    asyncio.run(check_kv_ro(make))


def test_tarkv_conformance_with_gnu_tar(tmp_path: Path) -> None:
    """An archive made by the real ``tar`` tool (directories, ./ prefixes, gzip)."""

    async def make(contents: Mapping[str, bytes]) -> v1.KVRO:
        src = tmp_path / f"src{next(_n)}"
        src.mkdir()
        write_tree(src, contents)
        path = tmp_path / f"gnu{next(_n)}.tar.gz"
        subprocess.run(["tar", "-czf", str(path), "-C", str(src), "."], check=True)
        return await connect_tar(path)

    asyncio.run(check_kv_ro(make))


def test_suite_catches_a_wrong_store(tmp_path: Path) -> None:
    """The suite is not vacuous: a store that serves one wrong byte fails it."""

    async def make(contents: Mapping[str, bytes]) -> v1.KVRO:
        bad = dict(contents)
        bad["a/d.bin"] = bad["a/d.bin"][:-1] + b"?"
        root = tmp_path / f"bad{next(_n)}"
        root.mkdir()
        write_tree(root, bad)
        return await connect_dir(root)

    with pytest.raises(AssertionError):
        asyncio.run(check_kv_ro(make))


# --- DirKV: no escape from the root ------------------------------------------------------


@pytest.fixture
def escape_tree(tmp_path: Path) -> Path:
    """root/ with links pointing inside and outside, and a secret next to it."""
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    root = tmp_path / "root"
    write_tree(root, {"inside.txt": b"inside", "sub/deep.txt": b"deep"})
    (root / "link_in").symlink_to("inside.txt")
    (root / "link_out").symlink_to(tmp_path / "secret.txt")
    (root / "link_out_rel").symlink_to("../secret.txt")
    (root / "dir_out").symlink_to(tmp_path)
    (root / "sub" / "up").symlink_to("..")
    (root / "loop").symlink_to("loop")
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.parametrize(
    "key",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "sub/../inside.txt",  # even an inside ".." is refused
        "link_out",
        "link_out_rel",
        "dir_out/secret.txt",
        "loop",
        "fifo",
        "sub",
        "sub/up",
        "",
        "/",
        ".",
        "inside.txt\0",
    ],
)
def test_dirkv_refuses_escapes_and_non_files(escape_tree: Path, key: str) -> None:
    async def main() -> None:
        kv = await connect_dir(escape_tree)
        assert await kv.read(key, 0, 100) == Error(UnknownKey(key))
        assert await kv.size(key) == Error(UnknownKey(key))

    asyncio.run(main())


def test_dirkv_absolute_keys_are_relative_to_the_root(escape_tree: Path) -> None:
    secret = escape_tree.parent / "secret.txt"

    async def main() -> None:
        kv = await connect_dir(escape_tree)
        assert await kv.size(str(secret)) == Error(UnknownKey(str(secret)))
        assert await kv.size("/etc/passwd") == Error(UnknownKey("/etc/passwd"))
        assert await kv.size("/inside.txt") == Ok(6)
        assert await kv.size("/sub/deep.txt") == Ok(4)
        for alias in ("./sub//deep.txt", "sub//deep.txt", "./inside.txt", "inside.txt/"):
            assert await kv.size(alias) == Error(UnknownKey(alias))
        assert await kv.size("sub/up/inside.txt") == Ok(6)  # link resolves inside
        assert await kv.size("link_in") == Ok(6)
        assert await kv.size("dir_out/root/inside.txt") == Ok(6)  # out and back in

    asyncio.run(main())


def test_dirkv_keys_lists_only_readable_files(escape_tree: Path) -> None:
    async def main() -> list[str]:
        kv = await connect_dir(escape_tree)
        assert isinstance(kv, KVListable)
        return await kv.keys()

    assert asyncio.run(main()) == ["inside.txt", "link_in", "sub/deep.txt"]


def test_dirkv_reads_are_current_and_page_aligned(tmp_path: Path) -> None:
    import ctypes

    write_tree(tmp_path, {"v": b"one"})

    async def main() -> None:
        kv = await connect_dir(tmp_path)
        r = await kv.read("v", 0, 100)
        assert isinstance(r, Ok)
        (buf,) = r.value
        assert bytes(buf) == b"one"
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        assert addr % io_page.PAGE_SIZE == 0
        (tmp_path / "v").write_bytes(b"two!")
        assert await kv.size("v") == Ok(4)

    asyncio.run(main())


def test_dirkv_connect_errors(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"")
    for bad in (str(tmp_path / "missing"), str(f)):
        assert asyncio.run(DirKV.connect(bad)) == Error(UnknownKey(bad))


# --- TarKV specifics ---------------------------------------------------------------------


def test_tarkv_skips_unsafe_and_non_file_members(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("/abs.txt", b"abs"), ("../evil.txt", b"evil"), ("ok.txt", b"ok")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        s = tarfile.TarInfo("sym")
        s.type = tarfile.SYMTYPE
        s.linkname = "/etc/passwd"
        tar.addfile(s)
        again = tarfile.TarInfo("ok.txt")  # a later member of the same name wins
        again.size = 5
        tar.addfile(again, io.BytesIO(b"again"))

    async def main() -> None:
        kv = await connect_tar(path)
        assert await kv.keys() == ["abs.txt", "ok.txt"]
        assert await kv.size("/abs.txt") == Ok(3)
        for key in ("../evil.txt", "evil.txt", "dir", "sym"):
            assert await kv.size(key) == Error(UnknownKey(key))
        r = await kv.read("ok.txt", 0, 100)
        assert isinstance(r, Ok) and b"".join(r.value) == b"again"
        await kv.disconnect()
        assert await kv.size("ok.txt") == Error(UnknownKey("ok.txt"))
        assert await kv.read("ok.txt", 0, 1) == Error(UnknownKey("ok.txt"))

    asyncio.run(main())


def test_tarkv_sparse_member(tmp_path: Path) -> None:
    """A GNU sparse file (holes) reads back with its zeros."""
    src = tmp_path / "sparse.bin"
    with open(src, "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
        f.seek(0)
        f.write(b"start")
    path = tmp_path / "s.tar"
    subprocess.run(["tar", "-cSf", str(path), "-C", str(tmp_path), "sparse.bin"], check=True)
    want = src.read_bytes()

    async def main() -> None:
        kv = await connect_tar(path)
        assert await kv.size("sparse.bin") == Ok(len(want))
        r = await kv.read("sparse.bin", 0, len(want))
        assert isinstance(r, Ok) and b"".join(r.value) == want
        r = await kv.read("sparse.bin", (1 << 20) - 2, 10)
        assert isinstance(r, Ok) and b"".join(r.value) == b"\0\0end"

    asyncio.run(main())


@pytest.mark.parametrize("content", [b"", b"not a tar at all" * 100, b"\x1f\x8bbroken gzip"])
def test_tarkv_connect_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.tar"
    path.write_bytes(content)
    assert asyncio.run(TarKV.connect(str(path))) == Error(UnknownKey(str(path)))
    missing = str(tmp_path / "missing.tar")
    assert asyncio.run(TarKV.connect(missing)) == Error(UnknownKey(missing))


def test_disconnected_dirkv_knows_no_keys(tmp_path: Path) -> None:
    write_tree(tmp_path, default_contents())

    async def main() -> None:
        kv = await connect_dir(tmp_path)
        await kv.disconnect()
        assert await kv.size("hello.txt") == Error(UnknownKey("hello.txt"))
        assert await kv.keys() == []

    asyncio.run(main())


@pytest.mark.parametrize(("offset", "length", "name"), [(-1, 1, "offset"), (0, -5, "length")])
def test_negative_ranges_raise_even_for_unknown_keys(
    tmp_path: Path, offset: int, length: int, name: str
) -> None:
    async def main() -> None:
        kv = await connect_dir(tmp_path)
        with pytest.raises(ValueError, match=name):
            await kv.read("nope", offset, length)

    asyncio.run(main())


def test_non_str_key_is_a_type_error(tmp_path: Path) -> None:
    async def main() -> None:
        kv = await connect_dir(tmp_path)
        with pytest.raises(TypeError, match="key"):
            await kv.size(b"x")  # type: ignore[arg-type]

    asyncio.run(main())


def test_dirkv_resolves_paths_only_for_keys_through_symlinks(
    escape_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with no symlink on its way is opened in one call (the opened file's own
    name proves it is inside the root), without an lstat per component; a key through
    a symlink is still resolved in full and judged as before."""
    resolved: list[str] = []
    real = os.path.realpath

    def counting(path: str) -> str:
        resolved.append(path)
        return real(path)

    async def main() -> None:
        kv = await connect_dir(escape_tree)
        monkeypatch.setattr(os.path, "realpath", counting)
        assert await kv.size("inside.txt") == Ok(6)
        assert await kv.size("sub/deep.txt") == Ok(4)
        assert await kv.size("sub") == Error(UnknownKey("sub"))
        assert await kv.size("fifo") == Error(UnknownKey("fifo"))
        assert resolved == []
        assert await kv.size("link_in") == Ok(6)
        assert await kv.size("sub/up/inside.txt") == Ok(6)
        assert await kv.size("link_out") == Error(UnknownKey("link_out"))
        assert await kv.size("dir_out/secret.txt") == Error(UnknownKey("dir_out/secret.txt"))
        assert len(resolved) == 4

    asyncio.run(main())


def test_dirkv_kept_files_follow_what_the_name_leads_to(
    escape_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key asked again is served from the file kept open, one stat proving the name
    still leads to it; a file replaced, removed, re-moded or swapped for a symlink out of
    the root is judged anew, and disconnect closes what was kept."""
    opened: list[str] = []
    real_open = os.open

    def counting(path: str, *a: object, **k: object) -> int:
        opened.append(str(path))
        return real_open(path, *a, **k)  # type: ignore[arg-type]

    async def main() -> None:
        kv = await connect_dir(escape_tree)
        f = escape_tree / "inside.txt"
        assert await kv.size("inside.txt") == Ok(6)
        monkeypatch.setattr(os, "open", counting)
        r = await kv.read("inside.txt", 0, 100)
        assert isinstance(r, Ok) and b"".join(r.value) == b"inside"
        assert await kv.size("inside.txt") == Ok(6)
        assert opened == []  # served from the kept file
        f.write_bytes(b"rewritten in place")  # same inode: current through the kept fd
        assert await kv.size("inside.txt") == Ok(18)
        new = escape_tree / "new.txt"
        new.write_bytes(b"replaced")
        new.replace(f)  # another inode under the name
        r = await kv.read("inside.txt", 0, 100)
        assert isinstance(r, Ok) and b"".join(r.value) == b"replaced"
        assert len(opened) == 1
        f.chmod(0o600)
        assert await kv.size("inside.txt") == Ok(8)
        assert len(opened) == 2  # another mode: opened (and judged) again
        f.unlink()
        f.symlink_to(escape_tree.parent / "secret.txt")
        assert await kv.size("inside.txt") == Error(UnknownKey("inside.txt"))
        f.unlink()
        assert await kv.size("inside.txt") == Error(UnknownKey("inside.txt"))
        assert await kv.size("sub/deep.txt") == Ok(4)
        fds = set(os.listdir("/proc/self/fd"))
        await kv.disconnect()
        assert len(fds - set(os.listdir("/proc/self/fd"))) == 1  # the kept one, closed
        assert await kv.size("sub/deep.txt") == Error(UnknownKey("sub/deep.txt"))

    asyncio.run(main())


def test_dirkv_small_values_served_from_memory_while_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole small value read once is served again without reading the file while a
    stat shows the same size and times; any change (even of the same size, or only of
    the modification time) reads it anew, and a file changed too recently is not kept."""
    import miragekit.kv._dir as dirkv

    write_tree(tmp_path, {"v": b"first", "w": b"other"})
    reads: list[int] = []
    real_preadv = os.preadv

    def counting(fd: int, bufs: Any, pos: int, *a: Any) -> int:
        reads.append(fd)
        return real_preadv(fd, bufs, pos, *a)

    monkeypatch.setattr(os, "preadv", counting)

    async def value(kv: DirKV, key: str, offset: int = 0, length: int = 100) -> bytes:
        r = await kv.read(key, offset, length)
        assert isinstance(r, Ok), r
        return b"".join(r.value)

    async def main() -> None:
        kv = await connect_dir(tmp_path)
        # Just written: its change time is within _SETTLED, so never kept.
        assert [await value(kv, "w") for _ in range(3)] == [b"other"] * 3
        assert len(reads) == 3
        monkeypatch.setattr(dirkv, "_SETTLED", 0)
        reads.clear()
        assert await value(kv, "v") == b"first"
        assert await value(kv, "v") == b"first"
        assert await value(kv, "v", 0, 3) == b"fir"
        assert len(reads) == 1  # once from the file, then from memory
        r = await kv.read("v", 0, 100)
        assert isinstance(r, Ok) and r.value[0].readonly  # shared: nobody may write it
        assert await value(kv, "v", 1, 3) == b"irs"  # not from 0: the file
        assert len(reads) == 2
        st = (tmp_path / "v").stat()
        (tmp_path / "v").write_bytes(b"FIRST")  # in place, the same size
        os.utime(tmp_path / "v", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        assert await value(kv, "v") == b"FIRST"
        assert len(reads) == 3
        os.utime(tmp_path / "v", ns=(st.st_atime_ns, st.st_mtime_ns + 2))  # times only
        assert await value(kv, "v") == b"FIRST"
        assert len(reads) == 4
        assert await value(kv, "v") == b"FIRST"
        assert len(reads) == 4

    asyncio.run(main())
