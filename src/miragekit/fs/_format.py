"""Choosing a FAT layout for a given size, the way ``mkfs.fat`` (dosfstools 4.x) does.

The rules, from the tool's documented behaviour: floppy sizes get floppy geometry; FAT32
is chosen from 512 MiB up, with Microsoft's cluster-size table; otherwise the cluster size
starts at 4 sectors and doubles until FAT12 or FAT16 fits, preferring the type with more
clusters. Structures are aligned to the cluster size (except on tiny volumes) and the
sector count is rounded down to whole tracks.
"""

from __future__ import annotations

from ._bpb import MAX_CLUSTERS_12, MAX_CLUSTERS_16, MAX_CLUSTERS_32, BootSector

MIN_CLUSTERS_16 = 4087
MIN_CLUSTERS_32 = 65525

# size in KiB -> (sectors per track, heads, media, sectors per cluster, root entries)
_FLOPPIES: dict[int, tuple[int, int, int, int, int]] = {
    360: (9, 2, 0xFD, 2, 112),
    720: (9, 2, 0xF9, 2, 112),
    1200: (15, 2, 0xF9, 1, 224),
    1440: (18, 2, 0xF0, 1, 224),
    2880: (36, 2, 0xF0, 2, 224),
}


class FormatError(Exception):
    """No FAT layout fits the requested size and type, or the label cannot be recorded."""


_LABEL_BAD = frozenset('*?.,;:/\\|+=<>[]"')


def volume_label(label: str | None) -> bytes | None:
    """The 11 bytes that record ``label`` (upper-cased, as DOS shows labels); ``None`` for none.

    Raises :class:`FormatError` (one line, naming the label) for a label FAT cannot hold.
    """
    if label is None:
        return None
    if len(label) > 11 or not label.isascii():
        why = "a label is up to 11 ASCII characters"
    elif any(c in _LABEL_BAD or not c.isprintable() for c in label):
        why = 'control characters and * ? . , ; : / \\ | + = < > [ ] " are not allowed'
    elif not label.strip():
        why = "a label cannot be empty or only spaces"
    else:
        return label.upper().ljust(11).encode("ascii")
    raise FormatError(f"bad volume label {label!r}: {why}")


def check_format(
    size: int, *, fat: int | None = None, label: str | None = None, sector_size: int = 512
) -> str | None:
    """Why :meth:`FatFS.format` would refuse these arguments, or ``None`` if it would not.

    Lets a caller (the ``mkfs`` command) decide before it creates or resizes anything.
    """
    try:
        volume_label(label)
        plan(size, sector_size=sector_size, fat_bits=fat)
    except FormatError as e:
        return str(e)
    return None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def plan(
    size: int,
    *,
    sector_size: int = 512,
    fat_bits: int | None = None,
    volume_id: int = 0,
    label: bytes = b"NO NAME    ",
) -> BootSector:
    """The boot sector ``mkfs.fat`` would write for a volume of ``size`` bytes."""
    if fat_bits not in (None, 12, 16, 32):
        raise ValueError(f"fat_bits must be 12, 16 or 32, got {fat_bits}")
    total = size // sector_size
    if total <= 524288:
        heads = 2 if total <= 32768 else 4 if total <= 65536 else 8 if total <= 262144 else 16
        spt = 16 if total <= 4096 else 32
    else:
        heads = (
            16
            if total <= 16 * 63 * 1024
            else 32
            if total <= 32 * 63 * 1024
            else 64
            if total <= 64 * 63 * 1024
            else 128
            if total <= 128 * 63 * 1024
            else 255
        )
        spt = 63
    media, spc, root_entries = 0xF8, 4, 512
    floppy = _FLOPPIES.get(size // 1024) if size % 1024 == 0 else None
    if floppy is not None:
        spt, heads, media, spc, root_entries = floppy
    bits = fat_bits
    if bits is None and size >= 512 * 1024 * 1024:
        bits = 32
    if bits == 32:
        spc = (
            64
            if total > 32 * 1024 * 1024 * 2
            else 32
            if total > 16 * 1024 * 1024 * 2
            else 16
            if total > 8 * 1024 * 1024 * 2
            else 8
            if total > 260 * 1024 * 2
            else 1
        )
        root_entries = 0
    reserved = 32 if bits == 32 else 1
    total = min(total, 0xFFFFFFFF)
    total = total // spt * spt
    align = total > 8192
    nfats = 2

    def al(n: int, c: int) -> int:
        return (n + c - 1) & ~(c - 1) if align else n

    root_secs = _cdiv(root_entries * 32, sector_size)
    chosen: tuple[int, int, int] | None = None  # (bits, clusters, fat length)
    while spc <= 128:
        data32 = total - al(reserved, spc)
        data1216 = data32 - al(root_secs, spc)
        c12 = 2 * (data1216 * sector_size + nfats * 3) // (2 * spc * sector_size + nfats * 3)
        f12 = al(_cdiv(((c12 + 2) * 3 + 1) >> 1, sector_size), spc)
        c12 = (data1216 - nfats * f12) // spc
        if c12 > min(f12 * 2 * sector_size // 3, MAX_CLUSTERS_12):
            c12 = 0
        c16 = (data1216 * sector_size + nfats * 4) // (spc * sector_size + nfats * 2)
        f16 = al(_cdiv((c16 + 2) * 2, sector_size), spc)
        c16 = (data1216 - nfats * f16) // spc
        if c16 > min(f16 * sector_size // 2, MAX_CLUSTERS_16) or c16 < MIN_CLUSTERS_16:
            c16 = 0
        c32 = (data32 * sector_size + nfats * 8) // (spc * sector_size + nfats * 4)
        f32 = al(_cdiv((c32 + 2) * 4, sector_size), spc)
        c32 = (data32 - nfats * f32) // spc
        if c32 > min(f32 * sector_size // 4, MAX_CLUSTERS_32):
            c32 = 0
        if c32 and c32 < MIN_CLUSTERS_32 and fat_bits != 32:
            c32 = 0
        if c12 > 0 and bits in (None, 12):
            chosen = (16, c16, f16) if bits is None and c16 > c12 else (12, c12, f12)
            break
        if c16 > 0 and bits in (None, 16):
            chosen = (16, c16, f16)
            break
        if c32 > 0 and bits == 32:
            chosen = (32, c32, f32)
            break
        spc <<= 1
    if chosen is None or chosen[1] <= 0:
        raise FormatError(
            f"no FAT{bits or ''} layout fits {size} bytes"
            if bits
            else f"{size} bytes is too small or too large for FAT"
        )
    bits, _clusters, fat_len = chosen
    reserved = al(reserved, spc)
    if align and bits != 32:
        root_entries = al(root_secs, spc) * (sector_size >> 5)
    bs = BootSector(
        bytes_per_sector=sector_size,
        sectors_per_cluster=spc,
        reserved_sectors=reserved,
        num_fats=nfats,
        root_entries=root_entries,
        total_sectors=total,
        media=media,
        fat_sectors=fat_len,
        fat_bits=bits,
        sectors_per_track=spt,
        heads=heads,
        root_cluster=2 if bits == 32 else 0,
        fsinfo_sector=1 if bits == 32 else 0,
        backup_boot_sector=6 if bits == 32 else 0,
        volume_id=volume_id & 0xFFFFFFFF,
        label=label,
    )
    blocks, data_block = size // 1024, -(-bs.first_data_sector * sector_size // 1024)
    if blocks < data_block + 32 or bs.cluster_count < 1:
        raise FormatError(f"{size} bytes is too small for a FAT volume")
    return bs
