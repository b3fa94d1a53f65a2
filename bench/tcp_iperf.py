"""TCP bulk throughput both ways, side by side: our stack against the kernel's, and PyTCP.

Run as root: ``python bench/tcp_iperf.py [--seconds 5]``. Rows:

* the kernel's iperf3 to itself over a veth pair between two ``mk-`` namespaces (the
  reference: the ceiling of these machines);
* our stack over a TAP device (``examples/iperf3`` under ``miragekit run --net tap``),
  measured by the kernel's unmodified ``iperf3 -c ... -J`` in the namespace: forward is
  into our stack, ``-R`` out of it; the same with ``--offload`` when the runner has it;
* two of our stacks over the virtual switch in one process, measured by the example's own
  small iperf3 client (``run_client``) against its server: not the kernel's iperf3;
* PyTCP (PyPI ``pytcp``) on the same TAP setup, run unmodified as a library, with a
  kernel socket client in the namespace (PyTCP has no iperf3 server).

Figures are the receiver's bytes over the test's seconds (iperf3's ``sum_received``).
Prints a table and writes bench/results/tcp_iperf.json. Namespaces are always deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from miragekit.net import VnetSwitch  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

KERNEL_IP, APP_IP = "10.81.0.1", "10.81.0.2"


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


def iperf3(ns: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    p = subprocess.run(in_ns(ns, "iperf3", "-J", *args), capture_output=True, timeout=timeout)
    report: dict[str, Any] = json.loads(p.stdout)
    if "error" in report:
        raise RuntimeError(f"iperf3 {' '.join(args)}: {report['error']}")
    return report


def rate(report: dict[str, Any]) -> float:
    """MB/s at the receiver."""
    r = report["end"]["sum_received"]
    return float(r["bytes"]) / float(r["seconds"]) / 1e6


@contextmanager
def tap_namespace() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-bi{tag}", f"mk-bt{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
        sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
        sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
        sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP}/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, tap
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def kernel_veth(secs: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    a, b = f"mk-ka{tag}", f"mk-kb{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"mk-va{tag}", "netns", a, "type", "veth",
           "peer", "name", f"mk-vb{tag}", "netns", b)  # fmt: skip
        sh("ip", "-n", a, "addr", "add", f"{KERNEL_IP}/24", "dev", f"mk-va{tag}")
        sh("ip", "-n", b, "addr", "add", f"{APP_IP}/24", "dev", f"mk-vb{tag}")
        sh("ip", "-n", a, "link", "set", f"mk-va{tag}", "up")
        sh("ip", "-n", b, "link", "set", f"mk-vb{tag}", "up")
        out = {}
        for key, extra in (("into", ()), ("out", ("-R",))):
            srv = subprocess.Popen(in_ns(b, "iperf3", "-s", "-1"), stdout=subprocess.DEVNULL)
            try:
                time.sleep(0.3)
                out[key] = rate(iperf3(a, "-c", APP_IP, "-t", str(secs), *extra))
            finally:
                srv.wait(timeout=30)
        return {**out, "note": "kernel iperf3 -s / -c over a veth pair"}
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def runner_has(flag: str) -> bool:
    p = subprocess.run([sys.executable, "-m", "miragekit", "run", "--help"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                       capture_output=True, text=True)  # fmt: skip
    return flag in p.stdout


def ours_tap(secs: float, *extra: str) -> dict[str, Any]:
    with tap_namespace() as (ns, tap):
        cmd = in_ns(ns, sys.executable, "-m", "miragekit", "run", "examples/iperf3",
                    "--net", f"tap:{tap}", "--ip", f"{APP_IP}/24", *extra)  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "iperf3: server on" not in line:
                raise RuntimeError(f"the runner did not start: {line!r}")
            fwd = iperf3(ns, "-c", APP_IP, "-t", str(secs))
            rev = iperf3(ns, "-c", APP_IP, "-t", str(secs), "-R")
            return {"into": rate(fwd), "out": rate(rev),
                    "note": "kernel iperf3 -c in the namespace; our examples/iperf3"}  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def ours_vnet(secs: float, mtu: int) -> dict[str, Any]:
    app = load_app()

    async def main() -> dict[str, Any]:
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
        fwd = await app.run_client(tcp, IPv4Address("10.0.0.2"), app.Params(duration=secs))
        rev = await app.run_client(
            tcp, IPv4Address("10.0.0.2"), app.Params(duration=secs, reverse=True)
        )
        return {
            "into": fwd.server_bytes() / fwd.seconds / 1e6,
            "out": rev.received / rev.seconds / 1e6,
            "note": f"MTU {mtu}; both stacks and the example's iperf3 client in one process "
            "(one core for both ends), not the kernel's iperf3",
        }

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


def pytcp_tap(secs: float) -> dict[str, Any]:
    try:
        import pytcp  # noqa: F401
    except ImportError as e:
        return {"into": None, "out": None, "note": f"pytcp not installed: {e}"}
    with tap_namespace() as (ns, tap):
        peer = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", PYTCP_PEER, tap, f"{APP_IP}/24", KERNEL_IP, str(secs)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert peer.stdout is not None
            log = []
            for line in peer.stdout:  # PyTCP logs to stdout; our line says it is up
                log.append(line)
                if line.strip() == "ready":
                    break
            else:
                return {"into": None, "out": None, "note": f"PyTCP did not start: {log[-3:]!r}"}
            threading.Thread(target=lambda: [None for _ in peer.stdout or ()], daemon=True).start()
            time.sleep(3)  # its address claim (ARP probes) before it answers
            out: dict[str, Any] = {}
            for key, mode, port in (("into", "send", 9), ("out", "recv", 19)):
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
            note = "PyTCP 2.7.6 sockets, its default config and logging (a sink on 9, a "
            note += "16 KiB-block source on 19); a kernel Python socket client, not iperf3"
            return {**out, "note": note}
        finally:
            peer.kill()
            peer.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tcp_iperf.py needs root (network namespaces, TAP)")
    secs = args.seconds
    rows: dict[str, dict[str, Any]] = {}
    rows["kernel <-> kernel, veth (reference)"] = kernel_veth(secs)
    rows["kernel <-> ours, TAP"] = ours_tap(secs)
    if runner_has("--offload"):
        rows["kernel <-> ours, TAP --offload"] = ours_tap(secs, "--offload")
    else:
        rows["kernel <-> ours, TAP --offload"] = {
            "into": None, "out": None,
            "note": "skipped: this runner has no --offload yet",
        }  # fmt: skip
    rows["ours <-> ours, switch MTU 1500"] = ours_vnet(secs, 1500)
    rows["ours <-> ours, switch MTU 9000"] = ours_vnet(secs, 9000)
    rows["kernel <-> PyTCP, TAP"] = pytcp_tap(secs)

    def fmt(v: float | None) -> str:
        return f"{'-':>9}" if v is None else f"{v:9.1f}"

    print(f"TCP bulk throughput, {secs:g} s per direction (MB/s at the receiver)")
    print(f"{'path':38} {'into':>9} {'out of':>9}  notes")
    for name, r in rows.items():
        print(f"{name:38} {fmt(r['into'])} {fmt(r['out'])}  {r['note']}")
    print("'into' is client -> server (kernel -> ours), 'out of' the reverse (-R).")
    out = ROOT / "bench" / "results" / "tcp_iperf.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": secs, "unit": "MB/s", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
