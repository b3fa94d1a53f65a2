"""``miragekit fat``: mkfs, ls, cat, put, get, mkdir, rm; errors are one line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.fat_util import assert_fsck_clean, host_tree, tool

from miragekit.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["fat", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_mkfs_put_ls_cat_get_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = str(tmp_path / "a.img")
    assert run(capsys, "mkfs", img, "--size", "8M")[0] == 0
    assert os.path.getsize(img) == 8 << 20
    host = tmp_path / "Host Dir"
    (host / "Sub").mkdir(parents=True)
    (host / "Read Me.txt").write_text("hello\n")
    (host / "Sub" / "big.bin").write_bytes(os.urandom(5 << 20))
    (host / "Sub" / "empty").write_bytes(b"")
    rc, _out, err = run(capsys, "put", img, str(host), "/")
    assert rc == 0
    assert err == ""  # stderr is not a terminal here: no progress lines (see test_fat_safety)
    assert run(capsys, "ls", img)[1] == "Host Dir\n"
    rc, out, _ = run(capsys, "ls", "-l", img, "/host dir")
    assert [ln[:10] + ln[30:] for ln in out.splitlines()] == [
        "         6Read Me.txt",
        "     <DIR>Sub",
    ]
    rc, out, _ = run(capsys, "ls", img, "/Host Dir/Read Me.txt")
    assert out == "Read Me.txt\n"
    rc = main(["fat", "cat", img, "/HOST DIR/read me.txt"])
    assert capsys.readouterr().out == "hello\n"
    assert run(capsys, "mkdir", img, "/New")[0] == 0
    assert run(capsys, "put", img, str(host / "Read Me.txt"), "/New")[0] == 0
    assert run(capsys, "put", img, str(host / "Read Me.txt"), "/New/renamed.txt")[0] == 0
    (host / "Read Me.txt").write_text("shorter")
    assert run(capsys, "put", img, str(host / "Read Me.txt"), "/New/renamed.txt")[0] == 0
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run(capsys, "get", img, "/Host Dir", str(out_dir))[0] == 0
    got = host_tree(out_dir / "Host Dir")
    assert got["Sub"] == host_tree(host / "Sub")
    assert got["Read Me.txt"] == b"hello\n"
    assert run(capsys, "get", img, "/New/renamed.txt", str(tmp_path / "r.txt"))[0] == 0
    assert (tmp_path / "r.txt").read_bytes() == b"shorter"
    rc, _, err = run(capsys, "rm", img, "/Host Dir")
    assert rc == 1 and err == (
        "miragekit fat rm: /Host Dir: directory not empty (rm -r removes it and all in it)\n"
    )
    assert run(capsys, "rm", "-r", img, "/Host Dir")[0] == 0
    assert run(capsys, "rm", img, "/New/Read Me.txt")[0] == 0
    assert run(capsys, "ls", img, "/")[1] == "New\n"
    assert run(capsys, "ls", img, "/New")[1] == "renamed.txt\n"


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = str(tmp_path / "a.img")
    rc, _, err = run(capsys, "ls", img)
    assert rc == 1 and err.count("\n") == 1 and "no such image file" in err
    (tmp_path / "a.img").write_bytes(bytes(1 << 20))
    rc, _, err = run(capsys, "ls", img)
    assert rc == 1 and err.startswith("miragekit fat ls: not a FAT image") and err.count("\n") == 1
    assert run(capsys, "mkfs", img, "--size", "1M")[0] == 0
    for argv, msg in [
        (("cat", img, "/nope"), "/nope: no such file or directory"),
        (("mkdir", img, "/a/b"), "/a: no such file or directory"),
        (("put", img, str(tmp_path / "missing"), "/x"), "missing: no such file or directory"),
        (("cat", img, "/"), "/: is a directory"),
    ]:
        rc, _, err = run(capsys, *argv)
        assert rc == 1 and err.endswith(msg + "\n") and err.count("\n") == 1, err
    rc, _, err = run(capsys, "mkfs", str(tmp_path / "tiny.img"), "--size", "10K")
    assert rc == 1 and "too small" in err
    with pytest.raises(SystemExit):
        main(["fat", "mkfs", img, "--size", "lots"])
    capsys.readouterr()


@pytest.mark.tools
@pytest.mark.parametrize("fat", ["12", "16", "32"])
def test_cli_images_and_mtools_agree(tmp_path: Path, fat: str) -> None:
    img = str(tmp_path / "a.img")
    env = {**os.environ, "PYTHONPATH": "src"}
    cmd = [sys.executable, "-m", "miragekit", "fat"]
    size = {"12": "4M", "16": "20M", "32": "40M"}[fat]
    subprocess.run([*cmd, "mkfs", img, "--size", size, "--fat", fat], check=True, env=env)
    src = tmp_path / "Some File.txt"
    src.write_bytes(b"from miragekit\n" * 1000)
    subprocess.run([*cmd, "put", img, str(src), "/"], check=True, env=env)
    assert tool("mtype", "-i", img, "::/Some File.txt") == "from miragekit\n" * 1000
    other = tmp_path / "From mtools.TXT"
    other.write_bytes(b"from mtools\n")
    tool("mmd", "-i", img, "::/Made By mmd")
    tool("mcopy", "-i", img, str(other), "::/Made By mmd/")
    r = subprocess.run(
        [*cmd, "cat", img, "/made by mmd/from mtools.txt"], check=True, env=env, capture_output=True
    )
    assert r.stdout == b"from mtools\n"
    ls = subprocess.run([*cmd, "ls", img], check=True, env=env, capture_output=True, text=True)
    assert sorted(ls.stdout.splitlines()) == ["Made By mmd", "Some File.txt"]
    assert_fsck_clean(Path(img))
