"""Frames/s and bytes/s through the virtual switch, against an AF_UNIX datagram socketpair.

Run: .venv/bin/python bench/vswitch.py [--seconds S]

One process, a real-time asyncio loop, no impairments. For 64 B, 1500 B and 64 KiB frames:
* ``vswitch send/set_receiver``: VnetIf.send on one port, a synchronous receiver on the
  other (the FrameLink fast path the stack uses);
* ``vswitch write/listen``: the seed's async API (a task per received frame);
* ``socketpair reference``: the same frames over ``socketpair(AF_UNIX, SOCK_DGRAM)``,
  received by an ``add_reader`` callback that reads until it would block (batching).
Writes bench/results/vswitch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.link import VnetSwitch

SIZES = (64, 1500, 65536)
BATCH = 64


def make_frame(dst: bytes, src: bytes, size: int) -> memoryview:
    """A frame in a reusable buffer, as a stack sends it (so the switch must copy it)."""
    return memoryview(bytearray(dst + src + b"\x08\x00" + bytes(size - 14)))


async def run_vswitch(size: int, seconds: float) -> tuple[int, float]:
    sw = VnetSwitch(seed=0)
    a = sw.add_interface("a", mtu=65535)
    b = sw.add_interface("b", mtu=65535)
    loop = asyncio.get_running_loop()
    frame = make_frame(b.mac().packed, a.mac().packed, size)
    b.send(make_frame(a.mac().packed, b.mac().packed, 64))  # learn b
    got = 0

    def rx(view: memoryview) -> None:
        nonlocal got
        got += 1

    b.set_receiver(rx)
    await asyncio.sleep(0)
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    send = a.send
    while time.perf_counter() < end:
        for _ in range(BATCH):
            send(frame)
        sent += BATCH
        await asyncio.sleep(0)
    while got < sent:
        await asyncio.sleep(0)
    dt = time.perf_counter() - t0
    del loop
    return got, dt


async def run_listen(size: int, seconds: float) -> tuple[int, float]:
    sw = VnetSwitch(seed=0)
    a = sw.add_interface("a", mtu=65535)
    b = sw.add_interface("b", mtu=65535)
    frame = make_frame(b.mac().packed, a.mac().packed, size)
    b.send(make_frame(a.mac().packed, b.mac().packed, 64))
    got = 0

    async def on_frame(view: memoryview) -> None:
        nonlocal got
        got += 1

    listener = asyncio.create_task(b.listen(on_frame))
    await asyncio.sleep(0)
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(BATCH):
            await a.write(frame)
        sent += BATCH
        await asyncio.sleep(0)
    while got < sent:
        await asyncio.sleep(0)
    dt = time.perf_counter() - t0
    await b.disconnect()
    await listener
    return got, dt


async def run_socketpair(size: int, seconds: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    s, r = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (s, r):
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    frame = make_frame(bytes(6), bytes(6), size)
    buf = bytearray(65536 + 64)
    view = memoryview(buf)
    got = 0
    recv_into = r.recv_into

    def readable() -> None:
        nonlocal got
        while True:
            try:
                n = recv_into(view)
            except BlockingIOError:
                return
            if n:
                got += 1

    loop.add_reader(r.fileno(), readable)
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    send = s.send
    try:
        while time.perf_counter() < end:
            for _ in range(BATCH):
                try:
                    send(frame)
                    sent += 1
                except BlockingIOError:
                    break
            await asyncio.sleep(0)
        while got < sent:
            await asyncio.sleep(0)
        dt = time.perf_counter() - t0
    finally:
        loop.remove_reader(r.fileno())
        s.close()
        r.close()
    return got, dt


PATHS: dict[str, Callable[[int, float], Awaitable[tuple[int, float]]]] = {
    "vswitch send/set_receiver": run_vswitch,
    "vswitch write/listen": run_listen,
    "socketpair(AF_UNIX, DGRAM) reference": run_socketpair,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for fn in PATHS.values():  # warm up allocator, caches and the CPU clock
        asyncio.run(fn(1500, 0.2))
    # Interleave the paths in every round, so background load hits them alike.
    rates: dict[tuple[int, str], list[float]] = {(z, p): [] for z in SIZES for p in PATHS}
    for _ in range(args.repeat):
        for size in SIZES:
            for name, fn in PATHS.items():
                n, dt = asyncio.run(fn(size, args.seconds))
                rates[size, name].append(n / dt)
    ref = list(PATHS)[-1]
    for (size, name), r in rates.items():
        fps = statistics.median(r)
        vs = fps / statistics.median(rates[size, ref])
        rows.append(
            {
                "path": name,
                "frame_bytes": size,
                "frames_per_s": fps,
                "bytes_per_s": fps * size,
                "vs_reference": vs,
            }
        )
    print(f"{'path':40} {'frame':>7} {'frames/s':>12} {'MB/s':>10} {'vs ref':>7}")
    for row in rows:
        print(
            f"{row['path']:40} {row['frame_bytes']:>7} {row['frames_per_s']:>12,.0f} "
            f"{row['bytes_per_s'] / 1e6:>10.1f} {row['vs_reference']:>6.2f}x"
        )
    out = Path(__file__).resolve().parent / "results" / "vswitch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seconds_per_measurement": args.seconds,
        "repeat": args.repeat,
        "batch": BATCH,
        "loadavg_at_end": os.getloadavg(),
    }
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
