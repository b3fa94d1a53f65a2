"""FS: a FAT12/16/32 filesystem with VFAT long names over any BLOCK, and a KV_RO view.

:class:`FatFS` implements the seed's FS signature; ``mkfs.fat``, ``fsck.fat`` and mtools
accept what it writes.
"""

from ._bpb import BootSector as BootSector
from ._bpb import NotFat as NotFat
from ._fatfs import FatFS as FatFS
from ._kv import FatKV as FatKV

__all__ = ["BootSector", "FatFS", "FatKV", "NotFat"]
