"""KV_RO over a tar archive (plain, gzip, bzip2 or xz), values read lazily."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from typing import IO, Self

from .. import v1
from ..result import Error, KVError, Ok, UnknownKey
from ._keys import check_range, exact_key, normalize
from ._read import pread_pages, stream_pages


def _decompressor(head: bytes, path: str) -> io.BufferedIOBase | None:
    """A decompressing reader of ``path`` if ``head`` starts a gzip, bzip2 or xz stream."""
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if head.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return None


def _uncompressed(path: str) -> IO[bytes]:
    """An open binary file holding the archive's uncompressed bytes (the caller closes it)."""
    f = open(path, "rb")  # noqa: SIM115
    try:
        z = _decompressor(f.read(8), path)
    except BaseException:
        f.close()
        raise
    if z is None:
        f.seek(0)
        return f
    f.close()
    tmp = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        with z:
            shutil.copyfileobj(z, tmp, 1 << 20)
        tmp.flush()
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp


@dataclass(frozen=True, slots=True)
class _Member:
    size: int
    offset_data: int
    info: tarfile.TarInfo


class TarKV:
    """The regular files of a tar archive as a read-only store.

    The archive is indexed once at :meth:`connect` (names and offsets only) and each
    read is one ``pread`` at the member's data offset. A compressed archive is first
    decompressed, in one streaming pass, into an unlinked temporary file, so that reads
    stay random-access (seeking backwards in a compressed stream means starting over).
    Member names are normalized like keys; members whose names contain ``..``, and
    directories, links and devices, are not keys. When a name repeats, the last member wins (as ``tar x`` would leave it).
    """

    def __init__(self, path: str) -> None:
        self._id = path
        self._members: dict[str, _Member] = {}
        self._tar: tarfile.TarFile | None = None
        self._file: IO[bytes] = _uncompressed(path)
        try:
            tar = tarfile.open(fileobj=self._file, mode="r:")  # noqa: SIM115
            for m in tar:
                if not m.isreg():
                    continue
                key = normalize(m.name)
                if key is not None:
                    self._members[key] = _Member(m.size, m.offset_data, m)
            if any(m.info.issparse() for m in self._members.values()):
                self._tar = tar  # sparse members need tarfile to map their holes
            else:
                tar.close()  # the file stays open: tarfile does not own it
        except BaseException:
            self._file.close()
            raise
        self._fd: int | None = self._file.fileno()

    @classmethod
    async def connect(cls, id: str) -> Ok[Self] | Error[KVError]:
        """Serve the archive at path ``id``; ``Error(UnknownKey(id))`` if it is not one."""
        try:
            return Ok(cls(os.fspath(id)))
        except (OSError, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error):
            return Error(UnknownKey(id))

    def id(self) -> str:
        return self._id

    async def disconnect(self) -> None:
        """Close the archive: every key is unknown from now on."""
        self._members = {}
        self._fd = None
        self._tar = None
        self._file.close()

    def _lookup(self, key: str) -> _Member | None:
        norm = exact_key(key)
        return None if norm is None else self._members.get(norm)

    async def read(
        self, key: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[KVError]:
        """Up to ``length`` bytes of ``key``'s value from ``offset`` (fewer at the end)."""
        check_range(offset, length)
        m = self._lookup(key)
        if m is None:
            return Error(UnknownKey(key))
        n = min(length, m.size - offset)
        if n <= 0:
            return Ok([])
        if self._fd is None:
            return Error(UnknownKey(key))
        if self._tar is None or not m.info.issparse():
            return Ok(pread_pages(self._fd, m.offset_data + offset, n))
        f = self._tar.extractfile(m.info)
        if f is None:
            return Error(UnknownKey(key))
        with f:
            f.seek(offset)
            return Ok(stream_pages(f, n))

    async def size(self, key: str) -> Ok[int] | Error[KVError]:
        m = self._lookup(key)
        return Error(UnknownKey(key)) if m is None else Ok(m.size)

    async def keys(self) -> list[str]:
        """Every key (extension, not in the seed), sorted."""
        return sorted(self._members)


_check: type[v1.KVRO] = TarKV
