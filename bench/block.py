"""FileBlock against plain os.pread/os.pwrite: sequential 64 KiB requests over a 256 MiB file.

Run: ``.venv/bin/python bench/block.py`` (options: ``--help``).

Every case works on the same file in the same process and event loop. To be fair on a
shared machine (other processes' disk and CPU bursts), the cases are interleaved finely:
the file is walked in 4 MiB segments and each segment is done by every case in turn (the
order rotating per segment), so a burst hits all cases alike. Only the request loops are
timed (opening files and connecting devices are not). A round covers the whole file once
per case. The table shows, per case, the file size over the sum of each segment's fastest
time across ``--repeat`` rounds (noise only ever adds time, so the best round of each
segment estimates the cost itself), and beside it the plain mean over all rounds.

* write: FileBlock writes are durable per request (the seed says so); the reference is
  ``pwrite`` + ``fdatasync`` per request, with ``pwrite`` alone as the upper bound.
* warm read: the file is in the page cache. The named reference is ``os.pread`` (a new
  ``bytes`` per request); ``os.preadv`` into one reused page-aligned buffer is shown too.
  FileBlock reads into a page-aligned buffer, as MirageOS hands out.
* cold read: each segment is dropped from the page cache just before it is read, with
  ``posix_fadvise(DONTNEED)`` (no root needed; nothing else on the machine is disturbed).

Results go to ``bench/results/block.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.block import FileBlock
from miragekit.result import Ok

MiB = 1 << 20
SEGMENT = 4 * MiB


def fs_type(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mnt, typ, *_ = line.split()
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) > len(best):
                    best, kind = mnt, typ
    except OSError:
        pass
    return kind


def page_aligned(n: int) -> memoryview:
    """``n`` bytes of page-aligned memory, as the seed's ``page_aligned_buffer``."""
    return memoryview(mmap.mmap(-1, n))


class Case:
    """One way of moving ``[lo, hi)`` of the file in ``req``-byte requests."""

    def __init__(self, name: str, kind: str, ref: str | None) -> None:
        self.name, self.kind, self.ref = name, kind, ref
        self.seconds: list[float] = []  # per round
        self.best: dict[int, float] = {}  # per segment: its fastest round

    async def open(self, path: str, req: int) -> None: ...

    async def segment(self, lo: int, hi: int, req: int) -> float:
        raise NotImplementedError

    async def close(self) -> None: ...


class RawRead(Case):
    def __init__(self, name: str, kind: str, ref: str | None, *, reuse: bool) -> None:
        super().__init__(name, kind, ref)
        self.reuse = reuse

    async def open(self, path: str, req: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.bufs = [page_aligned(req)]

    async def segment(self, lo: int, hi: int, req: int) -> float:
        fd, bufs = self.fd, self.bufs
        t0 = time.perf_counter()
        if self.reuse:
            for off in range(lo, hi, req):
                os.preadv(fd, bufs, off)
        else:
            for off in range(lo, hi, req):
                os.pread(fd, req, off)
        return time.perf_counter() - t0

    async def close(self) -> None:
        os.close(self.fd)


class RawWrite(Case):
    def __init__(self, name: str, ref: str | None, *, sync: bool, dsync: bool = False) -> None:
        super().__init__(name, "write", ref)
        self.sync, self.dsync = sync, dsync

    async def open(self, path: str, req: int) -> None:
        self.fd = os.open(path, os.O_WRONLY | (os.O_DSYNC if self.dsync else 0))
        self.buf = os.urandom(req)

    async def segment(self, lo: int, hi: int, req: int) -> float:
        fd, buf, sync = self.fd, self.buf, self.sync
        t0 = time.perf_counter()
        for off in range(lo, hi, req):
            os.pwrite(fd, buf, off)
            if sync:
                os.fdatasync(fd)
        dt = time.perf_counter() - t0
        os.fdatasync(fd)  # leave no dirty pages behind to slow down the next case
        return dt

    async def close(self) -> None:
        os.close(self.fd)


class Block(Case):
    def __init__(self, name: str, kind: str, ref: str | None, *, offload: bool | None) -> None:
        super().__init__(name, kind, ref)
        self.offload = offload

    async def open(self, path: str, req: int) -> None:
        res = await FileBlock.connect(path, read_only=self.kind != "write", offload=self.offload)
        assert isinstance(res, Ok), res
        self.dev = res.value
        self.ss = (await self.dev.get_info()).sector_size
        self.bufs = [page_aligned(req)]
        self.bufs[0][:] = os.urandom(req)

    async def segment(self, lo: int, hi: int, req: int) -> float:
        call = self.dev.write if self.kind == "write" else self.dev.read
        bufs, ss = self.bufs, self.ss
        t0 = time.perf_counter()
        for sector in range(lo // ss, hi // ss, req // ss):
            r = await call(sector, bufs)
            assert isinstance(r, Ok), r
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self.dev.disconnect()


def cases() -> list[Case]:
    fsync, pread = "raw pwrite+fdatasync", "raw pread"
    return [
        RawWrite(fsync, None, sync=True),
        RawWrite("raw pwrite O_DSYNC", fsync, sync=False, dsync=True),
        Block("FileBlock.write (auto)", "write", fsync, offload=None),
        Block("FileBlock.write (thread)", "write", fsync, offload=True),
        RawWrite("raw pwrite, no sync", fsync, sync=False),
        RawRead(pread, "warm", None, reuse=False),
        RawRead("raw preadv (page buf)", "warm", pread, reuse=True),
        Block("FileBlock.read (auto)", "warm", pread, offload=None),
        Block("FileBlock.read (thread)", "warm", pread, offload=True),
        RawRead(pread, "cold", None, reuse=False),
        Block("FileBlock.read (auto)", "cold", pread, offload=None),
        Block("FileBlock.read (thread)", "cold", pread, offload=True),
    ]


def advise(path: str, lo: int, n: int, advice: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, lo, n, advice)
    finally:
        os.close(fd)


def cache(path: str, size: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in range(0, size, MiB):
            os.pread(fd, MiB, off)
    finally:
        os.close(fd)


async def measure(all_cases: list[Case], path: str, size: int, req: int, repeat: int) -> None:
    for c in all_cases:
        await c.open(path, req)
    try:
        for kind in ("write", "warm", "cold"):
            group = [c for c in all_cases if c.kind == kind]
            for _ in range(repeat):
                if kind == "warm":
                    cache(path, size)
                totals = dict.fromkeys(map(id, group), 0.0)
                for k, lo in enumerate(range(0, size, SEGMENT)):
                    hi = min(lo + SEGMENT, size)
                    for c in group[k % len(group) :] + group[: k % len(group)]:
                        if kind == "cold":
                            advise(path, lo, hi - lo, os.POSIX_FADV_DONTNEED)
                        dt = await c.segment(lo, hi, req)
                        totals[id(c)] += dt
                        c.best[k] = min(c.best.get(k, dt), dt)
                for c in group:
                    c.seconds.append(totals[id(c)])
    finally:
        for c in all_cases:
            await c.close()


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
    all_cases = cases()
    fd, path = tempfile.mkstemp(prefix="miragekit-bench-", suffix=".img", dir=args.dir)
    try:
        chunk = os.urandom(MiB)
        for off in range(0, size, MiB):
            os.pwrite(fd, chunk, off)
        os.fsync(fd)
        os.close(fd)
        asyncio.run(measure(all_cases, path, size, req, args.repeat))
    finally:
        os.unlink(path)

    def rate(c: Case) -> float:
        return size / sum(c.best.values()) / 1e6

    def mean_rate(c: Case) -> float:
        return size * len(c.seconds) / sum(c.seconds) / 1e6

    by_name = {(c.kind, c.name): c for c in all_cases}
    rows = []
    for c in all_cases:
        mbps = rate(c)
        ref = by_name[(c.kind, c.ref)] if c.ref else c
        ratio = mbps / rate(ref)
        rows.append(
            {
                "case": c.name,
                "kind": c.kind,
                "mb_per_s": round(mbps, 1),
                "reference": c.ref or c.name,
                "ratio": round(ratio, 3),
                "mean_mb_per_s": round(mean_rate(c), 1),
                "mean_ratio": round(mean_rate(c) / mean_rate(ref), 3),
                "rounds_mb_per_s": [round(size / s / 1e6, 1) for s in c.seconds],
            }
        )
    title = (
        f"BLOCK: sequential {args.size_mib} MiB in {args.request_kib} KiB requests, "
        f"file in {args.dir} ({kind_fs}), best of {args.repeat} rounds per 4 MiB segment"
    )
    print(title)
    print(f"{'kind':<6} {'case':<26} {'MB/s':>9} {'ratio':>7} {'mean':>9} {'ratio':>7}  reference")
    for r in rows:
        print(
            f"{r['kind']:<6} {r['case']:<26} {r['mb_per_s']:>9.1f} {r['ratio']:>7.2f} "
            f"{r['mean_mb_per_s']:>9.1f} {r['mean_ratio']:>7.2f}  {r['reference']}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "block",
        "title": title,
        "command": " ".join(["python bench/block.py", *sys.argv[1:]]),
        "size_bytes": size,
        "request_bytes": req,
        "repeat": args.repeat,
        "dir": args.dir,
        "filesystem": kind_fs,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
