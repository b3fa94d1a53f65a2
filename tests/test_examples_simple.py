"""The hello and kv_ro examples, run with real devices (console over pipes)."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import tarfile
import threading
import time as _time
from collections.abc import Awaitable, Callable
from pathlib import Path

from examples.hello import app as hello
from examples.kv_ro import app as kv_ro

from miragekit import v1
from miragekit.console import Console
from miragekit.kv import DirKV, TarKV
from miragekit.result import Error, KVError, Ok, UnknownKey
from miragekit.time import Time


def run_with_console(body: Callable[[Console], Awaitable[None]]) -> list[tuple[float, bytes]]:
    """Run ``body`` with a console whose output is a pipe; return (arrival time, line)."""
    out_r, out_w = os.pipe()
    lines: list[tuple[float, bytes]] = []

    def collect() -> None:
        buf = b""
        while chunk := os.read(out_r, 4096):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append((_time.monotonic(), line + b"\n"))
        if buf:
            lines.append((_time.monotonic(), buf))

    reader = threading.Thread(target=collect)
    reader.start()

    async def main() -> None:
        match await Console.connect("console", stdin_fd=None, stdout_fd=out_w, close_fds=True):
            case Ok(console):
                pass
            case other:
                raise AssertionError(other)
        try:
            await body(console)
        finally:
            await console.close()

    try:
        asyncio.run(main())
    finally:
        reader.join(10)
        os.close(out_r)
    return lines


def test_hello_four_greetings_a_second_apart() -> None:
    start = _time.monotonic()
    lines = run_with_console(lambda c: hello.start(c, Time()))
    assert [line for _, line in lines] == [b"hello\r\n"] * 4
    stamps = [t - start for t, _ in lines]
    assert stamps[0] < 0.5
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.95 <= g < 1.5 for g in gaps), gaps


CONTENTS = {
    "secret": b"mirage kv_ro secret\n",
    "docs/readme.md": b"# title\nsecond line\n",
    "data/blob.bin": bytes(range(256)),
    "big.txt": b"x" * 5000,
    "empty": b"",
}

EXPECTED = [
    "5 key(s)",
    "big.txt (5000 bytes)",
    "data/blob.bin (256 bytes)",
    "  <binary>",
    "docs/readme.md (20 bytes)",
    "  # title",
    "  second line",
    "empty (0 bytes)",
    "secret (20 bytes)",
    "  mirage kv_ro secret",
]


def output_lines(lines: list[tuple[float, bytes]]) -> list[str]:
    text = b"".join(line for _, line in lines).decode()
    assert text.endswith("\r\n")
    return text.split("\r\n")[:-1]


def test_kv_ro_over_a_directory(tmp_path: Path) -> None:
    for key, value in CONTENTS.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(value)

    async def body(console: Console) -> None:
        match await DirKV.connect(str(tmp_path)):
            case Ok(kv):
                await kv_ro.start(console, kv)
            case other:
                raise AssertionError(other)

    assert output_lines(run_with_console(body)) == EXPECTED


def test_kv_ro_over_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "store.tar.gz"
    with tarfile.open(str(path), "w:gz") as tar:
        for key, value in CONTENTS.items():
            info = tarfile.TarInfo(key)
            info.size = len(value)
            tar.addfile(info, io.BytesIO(value))

    async def body(console: Console) -> None:
        match await TarKV.connect(str(path)):
            case Ok(kv):
                await kv_ro.start(console, kv)
            case other:
                raise AssertionError(other)

    assert output_lines(run_with_console(body)) == EXPECTED


class OnlySeedKV:
    """A store with just the seed's KV_RO vals (no listing), over a dict."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self._data = data

    def id(self) -> str:
        return "plain"

    @classmethod
    async def connect(cls, id: str) -> Ok[OnlySeedKV] | Error[KVError]:
        return Ok(cls({}))

    async def disconnect(self) -> None:
        pass

    async def read(
        self, key: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[KVError]:
        if key not in self._data:
            return Error(UnknownKey(key))
        return Ok([memoryview(self._data[key][offset : offset + length])])

    async def size(self, key: str) -> Ok[int] | Error[KVError]:
        if key not in self._data:
            return Error(UnknownKey(key))
        return Ok(len(self._data[key]))


def test_kv_ro_without_listing_reads_the_secret() -> None:
    store: v1.KVRO = OnlySeedKV({"secret": b"s3cr3t"})
    lines = run_with_console(lambda c: kv_ro.start(c, store))
    assert output_lines(lines) == ["1 key(s)", "secret (6 bytes)", "  s3cr3t"]
    missing: v1.KVRO = OnlySeedKV({})
    lines = run_with_console(lambda c: kv_ro.start(c, missing))
    assert output_lines(lines) == ["1 key(s)", "secret: error UnknownKey(key='secret')"]
