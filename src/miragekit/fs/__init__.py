"""FS: a FAT12/16/32 filesystem with VFAT long names over any BLOCK, and a KV_RO view.

:class:`FatFS` implements the seed's FS signature; ``mkfs.fat``, ``fsck.fat`` and mtools
accept what it writes.
"""

from ._bpb import BootSector as BootSector
from ._bpb import NotFat as NotFat
from ._dirent import fat_name as fat_name
from ._dirent import long_name_problem as long_name_problem
from ._fatfs import MAX_FILE_SIZE as MAX_FILE_SIZE
from ._fatfs import FatFS as FatFS
from ._format import check_format as check_format
from ._kv import FatKV as FatKV

__all__ = [
    "MAX_FILE_SIZE",
    "BootSector",
    "FatFS",
    "FatKV",
    "NotFat",
    "check_format",
    "fat_name",
    "long_name_problem",
]
