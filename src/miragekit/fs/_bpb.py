"""The FAT boot sector (BIOS parameter block) and the FAT32 FSInfo sector.

A :class:`BootSector` holds only the meaning of the fields; :meth:`BootSector.parse` checks
untrusted bytes and :meth:`BootSector.emit` writes exactly one logical sector. The FAT type
follows what dosfstools and Linux do: a zero 16-bit FAT size means FAT32, otherwise the
cluster count decides between FAT12 and FAT16.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_CLUSTERS_12 = 4084
MAX_CLUSTERS_16 = 65524
MAX_CLUSTERS_32 = 0x0FFFFFF5

FSINFO_LEAD = 0x41615252
FSINFO_STRUCT = 0x61417272
FSINFO_TRAIL = 0xAA550000
FSINFO_UNKNOWN = 0xFFFFFFFF

_COMMON = struct.Struct("<3s8sHBHBHHBHHHII")  # up to offset 36
_EBPB16 = struct.Struct("<BBBI11s8s")  # offset 36
_EBPB32 = struct.Struct("<IHHIHH12sBBBI11s8s")  # offset 36


class NotFat(Exception):
    """The bytes are not a FAT boot sector (the message says why)."""


@dataclass(frozen=True, slots=True)
class BootSector:
    """What a FAT boot sector says about the volume's layout."""

    bytes_per_sector: int
    sectors_per_cluster: int
    reserved_sectors: int
    num_fats: int
    root_entries: int
    total_sectors: int
    media: int
    fat_sectors: int
    fat_bits: int
    sectors_per_track: int = 32
    heads: int = 64
    hidden_sectors: int = 0
    root_cluster: int = 0
    fsinfo_sector: int = 0
    backup_boot_sector: int = 0
    volume_id: int = 0
    label: bytes = b"NO NAME    "
    oem: bytes = b"mirageki"

    # --- derived layout ---------------------------------------------------------------

    @property
    def cluster_bytes(self) -> int:
        return self.sectors_per_cluster * self.bytes_per_sector

    @property
    def root_dir_sectors(self) -> int:
        return (self.root_entries * 32 + self.bytes_per_sector - 1) // self.bytes_per_sector

    @property
    def first_fat_sector(self) -> int:
        return self.reserved_sectors

    @property
    def root_dir_sector(self) -> int:
        """First sector of the fixed root directory (FAT12/16)."""
        return self.reserved_sectors + self.num_fats * self.fat_sectors

    @property
    def first_data_sector(self) -> int:
        return self.root_dir_sector + self.root_dir_sectors

    @property
    def cluster_count(self) -> int:
        return (self.total_sectors - self.first_data_sector) // self.sectors_per_cluster

    def cluster_sector(self, cluster: int) -> int:
        """The first sector of data cluster ``cluster`` (clusters start at 2)."""
        return self.first_data_sector + (cluster - 2) * self.sectors_per_cluster

    # --- bytes ------------------------------------------------------------------------

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> BootSector:
        """Check and decode a boot sector; raise :class:`NotFat` if it is not one."""
        raw = bytes(raw[:512])
        if len(raw) < 512:
            raise NotFat("boot sector is shorter than 512 bytes")
        if raw[510:512] != b"\x55\xaa":
            raise NotFat("no boot signature 55 AA")
        (
            jump,
            oem,
            bps,
            spc,
            reserved,
            nfats,
            root_entries,
            total16,
            media,
            fat16,
            spt,
            heads,
            hidden,
            total32,
        ) = _COMMON.unpack_from(raw, 0)
        if jump[0] not in (0xEB, 0xE9):
            raise NotFat("no x86 jump at the start of the boot sector")
        if bps < 512 or bps > 4096 or bps & (bps - 1):
            raise NotFat(f"bad bytes per sector {bps}")
        if spc == 0 or spc & (spc - 1):
            raise NotFat(f"bad sectors per cluster {spc}")
        if reserved == 0 or nfats == 0:
            raise NotFat("no reserved sectors or no FATs")
        if media != 0xF0 and media < 0xF8:
            raise NotFat(f"bad media byte {media:#x}")
        total = total16 or total32
        root_cluster = fsinfo = backup = 0
        if fat16 == 0:
            (
                fat32,
                _flags,
                _ver,
                root_cluster,
                fsinfo,
                backup,
                _r,
                _drv,
                _r1,
                sig,
                vid,
                label,
                _t,
            ) = _EBPB32.unpack_from(raw, 36)
            fat_sectors, bits = fat32, 32
            if fat_sectors == 0:
                raise NotFat("FAT size is zero")
        else:
            _drv, _r1, sig, vid, label, _t = _EBPB16.unpack_from(raw, 36)
            fat_sectors, bits = fat16, 0
        if sig != 0x29:
            vid, label = 0, b"NO NAME    "
        bs = cls(
            bytes_per_sector=bps,
            sectors_per_cluster=spc,
            reserved_sectors=reserved,
            num_fats=nfats,
            root_entries=root_entries,
            total_sectors=total,
            media=media,
            fat_sectors=fat_sectors,
            fat_bits=bits,
            sectors_per_track=spt,
            heads=heads,
            hidden_sectors=hidden,
            root_cluster=root_cluster,
            fsinfo_sector=fsinfo,
            backup_boot_sector=backup,
            volume_id=vid,
            label=label,
            oem=oem,
        )
        if total <= bs.first_data_sector:
            raise NotFat("no room for a data area")
        n = bs.cluster_count
        if bits == 0:
            if root_entries == 0:
                raise NotFat("FAT12/16 volume without a root directory")
            if n <= MAX_CLUSTERS_12:
                bits = 12
            elif n <= MAX_CLUSTERS_16:
                bits = 16
            else:
                raise NotFat(f"{n} clusters is too many for a 16-bit FAT")
            bs = _replace_bits(bs, bits)
        elif root_cluster < 2 or root_cluster >= n + 2:
            raise NotFat(f"bad FAT32 root cluster {root_cluster}")
        if (n + 2) * bs.fat_bits > fat_sectors * bps * 8:
            raise NotFat("FAT is too small for the cluster count")
        return bs

    def emit(self) -> bytes:
        """One logical sector holding this boot sector."""
        out = bytearray(self.bytes_per_sector)
        big = self.total_sectors >= 0x10000 or self.fat_bits == 32
        _COMMON.pack_into(
            out,
            0,
            b"\xeb\x58\x90" if self.fat_bits == 32 else b"\xeb\x3c\x90",
            self.oem,
            self.bytes_per_sector,
            self.sectors_per_cluster,
            self.reserved_sectors,
            self.num_fats,
            self.root_entries,
            0 if big else self.total_sectors,
            self.media,
            0 if self.fat_bits == 32 else self.fat_sectors,
            self.sectors_per_track,
            self.heads,
            self.hidden_sectors,
            self.total_sectors if big else 0,
        )
        kind = {12: b"FAT12   ", 16: b"FAT16   ", 32: b"FAT32   "}[self.fat_bits]
        if self.fat_bits == 32:
            _EBPB32.pack_into(
                out,
                36,
                self.fat_sectors,
                0,
                0,
                self.root_cluster,
                self.fsinfo_sector,
                self.backup_boot_sector,
                bytes(12),
                0x80,
                0,
                0x29,
                self.volume_id,
                self.label,
                kind,
            )
            code = 90
        else:
            _EBPB16.pack_into(out, 36, 0x80, 0, 0x29, self.volume_id, self.label, kind)
            code = 62
        # A tiny boot program: "int 18h" (no bootable disk), then halt in a loop.
        out[code : code + 4] = b"\xcd\x18\xeb\xfe"
        out[510:512] = b"\x55\xaa"
        return bytes(out)


def _replace_bits(bs: BootSector, bits: int) -> BootSector:
    from dataclasses import replace

    return replace(bs, fat_bits=bits)


@dataclass(frozen=True, slots=True)
class FSInfo:
    """The FAT32 FSInfo hints: free cluster count and where to look for free clusters."""

    free_count: int
    next_free: int

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> FSInfo | None:
        """The hints, or ``None`` if the sector is not an FSInfo sector."""
        (lead,) = struct.unpack_from("<I", raw, 0)
        sig, free, nxt = struct.unpack_from("<III", raw, 484)
        (trail,) = struct.unpack_from("<I", raw, 508)
        if lead != FSINFO_LEAD or sig != FSINFO_STRUCT or trail != FSINFO_TRAIL:
            return None
        return cls(free, nxt)

    def emit(self, sector_size: int) -> bytes:
        out = bytearray(sector_size)
        struct.pack_into("<I", out, 0, FSINFO_LEAD)
        struct.pack_into("<III", out, 484, FSINFO_STRUCT, self.free_count, self.next_free)
        struct.pack_into("<I", out, 508, FSINFO_TRAIL)
        if sector_size > 512:
            out[sector_size - 2 : sector_size] = b"\x55\xaa"
        return bytes(out)
