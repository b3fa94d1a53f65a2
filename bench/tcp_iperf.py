"""TCP bulk throughput both ways, side by side: our stack against the kernel's, and PyTCP.

Run as root: ``python bench/tcp_iperf.py [--seconds 5] [--repeat 3] [--rows ROW ...]
[--baseline DIR]``.
Rows (``--rows`` picks some: veth, tap, tap-offload, packet, veth6, tap6, tap6-offload,
vnet, vnet1500, pytcp):

* ``veth``: the kernel's iperf3 to itself over a veth pair between two ``mk-``
  namespaces (the reference: the ceiling of these machines);
* ``tap``, ``tap-offload``: our stack over a TAP device (``examples/iperf3`` under
  ``miragekit run --net tap``, with ``--offload`` for the second), measured by the
  kernel's unmodified ``iperf3 -c ... -J`` in the namespace: forward is into our stack,
  ``-R`` out of it;
* ``veth6``, ``tap6``, ``tap6-offload``: the same three over IPv6 (``fd00:81::/64``,
  the runner's ``--ip6``; the kernel's DAD off, so its address is usable at once);
* ``packet``: the same runner and client over a veth pair, our end through a ring-mapped
  ``AF_PACKET`` socket (``--net packet:VETH``) in its own namespace, no offload;
* ``vnet``: two of our stacks over the virtual switch in one process, measured by the
  example's own small iperf3 client (``run_client``) against its server: not the kernel's
  iperf3;
* ``pytcp``: PyTCP (PyPI ``pytcp``) on the same TAP setup, run unmodified as a library,
  with a kernel socket client in the namespace (PyTCP has no iperf3 server).

Fairness: the kernel reference and our TAP rows run the very same client command,
``iperf3 -J -c ADDR -t SECONDS`` (plus ``-R`` for "out of"), with iperf3's defaults
otherwise: one stream, 128 KiB blocks (``-l``), socket buffers left to the kernel's
autotuning (no ``-w``), no CPU pinning, no pacing. Our side runs as any user would run
it: ``miragekit run examples/iperf3 --net tap:NAME --ip ...`` (no ``--pcap``, the
console only logs one line per test).

Each figure is the receiver's bytes over the test's seconds (iperf3's ``sum_received``),
in MB/s (10**6 bytes). Rows run in rounds (every row once per round, ``--repeat`` rounds)
so that a busy machine weighs on all of them alike; the table shows the best run and
every run. ``cpu s/GB`` is the CPU time (user + system, from /proc or rusage) of the
server side per 10**9 bytes received, the median over the runs: for the kernel row the
``iperf3 -s`` process, for ours the runner's process (which also does, in its system
time, the kernel's receive work for every frame it writes to the TAP device), for vnet
the whole bench process (both stacks and the client). It is steadier than MB/s on a
shared machine. ``--baseline DIR`` adds, before each row that runs ``miragekit run``,
the same row with the runner of another checkout (``DIR/src``, ``DIR/examples``; e.g. a
worktree of main): before and after, in the same rounds. Writes
bench/results/tcp_iperf.json. Namespaces are always deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from proc_cpu import cpu_seconds  # noqa: E402

from miragekit.link import VnetSwitch  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

KERNEL_IP, APP_IP = "10.81.0.1", "10.81.0.2"
#: The IPv6 rows (``veth6``, ``tap6``, ``tap6-offload``): the same paths over these.
KERNEL_IP6, APP_IP6 = "fd00:81::1", "fd00:81::2"
#: The client's options for every iperf3 row, besides ``-c ADDR -t SECONDS`` (and ``-R``).
IPERF3_OPTS: tuple[str, ...] = ()
#: ``net.ipv4.tcp_rmem`` pinned in every kernel namespace (``--rmem``), or None: defaults.
RMEM: str | None = None
#: The checkout whose ``miragekit`` and ``examples/iperf3`` the runner rows run: this one,
#: or for ``--baseline`` rows another (e.g. a worktree of main).
RUNNER_ROOT = ROOT
#: Rows that run ``miragekit run`` (the ones ``--baseline`` repeats with another checkout).
RUNNER_ROWS = ("tap", "tap-offload", "packet", "tap6", "tap6-offload")
#: How long PyTCP may take to say it is up.
PYTCP_START = 60.0

#: One run of a row: MB/s into and out of the server side, and its CPU seconds per GB.
Run = dict[str, Any]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("iperf3_app", ROOT / "examples/iperf3/app.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["iperf3_app"] = mod
    spec.loader.exec_module(mod)
    return mod


def per_gb(cpu: float, nbytes: int) -> float | None:
    return cpu / (nbytes / 1e9) if nbytes else None


def pin_rmem(ns: str) -> None:
    """Pin the kernel's receive buffer in ``ns`` when ``--rmem`` asks (a small window)."""
    if RMEM is not None:
        sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv4.tcp_rmem={RMEM}"))


def iperf3(ns: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    cmd = in_ns(ns, "iperf3", "-J", *IPERF3_OPTS, *args)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    report: dict[str, Any] = json.loads(p.stdout)
    if "error" in report:
        raise RuntimeError(f"iperf3 {' '.join(args)}: {report['error']}")
    return report


def received(report: dict[str, Any]) -> tuple[float, int]:
    """MB/s at the receiver, and the bytes it received."""
    r = report["end"]["sum_received"]
    return float(r["bytes"]) / float(r["seconds"]) / 1e6, int(r["bytes"])


def ipv6_on(ns: str, on: bool) -> None:
    """IPv6 in ``ns``: off, or on without DAD (addresses usable at once)."""
    if not on:
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
        return
    for scope in ("all", "default"):
        sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0"))


@contextmanager
def tap_namespace(ip6: bool = False) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-bi{tag}", f"mk-bt{tag}"
    sh("ip", "netns", "add", ns)
    try:
        ipv6_on(ns, ip6)
        sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
        sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP}/24", "dev", tap)
        if ip6:
            sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP6}/64", "dev", tap, "nodad")
        sh("ip", "-n", ns, "link", "set", tap, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        pin_rmem(ns)
        yield ns, tap
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def kernel_veth(secs: float, ip6: bool = False) -> Run:
    tag = uuid.uuid4().hex[:8]
    a, b = f"mk-ka{tag}", f"mk-kb{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        ipv6_on(a, ip6)
        ipv6_on(b, ip6)
        pin_rmem(a)
        pin_rmem(b)
        sh("ip", "link", "add", f"mk-va{tag}", "netns", a, "type", "veth",
           "peer", "name", f"mk-vb{tag}", "netns", b)  # fmt: skip
        sh("ip", "-n", a, "addr", "add", f"{KERNEL_IP}/24", "dev", f"mk-va{tag}")
        sh("ip", "-n", b, "addr", "add", f"{APP_IP}/24", "dev", f"mk-vb{tag}")
        if ip6:
            sh("ip", "-n", a, "addr", "add", f"{KERNEL_IP6}/64", "dev", f"mk-va{tag}", "nodad")
            sh("ip", "-n", b, "addr", "add", f"{APP_IP6}/64", "dev", f"mk-vb{tag}", "nodad")
        sh("ip", "-n", a, "link", "set", f"mk-va{tag}", "up")
        sh("ip", "-n", b, "link", "set", f"mk-vb{tag}", "up")
        out: Run = {}
        for key, extra in (("into", ()), ("out", ("-R",))):
            srv = subprocess.Popen(in_ns(b, "iperf3", "-s", "-1"), stdout=subprocess.DEVNULL)
            try:
                time.sleep(0.3)
                dst = APP_IP6 if ip6 else APP_IP
                out[key], nbytes = received(iperf3(a, "-c", dst, "-t", str(secs), *extra))
            finally:
                # The server's own CPU over its one test (it exits after it: -1).
                _, status, usage = os.wait4(srv.pid, 0)
                srv.returncode = os.waitstatus_to_exitcode(status)
            out[f"cpu_{key}"] = per_gb(usage.ru_utime + usage.ru_stime, nbytes)
        return out
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def ours_tap(secs: float, *extra: str, ip6: bool = False) -> Run:
    """``examples/iperf3`` under ``miragekit run --net tap`` (with ``extra`` options),
    measured by the kernel's iperf3 over IPv4, or over IPv6 with ``ip6``."""
    with tap_namespace(ip6) as (ns, tap):
        v6 = ("--ip6", f"{APP_IP6}/64") if ip6 else ()
        return ours_runner(ns, ns, ("--net", f"tap:{tap}", *v6, *extra), secs, ip6=ip6)


def ours_packet(secs: float) -> Run:
    """Our stack on one end of a veth pair through a ring-mapped packet socket, in its own
    namespace; the kernel's end (transmit checksum offload off, so that it sends finished
    checksums, as over TAP without offload) in another, where iperf3 runs."""
    tag = uuid.uuid4().hex[:8]
    k, o = f"mk-pk{tag}", f"mk-po{tag}"
    try:
        for ns in (k, o):
            sh("ip", "netns", "add", ns)
            sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
            sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        pin_rmem(k)
        sh("ip", "link", "add", f"mk-vk{tag}", "netns", k, "type", "veth",
           "peer", "name", f"mk-vo{tag}", "netns", o)  # fmt: skip
        sh(*in_ns(k, "ethtool", "-K", f"mk-vk{tag}", "tx", "off"))
        sh("ip", "-n", k, "addr", "add", f"{KERNEL_IP}/24", "dev", f"mk-vk{tag}")
        sh("ip", "-n", k, "link", "set", f"mk-vk{tag}", "up")
        sh("ip", "-n", o, "link", "set", f"mk-vo{tag}", "up")
        return ours_runner(o, k, ("--net", f"packet:mk-vo{tag}"), secs)
    finally:
        subprocess.run(["ip", "netns", "del", k], capture_output=True)
        subprocess.run(["ip", "netns", "del", o], capture_output=True)


def ours_runner(
    ns: str, client_ns: str, net: tuple[str, ...], secs: float, *, ip6: bool = False
) -> Run:
    """``miragekit run examples/iperf3`` in ``ns`` with the ``net`` options, measured by
    the kernel's iperf3 client in ``client_ns`` both ways (to the IPv6 address with
    ``ip6``)."""
    cmd = in_ns(ns, sys.executable, "-m", "miragekit", "run", "examples/iperf3",
                *net, "--ip", f"{APP_IP}/24")  # fmt: skip
    root = RUNNER_ROOT
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        # The runner's own lines (the stack is up, ...) come first.
        seen = [proc.stdout.readline() for _ in range(1)]
        while "iperf3: server on" not in seen[-1] and seen[-1] and len(seen) < 20:
            seen.append(proc.stdout.readline())
        if "iperf3: server on" not in seen[-1]:
            raise RuntimeError(f"the runner did not start: {''.join(seen)!r}")
        # Its one line per test, read so that the pipe never fills.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        out: Run = {}
        for key, rev in (("into", ()), ("out", ("-R",))):
            c0 = cpu_seconds(proc.pid)
            dst = APP_IP6 if ip6 else APP_IP
            out[key], nbytes = received(iperf3(client_ns, "-c", dst, "-t", str(secs), *rev))
            out[f"cpu_{key}"] = per_gb(cpu_seconds(proc.pid) - c0, nbytes)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def ours_vnet(secs: float, mtu: int) -> Run:
    app = load_app()

    async def main() -> Run:
        sw = VnetSwitch()
        stacks = []
        for i, name in enumerate(("client", "server")):
            vif = sw.add_interface(name, mtu=mtu)
            cfg = StackConfig(name, None, vif, Static(f"10.0.0.{i + 1}/24"))
            r = await DirectStackV4.connect(cfg)
            assert isinstance(r, Ok)
            stacks.append(r.value)
        server = app.Server()
        stacks[1].listen_tcpv4(port=app.PORT, callback=server.handle)
        tcp = stacks[0].tcpv4()
        out: Run = {}
        for key, reverse in (("into", False), ("out", True)):
            t0 = os.times()
            res = await app.run_client(
                tcp, IPv4Address("10.0.0.2"), app.Params(duration=secs, reverse=reverse)
            )
            t1 = os.times()
            nbytes = res.received if reverse else res.server_bytes()
            out[key] = nbytes / res.seconds / 1e6
            cpu = t1.user - t0.user + t1.system - t0.system
            out[f"cpu_{key}"] = per_gb(cpu, nbytes)
        return out

    return asyncio.run(main())


PYTCP_PEER = r"""
import sys, threading, time
from pytcp import TcpIpStack
from pytcp.lib import socket

tap, cidr, gw = sys.argv[1], sys.argv[2], sys.argv[3]
stack = TcpIpStack(interface=tap, ip4_address=cidr, ip4_gateway=gw,
                   ip6_address="fe80::7/64")
stack.start()

def sink():
    s = socket.socket(socket.AF_INET4, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 9)); s.listen()
    while True:
        c, _ = s.accept()
        while c.recv():
            pass
        c.close()

def source():
    s = socket.socket(socket.AF_INET4, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 19)); s.listen()
    block = bytes(16384)
    while True:
        c, _ = s.accept()
        end = time.monotonic() + float(sys.argv[4])
        while time.monotonic() < end:
            c.send(block)
        c.close()

threading.Thread(target=sink, daemon=True).start()
threading.Thread(target=source, daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""

KERNEL_CLIENT = r"""
import socket, sys, time
mode, host, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((host, port), timeout=30)
n = 0; t0 = time.monotonic()
if mode == "send":  # until the peer has read it all and closed (its FIN): what it took
    block = bytes(65536); end = t0 + secs
    while time.monotonic() < end:
        n += s.send(block)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(60); s.recv(1)
    print(n, time.monotonic() - t0)
else:  # what arrived within the window
    s.settimeout(1.0); end = t0 + secs
    try:
        while time.monotonic() < end and (d := s.recv(1 << 20)):
            n += len(d)
    except TimeoutError:
        pass
    print(n, min(time.monotonic(), end) - t0)
"""


def pytcp_tap(secs: float) -> Run:
    try:
        import pytcp  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as e:
        return {"into": None, "out": None, "errors": [f"pytcp not installed: {e}"]}
    with tap_namespace() as (ns, tap):
        peer = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", PYTCP_PEER, tap, f"{APP_IP}/24", KERNEL_IP, str(secs)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert peer.stdout is not None
            log: list[str] = []
            ready = threading.Event()

            def drain(lines: Iterator[str]) -> None:
                for line in lines:  # PyTCP logs to stdout; our line says it is up
                    if not ready.is_set():
                        log.append(line)
                        if line.strip() == "ready":
                            ready.set()

            threading.Thread(target=drain, args=(peer.stdout,), daemon=True).start()
            if not ready.wait(PYTCP_START):  # it has been seen to hang while starting
                err = f"did not start within {PYTCP_START:g} s: {log[-3:]!r}"
                return {"into": None, "out": None, "errors": [err]}
            time.sleep(3)  # its address claim (ARP probes) before it answers
            out: Run = {}
            for key, mode, port in (("into", "send", 9), ("out", "recv", 19)):
                c0 = cpu_seconds(peer.pid)
                try:
                    p = subprocess.run(
                        in_ns(ns, sys.executable, "-c", KERNEL_CLIENT, mode, APP_IP, str(port),
                              str(secs)),
                        capture_output=True, text=True, timeout=secs + 90,
                    )  # fmt: skip
                except subprocess.TimeoutExpired:
                    out[key] = None
                    out.setdefault("errors", []).append(f"{key}: no end after {secs + 90:g} s")
                    continue
                if p.returncode != 0 or not p.stdout.strip():
                    out[key] = None
                    out.setdefault("errors", []).extend(p.stderr.strip().splitlines()[-1:])
                    continue
                nbytes, dt = p.stdout.split()
                out[key] = int(nbytes) / float(dt) / 1e6
                out[f"cpu_{key}"] = per_gb(cpu_seconds(peer.pid) - c0, int(nbytes))
            return out
        finally:
            peer.kill()
            peer.wait()


ROWS: dict[str, tuple[str, str, Callable[[float], Run]]] = {
    "veth": (
        "kernel <-> kernel, veth (reference)",
        "kernel iperf3 -s / -c over a veth pair",
        kernel_veth,
    ),
    "tap": (
        "kernel <-> ours, TAP",
        "kernel iperf3 -c in the namespace; our examples/iperf3 (frames of at most the MTU)",
        ours_tap,
    ),
    "tap-offload": (
        "kernel <-> ours, TAP --offload",
        "the same with --offload (64 KiB TSO/GSO segments, checksums left to the kernel)",
        lambda secs: ours_tap(secs, "--offload"),
    ),
    "veth6": (
        "kernel <-> kernel, veth, IPv6",
        "the veth reference over IPv6",
        lambda secs: kernel_veth(secs, ip6=True),
    ),
    "tap6": (
        "kernel <-> ours, TAP, IPv6",
        "the tap row over IPv6 (the runner's --ip6; frames of at most the MTU)",
        lambda secs: ours_tap(secs, ip6=True),
    ),
    "tap6-offload": (
        "kernel <-> ours, TAP --offload, IPv6",
        "the tap-offload row over IPv6 (TSO/GSO segments of type TCPV6)",
        lambda secs: ours_tap(secs, "--offload", ip6=True),
    ),
    "packet": (
        "kernel <-> ours, veth packet rings",
        "the same over a veth pair, our end through a ring-mapped AF_PACKET socket "
        "(--net packet:VETH, TPACKET_V2); the kernel's end with tx checksum offload off",
        ours_packet,
    ),
    "vnet": (
        "ours <-> ours, switch MTU 9000",
        "both stacks and the example's iperf3 client in one process (one core for both "
        "ends), not the kernel's iperf3",
        lambda secs: ours_vnet(secs, 9000),
    ),
    "vnet1500": (
        "ours <-> ours, switch MTU 1500",
        "the same at MTU 1500",
        lambda secs: ours_vnet(secs, 1500),
    ),
    "pytcp": (
        "kernel <-> PyTCP, TAP",
        "PyTCP 2.7.6 sockets, its default config and logging (a sink on 9, a 16 KiB-block "
        "source on 19); a kernel Python socket client, not iperf3",
        pytcp_tap,
    ),
}


def best(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return max(got) if got else None


def on_checkout(root: Path, fn: Callable[[float], Run]) -> Callable[[float], Run]:
    """``fn`` with the runner taken from the checkout at ``root``."""

    def run(secs: float) -> Run:
        global RUNNER_ROOT
        RUNNER_ROOT = root
        try:
            return fn(secs)
        finally:
            RUNNER_ROOT = ROOT

    return run


def median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per test (iperf3 -t)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best run is shown")
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument(
        "--rmem",
        metavar="'MIN DEFAULT MAX'",
        help="pin net.ipv4.tcp_rmem in every kernel namespace (e.g. '4096 4096 4096')",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. a worktree of main): each runner row "
        f"({', '.join(RUNNER_ROWS)}) also runs with its miragekit, in the same rounds",
    )
    args = ap.parse_args()
    global RMEM
    RMEM = args.rmem
    table = dict(ROWS)
    keys: list[str] = []
    for key in args.rows:
        if args.baseline and key in RUNNER_ROWS:
            name, note, fn = ROWS[key]
            base = args.baseline.resolve()
            table[f"{key}@baseline"] = (
                f"{name} (baseline)",
                f"{note}; the runner from {base}",
                on_checkout(base, fn),
            )
            keys.append(f"{key}@baseline")
        keys.append(key)
    if os.geteuid() != 0:
        sys.exit("bench/tcp_iperf.py needs root (network namespaces, TAP)")
    secs = args.seconds
    load_start = os.getloadavg()
    runs: dict[str, list[Run]] = {key: [] for key in keys}
    for _ in range(args.repeat):
        for key in keys:
            try:
                runs[key].append(table[key][2](secs))
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                runs[key].append({"into": None, "out": None, "errors": [str(e)]})

    def fmt(v: float | None, width: int = 7, digits: int = 1) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:{width}.{digits}f}"

    def fmt_runs(vals: list[float | None]) -> str:
        return (
            "["
            + ", ".join("-" if v is None else f"{v:.{0 if v >= 10 else 1}f}" for v in vals)
            + "]"
        )

    rows: dict[str, Any] = {}
    opts = " ".join(IPERF3_OPTS) or "none besides -c -t [-R]"
    if RMEM is not None:
        print(f"kernel receive buffer pinned: net.ipv4.tcp_rmem={RMEM}")
    print(f"TCP bulk throughput, {secs:g} s per test, best of {args.repeat} "
          f"(MB/s at the receiver); iperf3 client options: {opts}")  # fmt: skip
    print(f"{'path':46} {'into':>7} {'out of':>7}  {'cpu s/GB in/out':>15}  "
          f"{'runs into':>22} {'runs out of':>22}")  # fmt: skip
    for key in keys:
        name, note, _ = table[key]
        rs = runs[key]
        row: dict[str, Any] = {
            "into": best([r.get("into") for r in rs]),
            "out": best([r.get("out") for r in rs]),
            "cpu_s_per_gb_into": median([r.get("cpu_into") for r in rs]),
            "cpu_s_per_gb_out": median([r.get("cpu_out") for r in rs]),
            "runs": rs,
            "note": note,
        }
        rows[name] = row
        cpu = f"{fmt(row['cpu_s_per_gb_into'], 6, 2)} /{fmt(row['cpu_s_per_gb_out'], 6, 2)}"
        print(f"{name:46} {fmt(row['into'])} {fmt(row['out'])}  {cpu:>15}  "
              f"{fmt_runs([r.get('into') for r in rs]):>22} "
              f"{fmt_runs([r.get('out') for r in rs]):>22}")  # fmt: skip
        for r in rs:
            for err in r.get("errors", ()):
                print(f"    error: {err}")
    print("'into' is client -> server (kernel -> ours), 'out of' the reverse (-R).")
    print("cpu s/GB: the server side's CPU time per 10**9 bytes, median of the runs.")
    for key in keys:
        print(f"  {table[key][0]}: {table[key][1]}")
    out = ROOT / "bench" / "results" / "tcp_iperf.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    meta = {"seconds": secs, "repeat": args.repeat, "unit": "MB/s",
            "iperf3_options": list(IPERF3_OPTS), "cpus": os.cpu_count(),
            "tcp_rmem": RMEM, "loadavg": load,
            "baseline": str(args.baseline) if args.baseline else None}  # fmt: skip
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
