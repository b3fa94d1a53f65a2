"""``miragekit fat``: mtools-style commands on FAT images, using only miragekit's FS.

    miragekit fat mkfs IMAGE [--size 64M] [--fat 12|16|32] [--label L] [--no-sync]
    miragekit fat ls [-l] IMAGE [PATH]
    miragekit fat cat IMAGE PATH
    miragekit fat put [-L] [--no-sync] IMAGE HOSTPATH PATH   (directories recursively)
    miragekit fat get IMAGE PATH HOSTPATH      (directories recursively)
    miragekit fat mkdir [-p] [--no-sync] IMAGE PATH
    miragekit fat rm [-r] [--no-sync] IMAGE PATH

IMAGE is an image file or a block device; ``IMAGE@@OFFSET`` (as mtools spells it) is the
volume at byte OFFSET inside it (a partition), OFFSET in bytes or with a K, M, G or S
(512-byte sectors) suffix.

Errors print one line to stderr and exit with status 1. A problem with one file of a
tree (a hostile name in the image, an unreadable host file, a name clash) is reported on
its own line, the rest goes on, and the exit status is 1 at the end. Every command locks
the image file, the whole file even for a partition (shared for ls/cat/get, which open
it read-only; exclusive for the others); ``--wait`` says how long to wait for another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import struct
import sys
from pathlib import Path
from typing import Any, TypeVar

from ..block import FileBlock, SliceBlock
from ..fs import MAX_FILE_SIZE, FatFS, check_format, fat_name, long_name_problem
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
    Unimplemented,
    Unknown,
    UnknownError,
)
from ..v1 import Block

CHUNK = 1 << 20
PROGRESS_FROM = 4 << 20
LOCK_WAIT = 30.0
READ_ONLY = frozenset({"ls", "cat", "get"})
T = TypeVar("T")


class CliError(Exception):
    """One line for stderr."""


class Problems:
    """Per-file problems of one command: each is reported at once, the count sets the status."""

    def __init__(self, command: str) -> None:
        self.command, self.count = command, 0
        self.interrupted = False  # set by ^C in a writing command; acted on at safe points

    async def stop_point(self) -> None:
        """Where a writing command may stop: between two complete FS calls. One turn of
        the loop first: FS calls that never wait would keep it from running the ^C
        handler until the command is done."""
        await asyncio.sleep(0)
        if self.interrupted:
            raise KeyboardInterrupt

    def report(self, msg: str) -> None:
        self.count += 1
        sys.stderr.write(f"miragekit fat {self.command}: {plain(msg)}\n")
        sys.stderr.flush()


def plain(msg: str) -> str:
    """``msg`` as one printable line: names from an image may hold newlines or escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)


def split_image(spec: str) -> tuple[str, int]:
    """``IMAGE@@OFFSET`` -> ``(IMAGE, OFFSET in bytes)``; a plain ``IMAGE`` has offset 0.

    A file whose own name holds ``@@`` is taken as it is.
    """
    path, sep, off = spec.rpartition("@@")
    if not sep or os.path.lexists(spec):
        return spec, 0
    t = off.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "S": 512}.get(t[-1:], 1)
    if mult > 1:
        t = t[:-1]
    if not t.isdigit():
        raise CliError(f"{spec}: not an offset after @@: {off!r} (bytes, or with K, M, G or S)")
    return path, int(t) * mult


def _is_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


async def open_image(
    spec: str,
    *,
    durable: bool = True,
    read_only: bool = False,
    lock_wait: float = LOCK_WAIT,
    size: int | None = None,
    resize: int | None = None,
) -> Block:
    """The block device behind ``IMAGE[@@OFFSET]`` (the one place the CLI builds one).

    IMAGE is an image file or a block device; with an offset, a window from there to the
    end (or of ``size`` bytes). Durable by default: FAT's write ordering only protects
    the volume if each write is on disk before the next one starts. Locked (``FileBlock``)
    while open, the whole file even for a window: a second writer waits up to
    ``lock_wait`` seconds, then gives up with a clear message. ``resize`` (mkfs only)
    creates or resizes the image file to that many bytes once the lock is held.
    """
    path, offset = split_image(spec)
    if not (resize is not None or os.path.isfile(path) or _is_device(path)):
        raise CliError(f"{path}: no such image file or block device")
    match await FileBlock.connect(
        path, durable=durable, read_only=read_only, lock_wait=lock_wait, resize=resize
    ):
        case Ok(blk):
            pass
        case Error(e):
            raise CliError(block_error(e))
    if not offset and size is None:
        return blk
    match await SliceBlock.connect((blk, offset, size)):
        case Ok(window):
            return window
        case Error(e):
            await blk.disconnect()
            raise CliError(f"{spec}: {block_error(e)}")
    raise AssertionError("unreachable")  # pragma: no cover


def block_error(err: BlockError) -> str:
    """A block device error as plain words (never a repr)."""
    match err:
        case Unknown(msg):
            return msg
        case IsReadOnly():
            return "the image is open read-only"
        case Disconnected():
            return "the image was closed"
        case Unimplemented():
            return "not supported by the device"
    return str(err)  # pragma: no cover


def _about(path: str, msg: str) -> str:
    """``msg`` saying which path it is about, unless it does already."""
    return msg if msg.startswith(path) else f"{path}: {msg}"


def bad_name(name: str) -> str | None:
    """Why a name read from the image cannot be one host path component, or ``None``.

    Only a damaged or hostile image holds such names (FatFS never writes them); using one
    would reach outside the directory it was listed in.
    """
    if name in ("", ".", ".."):
        return "a name that means a directory itself" if name else "an empty name"
    if "/" in name:
        return "a name with '/'"
    if "\0" in name:
        return "a name with a NUL character"
    try:
        os.fsencode(name)
    except UnicodeError:
        return "a name with broken UTF-16 the host cannot store"
    return None


def describe(err: FSError) -> str:
    """A one-line message for an FS error."""
    match err:
        case NoDirectoryEntry(d, name):
            return f"{d.rstrip('/')}/{name}: no such file or directory"
        case NotADirectory(p):
            return f"{p}: not a directory"
        case IsADirectory(p):
            return f"{p}: is a directory"
        case DirectoryNotEmpty(p):
            return f"{p}: directory not empty"
        case FileAlreadyExists(p):
            return f"{p}: already exists"
        case NoSpace():
            return "no space left on the volume"
        case FormatNotRecognised(msg):
            return f"not a FAT image ({msg})"
        case UnknownError(msg):
            return msg
        case BlockDevice(e):
            return f"block device error: {block_error(e)}"
    return str(err)  # pragma: no cover


def check(r: Ok[T] | Error[FSError]) -> T:
    match r:
        case Ok(v):
            return v
        case Error(e):
            raise CliError(describe(e))
    raise AssertionError("unreachable")  # pragma: no cover


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``1440K`` or a byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = 1
    if t and t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    try:
        n = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return n


class Progress:
    """Progress of one large copy, on stderr."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.shown = total >= PROGRESS_FROM and sys.stderr.isatty()  # no \r lines in logs

    def add(self, n: int) -> None:
        self.done += n
        if self.shown:
            pct = 100 * self.done // self.total if self.total else 100
            sys.stderr.write(
                f"\r{self.label}: {self.done / (1 << 20):.1f}/{self.total / (1 << 20):.1f} MiB"
                f" ({pct}%)"
            )
            sys.stderr.flush()

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _chunk(fs: FatFS) -> int:
    """Bytes per read: one cluster on a truncated volume, so a copy gets all that is there."""
    bs = fs.boot_sector
    return bs.cluster_bytes if fs.truncated and bs is not None else CHUNK


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


# --- the commands --------------------------------------------------------------------------


async def _with_fs(path: str, args: argparse.Namespace) -> int:
    ro = args.fat_command in READ_ONLY
    durable = ro or not args.no_sync  # (readers have no --no-sync; they never write)
    blk = await open_image(path, durable=durable, read_only=ro, lock_wait=args.wait)
    problems = Problems(args.fat_command)
    loop = asyncio.get_running_loop()
    if not ro:  # ^C must not stop a write half-way: it is noted, and acted on between calls
        loop.add_signal_handler(signal.SIGINT, setattr, problems, "interrupted", True)
    try:
        fs = check(await FatFS.connect(blk))
        rc: int = await _COMMANDS[args.fat_command](fs, args, problems)
        return 1 if problems.count else rc
    finally:
        if not ro:
            loop.remove_signal_handler(signal.SIGINT)
        await blk.disconnect()


def _partition_bytes(path: str, offset: int) -> int | None:
    """The size of the MBR or GPT partition that starts at byte ``offset``, if one does.

    So ``mkfs IMG@@OFFSET`` stops at that partition's end, not at the disk's, and never
    formats over the partitions after it. Tables of 512-byte sectors; primary MBR entries.
    """
    try:
        with open(path, "rb") as f:
            mbr = f.read(512)
            if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
                return None
            found: list[tuple[int, int]] = []  # (first sector, sectors)
            entries = [mbr[446 + 16 * i : 462 + 16 * i] for i in range(4)]
            if any(e[4] == 0xEE for e in entries):  # a protective MBR: the GPT says
                hdr = f.read(512)
                if hdr[:8] != b"EFI PART":
                    return None
                lba, count, size = struct.unpack_from("<QII", hdr, 72)
                f.seek(lba * 512)
                table = f.read(min(count, 1024) * size)
                for i in range(0, len(table) - size + 1, size):
                    first, last = struct.unpack_from("<QQ", table, i + 32)
                    if any(table[i : i + 16]):
                        found.append((first, last - first + 1))
            else:
                found = [struct.unpack_from("<II", e, 8) for e in entries if e[4]]
    except (OSError, struct.error):
        return None
    for first, sectors in found:
        if first * 512 == offset and sectors > 0:
            return sectors * 512
    return None


def _mkfs_target(args: argparse.Namespace) -> tuple[str, int, bool, int | None]:
    """``(host path, volume size, resize?, current size)``, every check made first.

    Sizes are rounded down to whole 512-byte sectors (the volume cannot use a partial
    one). A regular file without an offset is then made exactly that size; a block
    device, or a file with ``@@OFFSET``, is never resized and must be large enough.
    """
    path, offset = split_image(args.image)
    size: int | None = args.size
    if size is not None:
        size -= size % 512
    device = _is_device(path)
    current: int | None = None
    if os.path.isdir(path):
        raise CliError(f"{path}: is a directory")
    if device or os.path.lexists(path):
        if not device and not os.path.isfile(path):
            raise CliError(f"{path}: not a regular file or block device")
        try:
            with open(path, "rb") as f:
                current = f.seek(0, os.SEEK_END)
        except OSError as e:
            raise CliError(f"{path}: {e.strerror}") from None
    elif offset:
        raise CliError(f"{path}: no such image file (an @@OFFSET volume needs its image)")
    elif not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise CliError(f"{path}: no such directory to create it in")
    part = _partition_bytes(path, offset) if offset else None
    if part is not None and size is not None and size > part:
        raise CliError(f"{args.image}: --size {size} is larger than its partition ({part} bytes)")
    if size is None:
        if current is None:
            raise CliError(f"{path}: does not exist; give --size")
        size = part if part is not None else current - offset
        size -= size % 512
    if size <= 0:
        raise CliError(f"{args.image}: no room for a volume")
    if (device or offset) and current is not None and offset + size > current:
        raise CliError(
            f"{args.image}: {size} bytes from offset {offset} do not fit in {current} bytes"
        )
    why = check_format(size, fat=args.fat, label=args.label)
    if why is not None:
        raise CliError(why)
    return path, size, not (device or offset), current


async def _mkfs(args: argparse.Namespace) -> int:
    path, size, resize, old = _mkfs_target(args)
    try:
        blk = await open_image(  # locked before anything is written: no one else is using it
            args.image,
            durable=not args.no_sync,
            lock_wait=args.wait,
            size=None if resize else size,
            resize=size if resize else None,
        )
    except CliError:
        if resize and old is None and os.path.isfile(path) and not os.path.getsize(path):
            os.unlink(path)  # created for nothing (it could not be resized)
        raise
    done = False
    try:
        fs = check(await FatFS.connect(blk))
        check(await fs.format(size, fat=args.fat, label=args.label))
        done = True
    finally:
        if resize and not done:  # a failed mkfs leaves no new or grown file behind
            if old is None:
                os.unlink(path)
            elif old < size:
                os.truncate(path, old)
        await blk.disconnect()
    return 0


async def _children(fs: FatFS, path: str, problems: Problems) -> list[str]:
    """The usable names in directory ``path``; each unusable one is reported and left out."""
    names: list[str] = []
    for name in check(await fs.listdir(path)):
        why = bad_name(name)
        if why is None:
            names.append(name)
        else:
            problems.report(f"{path}: skipped an entry named {name!r} ({why})")
    return names


async def _ls(fs: FatFS, args: argparse.Namespace, problems: Problems) -> int:
    path: str = args.path
    st = check(await fs.stat(path))
    entries: list[tuple[str, str, Any]] = []  # (name, its path, its stat)
    if st.directory:
        for name in await _children(fs, path, problems):
            child = _join(path, name)
            match await fs.stat(child):
                case Ok(s):
                    entries.append((name, child, s))
                case Error(e):
                    problems.report(describe(e))
    else:
        entries.append((st.filename, path, st))
    out = sys.stdout
    for name, p, s in entries:
        shown = name.encode("utf-8", "backslashreplace").decode()  # broken UTF-16 from an image
        if not args.long:
            out.write(shown + "\n")
            continue
        match await fs.modified(p):
            case Ok(when):
                date = when.strftime("%Y-%m-%d %H:%M") if when is not None else " " * 16
                out.write(f"{'<DIR>' if s.directory else s.size:>10}  {date}  {shown}\n")
            case Error(e):
                problems.report(describe(e))
    return 0


async def _cat(fs: FatFS, args: argparse.Namespace, problems: Problems) -> int:
    size = check(await fs.size(args.path))
    out = sys.stdout.buffer
    off = 0
    while off < size:
        for b in check(await fs.read(args.path, off, _chunk(fs))):
            out.write(b)
            off += len(b)
        if off < size and not b:  # pragma: no cover - a short read
            break
    out.flush()
    return 0


async def _exists(fs: FatFS, path: str) -> Any:
    match await fs.stat(path):
        case Ok(st):
            return st
        case Error(NoDirectoryEntry()):
            return None
        case Error(e):
            raise CliError(describe(e))
    return None  # pragma: no cover


class _Put:
    """One ``put``: the host tree walk, its problems, and the names it has written."""

    def __init__(self, fs: FatFS, problems: Problems, follow: bool) -> None:
        self.fs, self.problems, self.follow = fs, problems, follow

    async def tree(self, host: Path, path: str, ancestors: frozenset[tuple[int, int]]) -> None:
        """Copy ``host`` to ``path``; symbolic links below the top only with ``follow``."""
        try:
            lst = host.lstat()
            if stat.S_ISLNK(lst.st_mode) and ancestors and not self.follow:
                self.problems.report(
                    f"{host}: a symbolic link, skipped (--follow copies its target)"
                )
                return
            hs = host.stat()
        except OSError as e:
            self.problems.report(f"{host}: {e.strerror}, skipped")
            return
        if stat.S_ISDIR(hs.st_mode):
            here = (hs.st_dev, hs.st_ino)
            if here in ancestors:
                self.problems.report(f"{host}: leads back to a directory being copied, skipped")
                return
            await self.directory(host, path, ancestors | {here})
        elif stat.S_ISREG(hs.st_mode):
            await self.file(host, path)
        else:
            self.problems.report(f"{host}: not a regular file or directory, skipped")

    async def directory(self, host: Path, path: str, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            names = sorted(os.listdir(host))
        except OSError as e:
            self.problems.report(f"{host}: {e.strerror}, skipped")
            return
        st = await _exists(self.fs, path)
        if st is None:
            check(await self.fs.mkdir(path))
        elif not st.directory:
            self.problems.report(f"{path}: not a directory, {host} skipped")
            return
        written: dict[str, str] = {}  # stored name -> the host name written to it
        for name in names:
            await self.problems.stop_point()
            stored = fat_name(name)  # trailing dots and spaces dropped, as mcopy does
            if stored is None:
                why = long_name_problem(name.rstrip(". ")) if name.rstrip(". ") else None
                self.problems.report(
                    f"{host / name}: FAT names cannot hold this name"
                    f" ({why or 'nothing left once trailing dots and spaces go'}), skipped"
                )
                continue
            child = _join(path, stored)
            old = await _exists(self.fs, child)
            if old is not None and old.filename in written:
                as_ = f"stored as {stored!r}, " if stored != name else ""
                why = "ignore case" if stored == name else "drop trailing dots and spaces"
                self.problems.report(
                    f"{host / name}: {as_}same name as {written[old.filename]!r} in the image"
                    f" (FAT names {why}), skipped"
                )
                continue
            try:
                await self.tree(host / name, child, ancestors)
            except CliError as e:
                self.problems.report(_about(child, str(e)))
            now = await _exists(self.fs, child)
            if now is not None:
                written[now.filename] = name

    async def file(self, host: Path, path: str) -> None:
        """Copy one host file; whatever fails, the image keeps what ``path`` held before."""
        fs, problems = self.fs, self.problems
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block the open
        try:
            fd = os.open(host, flags)
        except OSError as e:
            problems.report(f"{host}: {e.strerror}, skipped")
            return
        with open(fd, "rb", closefd=True) as f:
            size = os.fstat(fd).st_size
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                problems.report(f"{host}: not a regular file, skipped")
                return
            if size > MAX_FILE_SIZE:
                problems.report(f"{host}: {size} bytes; a FAT file holds at most 4 GiB - 1 byte")
                return
            old = await _exists(fs, path)
            if old is not None and old.directory:
                problems.report(f"{path}: is a directory, {host} skipped")
                return
            bs = fs.boot_sector
            cb = bs.cluster_bytes if bs is not None else 512
            need = -(-size // cb) * cb
            free = fs.free_bytes()
            if need > free:
                if old is not None and need <= free + -(-old.size // cb) * cb:
                    problems.report(
                        f"{path}: no space for the new copy beside the old one ({need} bytes"
                        f" needed, {free} free); remove the old file first"
                    )
                else:
                    problems.report(f"{path}: no space left ({need} bytes needed, {free} free)")
                return
            target = path if old is None else await self._temp_beside(path)
            made = await fs.create(target)
            if isinstance(made, Error):
                if old is not None and isinstance(made.error, NoSpace):
                    problems.report(
                        f"{path}: no room in its directory for the new copy beside the old one;"
                        " remove the old file first"
                    )
                    return
                raise CliError(describe(made.error))
            try:
                await self._copy(f, size, target, path)
            except (CliError, OSError) as e:
                await fs.destroy(target)
                why = _about(path, str(e)) if isinstance(e, CliError) else f"{host}: {e.strerror}"
                kept = " (the old file is kept)" if old is not None else ""
                problems.report(f"{why}{kept}")
                return
            except KeyboardInterrupt:  # the partial copy goes too
                await fs.destroy(target)
                raise
            if target != path:
                check(await fs.replace(target, path))

    async def _copy(self, f: Any, size: int, target: str, path: str) -> None:
        prog = Progress(f"put {path}", size)
        off = 0
        while chunk := f.read(CHUNK):
            await self.problems.stop_point()
            check(await self.fs.write(target, off, chunk))
            off += len(chunk)
            prog.add(len(chunk))
        prog.end()

    async def _temp_beside(self, path: str) -> str:
        """A free name in ``path``'s directory for the new copy until it replaces the old."""
        parent = path.rstrip("/").rpartition("/")[0]
        n = os.getpid()
        while True:
            cand = f"{parent}/.miragekit-put-{n}.tmp"
            if await _exists(self.fs, cand) is None:
                return cand
            n += 1


async def _put(fs: FatFS, args: argparse.Namespace, problems: Problems) -> int:
    host = Path(args.hostpath)
    if not os.path.lexists(host):
        raise CliError(f"{host}: no such file or directory")
    path: str = args.path
    st = await _exists(fs, path)
    if path.endswith("/") and path.strip("/"):  # "into this directory": it must exist
        if st is None:
            raise CliError(f"{path}: no such directory")
        if not st.directory:
            raise CliError(f"{path}: not a directory")
    put = _Put(fs, problems, args.follow)
    if st is not None and st.directory:
        if host.is_dir() and args.hostpath.endswith(("/", "/.")):  # DIR/: its contents
            hs = host.stat()
            await put.directory(host, path, frozenset({(hs.st_dev, hs.st_ino)}))
            return 0
        given = host.name if host.name not in ("", "..") else host.resolve().name  # a link's own
        name = fat_name(given)
        if name is None:
            raise CliError(f"{host}: FAT names cannot hold the name {given!r}; give PATH a name")
        path = _join(path, name)
    await put.tree(host, path, frozenset())
    return 0


class _Get:
    """One ``get``: every host path it makes stays inside ``root``, whatever the image says."""

    def __init__(self, fs: FatFS, problems: Problems, root: Path) -> None:
        self.fs, self.problems, self.root = fs, problems, root
        self.seen: set[int] = set()  # first clusters of the directories copied so far
        self._real_root = ""  # the resolved destination, once it exists

    def _check_inside(self, host: Path) -> None:
        """Refuse a host path that leaves the destination (through ``..`` or a symlink)."""
        parent = os.path.realpath(host.parent)
        root = self._real_root = self._real_root or os.path.realpath(self.root)
        if not (parent == root or parent.startswith(root.rstrip(os.sep) + os.sep)):
            raise CliError(f"{host}: outside the destination {self.root}, not written")
        if host.is_symlink():
            raise CliError(f"{host}: a symbolic link on the host, not followed")

    async def tree(self, path: str, host: Path, top: bool = False) -> None:
        st = check(await self.fs.stat(path))
        if not top:
            self._check_inside(host)
        if not st.directory:
            await self.file(path, host, st.size, top)
            return
        key = check(await self.fs.first_cluster(path))
        if key in self.seen:
            self.problems.report(f"{path}: the same directory as one copied already, skipped")
            return
        self.seen.add(key)
        if not host.is_dir():
            host.mkdir()
        for name in await _children(self.fs, path, self.problems):
            child = _join(path, name)
            try:
                await self.tree(child, host / name)
            except CliError as e:
                self.problems.report(_about(child, str(e)))
            except OSError as e:  # this name on this host (too long, say): the rest goes on
                self.problems.report(f"{child}: {e.strerror or e}, not copied")

    async def file(self, path: str, host: Path, size: int, top: bool) -> None:
        """Copy one file; if the copy fails, the host file it was writing is removed."""
        prog = Progress(f"get {path}", size)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        fd = os.open(host, flags if top else flags | os.O_NOFOLLOW, 0o666)
        try:
            with open(fd, "wb", closefd=True) as f:
                chunk, off = _chunk(self.fs), 0
                while off < size:
                    n = 0
                    for b in check(await self.fs.read(path, off, chunk)):
                        f.write(b)
                        n += len(b)
                    if n == 0:
                        break
                    off += n
                    prog.add(n)
        except BaseException:  # a read error, a full host disk, ^C: no partial copy stays
            with contextlib.suppress(OSError):
                os.unlink(os.path.realpath(host))  # (through the link a top-level name may be)
            raise
        finally:
            prog.end()


async def _get(fs: FatFS, args: argparse.Namespace, problems: Problems) -> int:
    st = check(await fs.stat(args.path))
    host = root = Path(args.hostpath)
    name = st.filename if st.filename != "/" else ""
    into = host.is_dir() and bool(name)  # the copy is named by the image: check that name
    if into:
        why = bad_name(name)
        if why is not None:
            raise CliError(f"{args.path}: the image calls it {name!r} ({why}); name the copy")
        host = host / name
    if st.directory and host.exists() and not host.is_dir():
        raise CliError(f"{host}: not a directory")
    try:
        await _Get(fs, problems, root).tree(args.path, host, top=not into)
    except OSError as e:
        raise CliError(f"{e.filename or host}: {e.strerror or e}") from None
    return 0


async def _mkdir(fs: FatFS, args: argparse.Namespace, problems: Problems) -> int:
    if args.parents:
        await _makedirs(fs, args.path)
    else:
        check(await fs.mkdir(args.path))
    return 0


async def _makedirs(fs: FatFS, path: str) -> None:
    """``mkdir -p``: each missing directory on the way; existing directories are fine."""
    done = ""
    for part in [p for p in path.split("/") if p]:
        done = _join(done, part)
        st = await _exists(fs, done)
        if st is None:
            check(await fs.mkdir(done))
        elif not st.directory:
            raise CliError(f"{done}: not a directory")


async def _rm_plan(fs: FatFS, path: str, plan: list[str], seen: set[int]) -> None:
    """Add what removing ``path`` takes to ``plan``, contents first; refuse on damage."""
    st = check(await fs.stat(path))
    if st.directory:
        key = check(await fs.first_cluster(path))
        if key in seen:
            raise CliError(f"{path}: a directory that contains itself; repair the image first")
        seen.add(key)
        for name in check(await fs.listdir(path)):
            if bad_name(name) is not None:
                raise CliError(
                    f"{path}: holds an entry named {name!r} that cannot be removed by name;"
                    " repair the image first"
                )
            await _rm_plan(fs, _join(path, name), plan, seen)
    plan.append(path)


async def _rm(fs: FatFS, args: argparse.Namespace, problems: Problems) -> int:
    st = check(await fs.stat(args.path))
    if st.filename == "/":  # "/", "" and "/a/.." alike: nothing is removed
        raise CliError(f"{args.path!r} is the root directory, which cannot be removed")
    if not args.recursive:
        match await fs.destroy(args.path):
            case Error(DirectoryNotEmpty()):
                raise CliError(f"{args.path}: directory not empty (rm -r removes it and all in it)")
            case r:
                check(r)
        return 0
    plan: list[str] = []
    await _rm_plan(fs, args.path, plan, set())  # decided in full before the first write
    for p in plan:
        await problems.stop_point()
        check(await fs.destroy(p))
    return 0


_COMMANDS: dict[str, Any] = {
    "ls": _ls,
    "cat": _cat,
    "put": _put,
    "get": _get,
    "mkdir": _mkdir,
    "rm": _rm,
}


def _main(args: argparse.Namespace) -> int:
    try:
        if args.fat_command == "mkfs":
            return asyncio.run(_mkfs(args))
        return asyncio.run(_with_fs(args.image, args))
    except CliError as e:
        sys.stderr.write(f"miragekit fat {args.fat_command}: {plain(str(e))}\n")
        return 1
    except BrokenPipeError:  # pragma: no cover - `cat | head`
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"miragekit fat {args.fat_command}: interrupted\n")
        return 130
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(
            f"miragekit fat {args.fat_command}: {plain(where + str(e.strerror or e))}\n"
        )
        return 1
    except Exception as e:  # a bug: still one line, never a traceback
        why = plain(f"{type(e).__name__}: {e}")
        sys.stderr.write(f"miragekit fat {args.fat_command}: unexpected error ({why})\n")
        return 1


IMAGE_HELP = "image file or block device; IMAGE@@OFFSET is the volume at OFFSET inside it"


def register(subparsers: Any) -> None:
    """Add ``fat`` and its actions to the ``miragekit`` parser."""
    p = subparsers.add_parser(
        "fat",
        help="work on FAT disk images (mtools style, using miragekit's own FS)",
        description="Work on FAT12/16/32 disk images with miragekit's FatFS.",
    )
    sub = p.add_subparsers(dest="fat_command", metavar="ACTION", required=True)
    lock = argparse.ArgumentParser(add_help=False)
    lock.add_argument(
        "--wait",
        type=float,
        default=LOCK_WAIT,
        metavar="SECONDS",
        help=f"how long to wait for another command using the image (default {LOCK_WAIT:g})",
    )

    m = sub.add_parser("mkfs", parents=[lock], help="make an empty FAT image")
    m.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    m.add_argument(
        "--size",
        type=parse_size,
        help="e.g. 64M, 1G, 1440K; rounded down to 512-byte sectors (default: the existing"
        " file, device or partition)",
    )
    m.add_argument("--fat", type=int, choices=(12, 16, 32), help="FAT type (default: by size)")
    m.add_argument("--label", help="volume label (up to 11 characters)")

    ls = sub.add_parser("ls", parents=[lock], help="list a directory, one name per line")
    ls.add_argument("-l", "--long", action="store_true", help="show sizes and write times")
    ls.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    ls.add_argument(
        "path", metavar="PATH", nargs="?", default="/", help="in the volume (default /)"
    )

    c = sub.add_parser("cat", parents=[lock], help="write a file's contents to stdout")
    c.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    c.add_argument("path", metavar="PATH", help="in the volume")

    put = sub.add_parser(
        "put",
        parents=[lock],
        help="copy a host file or directory into the image (DIR/ copies DIR's contents;"
        " a PATH ending in / must be an existing directory)",
    )
    put.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    put.add_argument("hostpath", metavar="HOSTPATH", help="file or directory (DIR/: its contents)")
    put.add_argument("path", metavar="PATH", help="in the volume (PATH/: into that directory)")
    put.add_argument(
        "-L",
        "--follow",
        action="store_true",
        help="copy what symbolic links inside HOSTPATH point to",
    )

    get = sub.add_parser("get", parents=[lock], help="copy a file or directory out of the image")
    get.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    get.add_argument("path", metavar="PATH", help="in the volume")
    get.add_argument("hostpath", metavar="HOSTPATH", help="the copy, or a directory to put it in")

    md = sub.add_parser("mkdir", parents=[lock], help="make a directory")
    md.add_argument(
        "-p", "--parents", action="store_true", help="make missing parents; no error if it exists"
    )
    md.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    md.add_argument("path", metavar="PATH", help="in the volume")

    rm = sub.add_parser("rm", parents=[lock], help="remove a file or an empty directory")
    rm.add_argument(
        "-r", "--recursive", action="store_true", help="remove directories and their contents"
    )
    rm.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    rm.add_argument("path", metavar="PATH", help="in the volume")
    for writer in (m, put, md, rm):
        writer.add_argument(
            "--no-sync",
            action="store_true",
            help="do not wait for each write to reach the disk; sync once at the end (faster,"
            " but a crash midway can leave the volume needing fsck.fat)",
        )

    p.set_defaults(func=_main)
