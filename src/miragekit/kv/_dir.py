"""KV_RO over a host directory: keys are paths below its root, and never above it."""

from __future__ import annotations

import contextlib
import os
import stat
import time
import weakref
from typing import Self

from .. import v1
from ..result import Error, KVError, Ok, UnknownKey
from ._keys import check_range, exact_key
from ._read import pread_pages

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
_KEEP = 64  # files kept open per store
_CACHE_MAX = 64 * 1024  # values up to this size are kept in memory too (4 MiB at most)
_SETTLED = 2  # seconds since a file's last change before its bytes may be kept


def _ident(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Kept:
    """A file kept open for a key, and the whole value of a small one: served again
    while a ``stat`` shows the same size and modification and change times, and only
    once its change time is ``_SETTLED`` seconds old (a write within the file system's
    clock tick of the read would leave the times as they were)."""

    __slots__ = ("fd", "ident", "path", "st", "stamp", "value")

    def __init__(self, fd: int, ident: tuple[int, ...], path: str, st: os.stat_result) -> None:
        self.fd = fd
        self.ident = ident
        self.path = path
        self.st = st  # of the last lookup
        self.value: memoryview | None = None
        self.stamp: tuple[int, int, int] | None = None

    def cached(self, st: os.stat_result) -> memoryview | None:
        return self.value if self.stamp == _stamp(st) else None

    def keep(self, st: os.stat_result, value: memoryview) -> None:
        if st.st_size <= _CACHE_MAX and time.time_ns() - st.st_ctime_ns > _SETTLED * 10**9:
            self.value = value.toreadonly()  # shared by every read: nobody may write it
            self.stamp = _stamp(st)


def _close_kept(kept: dict[str, _Kept]) -> None:
    for k in kept.values():
        with contextlib.suppress(OSError):
            os.close(k.fd)
    kept.clear()


class DirKV:
    """The files under a directory as a read-only store.

    Keys are ``/``-separated paths relative to the root, one spelling per value
    (see :func:`exact_key`). A key
    whose real path (symlinks resolved) leaves the root, or that is not a regular file,
    is ``UnknownKey``. Values are current at each call: a file is read through the fd
    kept for its key, or served from memory while a ``stat`` shows it unchanged (see
    :class:`_Kept`; such views are read-only). :meth:`keys` (an extension) lists every
    key, not descending into symlinked directories.
    """

    def __init__(self, root: str) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"root is not a directory: {root!r}")
        self._id = root
        self._root = real
        self._connected = True
        # Files opened before, kept open by key with the identity they had (device,
        # inode, mode, owner): a key asked again costs one stat of its path instead of
        # open, readlink, fstat and close (a static site asks the same few keys twice
        # per request). The stat proves that the name still leads to the same file.
        self._kept: dict[str, _Kept] = {}
        weakref.finalize(self, _close_kept, self._kept)

    @classmethod
    async def connect(cls, id: str) -> Ok[Self] | Error[KVError]:
        """Serve the directory at path ``id``; ``Error(UnknownKey(id))`` if it is none."""
        try:
            return Ok(cls(os.fspath(id)))
        except OSError:
            return Error(UnknownKey(id))

    def id(self) -> str:
        return self._id

    async def disconnect(self) -> None:
        """Stop serving: every key is unknown from now on."""
        self._connected = False
        _close_kept(self._kept)

    def _file(self, key: str) -> _Kept | None:
        """What is kept of the regular file ``key`` names inside the root (its fd, the
        store's), with ``stat`` of it now, or ``None``."""
        if not self._connected:
            return None
        # By the key as asked (checked when kept); anything but a str fails in exact_key.
        kept = self._kept.pop(key, None) if type(key) is str else None
        if kept is not None:
            try:
                st = os.stat(kept.path, follow_symlinks=False)
            except OSError:
                st = None
            if st is not None and _ident(st) == kept.ident:
                self._kept[key] = kept  # to the end: the most recently used
                kept.st = st
                return kept
            os.close(kept.fd)
        norm = exact_key(key)
        if norm is None:
            return None
        fd_new = self._open(norm)
        if fd_new is None:
            return None
        try:
            st = os.fstat(fd_new)
        except OSError:
            os.close(fd_new)
            return None
        if len(self._kept) >= _KEEP:
            oldest = next(iter(self._kept))
            os.close(self._kept.pop(oldest).fd)
        kept = _Kept(fd_new, _ident(st), os.path.join(self._root, norm), st)
        self._kept[key] = kept
        return kept

    def _open(self, key: str) -> int | None:
        """An fd on the regular file ``key`` names inside the root, or ``None``."""
        norm = exact_key(key)
        if norm is None or not self._connected:
            return None
        path = os.path.join(self._root, norm)
        # The usual key has no symlink on its way: open it as is, and the kernel's name
        # for what was opened, equal to the path asked, proves that nothing was followed
        # (so it is inside the root) in one call, where resolving the path first costs
        # an lstat per component on every request. Anything else takes the full way.
        try:
            fd = os.open(path, _FLAGS)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == path:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        return fd
                    os.close(fd)
                    return None
            except OSError:
                pass  # no /proc: the full way decides
            os.close(fd)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._root]) != self._root or real == self._root:
            return None
        try:
            fd = os.open(real, _FLAGS)
        except OSError:
            return None
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    async def read(
        self, key: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[KVError]:
        """Up to ``length`` bytes of ``key``'s value from ``offset`` (fewer at the end)."""
        check_range(offset, length)
        f = self._file(key)
        if f is None:
            return Error(UnknownKey(key))
        st = f.st
        n = min(length, st.st_size - offset)
        if offset == 0 and n > 0:
            cached = f.cached(st)
            if cached is not None:
                return Ok([cached[:n]])
        try:
            pages = pread_pages(f.fd, offset, n)
        except OSError:
            return Error(UnknownKey(key))
        if offset == 0 and pages and n == st.st_size:
            f.keep(st, pages[0])
        return Ok(pages)

    async def size(self, key: str) -> Ok[int] | Error[KVError]:
        f = self._file(key)
        return Error(UnknownKey(key)) if f is None else Ok(f.st.st_size)

    async def keys(self) -> list[str]:
        """Every key (extension, not in the seed), sorted."""
        if not self._connected:
            return []
        found: list[str] = []
        for dirpath, _dirs, files in os.walk(self._root):
            rel = os.path.relpath(dirpath, self._root)
            for name in files:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                fd = self._open(key)
                if fd is not None:
                    os.close(fd)
                    found.append(key)
        return sorted(found)


_check: type[v1.KVRO] = DirKV
