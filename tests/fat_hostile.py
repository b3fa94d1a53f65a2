"""Damaged and hostile FAT images, made by mkfs.fat and mtools and then patched byte by byte.

Each patch reproduces one defect a real image can carry (fsck.fat's own test images cover
the same kinds): names that would leave a directory, directories that contain themselves,
broken, circular and cross-linked chains, bad first clusters, missing dot entries,
duplicate names, sizes past the end of a chain.
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.fat_util import TOOLS_ENV, tool

from miragekit.fs._bpb import BootSector
from miragekit.fs._dirent import SLOT

ATTR_LFN = 0x0F


def mkfs(img: Path, fat: int, kib: int) -> None:
    """An empty image made by mkfs.fat (not by us)."""
    subprocess.run(
        ["mkfs.fat", "-C", "-F", str(fat), "-n", "HOSTILE", str(img), str(kib)],
        check=True,
        capture_output=True,
        env=TOOLS_ENV,
    )


def mcopy(img: Path, host: Path, dest: str = "/") -> None:
    tool("mcopy", "-s", "-i", str(img), str(host), "::" + dest)


def mmd(img: Path, dest: str) -> None:
    tool("mmd", "-i", str(img), "::" + dest)


def layout(data: bytes | bytearray) -> BootSector:
    return BootSector.parse(data[:512])


def short_slot(data: bytes | bytearray, short: bytes) -> int:
    """The byte offset of the (only) live 8.3 entry named ``short`` (11 bytes)."""
    assert len(short) == 11
    hits = [
        m.start()
        for m in re.finditer(re.escape(short), data)
        if m.start() % SLOT == 0 and data[m.start() + 11] != ATTR_LFN
    ]
    assert len(hits) == 1, (short, hits)
    return hits[0]


def patch_long_name(data: bytearray, old: str, new: str) -> None:
    """Rewrite the VFAT long name ``old`` as ``new`` (same length), keeping its checksum."""
    assert len(old) == len(new)
    old_units, new_units = old.encode("utf-16-le"), new.encode("utf-16-le", "surrogatepass")
    for m in range(0, len(data) - SLOT, SLOT):
        if data[m + 11] != ATTR_LFN or not data[m] & 0x40:
            continue
        count = data[m] & 0x1F
        slots = [m + k * SLOT for k in range(count)]
        chars = b"".join(_lfn(data, s) for s in reversed(slots))
        if chars[: len(old_units)] == old_units and chars[len(old_units) : len(old_units) + 2] in (
            b"\0\0",
            b"",
        ):
            whole = bytearray(chars)
            whole[: len(new_units)] = new_units
            for i, s in enumerate(reversed(slots)):
                piece = whole[i * 26 : i * 26 + 26]
                data[s + 1 : s + 11] = piece[0:10]
                data[s + 14 : s + 26] = piece[10:22]
                data[s + 28 : s + 32] = piece[22:26]
            return
    raise AssertionError(f"no long name {old!r} in the image")


def _lfn(data: bytearray, s: int) -> bytes:
    return bytes(data[s + 1 : s + 11] + data[s + 14 : s + 26] + data[s + 28 : s + 32])


def get_cluster(data: bytes | bytearray, off: int) -> int:
    hi, lo = (
        struct.unpack_from("<H", data, off + 20)[0],
        struct.unpack_from("<H", data, off + 26)[0],
    )
    return int((hi << 16) | lo)


def set_cluster(data: bytearray, off: int, cluster: int) -> None:
    struct.pack_into("<H", data, off + 20, cluster >> 16)
    struct.pack_into("<H", data, off + 26, cluster & 0xFFFF)


def set_size(data: bytearray, off: int, size: int) -> None:
    struct.pack_into("<I", data, off + 28, size)


def set_fat(data: bytearray, cluster: int, value: int) -> None:
    """Set one FAT entry in every copy (FAT12, 16 or 32)."""
    bs = layout(data)
    for copy in range(bs.num_fats):
        base = (bs.first_fat_sector + copy * bs.fat_sectors) * bs.bytes_per_sector
        if bs.fat_bits == 16:
            struct.pack_into("<H", data, base + 2 * cluster, value & 0xFFFF)
        elif bs.fat_bits == 32:
            struct.pack_into("<I", data, base + 4 * cluster, value & 0x0FFFFFFF)
        else:
            at = base + cluster * 3 // 2
            (word,) = struct.unpack_from("<H", data, at)
            keep, put = (0x000F, (value & 0xFFF) << 4) if cluster & 1 else (0xF000, value & 0xFFF)
            word = (word & keep) | put
            struct.pack_into("<H", data, at, word)


def cluster_offset(data: bytes | bytearray, cluster: int) -> int:
    bs = layout(data)
    return bs.cluster_sector(cluster) * bs.bytes_per_sector


def _tree(src: Path) -> None:
    """The host files every damaged image starts from."""
    (src / "DIR" / "SUB").mkdir(parents=True)
    (src / "VICTIM.TXT").write_bytes(b"victim\n")
    (src / "OTHER.TXT").write_bytes(b"other file\n" * 300)
    (src / "DIR" / "INNER.TXT").write_bytes(b"inner\n")
    (src / "DIR" / "SUB" / "DEEP.TXT").write_bytes(b"deep\n")
    (src / "Long Name.txt").write_bytes(b"long\n")
    (src / ("w" * 200)).write_bytes(b"wide\n")


def damaged_images(work: Path) -> dict[str, bytes]:
    """One image per defect, as bytes (FAT16 unless the name says otherwise)."""
    src = work / "src"
    src.mkdir(parents=True)
    _tree(src)
    base: dict[int, bytes] = {}
    for fat, kib in ((12, 1440), (16, 20480), (32, 40960)):
        img = work / f"clean{fat}.img"
        mkfs(img, fat, kib)
        for p in sorted(src.iterdir()):
            mcopy(img, p)
        base[fat] = img.read_bytes()

    out: dict[str, bytes] = {}

    def make(name: str, fat: int, fn: Callable[[bytearray], None]) -> None:
        data = bytearray(base[fat])
        fn(data)
        out[name] = bytes(data)

    def victim(d: bytearray) -> int:
        return short_slot(d, b"VICTIM  TXT")

    def dir_entry(d: bytearray, name: bytes = b"DIR        ") -> int:
        return short_slot(d, name)

    def first_cluster_bad(d: bytearray) -> None:
        set_cluster(d, victim(d), 1)

    def first_cluster_past_end(d: bytearray) -> None:
        set_cluster(d, victim(d), layout(d).cluster_count + 5)

    def chain_to_free(d: bytearray) -> None:
        c = get_cluster(d, short_slot(d, b"OTHER   TXT"))
        set_fat(d, c, c + 1)
        set_fat(d, c + 1, 0)

    def circular_chain(d: bytearray) -> None:
        c = get_cluster(d, short_slot(d, b"OTHER   TXT"))
        set_fat(d, c + 1, c)

    def chain_to_other_file(d: bytearray) -> None:
        set_cluster(d, victim(d), get_cluster(d, short_slot(d, b"OTHER   TXT")))

    def size_past_chain(d: bytearray) -> None:
        set_size(d, victim(d), 10 << 20)

    def duplicate_names(d: bytearray) -> None:
        d[victim(d) : victim(d) + 11] = b"OTHER   TXT"

    def bad_short_names(d: bytearray) -> None:
        d[victim(d) : victim(d) + 11] = b"a/b\x00 c  T\x01T"

    def dot_entries_missing(d: bytearray) -> None:
        off = cluster_offset(d, get_cluster(d, dir_entry(d)))
        d[off : off + 2 * SLOT] = bytes(2 * SLOT)

    def dir_contains_itself(d: bytearray) -> None:
        sub = short_slot(d, b"SUB        ")
        set_cluster(d, sub, get_cluster(d, dir_entry(d)))

    def dir_is_root(d: bytearray) -> None:
        set_cluster(d, short_slot(d, b"SUB        "), 0)

    def dir_points_at_file(d: bytearray) -> None:
        set_cluster(d, short_slot(d, b"SUB        "), get_cluster(d, victim(d)))

    def long_name_dotdot(d: bytearray) -> None:
        patch_long_name(d, "Long Name.txt", "..".ljust(13, "\0"))

    def long_name_slash(d: bytearray) -> None:
        patch_long_name(d, "Long Name.txt", "../../etc/pwn")

    def long_name_lone_surrogate(d: bytearray) -> None:
        patch_long_name(d, "Long Name.txt", "bad\ud800names.txt")

    def long_name_too_long_for_the_host(d: bytearray) -> None:
        patch_long_name(d, "w" * 200, "\u00e9" * 200)  # 400 bytes in UTF-8; hosts take 255

    def garbage_directory(d: bytearray) -> None:
        off = cluster_offset(d, get_cluster(d, dir_entry(d)))
        d[off + 2 * SLOT : off + 16 * SLOT] = bytes((i * 7) % 255 + 1 for i in range(14 * SLOT))

    def chain_too_long(d: bytearray) -> None:
        c, spare = get_cluster(d, victim(d)), layout(d).cluster_count + 1  # the last: free
        set_fat(d, c, spare)
        set_fat(d, spare, 0xFFFFFFF)

    def label_in_a_directory(d: bytearray) -> None:
        off = short_slot(d, b"INNER   TXT")
        d[off : off + 11] = b"SOME LABEL "
        d[off + 11] = 0x08

    def bpb_zero_cluster_size(d: bytearray) -> None:
        d[13] = 0

    def bpb_larger_than_device(d: bytearray) -> None:
        struct.pack_into("<I", d, 32, layout(d).total_sectors * 4)
        struct.pack_into("<H", d, 19, 0)

    def fat32_bad_root_cluster(d: bytearray) -> None:
        struct.pack_into("<I", d, 44, 0x0FFFFFF0)

    for fat in (12, 16, 32):
        make(f"fat{fat}_first_cluster_1", fat, first_cluster_bad)
        make(f"fat{fat}_dir_contains_itself", fat, dir_contains_itself)
    for name, fn in [
        ("first_cluster_past_end", first_cluster_past_end),
        ("chain_to_free_cluster", chain_to_free),
        ("circular_chain", circular_chain),
        ("chain_to_other_file", chain_to_other_file),
        ("size_past_chain", size_past_chain),
        ("duplicate_names", duplicate_names),
        ("bad_short_names", bad_short_names),
        ("dot_entries_missing", dot_entries_missing),
        ("dir_is_root", dir_is_root),
        ("dir_points_at_file", dir_points_at_file),
        ("long_name_dotdot", long_name_dotdot),
        ("long_name_slash", long_name_slash),
        ("garbage_directory", garbage_directory),
        ("long_name_lone_surrogate", long_name_lone_surrogate),
        ("long_name_too_long_for_the_host", long_name_too_long_for_the_host),
        ("chain_too_long", chain_too_long),
        ("label_in_a_directory", label_in_a_directory),
        ("bpb_zero_cluster_size", bpb_zero_cluster_size),
        ("bpb_larger_than_device", bpb_larger_than_device),
    ]:
        make(name, 16, fn)
    make("fat32_dir_is_root", 32, dir_is_root)
    make("fat32_bad_root_cluster", 32, fat32_bad_root_cluster)
    return out
