"""FAT directory entries: 8.3 entries, VFAT long-name entries, short-name generation.

A directory is an array of 32-byte slots. A file is one 8.3 ("short") slot, preceded by
VFAT slots that spell its long name in UTF-16 (13 units each, last one first) and carry
the checksum of the short name they belong to. Long names that are not already a valid
upper-case 8.3 name get a generated short name with a ``~N`` tail.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..v1 import Tm

ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LFN = 0x0F

NT_LOWER_BASE = 0x08
NT_LOWER_EXT = 0x10

SLOT = 32
DELETED = 0xE5
MAX_NAME_UNITS = 255

_ENTRY = struct.Struct("<11sBBBHHHHHHHI")
_LONG_BAD = frozenset('"*/:<>?\\|')
_SHORT_BAD = frozenset('"*+,./:;<=>?[\\]|')
DOT = b".          "
DOTDOT = b"..         "


@dataclass(slots=True, eq=False)
class Entry:
    """One file or directory as its directory records it (mutable: the FS updates it)."""

    name: str
    short: bytes
    attr: int
    cluster: int = 0
    size: int = 0
    ntres: int = 0
    ctime_cs: int = 0
    ctime: int = 0
    cdate: int = 0
    adate: int = 0
    mtime: int = 0
    mdate: int = 0
    slot: int = 0
    first_slot: int = 0

    @property
    def is_dir(self) -> bool:
        return bool(self.attr & ATTR_DIRECTORY)

    def pack(self) -> bytes:
        """The 32-byte short entry."""
        short = self.short
        if short[0] == DELETED:
            short = b"\x05" + short[1:]
        return _ENTRY.pack(
            short,
            self.attr,
            self.ntres,
            self.ctime_cs,
            self.ctime,
            self.cdate,
            self.adate,
            self.cluster >> 16,
            self.mtime,
            self.mdate,
            self.cluster & 0xFFFF,
            self.size,
        )


def unpack(raw: bytes | bytearray | memoryview, name: str | None) -> Entry:
    """Decode a 32-byte short entry; ``name`` is its long name, if it had a valid one."""
    (short, attr, ntres, cs, ctime, cdate, adate, hi, mtime, mdate, lo, size) = _ENTRY.unpack(raw)
    if short[0] == 0x05:
        short = b"\xe5" + short[1:]
    return Entry(
        name=name if name is not None else short_display(short, ntres),
        short=short,
        attr=attr,
        cluster=(hi << 16) | lo,
        size=size,
        ntres=ntres,
        ctime_cs=cs,
        ctime=ctime,
        cdate=cdate,
        adate=adate,
        mtime=mtime,
        mdate=mdate,
    )


def short_display(short: bytes, ntres: int = 0) -> str:
    """The 8.3 name as text (``NAME.EXT``), honouring the NT lower-case flags."""
    base = short[:8].rstrip(b" ").decode("cp850")
    ext = short[8:11].rstrip(b" ").decode("cp850")
    if ntres & NT_LOWER_BASE:
        base = base.lower()
    if ntres & NT_LOWER_EXT:
        ext = ext.lower()
    return f"{base}.{ext}" if ext else base


def checksum(short: bytes) -> int:
    """The VFAT checksum of an 11-byte short name."""
    s = 0
    for c in short:
        s = (((s & 1) << 7) + (s >> 1) + c) & 0xFF
    return s


def lfn_slots(name: str, chk: int) -> list[bytes]:
    """The long-name slots for ``name``, in on-disk order (highest ordinal first)."""
    units = name.encode("utf-16-le", "surrogatepass")
    n = len(units) // 2
    count = (n + 12) // 13
    buf = bytearray(units)
    if n % 13:
        buf += b"\x00\x00"
        buf += b"\xff\xff" * (count * 13 - n - 1)
    slots: list[bytes] = []
    for i in range(count):
        chunk = buf[i * 26 : i * 26 + 26]
        b = bytearray(SLOT)
        b[0] = (i + 1) | (0x40 if i + 1 == count else 0)
        b[1:11] = chunk[0:10]
        b[11] = ATTR_LFN
        b[13] = chk
        b[14:26] = chunk[10:22]
        b[28:32] = chunk[22:26]
        slots.append(bytes(b))
    slots.reverse()
    return slots


def _lfn_chars(raw: bytes | bytearray | memoryview) -> bytes:
    return bytes(raw[1:11]) + bytes(raw[14:26]) + bytes(raw[28:32])


@dataclass(slots=True)
class Parsed:
    """What a directory's slots hold."""

    entries: list[Entry]
    end: int  # index of the first never-used slot (or the slot count)
    deleted: int  # free (deleted or orphaned) slots before ``end``


def parse_dir(data: bytes | bytearray | memoryview) -> Parsed:
    """Decode every live entry of a directory (skipping ``.``, ``..`` and labels)."""
    mv = memoryview(data)
    nslots = len(mv) // SLOT
    entries: list[Entry] = []
    deleted = 0
    parts: list[bytes] = []
    expect = 0
    chk = -1
    lfn_start = 0
    i = 0
    while i < nslots:
        raw = mv[i * SLOT : (i + 1) * SLOT]
        first = raw[0]
        if first == 0x00:
            return Parsed(entries, i, deleted)
        if first == DELETED:
            deleted += 1
            parts, expect = [], 0
            i += 1
            continue
        attr = raw[11]
        if attr & 0x3F == ATTR_LFN:
            seq = first & 0x1F
            if first & 0x40 and 1 <= seq <= 20:
                if expect:
                    deleted += len(parts)
                parts, expect, chk, lfn_start = [_lfn_chars(raw)], seq - 1, raw[13], i
            elif expect and seq == expect and raw[13] == chk:
                parts.append(_lfn_chars(raw))
                expect -= 1
            else:
                deleted += len(parts) + 1
                parts, expect = [], 0
            i += 1
            continue
        name: str | None = None
        start = i
        if parts and expect == 0 and checksum(bytes(raw[0:11])) == chk:
            units = b"".join(reversed(parts))
            for k in range(0, len(units), 2):
                if units[k] == 0 and units[k + 1] == 0:
                    units = units[:k]
                    break
            name = units.decode("utf-16-le", "surrogatepass")
            start = lfn_start
        elif parts:
            deleted += len(parts)
        parts, expect = [], 0
        if attr & ATTR_VOLUME or bytes(raw[0:11]) in (DOT, DOTDOT):
            i += 1
            continue
        e = unpack(raw, name)
        e.slot, e.first_slot = i, start
        entries.append(e)
        i += 1
    return Parsed(entries, nslots, deleted)


# --- names -------------------------------------------------------------------------------


def valid_long_name(name: str) -> bool:
    """Whether ``name`` may be stored as a VFAT long name."""
    if not name or name in (".", "..") or name[-1] in ". ":
        return False
    if len(name.encode("utf-16-le", "surrogatepass")) > 2 * MAX_NAME_UNITS:
        return False
    return not any(c in _LONG_BAD or ord(c) < 0x20 for c in name)


def long_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a VFAT long name, in words for a user, or ``None``."""
    if valid_long_name(name):
        return None
    if not name or name in (".", ".."):
        return "an empty name" if not name else "a name that means a directory itself"
    if name[-1] in ". ":
        return "a name ending in a dot or a space"
    bad = sorted({c for c in name if c in _LONG_BAD or ord(c) < 0x20})
    if bad:
        return "a name with " + " ".join(repr(c) for c in bad)
    return f"a name longer than {MAX_NAME_UNITS} UTF-16 units"


def fat_name(host: str) -> str | None:
    """The name a host file gets in a FAT directory, or ``None`` if FAT cannot hold it.

    Trailing dots and spaces are dropped, as mcopy and Windows drop them (a FAT name
    cannot end in either); other forbidden characters are not rewritten.
    """
    name = host.rstrip(". ")
    return name if valid_long_name(name) else None


def exact_short(name: str) -> bytes | None:
    """The 11-byte short name if ``name`` is a valid 8.3 name as it stands (any case)."""
    if not name.isascii() or name.startswith("."):
        return None
    base, dot, ext = name.partition(".")
    if not 1 <= len(base) <= 8 or len(ext) > 3 or (dot and not ext) or "." in ext:
        return None
    for c in base + ext:
        if c in _SHORT_BAD or c <= " " or c == "\x7f":
            return None
    return (base.upper().ljust(8) + ext.upper().ljust(3)).encode("ascii")


def nt_case(name: str) -> int | None:
    """The NT case flags that spell the 8.3 ``name`` without a long name, or ``None``.

    Windows NT and mtools record an all-lower-case base and/or extension as two flag bits
    of the short entry (``DIR_NTRes``) instead of spending a long-name slot on it; a name
    that mixes cases within the base or the extension still needs a long name.
    """
    if exact_short(name) is None:
        return None
    base, _dot, ext = name.partition(".")
    flags = 0
    for part, bit in ((base, NT_LOWER_BASE), (ext, NT_LOWER_EXT)):
        if part != part.upper():
            if part != part.lower():
                return None
            flags |= bit
    return flags


def lookup_key(name: str) -> str:
    """The case-insensitive key a name is indexed under."""
    return name.upper() if name.isascii() else "".join(_up(c) for c in name)


def _up(c: str) -> str:
    u = c.upper()
    return u if len(u) == 1 else c


def _short_char(c: str) -> str:
    if c.isascii() and c > " " and c != "\x7f" and c not in _SHORT_BAD:
        return c.upper()
    return "_"


def make_short(
    name: str, taken: Callable[[bytes], bool], hints: dict[str, int]
) -> tuple[bytes, bool]:
    """A free short name for ``name`` and whether a long name is needed beside it.

    ``taken`` says whether a short name is used in the directory; ``hints`` remembers the
    last ``~N`` tried per basis, so many similar names stay cheap to create.
    """
    exact = exact_short(name)
    if exact is not None and not taken(exact):
        return exact, nt_case(name) is None
    s = name.replace(" ", "").lstrip(".")
    stem, dot, ext = s.rpartition(".")
    if not dot:
        stem, ext = s, ""
    base = "".join(_short_char(c) for c in stem if c != ".")[:8] or "_"
    e = "".join(_short_char(c) for c in ext)[:3]
    key = f"{base}.{e}"
    n = hints.get(key, 0)
    while True:
        n += 1
        tail = f"~{n}"
        if len(tail) > 7:
            raise ValueError("no free short name")
        cand = (base[: 8 - len(tail)] + tail).ljust(8) + e.ljust(3)
        raw = cand.encode("ascii")
        if not taken(raw):
            hints[key] = n
            return raw, True


# --- timestamps --------------------------------------------------------------------------


def stamp(tm: Tm) -> tuple[int, int, int]:
    """``(date, time, centiseconds)`` in FAT encoding for a broken-down time."""
    year = tm.tm_year + 1900
    if year < 1980:
        return (1 << 5) | 1, 0, 0
    if year > 2107:
        return (127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29, 199
    sec = min(tm.tm_sec, 59)
    date = ((year - 1980) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday
    time = (tm.tm_hour << 11) | (tm.tm_min << 5) | (sec // 2)
    return date, time, (sec % 2) * 100


def unstamp(date: int, time: int) -> datetime | None:
    """The time a FAT ``(date, time)`` pair spells, or ``None`` if it is no valid date."""
    try:
        return datetime(
            1980 + (date >> 9),
            (date >> 5) & 15,
            date & 31,
            time >> 11,
            (time >> 5) & 63,
            min(2 * (time & 31), 59),
        )
    except ValueError:
        return None
