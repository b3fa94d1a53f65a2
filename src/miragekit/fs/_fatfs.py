"""FatFS: the seed's FS signature as a FAT12/16/32 filesystem with VFAT long names.

The volume's FAT and the directories in use are cached in memory and written through.
Every change goes to the device in the order that keeps the volume consistent if the
machine stops between any two block writes: file data first, then the FAT chain (new
clusters before the link that reaches them, every FAT copy), then the directory entry
that makes it visible, then the FAT32 FSInfo hint. Removal runs the other way round.
A refused call (a seed error) is decided before anything is written or cached; a failing
block device drops the caches so the next call re-reads the volume.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from ..buffers import flat
from ..clock import Clock as HostClock
from ..result import (
    BlockDevice,
    BlockError,
    DirectoryNotEmpty,
    Disconnected,
    Error,
    FileAlreadyExists,
    FormatNotRecognised,
    FSError,
    IsADirectory,
    IsReadOnly,
    NoDirectoryEntry,
    NoSpace,
    NotADirectory,
    Ok,
    UnknownError,
)
from ..v1 import FS, Block, Buffer, Clock, Stat
from ._bpb import BootSector, FSInfo, NotFat
from ._directory import Directory
from ._dirent import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_READ_ONLY,
    DELETED,
    DOT,
    DOTDOT,
    SLOT,
    Entry,
    checksum,
    lfn_slots,
    make_short,
    parse_dir,
    stamp,
    valid_long_name,
)
from ._fat import Fat, cluster_runs
from ._format import FormatError, plan

MAX_FILE_SIZE = 0xFFFFFFFF
MAX_DIR_BYTES = 65536 * SLOT

T = TypeVar("T")


class _Refused(Exception):
    """A seed error decided before anything changed."""

    def __init__(self, error: FSError) -> None:
        super().__init__(error)
        self.error = error


class _BlockFailed(Exception):
    def __init__(self, error: BlockError) -> None:
        super().__init__(error)
        self.error = error


@dataclass(slots=True, eq=False)
class _Volume:
    bs: BootSector
    fat: Fat
    factor: int  # device sectors per logical sector
    dirs: dict[int, Directory] = field(default_factory=dict)
    chains: dict[int, list[int]] = field(default_factory=dict)
    # first cluster -> (run start indexes, runs (index, length), chain length)
    runs: dict[int, tuple[list[int], list[tuple[int, int]], int]] = field(default_factory=dict)

    @property
    def root_key(self) -> int:
        return self.bs.root_cluster if self.bs.fat_bits == 32 else 0


def _names_a_directory(path: str) -> bool:
    """Whether ``path`` can only name a directory (it ends in ``/``, ``/.`` or ``/..``)."""
    return path.endswith(("/", "/.", "/.."))


def _join(parts: list[str]) -> str:
    return "/" + "/".join(parts)


class FatFS:
    """A FAT filesystem on a :class:`~miragekit.v1.Block` device (the seed's FS)."""

    def __init__(self, block: Block, clock: Clock | None = None) -> None:
        self._block = block
        self._clock: Clock = clock if clock is not None else HostClock()
        self._vol: _Volume | None = None
        self._why = "not mounted"
        self._lock = asyncio.Lock()
        self._connected = True
        self._dev_sector = 512
        self._dev_sectors = 0
        self._read_write = True

    # --- DEVICE ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, id: Block, *, clock: Clock | None = None) -> Ok[Self] | Error[FSError]:
        """Open the FAT volume on block device ``id``.

        A device without a FAT volume still connects: :meth:`format` works on it and every
        other call returns ``FormatNotRecognised`` until then.
        """
        fs = cls(id, clock)
        try:
            await fs._mount()
        except _BlockFailed as e:
            return Error(BlockDevice(e.error))
        return Ok(fs)

    def id(self) -> Block:
        return self._block

    async def disconnect(self) -> None:
        self._connected = False
        self._vol = None

    @property
    def fat_bits(self) -> int | None:
        """12, 16 or 32 for a mounted volume; ``None`` if there is none."""
        return self._vol.bs.fat_bits if self._vol is not None else None

    @property
    def boot_sector(self) -> BootSector | None:
        """The layout of the mounted volume."""
        return self._vol.bs if self._vol is not None else None

    def free_bytes(self) -> int:
        """Bytes in free clusters (0 when nothing is mounted)."""
        v = self._vol
        return v.fat.free_count * v.bs.cluster_bytes if v is not None else 0

    # --- block I/O ---------------------------------------------------------------------

    async def _dev_read(self, dev_sector: int, buf: bytearray | memoryview) -> None:
        match await self._block.read(dev_sector, [buf]):
            case Error(e):
                raise _BlockFailed(e)
            case _:
                pass

    async def _dev_write(self, dev_sector: int, bufs: list[Buffer]) -> None:
        match await self._block.write(dev_sector, bufs):
            case Error(e):
                raise _BlockFailed(e)
            case _:
                pass

    async def _read(self, v: _Volume, sector: int, count: int) -> bytearray:
        buf = bytearray(count * v.bs.bytes_per_sector)
        await self._dev_read(sector * v.factor, buf)
        return buf

    async def _write(self, v: _Volume, sector: int, data: Buffer) -> None:
        await self._dev_write(sector * v.factor, [data])

    # --- mounting ----------------------------------------------------------------------

    async def _mount(self) -> None:
        self._vol = None
        info = await self._block.get_info()
        self._dev_sector = ss = info.sector_size
        self._dev_sectors = info.size_sectors
        self._read_write = info.read_write
        if info.size_sectors * ss < 512:
            self._why = "the device is smaller than one boot sector"
            return
        first = bytearray(max(512, ss))
        await self._dev_read(0, first)
        try:
            bs = BootSector.parse(first)
        except NotFat as e:
            self._why = f"no FAT volume: {e}"
            return
        if bs.bytes_per_sector % ss:
            self._why = f"FAT sector size {bs.bytes_per_sector} is not a multiple of {ss}"
            return
        factor = bs.bytes_per_sector // ss
        if bs.total_sectors * factor > info.size_sectors:
            self._why = "the FAT volume is larger than the device"
            return
        raw = bytearray(bs.fat_sectors * bs.bytes_per_sector)
        await self._dev_read(bs.first_fat_sector * factor, raw)
        fat = Fat(bs.fat_bits, raw, bs.cluster_count, bs.bytes_per_sector)
        v = _Volume(bs, fat, factor)
        if bs.fat_bits == 32 and 0 < bs.fsinfo_sector < bs.reserved_sectors:
            hint = FSInfo.parse(await self._read(v, bs.fsinfo_sector, 1))
            if hint is not None and 2 <= hint.next_free < fat.limit:
                fat.next_free = hint.next_free
        self._vol = v

    # --- running calls -----------------------------------------------------------------

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> Ok[T] | Error[FSError]:
        async with self._lock:
            if not self._connected:
                return Error(BlockDevice(Disconnected()))
            try:
                if self._vol is None and self._why == "stale":
                    await self._mount()
                v = self._vol
                if v is None:
                    return Error(FormatNotRecognised(self._why))
                return Ok(await fn(v, *args))
            except _Refused as r:
                return Error(r.error)
            except _BlockFailed as e:
                self._vol, self._why = None, "stale"
                return Error(BlockDevice(e.error))
            except ValueError as e:
                # A damaged structure on the device (a broken chain): drop the caches.
                self._vol, self._why = None, "stale"
                return Error(UnknownError(f"corrupt volume: {e}"))

    def _need_rw(self) -> None:
        if not self._read_write:
            raise _Refused(BlockDevice(IsReadOnly()))

    # --- directories -------------------------------------------------------------------

    def _chain(self, v: _Volume, first: int) -> list[int]:
        if first == 0:
            return []
        c = v.chains.get(first)
        if c is None:
            c = v.fat.chain(first)
            v.chains[first] = c
        return c

    async def _read_clusters(self, v: _Volume, clusters: list[int], buf: memoryview) -> None:
        cb = v.bs.cluster_bytes
        if not clusters:
            return
        for i, n in cluster_runs(clusters, 0, len(clusters)):
            sector = v.bs.cluster_sector(clusters[i])
            await self._dev_read(sector * v.factor, buf[i * cb : (i + n) * cb])

    async def _load_dir(self, v: _Volume, key: int) -> Directory:
        d = v.dirs.get(key)
        if d is not None:
            return d
        bs = v.bs
        if key == 0:
            first, count = bs.root_dir_sector, bs.root_dir_sectors
            data = await self._read(v, first, count)
            d = Directory(0, [], (first, count), data, 0, 0)
        else:
            clusters = list(v.fat.chain(key))
            data = bytearray(len(clusters) * bs.cluster_bytes)
            await self._read_clusters(v, clusters, memoryview(data))
            d = Directory(key, clusters, None, data, 0, 0)
        parsed = parse_dir(d.data)
        d.end, d.deleted = parsed.end, parsed.deleted
        for e in parsed.entries:
            d.add(e)
        v.dirs[key] = d
        return d

    def _dir_key(self, v: _Volume, e: Entry | None) -> int:
        return v.root_key if e is None else e.cluster

    async def _walk(self, v: _Volume, parts: list[str]) -> Directory:
        """The directory at ``parts`` (which must all be directories)."""
        d = await self._load_dir(v, v.root_key)
        for i, name in enumerate(parts):
            e = d.find(name)
            if e is None:
                raise _Refused(NoDirectoryEntry(_join(parts[:i]), name))
            if not e.is_dir:
                raise _Refused(NotADirectory(_join(parts[: i + 1])))
            d = await self._load_dir(v, e.cluster)
        return d

    async def _split(self, v: _Volume, path: str) -> list[str]:
        """The components of ``path``, with ``.`` dropped and ``..`` taken back; as for the
        system's paths, a ``..`` must leave a directory that exists."""
        parts: list[str] = []
        for p in path.split("/"):
            if p in ("", "."):
                continue
            if p == "..":
                if parts:
                    await self._walk(v, parts)  # NoDirectoryEntry / NotADirectory
                    parts.pop()
                continue
            parts.append(p)
        return parts

    async def _lookup(self, v: _Volume, path: str) -> tuple[Directory | None, Entry | None]:
        """``(parent, entry)``; ``(None, None)`` is the root. A path ending in ``/`` names
        a directory, so on a file it is refused with ``NotADirectory``."""
        parts = await self._split(v, path)
        if not parts:
            return None, None
        d = await self._walk(v, parts[:-1])
        e = d.find(parts[-1])
        if e is None:
            raise _Refused(NoDirectoryEntry(_join(parts[:-1]), parts[-1]))
        if not e.is_dir and _names_a_directory(path):
            raise _Refused(NotADirectory(path))
        return d, e

    def _dir_abs_sector(self, v: _Volume, d: Directory, rel: int) -> int:
        if d.fixed is not None:
            return d.fixed[0] + rel
        spc = v.bs.sectors_per_cluster
        return v.bs.cluster_sector(d.clusters[rel // spc]) + rel % spc

    async def _write_slots(self, v: _Volume, d: Directory, lo: int, hi: int) -> None:
        """Write the sectors holding slots ``lo..hi-1``, in ascending order."""
        ss = v.bs.bytes_per_sector
        r0 = lo * SLOT // ss
        r1 = ((hi * SLOT) - 1) // ss
        mv = memoryview(d.data)
        r = r0
        while r <= r1:
            a = self._dir_abs_sector(v, d, r)
            n = 1
            while r + n <= r1 and self._dir_abs_sector(v, d, r + n) == a + n:
                n += 1
            await self._write(v, a, mv[r * ss : (r + n) * ss])
            r += n

    async def _flush_fat(self, v: _Volume) -> None:
        bs = v.bs
        ss = bs.bytes_per_sector
        runs = v.fat.take_dirty()
        mv = memoryview(v.fat.raw)
        for copy in range(bs.num_fats):
            base = bs.first_fat_sector + copy * bs.fat_sectors
            for s, n in runs:
                await self._write(v, base + s, mv[s * ss : (s + n) * ss])

    async def _write_fsinfo(self, v: _Volume) -> None:
        bs = v.bs
        if bs.fat_bits != 32 or not 0 < bs.fsinfo_sector < bs.reserved_sectors:
            return
        info = FSInfo(v.fat.free_count, v.fat.next_free)
        await self._write(v, bs.fsinfo_sector, info.emit(bs.bytes_per_sector))

    async def _zero_cluster(self, v: _Volume, c: int, head: bytes = b"") -> None:
        buf = bytearray(v.bs.cluster_bytes)
        buf[: len(head)] = head
        await self._write(v, v.bs.cluster_sector(c), buf)

    async def _grow(self, v: _Volume, d: Directory, c: int) -> None:
        """Add the free cluster ``c`` to directory ``d``: zero it, then link it."""
        await self._zero_cluster(v, c)
        v.fat.set(c, v.fat.eoc)
        await self._flush_fat(v)
        v.fat.set(d.clusters[-1], c)
        await self._flush_fat(v)
        v.fat.next_free = c + 1
        d.clusters.append(c)
        d.data.extend(bytes(v.bs.cluster_bytes))

    def _now(self) -> tuple[int, int, int]:
        return stamp(self._clock.gmtime(self._clock.time()))

    # --- FS ----------------------------------------------------------------------------

    async def read(
        self, path: str, offset: int, length: int
    ) -> Ok[list[memoryview]] | Error[FSError]:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        return await self._run(self._do_read, path, offset, length)

    async def _do_read(self, v: _Volume, path: str, offset: int, length: int) -> list[memoryview]:
        _d, e = await self._lookup(v, path)
        if e is None or e.is_dir:
            raise _Refused(IsADirectory(path))
        end = min(e.size, offset + length)
        if end <= offset:
            return []
        cb = v.bs.cluster_bytes
        chain = self._chain(v, e.cluster)
        c0, c1 = offset // cb, (end - 1) // cb + 1
        if c1 > len(chain):
            raise ValueError(f"{path}: cluster chain is shorter than the file size")
        cached = v.runs.get(e.cluster)
        if cached is None or cached[2] != len(chain):
            runs = cluster_runs(chain, 0, len(chain))
            cached = ([i for i, _n in runs], runs, len(chain))
            v.runs[e.cluster] = cached
        starts, runs = cached[0], cached[1]
        buf = bytearray((c1 - c0) * cb)
        mv = memoryview(buf)
        k = bisect_right(starts, c0) - 1
        ci, pos = c0, 0
        while ci < c1:
            i, n = runs[k]
            take = min(i + n, c1) - ci
            await self._dev_read(
                v.bs.cluster_sector(chain[ci]) * v.factor, mv[pos : pos + take * cb]
            )
            pos += take * cb
            ci += take
            k += 1
        start = offset - c0 * cb
        return [mv[start : start + end - offset]]

    async def size(self, path: str) -> Ok[int] | Error[FSError]:
        return await self._run(self._do_size, path)

    async def _do_size(self, v: _Volume, path: str) -> int:
        _d, e = await self._lookup(v, path)
        if e is None or e.is_dir:
            raise _Refused(IsADirectory(path))
        return e.size

    async def stat(self, path: str) -> Ok[Stat] | Error[FSError]:
        return await self._run(self._do_stat, path)

    async def _do_stat(self, v: _Volume, path: str) -> Stat:
        _d, e = await self._lookup(v, path)
        if e is None:
            return Stat(filename="/", read_only=False, directory=True, size=0)
        return Stat(
            filename=e.name,
            read_only=bool(e.attr & ATTR_READ_ONLY),
            directory=e.is_dir,
            size=0 if e.is_dir else e.size,
        )

    async def listdir(self, path: str) -> Ok[list[str]] | Error[FSError]:
        return await self._run(self._do_listdir, path)

    async def _do_listdir(self, v: _Volume, path: str) -> list[str]:
        _d, e = await self._lookup(v, path)
        if e is not None and not e.is_dir:
            raise _Refused(NotADirectory(path))
        d = await self._load_dir(v, self._dir_key(v, e))
        return [x.name for x in sorted(d.index.values(), key=lambda x: x.slot)]

    async def create(self, path: str) -> Ok[None] | Error[FSError]:
        return await self._run(self._do_create, path, False)

    async def mkdir(self, path: str) -> Ok[None] | Error[FSError]:
        return await self._run(self._do_create, path, True)

    async def _do_create(self, v: _Volume, path: str, is_dir: bool) -> None:
        parts = await self._split(v, path)
        if not parts:
            raise _Refused(FileAlreadyExists("/"))
        if not is_dir and _names_a_directory(path):
            raise _Refused(IsADirectory(path))  # "f/": only a directory may end in /
        d = await self._walk(v, parts[:-1])
        name = parts[-1]
        if d.find(name) is not None:
            raise _Refused(FileAlreadyExists(path))
        if not valid_long_name(name) or any("\ud800" <= c <= "\udfff" for c in name):
            raise _Refused(UnknownError(f"invalid file name {name!r}"))
        self._need_rw()
        try:
            short, need_long = make_short(name, d.shorts.__contains__, d.hints)
        except ValueError as exc:
            raise _Refused(NoSpace()) from exc
        slots = lfn_slots(name, checksum(short)) if need_long else []
        k = len(slots) + 1
        pos = d.free_run(k)
        grow = pos is None
        if grow and (d.fixed is not None or len(d.data) + v.bs.cluster_bytes > MAX_DIR_BYTES):
            raise _Refused(NoSpace())
        got = v.fat.find_free(int(grow) + int(is_dir))
        if got is None:
            raise _Refused(NoSpace())
        date, tm, cs = self._now()
        e = Entry(
            name=name,
            short=short,
            attr=ATTR_DIRECTORY if is_dir else ATTR_ARCHIVE,
            ctime_cs=cs,
            ctime=tm,
            cdate=date,
            adate=date,
            mtime=tm,
            mdate=date,
        )
        if pos is None:
            await self._grow(v, d, got.pop(0))
            pos = d.free_run(k)
            if pos is None:  # pragma: no cover - a fresh cluster always has room
                raise ValueError("directory did not grow")
        if is_dir:
            c = got[0]
            dot = Entry(".", DOT, ATTR_DIRECTORY, c, 0, 0, cs, tm, date, date, tm, date)
            parent = 0 if d.fixed is not None or d.cluster == v.root_key else d.cluster
            dotdot = Entry("..", DOTDOT, ATTR_DIRECTORY, parent, 0, 0, cs, tm, date, date, tm, date)
            head = dot.pack() + dotdot.pack()
            await self._zero_cluster(v, c, head)
            v.fat.set(c, v.fat.eoc)
            v.fat.next_free = c + 1
            await self._flush_fat(v)
            e.cluster = c
            data = bytearray(v.bs.cluster_bytes)
            data[: len(head)] = head
            v.dirs[c] = Directory(c, [c], None, data, 2, 0)
        blob = b"".join(slots) + e.pack()
        d.data[pos * SLOT : (pos + k) * SLOT] = blob
        e.first_slot, e.slot = pos, pos + k - 1
        reused = max(0, min(pos + k, d.end) - pos)
        await self._write_slots(v, d, pos, pos + k)
        d.deleted -= reused
        d.end = max(d.end, pos + k)
        d.add(e)
        if grow or is_dir:
            await self._write_fsinfo(v)

    async def destroy(self, path: str) -> Ok[None] | Error[FSError]:
        return await self._run(self._do_destroy, path)

    async def _do_destroy(self, v: _Volume, path: str) -> None:
        d, e = await self._lookup(v, path)
        if d is None or e is None:
            raise _Refused(UnknownError("the root directory cannot be removed"))
        if e.is_dir:
            sub = await self._load_dir(v, e.cluster)
            if sub.index:
                raise _Refused(DirectoryNotEmpty(path))
            chain = list(sub.clusters)
        else:
            chain = list(self._chain(v, e.cluster))
        self._need_rw()
        lo, hi = e.first_slot, e.slot + 1
        for s in range(lo, hi):
            d.data[s * SLOT] = DELETED
        await self._write_slots(v, d, lo, hi)
        d.remove(e)
        d.freed(lo, hi)
        if e.is_dir:
            v.dirs.pop(e.cluster, None)
        v.chains.pop(e.cluster, None)
        v.runs.pop(e.cluster, None)
        if chain:
            for c in chain:
                v.fat.set(c, 0)
            await self._flush_fat(v)
            await self._write_fsinfo(v)

    async def write(self, path: str, offset: int, data: Buffer) -> Ok[None] | Error[FSError]:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        return await self._run(self._do_write, path, offset, flat(data))

    async def _do_write(self, v: _Volume, path: str, offset: int, data: memoryview) -> None:
        d, e = await self._lookup(v, path)
        if d is None or e is None or e.is_dir:
            raise _Refused(IsADirectory(path))
        n = len(data)
        old = e.size
        new_size = max(old, offset + n)
        if n == 0:
            return
        if new_size > MAX_FILE_SIZE:
            raise _Refused(NoSpace())
        self._need_rw()
        bs = v.bs
        cb = bs.cluster_bytes
        chain = self._chain(v, e.cluster)
        need = -(-new_size // cb) - len(chain)
        new = v.fat.find_free(need) if need > 0 else []
        if new is None:
            raise _Refused(NoSpace())
        # The cached chain grows in place; a failed block write drops every cache.
        had = len(chain)
        full = chain
        full.extend(new)
        await self._write_range(v, full, old, offset, data)
        fat = v.fat
        if new:
            fat.link(new)
            await self._flush_fat(v)
            if had:
                fat.set(full[had - 1], new[0])
                await self._flush_fat(v)
            v.chains.pop(e.cluster, None)
            v.runs.pop(e.cluster, None)
            v.chains[full[0]] = full
        date, tm, _cs = self._now()
        if e.cluster == 0:
            e.cluster = full[0]
        e.size = new_size
        e.mtime, e.mdate, e.adate = tm, date, date
        e.attr |= ATTR_ARCHIVE
        d.data[e.slot * SLOT : (e.slot + 1) * SLOT] = e.pack()
        await self._write_slots(v, d, e.slot, e.slot + 1)
        if new:
            await self._write_fsinfo(v)

    async def _write_range(
        self, v: _Volume, full: list[int], old: int, offset: int, data: memoryview
    ) -> None:
        """Write ``data`` at ``offset`` of a file of ``old`` bytes on clusters ``full``.

        Bytes between the old end and ``offset`` become zeros. Whole sectors of ``data``
        go to the device without a copy; only partial sectors at the ends are assembled.
        """
        ss = v.bs.bytes_per_sector
        n = len(data)
        hi = offset + n
        lo = min(offset, old)
        alo = lo - lo % ss
        ahi = -(-hi // ss) * ss
        if offset % ss == 0 and offset <= old:
            body = n - n % ss
            if body:
                await self._write_file_sectors(v, full, offset, data[:body])
            if body < n:
                tail = bytearray(ss)
                if hi < old:
                    await self._read_file_sectors(v, full, ahi - ss, memoryview(tail))
                tail[: n - body] = data[body:]
                await self._write_file_sectors(v, full, offset + body, memoryview(tail))
            return
        buf = bytearray(ahi - alo)
        head = alo < lo and alo < old
        if head:
            await self._read_file_sectors(v, full, alo, memoryview(buf)[:ss])
        if hi < ahi and hi < old and ahi - ss >= alo + (ss if head else 0):
            await self._read_file_sectors(v, full, ahi - ss, memoryview(buf)[-ss:])
        if offset > old:
            z0 = max(old, alo) - alo
            buf[z0 : offset - alo] = bytes(offset - alo - z0)
        buf[offset - alo : hi - alo] = data
        await self._write_file_sectors(v, full, alo, memoryview(buf))

    def _extents(
        self, v: _Volume, chain: list[int], start: int, nbytes: int
    ) -> list[tuple[int, int]]:
        """Device runs ``(logical sector, count)`` for file bytes ``[start, start+nbytes)``.

        Both ends are sector-aligned.
        """
        bs = v.bs
        ss, spc = bs.bytes_per_sector, bs.sectors_per_cluster
        s0 = start // ss
        s1 = (start + nbytes) // ss
        if s1 <= s0:
            return []
        out: list[tuple[int, int]] = []
        for ci, n in cluster_runs(chain, s0 // spc, (s1 - 1) // spc + 1):
            first = max(s0, ci * spc)
            last = min(s1, (ci + n) * spc)
            out.append((bs.cluster_sector(chain[ci]) + first - ci * spc, last - first))
        return out

    async def _read_file_sectors(
        self, v: _Volume, chain: list[int], start: int, buf: memoryview
    ) -> None:
        ss = v.bs.bytes_per_sector
        off = 0
        for a, n in self._extents(v, chain, start, len(buf)):
            await self._dev_read(a * v.factor, buf[off : off + n * ss])
            off += n * ss

    async def _write_file_sectors(
        self, v: _Volume, chain: list[int], start: int, buf: memoryview
    ) -> None:
        ss = v.bs.bytes_per_sector
        off = 0
        for a, n in self._extents(v, chain, start, len(buf)):
            await self._write(v, a, buf[off : off + n * ss])
            off += n * ss

    # --- format ------------------------------------------------------------------------

    async def format(
        self, size: int, *, fat: int | None = None, label: str | None = None
    ) -> Ok[None] | Error[FSError]:
        """Erase the device and make an empty FAT volume of ``size`` bytes.

        The FAT type and cluster size are chosen as ``mkfs.fat`` chooses them, unless
        ``fat`` (12, 16 or 32) asks for a type.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if fat not in (None, 12, 16, 32):
            raise ValueError(f"fat must be 12, 16 or 32, got {fat}")
        lab = b"NO NAME    "
        if label is not None:
            if (
                len(label) > 11
                or not label.isascii()
                or any(c in '*?.,;:/\\|+=<>[]"' for c in label)
            ):
                raise ValueError(f"label must be up to 11 plain ASCII characters, got {label!r}")
            lab = label.upper().ljust(11).encode("ascii")
        async with self._lock:
            if not self._connected:
                return Error(BlockDevice(Disconnected()))
            info = await self._block.get_info()
            if not info.read_write:
                return Error(BlockDevice(IsReadOnly()))
            if size > info.size_sectors * info.sector_size:
                return Error(NoSpace())
            vid = int(self._clock.time() * 1000) & 0xFFFFFFFF
            try:
                bs = plan(
                    size,
                    sector_size=max(512, info.sector_size),
                    fat_bits=fat,
                    volume_id=vid,
                    label=lab,
                )
            except FormatError as exc:
                return Error(UnknownError(str(exc)))
            try:
                await self._write_empty_volume(bs, info.sector_size)
                await self._mount()
            except _BlockFailed as exc:
                self._vol, self._why = None, "stale"
                return Error(BlockDevice(exc.error))
            return Ok(None)

    async def _write_empty_volume(self, bs: BootSector, dev_sector: int) -> None:
        ss = bs.bytes_per_sector
        factor = ss // dev_sector
        chunk = 256

        async def zeros(first: int, count: int) -> None:
            while count > 0:
                n = min(chunk, count)
                await self._dev_write(first * factor, [bytes(n * ss)])
                first += n
                count -= n

        boot = bs.emit()
        await zeros(1, bs.reserved_sectors - 1)
        fat = bytearray(ss)
        entries = {12: (0xF00 | bs.media, 0xFFF), 16: (0xFF00 | bs.media, 0xFFFF)}
        if bs.fat_bits == 32:
            fat[0:12] = (
                (0x0FFFFF00 | bs.media).to_bytes(4, "little")
                + (0x0FFFFFFF).to_bytes(4, "little")
                + (0x0FFFFFFF).to_bytes(4, "little")
            )
            info = FSInfo(bs.cluster_count - 1, 2).emit(ss)
            await self._dev_write(bs.fsinfo_sector * factor, [info])
            await self._dev_write(bs.backup_boot_sector * factor, [boot])
            await self._dev_write((bs.backup_boot_sector + bs.fsinfo_sector) * factor, [info])
        elif bs.fat_bits == 16:
            e0, e1 = entries[16]
            fat[0:4] = e0.to_bytes(2, "little") + e1.to_bytes(2, "little")
        else:
            e0, e1 = entries[12]
            v = e0 | (e1 << 12)
            fat[0:3] = v.to_bytes(3, "little")
        for copy in range(bs.num_fats):
            base = bs.first_fat_sector + copy * bs.fat_sectors
            await self._dev_write(base * factor, [fat])
            await zeros(base + 1, bs.fat_sectors - 1)
        if bs.fat_bits == 32:
            await zeros(bs.cluster_sector(bs.root_cluster), bs.sectors_per_cluster)
        else:
            await zeros(bs.root_dir_sector, bs.root_dir_sectors)
        await self._dev_write(0, [boot])


_check: type[FS] = FatFS
