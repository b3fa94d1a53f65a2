"""FileBlock against plain os.pread/os.pwrite: sequential 64 KiB requests over a 256 MiB file.

Run: ``/work/main/.venv/bin/python bench/block.py`` (options: ``--help``). Every case runs
on the same file in the same process, interleaved over ``--repeat`` rounds; the table
shows the median round. Each case times its request loop only (opening the file or
connecting the device, and starting the event loop, are outside the timing). Writes are durable per request for FileBlock (the seed says so);
the raw reference is ``pwrite`` + ``fdatasync`` per request, with ``pwrite`` alone as the
upper bound. Cold reads drop the file from the page cache first with
``posix_fadvise(DONTNEED)`` (no root needed, nothing else on the machine is disturbed).
Results go to ``bench/results/block.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.block import FileBlock
from miragekit.result import Ok

MiB = 1 << 20


def fs_type(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mnt, typ, *_ = line.split()
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, typ
    except OSError:
        pass
    return kind


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --- the raw references ---------------------------------------------------------------------


def raw_pread(path: str, size: int, req: int) -> float:
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        for off in range(0, size, req):
            os.pread(fd, req, off)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def raw_preadv(path: str, size: int, req: int) -> float:
    fd = os.open(path, os.O_RDONLY)
    bufs = [bytearray(req)]
    try:
        t0 = time.perf_counter()
        for off in range(0, size, req):
            os.preadv(fd, bufs, off)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def raw_pwrite(sync: bool, dsync: bool = False) -> Callable[[str, int, int], float]:
    def run(path: str, size: int, req: int) -> float:
        fd = os.open(path, os.O_WRONLY | (os.O_DSYNC if dsync else 0))
        buf = os.urandom(req)
        try:
            t0 = time.perf_counter()
            for off in range(0, size, req):
                os.pwrite(fd, buf, off)
                if sync:
                    os.fdatasync(fd)
            dt = time.perf_counter() - t0
            os.fdatasync(fd)  # leave no dirty pages behind to slow down the next case
            return dt
        finally:
            os.close(fd)

    return run


# --- FileBlock ------------------------------------------------------------------------------


def fileblock(op: str, offload: bool | None) -> Callable[[str, int, int], float]:
    async def main(path: str, size: int, req: int) -> float:
        res = await FileBlock.connect(path, read_only=op == "read", offload=offload)
        assert isinstance(res, Ok), res
        dev = res.value
        ss = (await dev.get_info()).sector_size
        step = req // ss
        buf = bytearray(req) if op == "read" else bytearray(os.urandom(req))
        bufs = [buf]
        call = dev.read if op == "read" else dev.write
        t0 = time.perf_counter()
        for sector in range(0, size // ss, step):
            r = await call(sector, bufs)
            assert isinstance(r, Ok), r
        dt = time.perf_counter() - t0
        await dev.disconnect()
        return dt

    def run(path: str, size: int, req: int) -> float:
        return asyncio.run(main(path, size, req))

    return run


# --- the run --------------------------------------------------------------------------------

Case = tuple[str, str, Callable[[str, int, int], float], str | None]
# (name, kind, function, reference name) ; kind: write, warm, cold

CASES: list[Case] = [
    ("raw pwrite+fdatasync", "write", raw_pwrite(sync=True), None),
    ("raw pwrite O_DSYNC", "write", raw_pwrite(sync=False, dsync=True), "raw pwrite+fdatasync"),
    ("FileBlock.write (auto)", "write", fileblock("write", None), "raw pwrite+fdatasync"),
    ("FileBlock.write (thread)", "write", fileblock("write", True), "raw pwrite+fdatasync"),
    ("raw pwrite, no sync", "write", raw_pwrite(sync=False), "raw pwrite+fdatasync"),
    ("raw pread", "warm", raw_pread, None),
    ("raw preadv (reused buf)", "warm", raw_preadv, "raw pread"),
    ("FileBlock.read (auto)", "warm", fileblock("read", None), "raw pread"),
    ("FileBlock.read (thread)", "warm", fileblock("read", True), "raw pread"),
    ("raw pread", "cold", raw_pread, None),
    ("FileBlock.read (auto)", "cold", fileblock("read", None), "raw pread"),
    ("FileBlock.read (thread)", "cold", fileblock("read", True), "raw pread"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--request-kib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp", help="where the test file goes (not tmpfs)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "block.json"))
    args = ap.parse_args()
    size, req = args.size_mib * MiB, args.request_kib * 1024
    kind_fs = fs_type(args.dir)
    fd, path = tempfile.mkstemp(prefix="miragekit-bench-", suffix=".img", dir=args.dir)
    try:
        chunk = os.urandom(MiB)
        for off in range(0, size, MiB):
            os.pwrite(fd, chunk, off)
        os.fsync(fd)
        os.close(fd)
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):
            for name, kind, fn, _ref in CASES:
                if kind == "cold":
                    drop_cache(path)
                elif kind == "warm":
                    raw_preadv(path, size, req)  # make sure it is all cached
                dt = fn(path, size, req)
                samples.setdefault((kind, name), []).append(size / dt / 1e6)
    finally:
        os.unlink(path)

    median = {key: statistics.median(v) for key, v in samples.items()}
    rows = []
    for name, kind, _fn, ref in CASES:
        mbps = median[(kind, name)]
        ratio = mbps / median[(kind, ref)] if ref else 1.0
        rows.append(
            {
                "case": name,
                "kind": kind,
                "mb_per_s": round(mbps, 1),
                "reference": ref or name,
                "ratio": round(ratio, 3),
                "samples_mb_per_s": [round(x, 1) for x in samples[(kind, name)]],
            }
        )
    title = (
        f"BLOCK: sequential {args.size_mib} MiB in {args.request_kib} KiB requests, "
        f"file in {args.dir} ({kind_fs}), median of {args.repeat}"
    )
    print(title)
    print(f"{'kind':<6} {'case':<26} {'MB/s':>9} {'ratio':>7}  reference")
    for r in rows:
        print(
            f"{r['kind']:<6} {r['case']:<26} {r['mb_per_s']:>9.1f} {r['ratio']:>7.2f}  {r['reference']}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "block",
                "title": title,
                "command": "python bench/block.py " + " ".join(sys.argv[1:]),
                "size_bytes": size,
                "request_bytes": req,
                "repeat": args.repeat,
                "dir": args.dir,
                "filesystem": kind_fs,
                "python": platform.python_version(),
                "kernel": platform.release(),
                "cpus": os.cpu_count(),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
