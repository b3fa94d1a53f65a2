"""BLOCK devices: :class:`MemoryBlock` (and, file-backed, ``FileBlock``)."""

from ._memory import MemoryBlock as MemoryBlock

__all__ = ["MemoryBlock"]
