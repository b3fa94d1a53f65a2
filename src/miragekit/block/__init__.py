"""BLOCK devices: :class:`FileBlock` (a host file or block device) and :class:`MemoryBlock`."""

from ._file import FileBlock as FileBlock
from ._memory import MemoryBlock as MemoryBlock

__all__ = ["FileBlock", "MemoryBlock"]
