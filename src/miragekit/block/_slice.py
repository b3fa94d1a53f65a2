"""A BLOCK device that is a window of another one: a partition inside a disk image.

Partitioned disks (VM images, SD cards) hold their filesystem at an offset; mtools spells
that ``IMAGE@@OFFSET``. The window passes requests through with its first sector added,
so a filesystem on it never sees, and never touches, anything outside.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..result import BlockError, Error, Ok, Unknown
from ..v1 import Block, Buffer, Info
from ._checks import check_request


class SliceBlock:
    """Sectors ``first .. first + count - 1`` of ``inner``, seen as sectors ``0 .. count - 1``.

    Disconnecting the window disconnects ``inner``: the window owns it.
    """

    __slots__ = ("_count", "_first", "_info", "_inner")

    def __init__(self, inner: Block, info: Info, first: int, count: int) -> None:
        self._inner = inner
        self._info = Info(
            read_write=info.read_write, sector_size=info.sector_size, size_sectors=count
        )
        self._first = first
        self._count = count

    @classmethod
    async def connect(cls, id: tuple[Block, int, int | None]) -> Ok[SliceBlock] | Error[BlockError]:
        """The window ``(inner, offset, size)``: from byte ``offset``, ``size`` bytes or to the end.

        ``Error(Unknown(reason))`` when the offset is not on a sector boundary or the window
        does not lie inside the device.
        """
        inner, offset, size = id
        info = await inner.get_info()
        ss = info.sector_size
        total = info.size_sectors * ss
        end = total if size is None else offset + size
        if offset < 0 or offset % ss:
            why = f"offset {offset} is not a multiple of the {ss}-byte sector size"
        elif offset >= total:
            why = f"offset {offset} is at or past the end of the device ({total} bytes)"
        elif end > total:
            why = f"offset {offset} + {size} bytes is past the end of the device ({total} bytes)"
        else:
            return Ok(cls(inner, info, offset // ss, (end - offset) // ss))
        return Error(Unknown(why))

    def id(self) -> object:
        return self._inner.id()

    async def disconnect(self) -> None:
        await self._inner.disconnect()

    async def get_info(self) -> Info:
        return self._info

    async def read(
        self, sector_start: int, buffers: Sequence[bytearray | memoryview]
    ) -> Ok[None] | Error[BlockError]:
        check_request(sector_start, buffers, self._info.sector_size, self._count, writable=True)
        return await self._inner.read(self._first + sector_start, buffers)

    async def write(
        self, sector_start: int, buffers: Sequence[Buffer]
    ) -> Ok[None] | Error[BlockError]:
        check_request(sector_start, buffers, self._info.sector_size, self._count, writable=False)
        return await self._inner.write(self._first + sector_start, buffers)


_check: type[Block] = SliceBlock
