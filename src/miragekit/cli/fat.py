"""``miragekit fat``: mtools-style commands on FAT images, using only miragekit's FS.

    miragekit fat mkfs IMAGE [--size 64M] [--fat 12|16|32] [--label L] [--no-sync]
    miragekit fat ls [-l] IMAGE [PATH]
    miragekit fat cat IMAGE PATH
    miragekit fat put [--no-sync] IMAGE HOSTPATH PATH      (directories recursively)
    miragekit fat get IMAGE PATH HOSTPATH      (directories recursively)
    miragekit fat mkdir [-p] [--no-sync] IMAGE PATH
    miragekit fat rm [-r] [--no-sync] IMAGE PATH

IMAGE is an image file or a block device; ``IMAGE@@OFFSET`` (as mtools spells it) is the
volume at byte OFFSET inside it (a partition), OFFSET in bytes or with a K, M, G or S
(512-byte sectors) suffix. Errors print one line to stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
from pathlib import Path
from typing import Any, TypeVar

from ..block import FileBlock, SliceBlock
from ..fs import FatFS, check_format, fat_name
from ..result import (
    BlockDevice,
    DirectoryNotEmpty,
    Error,
    FileAlreadyExists,
    FormatNotRecognised,
    FSError,
    IsADirectory,
    NoDirectoryEntry,
    NoSpace,
    NotADirectory,
    Ok,
    UnknownError,
)
from ..v1 import Block

CHUNK = 1 << 20
PROGRESS_FROM = 4 << 20
T = TypeVar("T")


class CliError(Exception):
    """One line for stderr."""


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


async def open_image(spec: str, *, durable: bool = True, size: int | None = None) -> Block:
    """The block device behind ``IMAGE[@@OFFSET]`` (the one place the CLI builds one).

    IMAGE is an image file or a block device; with an offset, a window from there to the
    end (or of ``size`` bytes). Durable by default: FAT's write ordering only protects
    the volume if each write is on disk before the next one starts.
    """
    path, offset = split_image(spec)
    if not (os.path.isfile(path) or _is_device(path)):
        raise CliError(f"{path}: no such image file or block device")
    match await FileBlock.connect(path, durable=durable):
        case Ok(blk):
            pass
        case Error(e):
            raise CliError(f"cannot open {path}: {e}")
    if not offset and size is None:
        return blk
    match await SliceBlock.connect((blk, offset, size)):
        case Ok(window):
            return window
        case Error(e):
            await blk.disconnect()
            raise CliError(f"{spec}: {getattr(e, 'msg', e)}")
    raise AssertionError("unreachable")  # pragma: no cover


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
            return f"block device error: {e}"
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
        self.shown = total >= PROGRESS_FROM

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
    blk = await open_image(path, durable=not getattr(args, "no_sync", False))
    try:
        fs = check(await FatFS.connect(blk))
        rc: int = await _COMMANDS[args.fat_command](fs, args)
        return rc
    finally:
        await blk.disconnect()


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
    if size is None:
        if current is None:
            raise CliError(f"{path}: does not exist; give --size")
        size = current - offset
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
    if resize:
        try:
            with open(path, "ab") as f:
                f.truncate(size)
        except OSError as e:
            raise CliError(f"{path}: {e.strerror}") from None
    done = False
    try:
        blk = await open_image(args.image, durable=not args.no_sync, size=None if resize else size)
        try:
            fs = check(await FatFS.connect(blk))
            check(await fs.format(size, fat=args.fat, label=args.label))
        finally:
            await blk.disconnect()
        done = True
    finally:
        if resize and not done:  # a failed mkfs leaves no new or grown file behind
            if old is None:
                os.unlink(path)
            elif old < size:
                os.truncate(path, old)
    return 0


async def _ls(fs: FatFS, args: argparse.Namespace) -> int:
    path: str = args.path
    st = check(await fs.stat(path))
    entries: list[tuple[str, Any]] = []
    if st.directory:
        for name in check(await fs.listdir(path)):
            entries.append((name, check(await fs.stat(_join(path, name)))))
    else:
        entries.append((st.filename, st))
    out = sys.stdout
    for name, s in entries:
        if args.long:
            p = _join(path, name) if st.directory else path
            out.write(await _long_line(fs, p, name, s))
        else:
            out.write(name + "\n")
    return 0


async def _long_line(fs: FatFS, path: str, name: str, st: Any) -> str:
    """``ls -l``: size (or ``<DIR>``), last-write time, name."""
    when = check(await fs.modified(path))
    date = when.strftime("%Y-%m-%d %H:%M") if when is not None else " " * 16
    return f"{'<DIR>' if st.directory else st.size:>10}  {date}  {name}\n"


async def _cat(fs: FatFS, args: argparse.Namespace) -> int:
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


async def _put_file(fs: FatFS, host: Path, path: str) -> None:
    st = await _exists(fs, path)
    if st is not None:
        if st.directory:
            raise CliError(f"{path}: is a directory")
        check(await fs.destroy(path))
    check(await fs.create(path))
    total = host.stat().st_size
    prog = Progress(f"put {path}", total)
    off = 0
    with host.open("rb") as f:
        while chunk := f.read(CHUNK):
            check(await fs.write(path, off, chunk))
            off += len(chunk)
            prog.add(len(chunk))
    prog.end()


async def _put_tree(fs: FatFS, host: Path, path: str) -> int:
    """Copy ``host`` to ``path``; the number of host files skipped (each said on stderr)."""
    if host.is_dir():
        st = await _exists(fs, path)
        if st is None:
            check(await fs.mkdir(path))
        elif not st.directory:
            raise CliError(f"{path}: not a directory")
        return await _put_children(fs, host, path)
    await _put_file(fs, host, path)
    return 0


async def _put_children(fs: FatFS, host: Path, path: str) -> int:
    """Copy what the host directory holds into the directory ``path``.

    Names are stored as mcopy stores them (trailing dots and spaces dropped); a name FAT
    cannot hold, or two host names that would be stored alike, are skipped with a reason.
    """
    skipped = 0
    seen: dict[str, str] = {}
    for child in sorted(host.iterdir()):
        name = fat_name(child.name)
        if name is None:
            _skip(child, "FAT names cannot hold this name")
            skipped += 1
            continue
        key = name.upper()
        if key in seen:
            _skip(child, f"would be stored as {name!r}, like {seen[key]!r}")
            skipped += 1
            continue
        seen[key] = child.name
        skipped += await _put_tree(fs, child, _join(path, name))
    return skipped


def _skip(host: Path, why: str) -> None:
    sys.stderr.write(f"miragekit fat put: {host}: skipped: {why}\n")


async def _put(fs: FatFS, args: argparse.Namespace) -> int:
    host = Path(args.hostpath)
    if not host.exists():
        raise CliError(f"{host}: no such file or directory")
    path: str = args.path
    st = await _exists(fs, path)
    if path.endswith("/") and path.strip("/"):  # "into this directory": it must exist
        if st is None:
            raise CliError(f"{path}: no such directory")
        if not st.directory:
            raise CliError(f"{path}: not a directory")
    if st is not None and st.directory:
        if host.is_dir() and args.hostpath.endswith(("/", "/.")):  # DIR/: its contents
            return 1 if await _put_children(fs, host, path) else 0
        name = fat_name(host.resolve().name)
        if name is None:
            raise CliError(f"{host}: FAT names cannot hold this name")
        path = _join(path, name)
    return 1 if await _put_tree(fs, host, path) else 0


async def _get_tree(fs: FatFS, path: str, host: Path) -> None:
    st = check(await fs.stat(path))
    if st.directory:
        host.mkdir(exist_ok=True)
        for name in check(await fs.listdir(path)):
            await _get_tree(fs, _join(path, name), host / name)
        return
    prog = Progress(f"get {path}", st.size)
    off = 0
    with host.open("wb") as f:
        while off < st.size:
            bufs = check(await fs.read(path, off, _chunk(fs)))
            n = 0
            for b in bufs:
                f.write(b)
                n += len(b)
            if n == 0:
                break
            off += n
            prog.add(n)
    prog.end()


async def _get(fs: FatFS, args: argparse.Namespace) -> int:
    st = check(await fs.stat(args.path))
    host = Path(args.hostpath)
    if host.is_dir():
        name = st.filename if st.filename != "/" else ""
        if name:
            host = host / name
    if st.directory and host.exists() and not host.is_dir():
        raise CliError(f"{host}: not a directory")
    try:
        await _get_tree(fs, args.path, host)
    except OSError as e:
        raise CliError(f"{e.filename}: {e.strerror}") from None
    return 0


async def _mkdir(fs: FatFS, args: argparse.Namespace) -> int:
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


async def _rm_tree(fs: FatFS, path: str) -> None:
    st = check(await fs.stat(path))
    if st.directory:
        for name in check(await fs.listdir(path)):
            await _rm_tree(fs, _join(path, name))
    check(await fs.destroy(path))


async def _rm(fs: FatFS, args: argparse.Namespace) -> int:
    if args.recursive:
        await _rm_tree(fs, args.path)
    else:
        check(await fs.destroy(args.path))
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
        sys.stderr.write(f"miragekit fat {args.fat_command}: {e}\n")
        return 1
    except BrokenPipeError:  # pragma: no cover - `cat | head`
        return 0


def register(subparsers: Any) -> None:
    """Add ``fat`` and its actions to the ``miragekit`` parser."""
    p = subparsers.add_parser(
        "fat",
        help="work on FAT disk images (mtools style, using miragekit's own FS)",
        description="Work on FAT12/16/32 disk images with miragekit's FatFS.",
    )
    sub = p.add_subparsers(dest="fat_command", metavar="ACTION", required=True)

    m = sub.add_parser("mkfs", help="make an empty FAT image")
    m.add_argument("image")
    m.add_argument(
        "--size",
        type=parse_size,
        help="e.g. 64M, 1G, 1440K; rounded down to 512-byte sectors (default: the existing"
        " file, device or partition)",
    )
    m.add_argument("--fat", type=int, choices=(12, 16, 32), help="FAT type (default: by size)")
    m.add_argument("--label", help="volume label (up to 11 characters)")

    ls = sub.add_parser("ls", help="list a directory, one name per line")
    ls.add_argument("-l", "--long", action="store_true", help="show sizes and write times")
    ls.add_argument("image")
    ls.add_argument("path", nargs="?", default="/")

    c = sub.add_parser("cat", help="write a file's contents to stdout")
    c.add_argument("image")
    c.add_argument("path")

    put = sub.add_parser(
        "put",
        help="copy a host file or directory into the image (DIR/ copies DIR's contents;"
        " a PATH ending in / must be an existing directory)",
    )
    put.add_argument("image")
    put.add_argument("hostpath")
    put.add_argument("path")

    get = sub.add_parser("get", help="copy a file or directory out of the image")
    get.add_argument("image")
    get.add_argument("path")
    get.add_argument("hostpath")

    md = sub.add_parser("mkdir", help="make a directory")
    md.add_argument(
        "-p", "--parents", action="store_true", help="make missing parents; no error if it exists"
    )
    md.add_argument("image")
    md.add_argument("path")

    rm = sub.add_parser("rm", help="remove a file or an empty directory")
    rm.add_argument(
        "-r", "--recursive", action="store_true", help="remove directories and their contents"
    )
    rm.add_argument("image")
    rm.add_argument("path")
    for writer in (m, put, md, rm):
        writer.add_argument(
            "--no-sync",
            action="store_true",
            help="do not wait for each write to reach the disk; sync once at the end (faster,"
            " but a crash midway can leave the volume needing fsck.fat)",
        )

    p.set_defaults(func=_main)
