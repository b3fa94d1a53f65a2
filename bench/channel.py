"""CHANNEL read_line against asyncio.StreamReader.readline, side by side in one run.

The same ~100 MB of LF-terminated lines (10..200 bytes, seeded) is cut into the same
64 KiB chunks for every contender. A producer task hands over one chunk, then yields:

* ``StreamReader.readline``: chunks go in through ``feed_data`` (its documented feeding
  path); each call returns the line as ``bytes`` (with its LF).
* ``Channel.read_line``: chunks go through an in-memory FLOW pair (``write`` on one end,
  the channel reads the other); each call returns the line as ``list[memoryview]``.
* ``Channel.read_line + bytes``: the same, plus turning the line into ``bytes``, which
  is what a caller that needs ``bytes`` pays on top.

Run: ``python bench/channel.py [--mb 100] [--repeat 3]``; prints a table and writes
``bench/results/channel.json``. Best of ``repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from miragekit.channel import Channel  # noqa: E402
from miragekit.testing import flow_pair  # noqa: E402

CHUNK = 64 * 1024


def make_data(total: int, seed: int = 1) -> tuple[bytes, int]:
    """``total`` bytes (about) of lines of 10..200 bytes; returns (data, line count)."""
    rng = random.Random(seed)
    alphabet = bytes(range(32, 127))
    pool = bytes(rng.choice(alphabet) for _ in range(1 << 16)) * 2
    parts: list[bytes] = []
    size = 0
    while size < total:
        n = rng.randint(10, 200)
        off = rng.randrange(1 << 16)
        parts.append(pool[off : off + n])
        size += n + 1
    return b"\n".join(parts) + b"\n", len(parts)


async def stream_reader(chunks: list[bytes]) -> tuple[int, int]:
    reader = asyncio.StreamReader(limit=1 << 20)

    async def produce() -> None:
        for c in chunks:
            reader.feed_data(c)
            await asyncio.sleep(0)
        reader.feed_eof()

    task = asyncio.create_task(produce())
    lines = nbytes = 0
    readline = reader.readline
    while True:
        line = await readline()
        if not line:
            break
        lines += 1
        nbytes += len(line)
    await task
    return lines, nbytes


async def channel(chunks: list[bytes], to_bytes: bool) -> tuple[int, int]:
    a, b = flow_pair(capacity=4 * CHUNK)
    ch = Channel.create(b)

    async def produce() -> None:
        for c in chunks:
            await a.write(c)
            await asyncio.sleep(0)
        await a.close()

    task = asyncio.create_task(produce())
    lines = nbytes = 0
    read_line = ch.read_line
    if to_bytes:
        join = b"".join
        while parts := await read_line():
            line = join(parts)
            lines += 1
            nbytes += len(line) + 1
    else:
        while parts := await read_line():
            lines += 1
            # The same bookkeeping as the other contenders: one length per line.
            nbytes += (len(parts[0]) if len(parts) == 1 else sum(map(len, parts))) + 1
    await task
    return lines, nbytes


def timed(fn: Callable[[], Coroutine[Any, Any, tuple[int, int]]]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    lines, nbytes = asyncio.run(fn())
    return time.perf_counter() - t0, lines, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mb", type=int, default=100, help="megabytes of lines (default 100)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender, best kept")
    args = ap.parse_args()

    data, n_lines = make_data(args.mb * 1_000_000)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    contenders: list[tuple[str, Callable[[], Coroutine[Any, Any, tuple[int, int]]]]] = [
        ("asyncio.StreamReader.readline", lambda: stream_reader(chunks)),
        ("Channel.read_line", lambda: channel(chunks, False)),
        ("Channel.read_line + bytes", lambda: channel(chunks, True)),
    ]
    # Round-robin over the contenders, best of ``repeat`` each: drift on a busy machine
    # then hits every contender alike.
    best = {name: float("inf") for name, _ in contenders}
    for _ in range(args.repeat):
        for name, fn in contenders:
            secs, lines, nbytes = timed(fn)
            if lines != n_lines:
                raise SystemExit(f"{name}: read {lines} lines, expected {n_lines}")
            # StreamReader keeps the LF, the channel strips it (counted back in).
            if nbytes != len(data):
                raise SystemExit(f"{name}: read {nbytes} bytes, expected {len(data)}")
            best[name] = min(best[name], secs)
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "seconds": secs,
            "lines_per_s": n_lines / secs,
            "mb_per_s": len(data) / secs / 1e6,
        }
        for name, secs in best.items()
    ]
    base = rows[0]["lines_per_s"]
    for r in rows:
        r["ratio"] = r["lines_per_s"] / base

    print(
        f"read_line over {len(data) / 1e6:.0f} MB, {n_lines} lines of 10..200 bytes, "
        f"{CHUNK // 1024} KiB chunks, best of {args.repeat} (Python {platform.python_version()})"
    )
    print(f"{'contender':32} {'seconds':>8} {'lines/s':>12} {'MB/s':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['name']:32} {r['seconds']:8.3f} {r['lines_per_s']:12,.0f} "
            f"{r['mb_per_s']:8.1f} {r['ratio']:6.2f}"
        )
    out = ROOT / "bench" / "results" / "channel.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "channel.read_line",
                "python": platform.python_version(),
                "machine": platform.machine(),
                "bytes": len(data),
                "lines": n_lines,
                "chunk": CHUNK,
                "repeat": args.repeat,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
