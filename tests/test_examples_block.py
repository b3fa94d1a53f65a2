"""examples/block: writes, reads back and verifies sectors on MemoryBlock and FileBlock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from examples.block.app import SECTORS, sector_pattern, start

from miragekit import v1
from miragekit.block import FileBlock, MemoryBlock
from miragekit.result import EOF, BlockError, ConsoleError, Eof, Error, Ok
from miragekit.testing.block import pattern


class RecordingConsole:
    """A console that keeps what is written to it (tests only)."""

    def __init__(self) -> None:
        self.out = bytearray()

    def id(self) -> str:
        return "recording"

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[ConsoleError]:
        return Ok(cls())

    async def disconnect(self) -> None:
        pass

    async def read(self) -> Ok[memoryview] | Eof | Error[ConsoleError]:
        return EOF

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[ConsoleError]:
        self.out += buf
        return Ok(None)

    async def writev(self, bufs: v1.Buffers) -> Ok[None] | Eof | Error[ConsoleError]:
        for b in bufs:
            self.out += b
        return Ok(None)

    async def close(self) -> None:
        pass

    def log(self, s: str) -> None:
        self.out += (s + "\r\n").encode()

    async def log_s(self, s: str) -> None:
        self.log(s)

    @property
    def lines(self) -> list[str]:
        return self.out.decode().split("\r\n")[:-1]


_console: type[v1.Console] = RecordingConsole


class CorruptingBlock:
    """Delegates to a MemoryBlock but flips a byte of ``sector`` on every read."""

    def __init__(self, inner: MemoryBlock, sector: int) -> None:
        self.inner, self.sector = inner, sector

    def id(self) -> str:
        return "corrupting"

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self] | Error[BlockError]:
        return Ok(cls(MemoryBlock(str(id), 128), 5))

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def get_info(self) -> v1.Info:
        return await self.inner.get_info()

    async def read(
        self, sector_start: int, buffers: Sequence[bytearray | memoryview]
    ) -> Ok[None] | Error[BlockError]:
        res = await self.inner.read(sector_start, buffers)
        total = sum(memoryview(b).nbytes for b in buffers)
        offset = (self.sector - sector_start) * 512
        if 0 <= offset < total:
            pos = 0
            for b in buffers:
                mv = memoryview(b).cast("B")
                if pos <= offset < pos + len(mv):
                    mv[offset - pos] ^= 0x01
                pos += len(mv)
        return res

    async def write(self, sector_start: int, buffers: v1.Buffers) -> Ok[None] | Error[BlockError]:
        return await self.inner.write(sector_start, buffers)


_block: type[v1.Block] = CorruptingBlock


def run_app(block: v1.Block) -> list[str]:
    console = RecordingConsole()
    asyncio.run(start(console, block))
    return console.lines


def test_memory_block() -> None:
    dev = MemoryBlock("mem", 256)
    before = pattern(0, 256, 512, salt=1)
    dev.data[:] = before
    lines = run_app(dev)
    assert lines[0] == "block mem: 256 sectors of 512 bytes, read-write"
    assert (
        lines[1]
        == f"block: wrote {SECTORS} sectors (32 KiB) in 8 buffers, read them back: all verified"
    )
    assert lines[2] == "block: original contents restored"
    assert dev.data == before


def test_file_block(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    before = pattern(0, 100, 4096, salt=2)
    path.write_bytes(before)

    async def main() -> list[str]:
        res = await FileBlock.connect(path, sector_size=4096)
        assert isinstance(res, Ok)
        console = RecordingConsole()
        await start(console, res.value)
        await res.value.disconnect()
        return console.lines

    lines = asyncio.run(main())
    assert (
        lines[1] == "block: wrote 64 sectors (256 KiB) in 8 buffers, read them back: all verified"
    )
    assert path.read_bytes() == before


def test_small_device_and_the_pattern() -> None:
    dev = MemoryBlock("small", 10)
    lines = run_app(dev)
    assert "wrote 10 sectors (5 KiB) in 2 buffers" in lines[1]
    assert sector_pattern(7, 512).startswith(b"miragekit block example, sector 0000000007\n")
    assert len(sector_pattern(7, 4096)) == 4096


def test_a_corrupted_read_is_reported() -> None:
    dev = CorruptingBlock(MemoryBlock("bad", 128), sector=5)
    lines = run_app(dev)
    assert lines[1] == f"block: MISMATCH in 1 of {SECTORS} sectors, first 5"


def test_read_only_device_is_not_written() -> None:
    dev = MemoryBlock("ro", 32, read_only=True)
    lines = run_app(dev)
    assert lines == [
        "block ro: 32 sectors of 512 bytes, read-only",
        "block: read 32 sectors; read-only, so not writing",
    ]


def test_empty_device() -> None:
    assert run_app(MemoryBlock("empty", 0))[1] == "block: the device is empty, nothing to do"
