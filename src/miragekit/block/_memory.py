"""An in-memory BLOCK device: for tests, simulations and scratch filesystems."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Self

from ..result import BlockError, Disconnected, Error, IsReadOnly, Ok
from ..v1 import Block, Buffer, Info
from ._checks import check_request

_OK: Final = Ok(None)  # immutable, so one instance serves every success

SECTOR_SIZE = 512


class MemoryBlock:
    """``size_sectors`` sectors of ``sector_size`` bytes held in a ``bytearray``."""

    def __init__(
        self,
        name: str,
        size_sectors: int,
        *,
        sector_size: int = SECTOR_SIZE,
        read_only: bool = False,
    ) -> None:
        if size_sectors < 0:
            raise ValueError(f"size_sectors must be >= 0, got {size_sectors}")
        if sector_size <= 0 or sector_size & (sector_size - 1):
            raise ValueError(f"sector_size must be a power of two, got {sector_size}")
        self._name = name
        self._sector_size = sector_size
        self._size_sectors = size_sectors
        self._data = bytearray(size_sectors * sector_size)
        self._read_only = read_only
        self._connected = True

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        size_sectors: int = 2048,
        sector_size: int = SECTOR_SIZE,
        read_only: bool = False,
    ) -> Ok[Self] | Error[BlockError]:
        return Ok(cls(id, size_sectors, sector_size=sector_size, read_only=read_only))

    def id(self) -> str:
        return self._name

    async def disconnect(self) -> None:
        self._connected = False

    async def get_info(self) -> Info:
        return Info(
            read_write=not self._read_only,
            sector_size=self._sector_size,
            size_sectors=self._size_sectors,
        )

    @property
    def data(self) -> memoryview:
        """The whole device's bytes (for tests and image export)."""
        return memoryview(self._data)

    async def read(
        self, sector_start: int, buffers: Sequence[bytearray | memoryview]
    ) -> Ok[None] | Error[BlockError]:
        if not self._connected:
            return Error(Disconnected())
        check_request(sector_start, buffers, self._sector_size, self._size_sectors, writable=True)
        off = sector_start * self._sector_size
        data = memoryview(self._data)
        for b in buffers:
            mv = memoryview(b).cast("B")
            n = len(mv)
            mv[:] = data[off : off + n]
            off += n
        return _OK

    async def write(
        self, sector_start: int, buffers: Sequence[Buffer]
    ) -> Ok[None] | Error[BlockError]:
        if not self._connected:
            return Error(Disconnected())
        if self._read_only:
            return Error(IsReadOnly())
        check_request(sector_start, buffers, self._sector_size, self._size_sectors, writable=False)
        off = sector_start * self._sector_size
        for b in buffers:
            mv = memoryview(b).cast("B")
            self._data[off : off + len(mv)] = mv
            off += len(mv)
        return _OK


_check: type[Block] = MemoryBlock
