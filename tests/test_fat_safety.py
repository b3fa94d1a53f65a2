"""``miragekit fat`` against hostile images and ordinary mistakes (the safety half).

Images come from mkfs.fat and mtools, then byte patches (tests/fat_hostile.py); the
assertions check the host side (nothing written outside the destination), the image side
(unchanged bytes, fsck.fat) and what the user reads (one plain line per problem).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.fat_hostile import (
    damaged_images,
    get_cluster,
    mcopy,
    mkfs,
    mmd,
    patch_long_name,
    set_cluster,
    short_slot,
)
from tests.fat_util import assert_fsck_clean, host_tree, ok, tool

from miragekit.block import FileBlock
from miragekit.cli import main
from miragekit.fs import FatFS
from miragekit.result import Error, Unknown

pytestmark = pytest.mark.tools

CLI = [sys.executable, "-m", "miragekit", "fat"]
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["fat", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def plain_lines(err: str, command: str) -> list[str]:
    """The problem lines, each checked to be one plain line (no traceback, no repr)."""
    lines = err.splitlines()
    for ln in lines:
        assert ln.startswith(f"miragekit fat {command}: "), err
        assert "Traceback" not in ln and "Unknown(" not in ln and "Error(" not in ln, err
        assert "unexpected error" not in ln, err
    return lines


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """The image cannot be opened for writing (so reads must open it read-only): immutable
    for root, which ignores file modes; read-only by mode for anyone else."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def image_with(tmp_path: Path, names: dict[str, bytes], fat: int = 16, kib: int = 20480) -> Path:
    """A mkfs.fat image holding ``names`` (files in the root, copied by mcopy)."""
    img = tmp_path / "hostile.img"
    mkfs(img, fat, kib)
    src = tmp_path / "src"
    src.mkdir()
    for name, data in names.items():
        (src / name).write_bytes(data)
        mcopy(img, src / name)
    return img


def patched(img: Path, old: str, new: str) -> None:
    data = bytearray(img.read_bytes())
    patch_long_name(data, old, new)
    img.write_bytes(data)


# --- 1. names from the image -------------------------------------------------------------


def test_get_never_writes_outside_its_destination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile image: a long name of eight ``../`` and an absolute-looking path."""
    escaped = tmp_path / "escaped" / "pwned.txt"
    escaped.parent.mkdir()
    evil = "../" * 8 + str(escaped).lstrip("/")
    decoy = "x" * len(evil)
    img = image_with(tmp_path, {decoy: b"evil\n", "KEEP.TXT": b"keep\n", "Fine name.txt": b"ok"})
    patched(img, decoy, evil)
    out = tmp_path / "extracted"
    out.mkdir()
    with immutable(img):
        rc, _, err = run(capsys, "get", img.as_posix(), "/", str(out))
        assert rc == 1
        (line,) = plain_lines(err, "get")
        assert "skipped an entry named" in line and "'/'" in line
        assert not escaped.exists() and files_under(escaped.parent) == set()
        assert host_tree(out) == {"KEEP.TXT": b"keep\n", "Fine name.txt": b"ok"}
        rc, listing, err = run(capsys, "ls", img.as_posix())  # the rest is still listed
        assert rc == 1 and sorted(listing.split()) == ["Fine", "KEEP.TXT", "name.txt"]
        assert len(plain_lines(err, "ls")) == 1


@pytest.mark.parametrize("name", ["..", "."])
def test_long_name_dot_or_dotdot_does_not_recurse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    img = image_with(tmp_path, {"aB": b"hidden\n", "KEEP.TXT": b"keep\n"})
    mmd(img, "/SUB")
    patched(img, "aB", name.ljust(2, "\0"))
    before = img.read_bytes()
    work = tmp_path / "work"
    out = work / "out"
    out.mkdir(parents=True)
    with immutable(img):
        rc, _, err = run(capsys, "get", img.as_posix(), "/", str(out))
        assert rc == 1
        (line,) = plain_lines(err, "get")
        assert f"skipped an entry named {name!r}" in line
        assert files_under(work) == {"out", "out/KEEP.TXT", "out/SUB"}
        rc, listing, err = run(capsys, "ls", img.as_posix())
        assert rc == 1 and listing.split() == ["KEEP.TXT", "SUB"]
    assert img.read_bytes() == before


def test_a_directory_that_contains_itself_is_copied_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "loop.img"
    mkfs(img, 12, 1440)
    mmd(img, "/A")
    mmd(img, "/A/LOOP")
    (tmp_path / "F.TXT").write_bytes(b"f\n")
    mcopy(img, tmp_path / "F.TXT", "/A/")
    data = bytearray(img.read_bytes())
    set_cluster(
        data,
        short_slot(data, b"LOOP       "),
        get_cluster(data, short_slot(data, b"A  " + b" " * 8)),
    )
    img.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with immutable(img):
        rc, _, err = run(capsys, "get", img.as_posix(), "/A", str(out))
    assert rc == 1
    (line,) = plain_lines(err, "get")
    assert "/A/LOOP: the same directory as one copied already" in line
    assert host_tree(out) == {"A": {"F.TXT": b"f\n"}}
    rc, _, err = run(capsys, "rm", "-r", img.as_posix(), "/A")
    assert rc == 1 and "contains itself" in err and img.read_bytes() == data


def test_get_does_not_follow_host_symlinks_named_by_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 12, 1440)
    mmd(img, "/DIR")
    (tmp_path / "F.TXT").write_bytes(b"f\n")
    mcopy(img, tmp_path / "F.TXT", "/DIR/")
    mcopy(img, tmp_path / "F.TXT", "/")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "DIR").symlink_to(elsewhere)
    (out / "F.TXT").symlink_to(elsewhere / "target.txt")
    rc, _, err = run(capsys, "get", img.as_posix(), "/", str(out))
    assert rc == 1
    lines = plain_lines(err, "get")
    assert len(lines) == 2 and all(
        "a symbolic link on the host, not followed" in ln for ln in lines
    )
    assert files_under(elsewhere) == set()
    rc, _, err = run(capsys, "get", img.as_posix(), "/DIR", str(out))
    assert rc == 1 and "not followed" in err and files_under(elsewhere) == set()


def test_a_hostile_name_as_the_copy_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = image_with(tmp_path, {"Long Name.txt": b"x"}, fat=12, kib=1440)
    patched(img, "Long Name.txt", "../../etc/pwn")
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    rc, _, err = run(capsys, "get", img.as_posix(), "/LONGNA~1.TXT", str(out))
    assert rc == 1 and "name the copy" in err and files_under(tmp_path / "deep") == {"out"}
    rc, _, _ = run(capsys, "get", img.as_posix(), "/LONGNA~1.TXT", str(out / "named.txt"))
    assert rc == 0 and (out / "named.txt").read_bytes() == b"x"


# --- 2. rm decides before it writes ------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "", "/DIR/..", "//", "/DIR/../."])
def test_rm_r_of_the_root_refuses_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 16, 20480)
    mmd(img, "/DIR")
    (tmp_path / "F.TXT").write_bytes(b"f\n")
    mcopy(img, tmp_path / "F.TXT", "/DIR/")
    mcopy(img, tmp_path / "F.TXT", "/")
    before = img.read_bytes()
    for argv in (("rm", "-r", img.as_posix(), path), ("rm", img.as_posix(), path)):
        rc, _, err = run(capsys, *argv)
        assert rc == 1
        (line,) = plain_lines(err, "rm")
        assert "is the root directory, which cannot be removed" in line
        assert img.read_bytes() == before


def test_rm_r_refuses_a_tree_it_cannot_remove_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 12, 1440)
    mmd(img, "/T")
    src = tmp_path / "src"
    src.mkdir()
    for n in ("A.TXT", "aB", "Z.TXT"):
        (src / n).write_bytes(b"data")
        mcopy(img, src / n, "/T/")
    patched(img, "aB", "..")
    before = img.read_bytes()
    rc, _, err = run(capsys, "rm", "-r", img.as_posix(), "/T")
    assert rc == 1 and "holds an entry named '..'" in err and img.read_bytes() == before


# --- 3. put keeps the old file ------------------------------------------------------------


def _free(img: Path) -> int:
    async def go() -> int:
        blk = ok(await FileBlock.connect(img, read_only=True))
        fs = ok(await FatFS.connect(blk))
        free = fs.free_bytes()
        await blk.disconnect()
        return free

    return asyncio.run(go())


def test_put_over_a_file_keeps_it_when_the_new_one_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "floppy.img"
    mkfs(img, 12, 1440)
    old = os.urandom(1_000_000)
    (tmp_path / "data.bin").write_bytes(old)
    assert run(capsys, "put", img.as_posix(), str(tmp_path / "data.bin"), "/data.bin")[0] == 0
    for size, msg in ((1_200_000, "beside the old one"), (1_600_000, "no space left")):
        (tmp_path / "new.bin").write_bytes(os.urandom(size))
        rc, _, err = run(capsys, "put", img.as_posix(), str(tmp_path / "new.bin"), "/data.bin")
        assert rc == 1 and msg in err and len(plain_lines(err, "put")) == 1
        rc, _, err = run(capsys, "put", img.as_posix(), str(tmp_path / "new.bin"), "/other.bin")
        assert rc == 1 and "no space left" in err
        mtype = ["mtype", "-i", img.as_posix(), "::/data.bin"]
        assert subprocess.run(mtype, capture_output=True, check=True).stdout == old
        assert run(capsys, "ls", img.as_posix())[1] == "data.bin\n"
    assert_fsck_clean(img)
    # a replacement that fits beside the old one swaps in whole
    new = os.urandom(300_000)
    (tmp_path / "new.bin").write_bytes(new)
    assert run(capsys, "put", img.as_posix(), str(tmp_path / "new.bin"), "/data.bin")[0] == 0
    listed, _day, _time, name = run(capsys, "ls", "-l", img.as_posix())[1].split()
    assert (listed, name) == ("300000", "data.bin")
    assert_fsck_clean(img)


def test_a_put_that_fails_half_way_leaves_nothing_and_keeps_the_old(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The free-space check passes, then a full directory has to grow and the data runs out."""
    img = tmp_path / "floppy.img"
    mkfs(img, 12, 1440)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(13):  # . and .. + 14 entries: one 512-byte cluster, full
        (src / f"F{i}.TXT").write_bytes(b"")
    (src / "OLD.TXT").write_bytes(b"the old contents\n")
    for d in ("/D", "/E"):
        mmd(img, d)
        for p in sorted(src.iterdir()):
            mcopy(img, p, d + "/")
    (tmp_path / "filler").write_bytes(bytes(_free(img) - 4 * 512))
    mcopy(img, tmp_path / "filler")
    assert _free(img) == 4 * 512
    listings = [run(capsys, "ls", img.as_posix(), d)[1] for d in ("/D", "/E")]
    (tmp_path / "four.bin").write_bytes(os.urandom(4 * 512))
    rc, _, err = run(capsys, "put", img.as_posix(), str(tmp_path / "four.bin"), "/E/NEW.BIN")
    assert rc == 1 and err.endswith("no space left on the volume\n"), err
    assert _free(img) == 3 * 512  # the directory grew; the new file's clusters came back
    (tmp_path / "three.bin").write_bytes(os.urandom(3 * 512))
    rc, _, err = run(capsys, "put", img.as_posix(), str(tmp_path / "three.bin"), "/D/OLD.TXT")
    assert rc == 1 and err.endswith("no space left on the volume (the old file is kept)\n"), err
    assert [run(capsys, "ls", img.as_posix(), d)[1] for d in ("/D", "/E")] == listings
    assert tool("mtype", "-i", img.as_posix(), "::/D/OLD.TXT") == "the old contents\n"
    assert _free(img) == 2 * 512
    assert_fsck_clean(img)


def test_files_of_4_gib_are_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 32, 40960)
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(4 << 30)  # sparse: costs nothing on the host
    before = img.read_bytes()
    rc, _, err = run(capsys, "put", img.as_posix(), str(big), "/big.bin")
    assert rc == 1 and "at most 4 GiB - 1 byte" in err and img.read_bytes() == before


# --- 4. locking ----------------------------------------------------------------------------


def test_a_second_writer_fails_clearly_and_readers_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 12, 1440)
    (tmp_path / "f").write_bytes(b"f")
    before = img.read_bytes()
    with img.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another program writing
        for argv in (
            ("put", "--wait", "0.2", img.as_posix(), str(tmp_path / "f"), "/f"),
            ("ls", "--wait", "0", img.as_posix()),
        ):
            rc, _, err = run(capsys, *argv)
            assert rc == 1 and "is in use: another program is" in err, err
            assert len(plain_lines(err, argv[0])) == 1
        assert img.read_bytes() == before
        fcntl.flock(held, fcntl.LOCK_SH)  # another program reading: readers go on
        assert run(capsys, "ls", "--wait", "0", img.as_posix())[0] == 0
        assert run(capsys, "mkdir", "--wait", "0", img.as_posix(), "/d")[0] == 1
    assert run(capsys, "mkdir", "--wait", "0", img.as_posix(), "/d")[0] == 0


def test_mkfs_and_partitions_lock_the_whole_image_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mkfs takes the lock before it grows, shrinks or writes; IMG@@OFFSET locks all of IMG."""
    img = tmp_path / "disk.img"
    content = os.urandom(1 << 20)
    img.write_bytes(content)
    with img.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # another program reading it
        for argv in (
            ("mkfs", "--wait", "0", img.as_posix(), "--size", "8M"),  # would grow it
            ("mkfs", "--wait", "0", img.as_posix(), "--size", "512K"),  # would shrink it
            ("mkfs", "--wait", "0", f"{img}@@512K"),  # a partition of it
        ):
            rc, _, err = run(capsys, *argv)
            assert rc == 1 and "is in use: another program is using it" in err, err
            assert len(plain_lines(err, "mkfs")) == 1
        assert img.read_bytes() == content  # not resized, not written

        def release() -> None:
            time.sleep(0.3)
            fcntl.flock(held, fcntl.LOCK_UN)

        t = threading.Thread(target=release)
        t.start()
        assert run(capsys, "mkfs", "--wait", "10", img.as_posix(), "--size", "8M")[0] == 0
        t.join()
    assert img.stat().st_size == 8 << 20
    assert_fsck_clean(img)
    assert run(capsys, "mkfs", f"{img}@@1M", "--size", "2M", "--label", "INSIDE")[0] == 0
    with img.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rc, _, err = run(capsys, "ls", "--wait", "0", f"{img}@@1M")
        assert rc == 1 and "is in use: another program is writing it" in err, err
    assert run(capsys, "ls", "--wait", "0", f"{img}@@1M")[0] == 0


def test_file_block_resizes_under_its_lock(tmp_path: Path) -> None:
    new, old = tmp_path / "new.img", tmp_path / "old.img"
    old.write_bytes(b"k" * 4096)

    async def go() -> None:
        blk = ok(await FileBlock.connect(new, resize=8192))  # created, then sized
        assert (await blk.get_info()).size_sectors == 16 and new.stat().st_size == 8192
        other = await FileBlock.connect(new, resize=512)  # the lock comes first
        assert isinstance(other, Error) and isinstance(other.error, Unknown)
        assert "is in use" in other.error.msg
        assert new.stat().st_size == 8192
        await blk.disconnect()
        r = await FileBlock.connect(old, resize=-1)
        assert isinstance(r, Error) and isinstance(r.error, Unknown)
        assert "cannot resize" in r.error.msg
        assert old.read_bytes() == b"k" * 4096  # a failed resize changes nothing
        small = ok(await FileBlock.connect(old, resize=1024))
        assert (await small.get_info()).size_sectors == 2 and old.read_bytes() == b"k" * 1024
        await small.disconnect()

    asyncio.run(go())


def test_three_puts_at_once_wait_for_each_other(tmp_path: Path) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 16, 20480)
    trees = []
    for k in range(3):
        t = tmp_path / f"tree{k}"
        t.mkdir()
        for i in range(100):
            (t / f"file {i}.txt").write_bytes(f"{k}:{i}\n".encode() * (i + 1))
        trees.append(t)
    procs = [
        subprocess.Popen(
            [*CLI, "put", img.as_posix(), str(t), "/"], env=ENV, stderr=subprocess.PIPE
        )
        for t in trees
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    assert_fsck_clean(img)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([*CLI, "get", img.as_posix(), "/", str(out)], env=ENV, check=True)
    assert host_tree(out) == {t.name: host_tree(t) for t in trees}


def test_file_block_locks_its_file(tmp_path: Path) -> None:
    img = tmp_path / "b.img"
    img.write_bytes(bytes(64 << 10))

    async def go() -> None:
        a = ok(await FileBlock.connect(img))
        second = await FileBlock.connect(img)
        assert isinstance(second, Error) and isinstance(second.error, Unknown)
        assert "is in use" in second.error.msg
        reader = await FileBlock.connect(img, read_only=True)
        assert isinstance(reader, Error) and isinstance(reader.error, Unknown)
        assert "another program is writing it" in reader.error.msg

        async def release() -> None:
            await asyncio.sleep(0.2)
            await a.disconnect()

        t = asyncio.create_task(release())
        waited = ok(await FileBlock.connect(img, lock_wait=10))  # waits for the writer
        await t
        await waited.disconnect()
        r1 = ok(await FileBlock.connect(img, read_only=True))
        r2 = ok(await FileBlock.connect(img, read_only=True))  # readers share
        w = await FileBlock.connect(img, lock_wait=0.1)
        assert isinstance(w, Error) and isinstance(w.error, Unknown)
        assert "another program is using it (waited 0.1 s)" in w.error.msg
        await r1.disconnect()
        await r2.disconnect()

    asyncio.run(go())


# --- 5 and 7. read-only reads, plain errors -----------------------------------------------


def test_read_commands_open_the_image_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = image_with(tmp_path, {"A.TXT": b"a\n"}, fat=12, kib=1440)
    out = tmp_path / "out"
    out.mkdir()
    with immutable(img):
        assert run(capsys, "ls", img.as_posix()) == (0, "A.TXT\n", "")
        assert run(capsys, "cat", img.as_posix(), "/a.txt") == (0, "a\n", "")
        assert run(capsys, "get", img.as_posix(), "/", str(out)) == (0, "", "")
        rc, _, err = run(capsys, "put", img.as_posix(), str(tmp_path / "src" / "A.TXT"), "/b")
        assert rc == 1
        (line,) = plain_lines(err, "put")
        assert "read-write" in line and ("not permitted" in line or "denied" in line)
    assert host_tree(out) == {"A.TXT": b"a\n"}


# --- 6. per-file problems in put -----------------------------------------------------------


def test_case_collisions_are_reported_not_collapsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 12, 1440)
    src = tmp_path / "src"
    src.mkdir()
    for n in ("README.TXT", "ReadMe.Txt", "readme.txt", "other.txt", "a long name", "alongn~1"):
        (src / n).write_text(n)
    (src / "Docs").mkdir()
    (src / "docs").mkdir()
    (src / "Docs" / "a").write_text("a")
    (src / "docs" / "b").write_text("b")
    rc, _, err = run(capsys, "put", img.as_posix(), str(src), "/")
    assert rc == 1
    lines = plain_lines(err, "put")
    assert len(lines) == 4 and all("(FAT names ignore case), skipped" in ln for ln in lines)
    assert "alongn~1: same name as 'a long name'" in err  # the 8.3 alias of the first
    assert "ReadMe.Txt: same name as 'README.TXT'" in err and "docs: same name as 'Docs'" in err
    out = tmp_path / "out"
    out.mkdir()
    assert run(capsys, "get", img.as_posix(), "/src", str(out))[0] == 0
    assert host_tree(out / "src") == {
        "README.TXT": b"README.TXT",
        "other.txt": b"other.txt",
        "a long name": b"a long name",
        "Docs": {"a": b"a"},
    }
    assert_fsck_clean(img)


def test_symlinks_fifos_and_unreadable_files_are_reported_per_file(tmp_path: Path) -> None:
    """Run as an unprivileged user (root reads every file), in a subprocess (a FIFO)."""
    base = Path(tempfile.mkdtemp(prefix="mk-fatsafe-"))
    try:
        base.chmod(0o755)
        img = base / "a.img"
        mkfs(img, 12, 1440)
        img.chmod(0o666)
        src = base / "top" / "src"
        (src / "dir").mkdir(parents=True)
        (base / "top").chmod(0o755)
        (src / "a.txt").write_text("a")
        (src / "dir" / "b.txt").write_text("b")
        (src / "secret.txt").write_text("secret")
        (src / "secret.txt").chmod(0o000)
        os.mkfifo(src / "fifo")
        (src / "link.txt").symlink_to("a.txt")
        (src / "up").symlink_to("..")
        (src / "loop").symlink_to("loop")
        for p in (src, src / "dir"):
            p.chmod(0o755)
        for p in (src / "a.txt", src / "dir" / "b.txt"):
            p.chmod(0o644)
        # Root reads every file: the copy runs as nobody then (any other user already
        # cannot read a mode-000 file).
        as_nobody = (
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            if os.geteuid() == 0
            else []
        )
        r = subprocess.run(
            [*as_nobody, *CLI, "put", img.as_posix(), str(src), "/"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1, r.stderr
        lines = plain_lines(r.stderr, "put")
        assert len(lines) == 5, r.stderr
        assert any("secret.txt: Permission denied, skipped" in ln for ln in lines)
        assert any("fifo: not a regular file" in ln for ln in lines)
        for name in ("link.txt", "up", "loop"):
            assert any(f"{name}: a symbolic link, skipped" in ln for ln in lines), name
        listing = tool("mdir", "-b", "-i", img.as_posix(), "::/src")
        assert sorted(Path(x).name for x in listing.split()) == ["a.txt", "dir"]
        assert_fsck_clean(img)
        # -L follows links; the loop and the way back up are reported, not recursed into
        r = subprocess.run(
            [*as_nobody, *CLI, "put", "-L", img.as_posix(), str(src), "/followed"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1
        lines = plain_lines(r.stderr, "put")
        assert len(lines) == 4, lines  # secret.txt, fifo, loop, and up/src
        assert any("loop: Too many levels of symbolic links" in ln for ln in lines), lines
        assert any("up/src: leads back to a directory being copied" in ln for ln in lines)
        got = tool("mdir", "-b", "-i", img.as_posix(), "::/followed")
        assert sorted(Path(x).name for x in got.split()) == ["a.txt", "dir", "link.txt", "up"]
        assert tool("mtype", "-i", img.as_posix(), "::/followed/link.txt") == "a"
        assert_fsck_clean(img)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


# --- 8. progress only on a terminal -------------------------------------------------------


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 16, 20480)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))
    r = subprocess.run(
        [*CLI, "put", img.as_posix(), str(big), "/piped.bin"], env=ENV, capture_output=True
    )
    assert r.returncode == 0 and r.stderr == b""
    primary, secondary = pty.openpty()
    try:
        p = subprocess.run(
            [*CLI, "put", img.as_posix(), str(big), "/tty.bin"],
            env=ENV,
            stderr=secondary,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert p.returncode == 0
    assert b"\rput /tty.bin:" in shown and b"(100%)" in shown


# --- 9. fsck.fat's kinds of damage ---------------------------------------------------------


def test_damaged_images_are_walked_read_only_and_nothing_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = damaged_images(tmp_path / "make")
    assert len(images) >= 20
    for name, data in images.items():
        work = tmp_path / name
        out = work / "out"
        out.mkdir(parents=True)
        img = work / "d.img"
        img.write_bytes(data)
        with immutable(img):
            for argv in (
                ("ls", "-l", img.as_posix()),
                ("ls", img.as_posix(), "/DIR"),
                ("ls", img.as_posix(), "/DIR/SUB"),
                ("cat", img.as_posix(), "/VICTIM.TXT"),
                ("cat", img.as_posix(), "/OTHER.TXT"),
                ("get", img.as_posix(), "/", str(out)),
                ("get", img.as_posix(), "/DIR", str(out / "again")),
            ):
                rc, _, err = run(capsys, *argv)
                assert rc in (0, 1), (name, argv, err)
                plain_lines(err, argv[0])
                assert (rc == 1) == bool(err), (name, argv, rc, err)
        assert img.read_bytes() == data, name
        if name.startswith("long_name"):  # one bad name costs only its own file
            assert (out / "VICTIM.TXT").read_bytes() == b"victim\n", name
        assert files_under(work) <= {"d.img", "out"} | {"out/" + p for p in files_under(out)}, name
        for p in out.rglob("*"):
            assert not p.is_symlink() and p.resolve().is_relative_to(out.resolve()), (name, p)


def test_an_interrupted_put_keeps_the_old_file_and_leaves_no_copy(tmp_path: Path) -> None:
    img = tmp_path / "a.img"
    # Big enough that the copy is still under way when the signal lands, however idle
    # the machine (300 MiB could finish first on a quiet one); both files are sparse.
    mkfs(img, 32, 3 << 20)
    (tmp_path / "big.bin").write_bytes(b"the old one\n")
    mcopy(img, tmp_path / "big.bin")
    with (tmp_path / "big.bin").open("wb") as f:
        f.truncate(2500 << 20)
    primary, secondary = pty.openpty()
    p = subprocess.Popen(
        [*CLI, "put", img.as_posix(), str(tmp_path / "big.bin"), "/big.bin"],
        env=ENV,
        stderr=secondary,
        stdout=subprocess.DEVNULL,
    )
    os.close(secondary)
    shown = b""
    try:
        while b"MiB" not in shown:  # the copy is under way
            chunk = os.read(primary, 4096)
            assert chunk, shown
            shown += chunk
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
        rest = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(primary, 4096):
                rest += chunk
    finally:
        os.close(primary)
    assert rest.replace(b"\r\n", b"\n").endswith(b"miragekit fat put: interrupted\n"), rest
    assert b"Traceback" not in rest
    assert tool("mdir", "-b", "-i", img.as_posix(), "::/").split() == ["::/big.bin"]
    assert tool("mtype", "-i", img.as_posix(), "::/big.bin") == "the old one\n"
    assert_fsck_clean(img)


def test_put_follows_a_link_it_is_given_and_reports_a_fifo_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "a.img"
    mkfs(img, 12, 1440)
    (tmp_path / "real.txt").write_text("real")
    (tmp_path / "link.txt").symlink_to("real.txt")
    os.mkfifo(tmp_path / "fifo")
    assert run(capsys, "put", img.as_posix(), str(tmp_path / "link.txt"), "/")[0] == 0
    rc, _, err = run(capsys, "put", img.as_posix(), str(tmp_path / "fifo"), "/fifo")
    assert rc == 1 and plain_lines(err, "put") == [
        f"miragekit fat put: {tmp_path / 'fifo'}: not a regular file or directory, skipped"
    ]
    assert tool("mdir", "-b", "-i", img.as_posix(), "::/").split() == ["::/link.txt"]
    assert tool("mtype", "-i", img.as_posix(), "::/link.txt") == "real"
