"""TCP connections per second and memory per idle connection, on our stack.

Run as root: ``python bench/tcp_conns.py [--conns 3000] [--idle 10000]``.

* Connections per second: a Python client in a ``mk-`` namespace (``--procs`` forked
  processes, each opening connections one after another: blocking sockets, the cheapest
  Python client) opens ``--conns`` connections, each sending 1 byte, reading the
  1-byte echo and closing, to ``examples/echo`` on our stack over TAP (port 7). The
  reference is the same client against a kernel echo server (Python asyncio, host
  sockets) on the namespace's loopback: the client's own ceiling.
* Memory per idle established connection: two of our stacks on the virtual switch in one
  process, ``--idle`` connections opened from one to the other and left idle (the server
  side holds each flow in its callback, waiting to read, as an application does).
  Measured as traced Python memory (tracemalloc) and as RSS growth; per connection
  means both ends (client flow + server flow and task); half of it is one endpoint.

Prints a table and writes bench/results/tcp_conns.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from miragekit.net import VnetSwitch  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

KERNEL_IP, APP_IP = "10.82.0.1", "10.82.0.2"

CLIENT = r"""
import os, socket, sys, time
host, port, total, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def one():
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"x")
    ok = s.recv(1) == b"x"
    s.close()
    return ok
for _ in range(3):  # warm up (ARP, first-use costs)
    one()
n = total // procs
r, w = os.pipe()
t0 = time.monotonic()
for _ in range(procs):
    if os.fork() == 0:
        failed = 0
        for _ in range(n):
            try:
                failed += not one()
            except OSError:
                failed += 1
        os.write(w, f"{failed}\n".encode())
        os._exit(0)
for _ in range(procs):
    os.wait()
secs = time.monotonic() - t0
os.close(w)
failed = sum(int(x) for x in os.read(r, 1 << 16).split())
print(n * procs, failed, secs)
"""


KERNEL_ECHO = r"""
import asyncio
async def echo(r, w):
    while (d := await r.read(65536)):
        w.write(d)
        await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(echo, "127.0.0.1", 7, backlog=1024)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def run_client(ns: str, host: str, total: int, procs: int) -> dict[str, Any]:
    p = subprocess.run(in_ns(ns, sys.executable, "-c", CLIENT, host, "7", str(total), str(procs)),
                       capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    n, failed, secs = p.stdout.split()
    return {"conns": int(n), "failed": int(failed), "seconds": float(secs),
            "per_second": int(n) / float(secs)}  # fmt: skip


def conns_per_second(total: int, procs: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-bc{tag}", f"mk-bc{tag}t"
    sh("ip", "netns", "add", ns)
    try:
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"))
        sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
        sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP}/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        rows: dict[str, Any] = {}
        echo = subprocess.Popen(in_ns(ns, sys.executable, "-c", KERNEL_ECHO),
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            rows["kernel echo, loopback (client ceiling)"] = run_client(
                ns, "127.0.0.1", total, procs
            )
        finally:
            echo.kill()
            echo.wait()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
        app = subprocess.Popen(
            in_ns(ns, sys.executable, "-m", "miragekit", "run", "examples/echo",
                  "--net", f"tap:{tap}", "--ip", f"{APP_IP}/24"),
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert app.stdout is not None
            line = app.stdout.readline()
            assert "echo: TCP+UDP echo" in line, line
            rows["ours (examples/echo), TAP"] = run_client(ns, APP_IP, total, procs)
        finally:
            app.terminate()
            app.wait(timeout=30)
        return rows
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _idle_connections(n: int, measure: str) -> dict[str, Any]:
    sw = VnetSwitch()
    stacks = []
    for i, name in enumerate(("client", "server")):
        vif = sw.add_interface(name, mtu=1500)
        r = await DirectStackV4.connect(StackConfig(name, None, vif, Static(f"10.0.{i}.1/16")))
        assert isinstance(r, Ok)
        stacks.append(r.value)
    client, server = stacks
    held = 0

    async def hold(flow: Any) -> None:
        nonlocal held
        held += 1
        await flow.read()  # idle until the peer closes

    server.listen_tcpv4(port=80, callback=hold)
    tcp = client.tcpv4()
    dst = IPv4Address("10.0.1.1")

    async def open_one() -> Any:
        r = await tcp.create_connection((dst, 80))
        assert isinstance(r, Ok), r
        return r.value

    warm = [await open_one() for _ in range(10)]  # ARP, first-use allocations
    await asyncio.sleep(0.2)
    gc.collect()
    if measure == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss()
    t0 = time.monotonic()
    flows = []
    for _ in range(0, n, 200):
        flows += await asyncio.gather(*(open_one() for _ in range(200)))
    opened = time.monotonic() - t0
    while held < n + len(warm):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # delayed ACKs out, everything idle
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if measure == "tracemalloc" else _rss()
    if measure == "tracemalloc":
        tracemalloc.stop()
    conns = tcp.connections()
    return {"connections": len(flows), "client_table": conns, "bytes": after - before,
            "per_connection": (after - before) / len(flows), "open_seconds": opened}  # fmt: skip


def memory_per_connection(n: int) -> dict[str, Any]:
    out = {}
    for how in ("rss", "tracemalloc"):
        out[how] = asyncio.run(_idle_connections(n, how))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--idle", type=int, default=10000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tcp_conns.py needs root (network namespaces, TAP)")
    cps = conns_per_second(args.conns, args.procs)
    mem = memory_per_connection(args.idle)
    print(f"Connections per second ({args.conns} connections, {args.procs} client "
          "processes; connect, 1 byte each way, close)")  # fmt: skip
    print(f"{'server':42} {'conn/s':>9} {'failed':>7}")
    for name, r in cps.items():
        print(f"{name:42} {r['per_second']:9.0f} {r['failed']:7d}")
    print(f"\nMemory per idle established connection ({args.idle} connections between two of "
          "our stacks on the switch; both ends)")  # fmt: skip
    print(f"{'measure':14} {'total MiB':>10} {'B/conn':>9} {'B/endpoint':>11} {'open s':>7}")
    for how, r in mem.items():
        print(f"{how:14} {r['bytes'] / 2**20:10.1f} {r['per_connection']:9.0f} "
              f"{r['per_connection'] / 2:11.0f} {r['open_seconds']:7.1f}")  # fmt: skip
    print("targets: >= 5000 conn/s; <= 16 KiB (16384 B) per idle connection")
    out = ROOT / "bench" / "results" / "tcp_conns.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"conns_per_second": cps, "memory": mem,
                               "args": vars(args)}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
