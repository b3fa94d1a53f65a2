"""FatKV: the seed's KV_RO over a FAT volume; keys are file paths.

A read-only view for applications that only need to fetch files (a static website from a
FAT image): every path that is not a regular file is an unknown key. Keys follow the rules
of the other KV_RO stores (``miragekit.kv``): one spelling per value, so no ``..``, ``.``
or empty components, and names match case exactly although FAT itself ignores case.
"""

from __future__ import annotations

from typing import Self

from ..kv import check_range, exact_key
from ..result import Error, FormatNotRecognised, KVError, Ok, UnknownKey
from ..v1 import KVRO, Block, Clock
from ._fatfs import FatFS


class FatKV:
    """KV_RO over a :class:`FatFS` (or over a block device holding a FAT volume)."""

    def __init__(self, fs: FatFS) -> None:
        self._fs = fs

    @classmethod
    async def connect(
        cls, id: Block | FatFS, *, clock: Clock | None = None
    ) -> Ok[Self] | Error[KVError]:
        """Open the FAT volume on ``id``; a device without one is refused."""
        if isinstance(id, FatFS):
            fs = id
        else:
            match await FatFS.connect(id, clock=clock):
                case Ok(f):
                    fs = f
                case Error(e):
                    return Error(UnknownKey(f"cannot open the FAT volume: {e}"))
        match await fs.stat("/"):
            case Error(FormatNotRecognised(msg)):
                return Error(UnknownKey(f"no FAT volume: {msg}"))
            case _:
                pass
        return Ok(cls(fs))

    @property
    def fs(self) -> FatFS:
        return self._fs

    def id(self) -> Block:
        return self._fs.id()

    async def disconnect(self) -> None:
        await self._fs.disconnect()

    async def _path(self, key: str) -> str | None:
        """The FAT path of the file ``key`` names exactly (case included), or ``None``."""
        norm = exact_key(key)
        if norm is None:
            return None
        parts = norm.split("/")
        for i in range(len(parts)):
            match await self._fs.stat("/" + "/".join(parts[: i + 1])):
                case Ok(st) if st.filename == parts[i] and st.directory == (i < len(parts) - 1):
                    pass
                case _:
                    return None
        return "/" + norm

    async def read(
        self, key: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[KVError]:
        """Up to ``length`` bytes of the file ``key`` from ``offset``."""
        check_range(offset, length)
        path = await self._path(key)
        if path is not None:
            match await self._fs.read(path, offset, length):
                case Ok(bufs):
                    return Ok(bufs)
                case _:
                    pass
        return Error(UnknownKey(key))

    async def size(self, key: str) -> Ok[int] | Error[KVError]:
        path = await self._path(key)
        if path is not None:
            match await self._fs.size(path):
                case Ok(n):
                    return Ok(n)
                case _:
                    pass
        return Error(UnknownKey(key))


_check: type[KVRO] = FatKV
