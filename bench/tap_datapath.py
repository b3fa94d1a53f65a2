"""Bulk TCP throughput over TAP, each way, with and without offload, against the kernel.

Run (root): .venv/bin/python bench/tap_datapath.py [--mb N] [--repeat R]
            [--profile DIR]

One run measures, side by side:
* ``kernel -> us``: a Python socket sender in a ``mk-`` namespace sends N MB to our
  DirectStackV4 over a TAP device; our receiver times first byte to end of stream.
* ``us -> kernel``: our stack sends N MB to a Python socket receiver in the namespace,
  which times first byte to end of stream.
  Each with ``TapNetif(offload=False)`` (MTU-sized frames, checksums in Python) and
  ``TapNetif(offload=True)`` (64 KiB TSO/GSO segments, checksums left to the kernel).
* ``kernel -> kernel (veth)``: the same sender and receiver in two namespaces joined by
  a veth pair: the reference (the kernel's own TCP on both ends).
The best of ``--repeat`` runs is reported (MB = 10**6 bytes). ``--profile DIR`` writes a
cProfile of our side of each TAP run. Writes bench/results/tap_datapath.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.link import PacketNetif, TapNetif
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

KERNEL_IP = "10.97.0.1"
OUR_IP = "10.97.0.2"
PORT = 5001
CHUNK = 1 << 20

SENDER = """
import socket, sys, time
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(400):
    try:
        s = socket.create_connection((host, port), timeout=30)
        break
    except OSError:
        time.sleep(0.025)
view = memoryview(bytes(1 << 20))
sent = 0
while sent < total:
    n = min(len(view), total - sent)
    s.sendall(view[:n])
    sent += n
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(sent)
"""

RECEIVER = """
import socket, sys, time
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1])))
ls.listen(1)
print("ready", flush=True)
c, _ = ls.accept()
buf = bytearray(1 << 20)
n = 0
t0 = None
while True:
    k = c.recv_into(buf)
    if t0 is None:
        t0 = time.perf_counter()
    if not k:
        break
    n += k
print(n, time.perf_counter() - t0, flush=True)
"""


def sh(*args: str) -> None:
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")


@contextmanager
def namespaces(n: int) -> Iterator[list[str]]:
    """``n`` fresh ``mk-`` namespaces (IPv6 off, lo up); always deleted."""
    t = uuid.uuid4().hex[:6]
    names = [f"mk-bench{t}-{i}" for i in range(n)]
    made: list[str] = []
    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
            made.append(ns)
            for key in ("default", "all"):
                sh(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    f"net.ipv6.conf.{key}.disable_ipv6=1",
                )
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


# --- kernel to kernel over veth ------------------------------------------------------------


def run_veth(total: int) -> float:
    with namespaces(2) as (a, b):
        sh("ip", "link", "add", "mk-va", "netns", a, "type", "veth", "peer", "mk-vb", "netns", b)
        sh("ip", "-n", a, "addr", "add", "10.98.0.1/24", "dev", "mk-va")
        sh("ip", "-n", b, "addr", "add", "10.98.0.2/24", "dev", "mk-vb")
        sh("ip", "-n", a, "link", "set", "mk-va", "up")
        sh("ip", "-n", b, "link", "set", "mk-vb", "up")
        recv = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", RECEIVER, str(PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert recv.stdout is not None
            assert recv.stdout.readline().strip() == "ready"
            send = ["ip", "netns", "exec", a, sys.executable, "-c", SENDER]
            subprocess.run(
                [*send, "10.98.0.2", str(PORT), str(total)],
                check=True,
                timeout=120,
                stdout=subprocess.DEVNULL,
            )
            n, secs = recv.stdout.readline().split()
            assert int(n) == total
            return mbps(total, float(secs))
        finally:
            recv.kill()
            recv.wait()


# --- our stack over TAP ------------------------------------------------------------------------


#: ``--link``: "tap", or "packet2"/"packet3" (a veth pair, our end through PacketNetif
#: with a TPACKET_V2 or V3 ring in a second namespace; the kernel's end without transmit
#: checksum offload, so that it sends finished checksums as over TAP without offload).
LINK = "tap"


async def _stack(ns: str, offload: bool) -> tuple[DirectStackV4, Any, str]:
    tag = uuid.uuid4().hex[:6]
    netif: Any
    if LINK.startswith("packet"):
        ours = f"mk-bo{tag}"
        sh("ip", "netns", "add", ours)
        _OUR_NS.append(ours)
        sh("ip", "link", "add", f"mk-bk{tag}", "netns", ns, "type", "veth",
           "peer", "name", f"mk-bv{tag}", "netns", ours)  # fmt: skip
        sh("ip", "netns", "exec", ns, "ethtool", "-K", f"mk-bk{tag}", "tx", "off")
        sh("ip", "-n", ours, "link", "set", f"mk-bv{tag}", "up")
        devname = f"mk-bk{tag}"
        pr = await PacketNetif.connect(f"mk-bv{tag}", netns=ours, version=int(LINK[-1]))
        assert isinstance(pr, Ok), pr
        netif = pr.value
    else:
        devname = f"mk-bt{tag}"
        r = await TapNetif.connect(devname, offload=offload)
        assert isinstance(r, Ok), r
        netif = r.value
        sh("ip", "link", "set", devname, "netns", ns)
    sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP}/24", "dev", devname)
    sh("ip", "-n", ns, "link", "set", devname, "up")
    s = await DirectStackV4.connect(StackConfig("tap", None, netif, Static(f"{OUR_IP}/24")))
    assert isinstance(s, Ok), s
    if not FRAME_SHORTCUT:
        s.value.ipv4().frame_input = None  # every frame layer by layer
    return s.value, netif, devname


#: False: TCP's whole-frame shortcut (``IPv4.frame_input``) off, for comparison.
FRAME_SHORTCUT = True
_OUR_NS: list[str] = []  # namespaces of our veth ends, deleted after each run


async def kernel_to_us(ns: str, offload: bool, total: int, prof: cProfile.Profile | None) -> float:
    stack, netif, _ = await _stack(ns, offload)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, float]] = loop.create_future()

    async def sink(flow: Any) -> None:
        n = 0
        t0 = 0.0
        while isinstance(r := await flow.read(), Ok):
            if not n:
                t0 = time.perf_counter()
            n += len(r.value)
        done.set_result((n, time.perf_counter() - t0))

    stack.listen_tcpv4(port=PORT, callback=sink)
    try:
        if prof:
            prof.enable()
        p = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, "-c", SENDER, OUR_IP, str(PORT), str(total),
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        n, secs = await asyncio.wait_for(done, 300)
        await p.wait()
        if prof:
            prof.disable()
        assert n == total, (n, total)
        return mbps(total, secs)
    finally:
        await stack.disconnect()
        await netif.disconnect()


async def us_to_kernel(ns: str, offload: bool, total: int, prof: cProfile.Profile | None) -> float:
    stack, netif, _ = await _stack(ns, offload)
    recv = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, "-c", RECEIVER, str(PORT),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert recv.stdout is not None
        assert (await recv.stdout.readline()).strip() == b"ready"
        r = await stack.tcpv4().create_connection((ipaddress.IPv4Address(KERNEL_IP), PORT))
        assert isinstance(r, Ok), r
        flow = r.value
        chunk = memoryview(bytes(CHUNK))
        if prof:
            prof.enable()
        sent = 0
        while sent < total:
            n = min(CHUNK, total - sent)
            assert await flow.write(chunk[:n]) == Ok(None)
            sent += n
        await flow.close()
        line = await asyncio.wait_for(recv.stdout.readline(), 300)
        if prof:
            prof.disable()
        got, secs = line.split()
        assert int(got) == total, (got, total)
        return mbps(total, float(secs))
    finally:
        if recv.returncode is None:
            recv.kill()
        await recv.wait()
        await stack.disconnect()
        await netif.disconnect()


def run_tap(direction: str, offload: bool, total: int, profile: Path | None) -> float:
    prof = cProfile.Profile() if profile else None
    fn = kernel_to_us if direction == "kernel->us" else us_to_kernel
    with namespaces(1) as (ns,):
        try:
            result = asyncio.run(fn(ns, offload, total, prof))
        finally:
            while _OUR_NS:
                subprocess.run(["ip", "netns", "del", _OUR_NS.pop()], capture_output=True)
    if prof and profile:
        name = f"{'to_us' if direction == 'kernel->us' else 'to_kernel'}_{'offload' if offload else 'plain'}"
        prof.dump_stats(profile / f"{name}.prof")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500, help="MB per run with offload and veth")
    ap.add_argument("--plain-mb", type=int, default=200, help="MB per run without offload")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", type=Path, help="directory for cProfile output")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tap_datapath.py needs root (namespaces and TAP devices)")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()  # how much of the machine other work took
    rows: list[dict[str, Any]] = []
    for direction in ("kernel->us", "us->kernel"):
        for offload in (False, True):
            total = (args.mb if offload else args.plain_mb) * 1_000_000
            runs = [run_tap(direction, offload, total, args.profile) for _ in range(args.repeat)]
            rows.append(
                {
                    "path": f"{direction} over TAP",
                    "offload": offload,
                    "bytes": total,
                    "MB/s": round(max(runs), 1),
                    "runs": [round(r, 1) for r in runs],
                }
            )
    total = args.mb * 1_000_000
    runs = [run_veth(total) for _ in range(args.repeat)]
    ref = max(runs)
    rows.append(
        {
            "path": "kernel->kernel over veth",
            "offload": True,
            "bytes": total,
            "MB/s": round(ref, 1),
            "runs": [round(r, 1) for r in runs],
        }
    )
    print(f"{'path':28} {'offload':>8} {'MB':>6} {'MB/s (best)':>12} {'% of veth':>10}  runs")
    for row in rows:
        print(
            f"{row['path']:28} {'yes' if row['offload'] else 'no':>8} {row['bytes'] // 10**6:>6} "
            f"{row['MB/s']:>12.1f} {100 * row['MB/s'] / ref:>9.1f}%  {row['runs']}"
        )
    out = Path(__file__).resolve().parent / "results" / "tap_datapath.json"
    out.parent.mkdir(exist_ok=True)
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    meta = {"python": sys.version.split()[0], "machine": platform.machine(),
            "cpus": os.cpu_count(), "loadavg": load}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
