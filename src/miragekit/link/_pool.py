"""The virtual switch's recycled buffers for large frames (:class:`_BufferPool`), a module
of its own: its ownership test is the interpreter's reference count, which code compiled
with mypyc (``tools/compiled_tree.py`` compiles the switch) does not keep the same way, so
this module stays interpreted."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Sequence
from typing import Final

from ..v1 import Buffer
from ._impair import Frame

ETH_HEADER: Final = 14
VLAN_TAG: Final = 4
MAX_MTU: Final = 65535

# Frames from 4 KiB up are copied into recycled buffers instead of new ``bytes``: keeping
# dozens of fresh 64 KiB objects alive and freeing them makes malloc return the memory to
# the kernel and fault it back in, which costs ten times the copy.
_POOL_MIN: Final = 4096
_POOL_CLASSES: Final = (16384 + 32, MAX_MTU + ETH_HEADER + VLAN_TAG)
_POOL_BYTES: Final = 32 << 20


class _BufferPool:
    """Recycled bytearrays for large frames; a buffer is reused only when nothing refers to it.

    Python's reference count is the ownership test: while any frame view, pending list or
    timer still holds a buffer, ``sys.getrefcount`` shows it, and the buffer is skipped. A
    receiver that (against the FrameLink contract) keeps a view only pins that buffer.
    """

    __slots__ = ("_bytes", "_pools")

    def __init__(self) -> None:
        self._pools: tuple[deque[bytearray], ...] = tuple(deque() for _ in _POOL_CLASSES)
        self._bytes = 0

    def copy(self, parts: Sequence[Buffer], n: int) -> Frame:
        """A private copy of the concatenation of ``parts`` (``n`` bytes in all)."""
        if n <= _POOL_CLASSES[0]:
            size, pool = _POOL_CLASSES[0], self._pools[0]
        elif n <= _POOL_CLASSES[1]:
            size, pool = _POOL_CLASSES[1], self._pools[1]
        else:
            return b"".join(parts)
        buf: bytearray | None = None
        if pool:
            head = pool[0]
            # references: the deque, `head`, getrefcount's argument
            if sys.getrefcount(head) <= 3:
                pool.rotate(-1)
                buf = head
            del head
        if buf is None:
            if self._bytes + size > _POOL_BYTES:
                return b"".join(parts)
            buf = bytearray(size)
            pool.append(buf)
            self._bytes += size
        view = memoryview(buf)
        off = 0
        for p in parts:
            if type(p) is memoryview and p.format != "B":
                p = p.cast("B")
            m = len(p)
            view[off : off + m] = p
            off += m
        return view[:n]
