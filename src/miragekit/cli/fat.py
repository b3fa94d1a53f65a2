"""``miragekit fat``: mtools-style commands on FAT images, using only miragekit's FS.

    miragekit fat mkfs IMAGE --size 64M [--fat 12|16|32]
    miragekit fat ls [-l] IMAGE [PATH]
    miragekit fat cat IMAGE PATH
    miragekit fat put IMAGE HOSTPATH PATH      (directories recursively)
    miragekit fat get IMAGE PATH HOSTPATH      (directories recursively)
    miragekit fat mkdir IMAGE PATH
    miragekit fat rm [-r] IMAGE PATH

Errors print one line to stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from ..block import FileBlock
from ..fs import FatFS
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
    message,
)
from ..v1 import Block

CHUNK = 1 << 20
PROGRESS_FROM = 4 << 20
T = TypeVar("T")


class CliError(Exception):
    """One line for stderr."""


async def open_image(path: str, *, durable: bool = True) -> Block:
    """The block device behind an image file (the one place the CLI builds one).

    Durable by default: FAT's write ordering only protects the volume if each write is on
    disk before the next one starts.
    """
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such image file")
    match await FileBlock.connect(path, durable=durable):
        case Ok(blk):
            return blk
        case Error(e):
            raise CliError(f"cannot open {path}: {message(e)}")
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
            return f"block device error: {message(e)}"
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


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


# --- the commands --------------------------------------------------------------------------


async def _with_fs(path: str, args: argparse.Namespace) -> int:
    blk = await open_image(path)
    try:
        fs = check(await FatFS.connect(blk))
        rc: int = await _COMMANDS[args.fat_command](fs, args)
        return rc
    finally:
        await blk.disconnect()


async def _mkfs(args: argparse.Namespace) -> int:
    size: int = args.size
    try:
        with open(args.image, "ab") as f:
            if f.tell() < size:
                f.truncate(size)
    except OSError as e:
        raise CliError(f"{args.image}: {e.strerror}") from None
    blk = await open_image(args.image)
    try:
        fs = check(await FatFS.connect(blk))
        check(await fs.format(size, fat=args.fat, label=args.label))
    finally:
        await blk.disconnect()
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
            out.write(f"{'<DIR>' if s.directory else s.size:>10}  {name}\n")
        else:
            out.write(name + "\n")
    return 0


async def _cat(fs: FatFS, args: argparse.Namespace) -> int:
    size = check(await fs.size(args.path))
    out = sys.stdout.buffer
    off = 0
    while off < size:
        for b in check(await fs.read(args.path, off, CHUNK)):
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


async def _put_tree(fs: FatFS, host: Path, path: str) -> None:
    if host.is_dir():
        st = await _exists(fs, path)
        if st is None:
            check(await fs.mkdir(path))
        elif not st.directory:
            raise CliError(f"{path}: not a directory")
        for child in sorted(host.iterdir()):
            await _put_tree(fs, child, _join(path, child.name))
    else:
        await _put_file(fs, host, path)


async def _put(fs: FatFS, args: argparse.Namespace) -> int:
    host = Path(args.hostpath)
    if not host.exists():
        raise CliError(f"{host}: no such file or directory")
    path: str = args.path
    st = await _exists(fs, path)
    if st is not None and st.directory:
        path = _join(path, host.resolve().name)
    await _put_tree(fs, host, path)
    return 0


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
            bufs = check(await fs.read(path, off, CHUNK))
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
    check(await fs.mkdir(args.path))
    return 0


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
    m.add_argument("--size", type=parse_size, required=True, help="e.g. 64M, 1G, 1440K")
    m.add_argument("--fat", type=int, choices=(12, 16, 32), help="FAT type (default: by size)")
    m.add_argument("--label", help="volume label (up to 11 characters)")

    ls = sub.add_parser("ls", help="list a directory, one name per line")
    ls.add_argument("-l", "--long", action="store_true", help="show sizes")
    ls.add_argument("image")
    ls.add_argument("path", nargs="?", default="/")

    c = sub.add_parser("cat", help="write a file's contents to stdout")
    c.add_argument("image")
    c.add_argument("path")

    put = sub.add_parser("put", help="copy a host file or directory into the image")
    put.add_argument("image")
    put.add_argument("hostpath")
    put.add_argument("path")

    get = sub.add_parser("get", help="copy a file or directory out of the image")
    get.add_argument("image")
    get.add_argument("path")
    get.add_argument("hostpath")

    md = sub.add_parser("mkdir", help="make a directory")
    md.add_argument("image")
    md.add_argument("path")

    rm = sub.add_parser("rm", help="remove a file or an empty directory")
    rm.add_argument(
        "-r", "--recursive", action="store_true", help="remove directories and their contents"
    )
    rm.add_argument("image")
    rm.add_argument("path")

    p.set_defaults(func=_main)
