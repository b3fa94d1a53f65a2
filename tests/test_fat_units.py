"""The FAT building blocks over fixed bytes: table entries and chains, names, entries."""

from __future__ import annotations

import pytest

from miragekit.fs import BootSector
from miragekit.fs._bpb import FSInfo, NotFat
from miragekit.fs._dirent import (
    Entry,
    checksum,
    exact_short,
    lfn_slots,
    make_short,
    parse_dir,
    short_display,
    valid_long_name,
)
from miragekit.fs._fat import Fat
from miragekit.fs._format import plan


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_fat_entries_chains_and_dirty_sectors(bits: int) -> None:
    fat = Fat(bits, bytearray(4096), 1000, 512)
    assert fat.free_count == 1000
    fat.link([5, 6, 7, 100, 101, 3])
    assert fat.chain(5) == [5, 6, 7, 100, 101, 3]
    assert fat.free_count == 994
    assert fat.get(3) == fat.eoc and fat.is_eoc(fat.get(3))
    dirty = fat.take_dirty()
    assert dirty and fat.take_dirty() == []
    fat.set(101, 0)  # now the chain reaches a free cluster
    with pytest.raises(ValueError, match="free"):
        fat.chain(5)
    fat.set(101, 6)  # a loop
    with pytest.raises(ValueError, match="loops"):
        fat.chain(5)
    fat.set(101, 1500)  # outside the volume
    with pytest.raises(ValueError, match="invalid"):
        fat.chain(5)
    run = list(range(200, 700))
    fat.link(run)
    assert fat.chain(200) == run
    assert fat.find_free(3) == [700, 701, 702]  # from the hint, contiguous
    fat.next_free = 2
    # 16/32-bit FATs prefer a contiguous run; FAT12 takes the first free ones.
    assert fat.find_free(3) == ([2, 4, 8] if bits == 12 else [8, 9, 10])
    fat.next_free = 990
    assert fat.find_free(20) == [*range(990, 1002), 2, 4, *range(8, 14)]  # wraps around
    assert fat.find_free(fat.free_count + 1) is None


def test_fat12_packs_two_entries_in_three_bytes() -> None:
    raw = bytearray(1536)
    fat = Fat(12, raw, 900, 512)
    fat.set(2, 0xABC)
    fat.set(3, 0x123)
    assert raw[3:6] == bytes([0xBC, 0x3A, 0x12])
    fat.set(341, 0xFFF)  # offset 511..512 straddles a sector boundary
    assert sorted(s for s, _n in fat.take_dirty()) == [0]
    assert fat.get(341) == 0xFFF


def test_fat32_keeps_the_reserved_high_bits() -> None:
    raw = bytearray(4096)
    raw[4 * 10 : 4 * 10 + 4] = (0xF0000000).to_bytes(4, "little")
    fat = Fat(32, raw, 1000, 512)
    assert fat.get(10) == 0 and fat.free_count == 1000
    fat.set(10, 0x0FFFFFFF)
    assert int.from_bytes(raw[40:44], "little") == 0xFFFFFFFF


def test_names() -> None:
    assert checksum(b"FOO     BAR") == checksum(b"FOO     BAR")
    assert exact_short("readme.txt") == b"README  TXT"
    assert exact_short("a.b.c") is None and exact_short(".x") is None
    assert exact_short("toolongname.txt") is None and exact_short("a b") is None
    taken: set[bytes] = set()
    hints: dict[str, int] = {}
    s1, long1 = make_short("README.TXT", taken.__contains__, hints)
    assert (s1, long1) == (b"README  TXT", False)
    taken.add(s1)
    s2, long2 = make_short("readme.txt", taken.__contains__, hints)
    assert long2 and s2 == b"README~1TXT"
    names = [make_short(f"Long File Name {i}.html", taken.__contains__, hints) for i in range(12)]
    shorts = [n for n, _ in names]
    for s in shorts:
        taken.add(s)
    assert shorts[0] == b"LONGFI~1HTM" and shorts[9] == b"LONGF~10HTM"
    assert len(set(shorts)) == 12
    assert make_short("naïve.txt", taken.__contains__, hints)[0] == b"NA_VE~1 TXT"
    assert short_display(b"FOO     TXT", 0x18) == "foo.txt"
    assert short_display(b"FOO        ") == "FOO"
    assert valid_long_name("ok name.txt") and not valid_long_name("bad|name")
    assert not valid_long_name("..") and not valid_long_name("end.")


def test_long_names_round_trip_through_slots() -> None:
    for name in ["x" * 13, "x" * 14, "ünïcödé ✓ 名前", "y" * 255]:
        short = b"SHORT   TXT"
        e = Entry(name=name, short=short, attr=0x20, cluster=0x12345, size=77)
        data = b"".join(lfn_slots(name, checksum(short))) + e.pack()
        (got,) = parse_dir(data + bytes(64)).entries
        assert (got.name, got.cluster, got.size) == (name, 0x12345, 77)
    # A long name with the wrong checksum is ignored: the short name stands.
    slots = lfn_slots("wrong checksum", 0)
    e = Entry(name="", short=b"REAL    TXT", attr=0x20)
    parsed = parse_dir(b"".join(slots) + e.pack())
    assert [x.name for x in parsed.entries] == ["REAL.TXT"] and parsed.deleted == len(slots)


def test_boot_sector_round_trip_and_refusals() -> None:
    for size, bits in [(1 << 20, 12), (64 << 20, 16), (600 << 20, 32)]:
        bs = plan(size, volume_id=0x1234, label=b"LABEL      ")
        assert bs.fat_bits == bits
        assert BootSector.parse(bs.emit()) == bs
    with pytest.raises(NotFat, match="signature"):
        BootSector.parse(bytes(512))
    raw = bytearray(plan(1 << 20).emit())
    raw[0] = 0
    with pytest.raises(NotFat, match="jump"):
        BootSector.parse(raw)
    info = FSInfo(123, 45)
    assert FSInfo.parse(info.emit(512)) == info
    assert FSInfo.parse(bytes(512)) is None
