"""BLOCK devices: :class:`FileBlock` (a host file or block device), :class:`MemoryBlock`,
and :class:`SliceBlock` (a window of another device: a partition)."""

from ._file import FileBlock as FileBlock
from ._memory import MemoryBlock as MemoryBlock
from ._slice import SliceBlock as SliceBlock

__all__ = ["FileBlock", "MemoryBlock", "SliceBlock"]
