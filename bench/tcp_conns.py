"""TCP connections per second and memory per idle connection, on our stack.

Run as root: ``python bench/tcp_conns.py [--conns 10000] [--procs 1] [--inflight 16]
[--idle 10000] [--net tap,packet] [--before REV] [--repeat N] [--profile PATH]``
(``--idle 0`` skips the memory part).

* Connections per second: a lean client in a ``mk-`` namespace opens ``--conns``
  connections, each sending 1 byte, reading the 1-byte echo and closing (the client
  closes first), to ``examples/echo`` on our stack over TAP (port 7). Like wrk or ab it
  measures with concurrency and a cheap client: ``--procs`` processes (default one),
  each an ``epoll`` loop keeping ``--inflight`` connections in flight (non-blocking
  ``connect_ex`` on a plain ``socket.socket()``, the byte sent when the socket becomes
  writable, the next connection started as each one closes). One process with 16 in
  flight was the best for our stack in a sweep of 1-4 processes x 1-64 in flight: on two
  cores every extra client process takes CPU from the server, and deeper queues did not
  help further. Failures (refused, reset, no or wrong echo) are counted per kind and
  shown in the table; after 10 s without progress the rest count as timed out.
  ``--net`` names our server's backends, one row each in the same run (default ``tap``):
  ``tap`` as above; ``packet``, our end of a veth pair in a namespace of its own read and
  written through the memory-mapped ``AF_PACKET`` rings (``--net packet:VETH``, many
  frames per system call), the client's end (transmit checksum offload off, as that
  backend needs) in the client's namespace. ``--profile PATH`` runs each of our servers
  under cProfile and writes its stats to ``PATH.NET`` (the figures then include the
  profiler).
  The reference is the same client, in the same run, against a kernel echo server
  (Python asyncio, host sockets) on the namespace's loopback: the client's own ceiling
  on this machine. The client, our server and the kernel share the machine's cores, so
  the rate is noisy when other work runs; the server's own CPU time per connection
  (utime + stime from ``/proc/PID/stat`` over the run, divided by the connections)
  varies much less, and is shown beside it. So is where the rest of the server's wall
  time went: ``wait``, its time runnable but not running (waiting on a run queue,
  ``/proc/PID/schedstat``) and ``preempt``, how often it was switched out so (its
  non-voluntary context switches), per connection; and the client's own CPU and wait
  per connection. The server's CPU + wait + idle per connection is what the rate
  gives (1 / conn/s): a server never idle runs at 1 / (CPU + wait).
  ``--before REV``: a row more per ``--net``, our server on git revision REV's sources,
  run just before ours; ``--repeat N``: N rounds of all rows in turn, then the medians.
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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from proc_cpu import cpu_times as _cpu_seconds  # noqa: E402  (bench/http_aiohttp.py imports it)
from proc_cpu import sched_waits  # noqa: E402
from revision_src import extract_src  # noqa: E402

from miragekit.link import VnetSwitch  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

KERNEL_IP, APP_IP = "10.82.0.1", "10.82.0.2"  # over TAP
PKT_KERNEL_IP, PKT_APP_IP = "10.83.0.1", "10.83.0.2"  # over the veth of --net packet
NETS = ("tap", "packet")

CLIENT = r"""
import errno, json, os, resource, select, socket, sys, time
host, port, total, procs, inflight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ADDR = (host, port)
TYPE = socket.SOCK_STREAM | socket.SOCK_NONBLOCK  # non-blocking from the start: no fcntl
EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
KIND = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset", errno.EPIPE: "reset",
        errno.ETIMEDOUT: "timeout"}

def own():
    # This process's CPU seconds and its seconds waiting for a CPU (runnable, not running).
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/schedstat") as f:
        wait = int(f.read().split()[1]) / 1e9
    return ru.ru_utime + ru.ru_stime, wait

def run(n):
    # n connections, at most `inflight` at once: connect, send 1 byte, read it back, close.
    fails = {"refused": 0, "reset": 0, "timeout": 0, "no_echo": 0, "wrong_echo": 0, "other": 0}
    ep = select.epoll()
    connecting = {}  # fd -> socket, waiting to become writable
    reading = {}  # fd -> socket, waiting for the echo
    started = done = 0
    def start():
        nonlocal started, done
        started += 1
        s = socket.socket(socket.AF_INET, TYPE)
        err = s.connect_ex(ADDR)
        if err != errno.EINPROGRESS and err != 0:
            fails[KIND.get(err, "other")] += 1
            s.close()
            done += 1
            return
        fd = s.fileno()
        connecting[fd] = s
        ep.register(fd, EPOLLOUT)
    last = time.monotonic()
    while done < n:
        while started < n and len(connecting) + len(reading) < inflight:
            start()  # keep `inflight` connections going
        if done == n:
            break
        events = ep.poll(1.0)
        if not events:
            if time.monotonic() - last > 10:  # no progress: the rest count as timed out
                for s in (*connecting.values(), *reading.values()):
                    s.close()
                fails["timeout"] += n - done
                break
            continue
        last = time.monotonic()
        for fd, ev in events:
            s = connecting.pop(fd, None)
            if s is not None:
                try:
                    s.send(b"x")  # a failed connect reports its error here
                except OSError as e:
                    fails[KIND.get(e.errno, "other")] += 1
                    s.close()  # closing also takes the fd out of the epoll set
                    done += 1
                else:
                    reading[fd] = s
                    ep.modify(fd, EPOLLIN)
            else:
                s = reading.pop(fd)
                try:
                    data = s.recv(16)
                except OSError as e:
                    fails[KIND.get(e.errno, "other")] += 1
                else:
                    if data != b"x":
                        fails["wrong_echo" if data else "no_echo"] += 1
                s.close()
                done += 1
    ep.close()
    return fails

run(3 * procs)  # warm up (ARP, first-use costs), not counted
n = total // procs
r, w = os.pipe()
t0 = time.monotonic()
kids = []
for _ in range(procs):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        cpu0, wait0 = own()
        fails = run(n)
        cpu1, wait1 = own()
        fails["_cpu"], fails["_wait"] = cpu1 - cpu0, wait1 - wait0
        os.write(w, (json.dumps(fails) + "\n").encode())
        os._exit(0)
    kids.append(pid)
os.close(w)
out = b""
while chunk := os.read(r, 1 << 16):
    out += chunk
for pid in kids:
    os.waitpid(pid, 0)
secs = time.monotonic() - t0
fails = {}
for line in out.splitlines():
    for k, v in json.loads(line).items():
        fails[k] = fails.get(k, 0) + v
own_cpu, own_wait = fails.pop("_cpu"), fails.pop("_wait")
print(json.dumps({"conns": n * procs, "seconds": secs, "failures": fails, "cpu": own_cpu,
                  "wait": own_wait}))
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


def run_client(ns: str, host: str, total: int, procs: int, inflight: int,
               server_pid: int) -> dict[str, Any]:  # fmt: skip
    cpu0 = _cpu_seconds(server_pid)
    wait0, preempt0 = sched_waits(server_pid)
    p = subprocess.run(
        in_ns(ns, sys.executable, "-c", CLIENT, host, "7", str(total), str(procs), str(inflight)),
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    cpu1 = _cpu_seconds(server_pid)
    wait1, preempt1 = sched_waits(server_pid)
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    cpu = user + system
    r = json.loads(p.stdout)
    n = r["conns"]
    return {"conns": n, "failed": sum(r["failures"].values()), "failures": r["failures"],
            "seconds": r["seconds"], "per_second": n / r["seconds"],
            "server_cpu_seconds": cpu, "server_cpu_us_per_conn": cpu / n * 1e6,
            "server_user_us_per_conn": user / n * 1e6,
            "server_sys_us_per_conn": system / n * 1e6,
            "server_wait_us_per_conn": (wait1 - wait0) / n * 1e6,
            "server_preempted_per_conn": (preempt1 - preempt0) / n,
            "client_cpu_us_per_conn": r["cpu"] / n * 1e6,
            "client_wait_us_per_conn": r["wait"] / n * 1e6}  # fmt: skip


def serve_echo(ns: str, net: str, ip: str, client_ns: str, host: str, total: int, procs: int,
               inflight: int, profile: str | None, src: Path = ROOT / "src") -> dict[str, Any]:  # fmt: skip
    """``examples/echo`` under ``miragekit run --net NET --ip IP`` in ``ns``, measured by
    the client in ``client_ns``; with ``profile``, the server runs under cProfile (its
    figures then include the profiler) and writes its stats there. ``src``: the
    miragekit sources the server imports (another revision's, for ``--before``)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
    prof = ("-m", "cProfile", "-o", profile) if profile else ()
    app = subprocess.Popen(
        in_ns(ns, sys.executable, *prof, "-m", "miragekit", "run", "examples/echo",
              "--net", net, "--ip", ip),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert app.stdout is not None
        for line in app.stdout:  # the runner may print its own lines first
            if "echo: TCP+UDP echo" in line:
                break
        else:
            raise RuntimeError(f"examples/echo on {net} never said it was serving")
        return run_client(client_ns, host, total, procs, inflight, app.pid)
    finally:
        app.send_signal(signal.SIGINT)  # cProfile writes its stats on a clean exit
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()


def conns_per_second(total: int, procs: int, inflight: int, nets: list[str],
                     profile: str | None = None, before: tuple[str, Path] | None = None,
                     repeat: int = 1) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """The kernel echo reference, then our echo server on each of ``nets`` (``tap``: a TAP
    device in the client's namespace; ``packet``: our end of a veth pair, in a namespace
    of its own, through the ring-mapped packet socket, the client's end with transmit
    checksum offload off, as ``--net packet`` needs); with ``before`` (a revision and its
    ``src``), that revision's server on each net just before ours. ``repeat`` rounds of
    all of it; each row lists its runs in order."""
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-bc{tag}", f"mk-bc{tag}t"
    ons, vk, vo = f"mk-bo{tag}", f"mk-bc{tag}k", f"mk-bo{tag}o"
    sh("ip", "netns", "add", ns)
    try:
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"))
        # The client closes first and keeps each port in TIME-WAIT for 60 s: with
        # --repeat or --before, rows past ~55,000 connections to one server address
        # would have the client's connect() search the port range (its CPU per
        # connection went from ~35 to over 1,000 us). A TIME-WAIT port may be taken
        # again instead (timestamps tell the incarnations apart, RFC 6191).
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"))
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        if "tap" in nets:
            sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
            sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP}/24", "dev", tap)
            sh("ip", "-n", ns, "link", "set", tap, "up")
        if "packet" in nets:
            sh("ip", "netns", "add", ons)
            for n in (ns, ons):
                sh(*in_ns(n, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
            sh(*in_ns(ons, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
            sh("ip", "link", "add", vk, "netns", ns, "type", "veth",
               "peer", "name", vo, "netns", ons)  # fmt: skip
            sh(*in_ns(ns, "ethtool", "-K", vk, "tx", "off"))
            sh("ip", "-n", ns, "addr", "add", f"{PKT_KERNEL_IP}/24", "dev", vk)
            sh("ip", "-n", ns, "link", "set", vk, "up")
            sh("ip", "-n", ons, "link", "set", vo, "up")
        rows: dict[str, list[dict[str, Any]]] = {}
        ways = [("ours", ROOT / "src")]
        if before is not None:
            ways.insert(0, (f"before ({before[0]})", before[1]))
        for _ in range(repeat):
            echo = subprocess.Popen(in_ns(ns, sys.executable, "-c", KERNEL_ECHO),
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
            try:
                assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
                rows.setdefault("kernel echo, loopback (client ceiling)", []).append(
                    run_client(ns, "127.0.0.1", total, procs, inflight, echo.pid)
                )
            finally:
                echo.kill()
                echo.wait()
            for net in nets:
                for who, src in ways:
                    prof = f"{profile}.{net}" if profile and who == "ours" else None
                    if net == "tap":
                        r = serve_echo(ns, f"tap:{tap}", f"{APP_IP}/24", ns, APP_IP, total,
                                       procs, inflight, prof, src)  # fmt: skip
                        name = f"{who} (examples/echo), TAP"
                    else:
                        r = serve_echo(ons, f"packet:{vo}", f"{PKT_APP_IP}/24", ns, PKT_APP_IP,
                                       total, procs, inflight, prof, src)  # fmt: skip
                        name = f"{who} (examples/echo), packet rings"
                    rows.setdefault(name, []).append(r)
        return rows
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", ons], capture_output=True)


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


ROW = ("per_second", "failed", "server_cpu_us_per_conn", "server_user_us_per_conn",
       "server_sys_us_per_conn", "server_wait_us_per_conn", "server_preempted_per_conn",
       "client_cpu_us_per_conn", "client_wait_us_per_conn")  # fmt: skip
"""The table's columns after the server's name."""


def _print_row(name: str, r: dict[str, Any]) -> None:
    print(f"{name:42} {r['per_second']:9.0f} {r['failed']:7.0f} "
          f"{r['server_cpu_us_per_conn']:19.0f} {r['server_user_us_per_conn']:6.0f} "
          f"{r['server_sys_us_per_conn']:6.0f} {r['server_wait_us_per_conn']:6.0f} "
          f"{r['server_preempted_per_conn']:8.2f} {r['client_cpu_us_per_conn']:11.0f} "
          f"{r['client_wait_us_per_conn']:6.0f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=10000, help="connections per server")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--inflight", type=int, default=16,
                    help="connections in flight per client process")  # fmt: skip
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    ap.add_argument("--net", default="tap",
                    help="our server's backends, comma-separated, each a row: tap, packet")  # fmt: skip
    ap.add_argument(
        "--before",
        metavar="REV",
        help="also our server on git revision REV's sources, just before ours",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every row, in turn")
    ap.add_argument("--profile", metavar="PATH",
                    help="run our server under cProfile, stats to PATH.NET (figures then "
                    "include the profiler)")  # fmt: skip
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tcp_conns.py needs root (network namespaces, TAP)")
    if args.conns < args.procs or args.procs < 1 or args.inflight < 1 or args.repeat < 1:
        sys.exit("need --conns >= --procs >= 1, --inflight >= 1 and --repeat >= 1")
    nets = args.net.split(",")
    if any(n not in NETS for n in nets) or len(set(nets)) != len(nets):
        sys.exit(f"--net: a comma-separated list of {', '.join(NETS)}, each at most once")
    load_start = os.getloadavg()  # rates follow the CPU other work leaves us: say how much
    with tempfile.TemporaryDirectory() as tmp:
        before = None
        if args.before is not None:
            before = (args.before, Path(extract_src(args.before, tmp)))
        cps = conns_per_second(args.conns, args.procs, args.inflight, nets, args.profile,
                               before, args.repeat)  # fmt: skip
    mem = memory_per_connection(args.idle) if args.idle > 0 else {}
    print(f"Connections per second ({args.conns} connections; connect, 1 byte each way, "
          f"close; epoll client: {args.procs} process(es) x {args.inflight} in flight)")  # fmt: skip
    print(f"{'server':42} {'conn/s':>9} {'failed':>7} {'server CPU us/conn':>19} "
          f"{'user':>6} {'sys':>6} {'wait':>6} {'preempt':>8} {'client CPU':>11} "
          f"{'wait':>6}")  # fmt: skip
    for name, runs in cps.items():
        for r in runs:
            _print_row(name, r)
            if r["failed"]:
                print(f"  failures: {r['failures']}")
    if args.repeat > 1:
        print(f"medians of {args.repeat} runs")
        for name, runs in cps.items():
            _print_row(name, {k: statistics.median(r[k] for r in runs) for k in ROW})
    if mem:
        print(f"\nMemory per idle established connection ({args.idle} connections between two "
              "of our stacks on the switch; both ends)")  # fmt: skip
        print(f"{'measure':14} {'total MiB':>10} {'B/conn':>9} {'B/endpoint':>11} {'open s':>7}")
        for how, r in mem.items():
            print(f"{how:14} {r['bytes'] / 2**20:10.1f} {r['per_connection']:9.0f} "
                  f"{r['per_connection'] / 2:11.0f} {r['open_seconds']:7.1f}")  # fmt: skip
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    print("targets: >= 5000 conn/s; <= 16 KiB (16384 B) per idle connection")
    out = ROOT / "bench" / "results" / "tcp_conns.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"conns_per_second": cps, "memory": mem, "loadavg": load,
                               "args": vars(args)}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
