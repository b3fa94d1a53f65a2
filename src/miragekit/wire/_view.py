"""What every wire view shares: the buffer, the checked constructor, integer fields.

A view (``Ipv4Packet``, ``UdpPacket``, ...) reads and writes a format's fields in place
in a buffer. Its fields at fixed offsets are :class:`UInt` descriptors, declared once per
field instead of a getter and a setter each.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Self, TypeVar, overload

E = TypeVar("E", bound=IntEnum)
_FORMATS = {1: struct.Struct("!B"), 2: struct.Struct("!H"), 4: struct.Struct("!I")}


class View:
    """A view over ``buf``; :meth:`checked` also validates its length fields."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self.buf = memoryview(buf)

    @classmethod
    def checked(cls, buf: bytes | bytearray | memoryview) -> Self:
        p = cls(buf)
        p.check_len()
        return p

    def check_len(self) -> None:
        """Raise :class:`WireError` unless the buffer holds what the header says."""
        raise NotImplementedError


class UInt:
    """A big-endian unsigned field of ``size`` bytes (1, 2 or 4) at ``offset`` of a view."""

    __slots__ = ("_fmt", "_off")

    def __init__(self, offset: int, size: int = 2) -> None:
        self._fmt = _FORMATS[size]
        self._off = offset

    @overload
    def __get__(self, view: None, owner: type[View]) -> Self: ...

    @overload
    def __get__(self, view: View, owner: type[View]) -> int: ...

    def __get__(self, view: View | None, owner: type[View]) -> int | Self:
        if view is None:
            return self
        return int(self._fmt.unpack_from(view.buf, self._off)[0])

    def __set__(self, view: View, value: int) -> None:
        self._fmt.pack_into(view.buf, self._off, value)


def known(kind: type[E], value: int) -> E | int:
    """``value`` as a member of ``kind`` when it names one, else the int itself: a code
    this module does not know is kept, not refused."""
    try:
        return kind(value)
    except ValueError:
        return value
