"""KV_RO over a host directory: keys are paths below its root, and never above it."""

from __future__ import annotations

import contextlib
import os
import stat
import weakref
from typing import Self

from .. import v1
from ..result import Error, KVError, Ok, UnknownKey
from ._keys import check_range, exact_key
from ._read import pread_pages

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
_KEEP = 64  # files kept open per store


def _ident(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid)


def _close_kept(kept: dict[str, tuple[int, tuple[int, ...], str]]) -> None:
    for fd, _ident, _path in kept.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    kept.clear()


class DirKV:
    """The files under a directory as a read-only store.

    Keys are ``/``-separated paths relative to the root, one spelling per value
    (see :func:`exact_key`). A key
    whose real path (symlinks resolved) leaves the root, or that is not a regular file,
    is ``UnknownKey``. Values are read from disk at each call, so they are always
    current. :meth:`keys` (an extension) lists every key, not descending into
    symlinked directories.
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
        self._kept: dict[str, tuple[int, tuple[int, ...], str]] = {}
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

    def _file(self, key: str) -> tuple[int, int] | None:
        """``(fd, size)`` of the regular file ``key`` names inside the root, or ``None``;
        the fd stays the store's (kept for the next call)."""
        if not self._connected:
            return None
        # By the key as asked (checked when kept); anything but a str fails in exact_key.
        kept = self._kept.pop(key, None) if type(key) is str else None
        if kept is not None:
            fd, ident, path = kept
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                st = None
            if st is not None and _ident(st) == ident:
                self._kept[key] = kept  # to the end: the most recently used
                return fd, st.st_size
            os.close(fd)
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
            os.close(self._kept.pop(oldest)[0])
        self._kept[key] = (fd_new, _ident(st), os.path.join(self._root, norm))
        return fd_new, st.st_size

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
        fd, size = f
        try:
            return Ok(pread_pages(fd, offset, min(length, size - offset)))
        except OSError:
            return Error(UnknownKey(key))

    async def size(self, key: str) -> Ok[int] | Error[KVError]:
        f = self._file(key)
        return Error(UnknownKey(key)) if f is None else Ok(f[1])

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
