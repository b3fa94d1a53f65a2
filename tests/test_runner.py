"""The runner: loading applications, linking their parameters, and misuse of options."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from miragekit import v1
from miragekit.cli import main
from miragekit.runner import AppError, LinkError, Options, describe_dot, describe_text, load_app

ROOT = Path(__file__).resolve().parent.parent


def write_app(tmp_path: Path, body: str, name: str = "app") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "app.py").write_text(textwrap.dedent(body))
    return d


BLOCK_APP = """
    from pathlib import Path
    from miragekit import v1
    from miragekit.result import Ok

    async def start(block: v1.Block) -> None:
        info = await block.get_info()
        buf = bytearray(info.sector_size)
        buf[:5] = b"hello"
        assert isinstance(await block.write(3, [buf]), Ok)
        out = bytearray(info.sector_size)
        assert isinstance(await block.read(3, [out]), Ok)
        Path(__file__).with_name("result.txt").write_text(f"{info.size_sectors} {bytes(out[:5])!r}")
"""


def test_load_app_finds_start_and_annotations(tmp_path: Path) -> None:
    app = load_app(str(write_app(tmp_path, BLOCK_APP)))
    assert app.params == [("block", v1.Block)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", "defines no 'async def start(...)'"),
        ("def start() -> None: ...\n", "defines no 'async def start(...)'"),
        ("async def start(block) -> None: ...\n", "parameter 'block' has no type annotation"),
        ("async def start(*devs: int) -> None: ...\n", "cannot take *devs"),
    ],
)
def test_load_app_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(AppError, match=re.escape(message)):
        load_app(str(write_app(tmp_path, body)))


def test_load_app_missing(tmp_path: Path) -> None:
    with pytest.raises(AppError, match="no such file"):
        load_app(str(tmp_path / "nope.py"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AppError, match=r"needs an app\.py"):
        load_app(str(tmp_path / "empty"))
    with pytest.raises(AppError, match="no such application"):
        load_app("no_such_module_anywhere")


def test_unknown_signature_is_a_link_error(tmp_path: Path) -> None:
    app = load_app(str(write_app(tmp_path, "async def start(x: int) -> None: ...\n")))
    with pytest.raises(LinkError, match="no backend provides int"):
        describe_text(app, Options())


def test_run_links_a_memory_block(tmp_path: Path) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    assert main(["run", str(d), "--block-size", "1M"]) == 0
    assert (d / "result.txt").read_text() == "2048 b'hello'"


def test_run_links_a_file_block(tmp_path: Path) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    img = tmp_path / "disk.img"
    assert main(["run", str(d), "--block", str(img), "--block-size", "64K"]) == 0
    assert (d / "result.txt").read_text() == "128 b'hello'"
    data = img.read_bytes()
    assert len(data) == 64 * 1024 and data[3 * 512 : 3 * 512 + 5] == b"hello"


def test_describe_text_and_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    assert main(["describe", str(d)]) == 0
    out = capsys.readouterr().out
    assert "BLOCK: miragekit.block.MemoryBlock" in out and "used by start(block)" in out
    app = load_app(str(d))
    dot = describe_dot(app, Options(block=tmp_path / "x.img"))
    assert dot.startswith("digraph miragekit {") and 'app -> "BLOCK" [label="block"]' in dot
    assert "FileBlock" in dot


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "{app}", "--kv", "{tmp}/missing"], "--kv {tmp}/missing: no such directory"),
        (["run", "{app}", "--read-only"], "--read-only needs --block FILE"),
        (["run", "{app}", "--block", "{tmp}"], "is a directory"),
        (["run", "{app}", "--block-size", "12Q"], "not a size: '12Q'"),
        (["run", "{app}", "--block-size", "100"], "must be a positive multiple of 512"),
        (["run", "{tmp}/nope"], "{tmp}/nope: no such application"),
        (["describe", "{tmp}/nope.py"], "{tmp}/nope.py: no such file"),
    ],
)
def test_misuse_gives_one_clear_line(tmp_path: Path, argv: list[str], message: str) -> None:
    d = write_app(tmp_path, BLOCK_APP)
    argv = [a.format(app=d, tmp=tmp_path) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "miragekit", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == "miragekit: " + lines[0].removeprefix("miragekit: ")
    assert message.format(tmp=tmp_path) in lines[0]


def test_sigterm_stops_the_app_cleanly(tmp_path: Path) -> None:
    d = write_app(
        tmp_path,
        """
        import asyncio
        from pathlib import Path
        from miragekit import v1

        async def start(block: v1.Block) -> None:
            Path(__file__).with_name("started").touch()
            try:
                await asyncio.sleep(3600)
            finally:
                Path(__file__).with_name("stopped").touch()
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "miragekit", "run", str(d)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        deadline = time.monotonic() + 20
        while not (d / "started").exists():
            assert time.monotonic() < deadline, "app did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (d / "stopped").exists()
    finally:
        proc.kill()
