"""UDP datagrams/s through VXLAN: our VxlanNetif against the kernel's vxlan devices.

Run as root: ``python bench/vxlan.py [--seconds 3]``. Every path carries UDP datagrams
from a sender to a receiver across a VXLAN overlay (VNI 42) whose underlay lives in
``mk-`` namespaces (always deleted):

* kernel vxlan -> kernel vxlan: Python sockets at both ends, kernel vxlan devices in two
  namespaces joined by a veth pair (the reference);
* kernel vxlan -> miragekit: the same Python sender and kernel vxlan device; the
  receiver is our IPv4Stack on a VxlanNetif whose socket sits in the other namespace;
* miragekit -> miragekit: a sender process with our stack on a VxlanNetif and the
  receiving stack in this process, over loopback in one namespace;
* socket -> VxlanNetif only: ready-made VXLAN datagrams from a Python socket to a
  VxlanNetif whose receiver only counts: the device's own cost, without a stack. The
  ``cpu_us`` column is this process's CPU time per received frame.

The kernel's vxlan devices have transmit checksum offload off (``ethtool -K tx off``) on
every path, so that their inner checksums are finished (see docs/vxlan.md). Prints a table
and writes bench/results/vxlan.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.udp import RECEIVER, SENDER  # noqa: E402  (the same sender/receiver as bench/udp)
from tests.netns import namespaces, set_tx_checksum, sh  # noqa: E402

from miragekit.link import VxlanConfig, VxlanNetif  # noqa: E402
from miragekit.net import IPv4Stack  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.wire.vxlan import header as header_for  # noqa: E402

VNI = 42
US_SENDER = """
import asyncio, ipaddress, sys, time
from miragekit.net import IPv4Stack
from miragekit.link import VxlanConfig, VxlanNetif

async def main(port, size, secs):
    r = await VxlanNetif.connect(
        VxlanConfig(42, local=("127.0.0.1", 0), remotes=[("127.0.0.1", port)])
    )
    net = r.value
    stack = await IPv4Stack.connect(net, cidr="192.168.50.1/24")
    dst = ipaddress.IPv4Address("192.168.50.2")
    data = bytes(size)
    send = stack.udp.send
    send(data, dest_ip=dst, dest_port=9, source_port=5000)  # resolves ARP
    await asyncio.sleep(0.3)
    n, end = 1, time.monotonic() + secs
    while time.monotonic() < end:
        for _ in range(64):
            send(data, dest_ip=dst, dest_port=9, source_port=5000)
        n += 64
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # let the send queue drain
    print(n, net.counters.tx_dropped)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
"""


def ns_exec(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


@contextmanager
def underlay() -> Iterator[tuple[str, str]]:
    with namespaces("a", "b") as (a, b):
        sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        sh("ip", "-n", a, "addr", "add", "10.89.0.1/24", "dev", "va")
        sh("ip", "-n", b, "addr", "add", "10.89.0.2/24", "dev", "vb")
        sh("ip", "-n", a, "link", "set", "va", "up")
        sh("ip", "-n", b, "link", "set", "vb", "up")
        yield a, b


def kernel_vxlan(ns: str, remote: str, inner: str) -> None:
    sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", str(VNI),
       "remote", remote, "dstport", "4789", "dev", "va" if remote.endswith(".2") else "vb")  # fmt: skip
    sh("ip", "-n", ns, "addr", "add", inner, "dev", "vx0")
    sh("ip", "-n", ns, "link", "set", "vx0", "up")
    set_tx_checksum(ns, "vx0", False)


def kernel_to_kernel(size: int, secs: float) -> dict[str, float]:
    with underlay() as (a, b):
        kernel_vxlan(a, "10.89.0.2", "192.168.50.1/24")
        kernel_vxlan(b, "10.89.0.1", "192.168.50.2/24")
        rx = subprocess.Popen(
            ns_exec(b, sys.executable, "-c", RECEIVER), stdout=subprocess.PIPE, text=True
        )
        assert rx.stdout is not None
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(
            ns_exec(a, sys.executable, "-c", SENDER, "192.168.50.2", str(size), str(secs)),
            capture_output=True,
            text=True,
            check=True,
        )
        n, nbytes, dt = rx.communicate(timeout=30)[0].split()
        return {"sent": int(tx.stdout), "received": int(n), "seconds": float(dt),
                "bytes": int(nbytes)}  # fmt: skip


class Sink:
    def __init__(self) -> None:
        self.n = self.nbytes = 0
        self.first = self.last = 0.0

    async def __call__(
        self, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
    ) -> None:
        now = time.monotonic()
        if not self.n:
            self.first = now
        self.n += 1
        self.nbytes += len(buf)
        self.last = now


async def receiving_stack(
    cfg: VxlanConfig, sender: list[str], secs: float
) -> tuple[Sink, str, VxlanNetif]:
    r = await VxlanNetif.connect(cfg)
    assert isinstance(r, Ok), r
    netif = r.value
    stack = await IPv4Stack.connect(netif, cidr="192.168.50.2/24")
    sink = Sink()
    stack.listen_udpv4(port=9, callback=sink)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [a.replace("{port}", str(netif.local_addr[1])) for a in sender]
    p = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, env=env)
    out, _ = await asyncio.wait_for(p.communicate(), secs + 30)
    await asyncio.sleep(0.5)
    await stack.disconnect()
    await netif.disconnect()
    return sink, out.decode(), netif


def kernel_to_us(size: int, secs: float) -> dict[str, float]:
    with underlay() as (a, b):
        kernel_vxlan(a, "10.89.0.2", "192.168.50.1/24")
        cfg = VxlanConfig(VNI, local=("10.89.0.2", 4789), remotes=[("10.89.0.1", 4789)], netns=b)
        sender = ns_exec(a, sys.executable, "-c", SENDER, "192.168.50.2", str(size), str(secs))
        sink, out, _ = asyncio.run(receiving_stack(cfg, sender, secs))
        return {"sent": int(out), "received": sink.n, "seconds": sink.last - sink.first,
                "bytes": sink.nbytes}  # fmt: skip


def us_to_us(size: int, secs: float) -> dict[str, float]:
    with namespaces("l") as (ns,):
        cfg = VxlanConfig(VNI, local=("127.0.0.1", 0), netns=ns)
        sender = ns_exec(ns, sys.executable, "-c", US_SENDER, "{port}", str(size), str(secs))
        sink, out, netif = asyncio.run(receiving_stack(cfg, sender, secs))
        sent, dropped = out.split()
        return {"sent": int(sent), "received": sink.n, "seconds": sink.last - sink.first,
                "bytes": sink.nbytes, "sender_tx_dropped": int(dropped),
                "receiver_rx_pkts": netif.get_stats_counters().rx_pkts}  # fmt: skip


BLASTER = """
import socket, sys, time
port, data, secs = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, end, send, addr = 0, time.monotonic() + secs, s.sendto, ("127.0.0.1", port)
while time.monotonic() < end:
    for _ in range(64):
        send(data, addr)
    n += 64
print(n)
"""


def socket_to_netif(size: int, secs: float) -> dict[str, float]:
    async def run(ns: str) -> dict[str, float]:
        r = await VxlanNetif.connect(VxlanConfig(VNI, local=("127.0.0.1", 0), netns=ns))
        assert isinstance(r, Ok), r
        netif = r.value
        times = [0.0, 0.0]

        def count(frame: memoryview) -> None:
            times[1] = time.monotonic()

        netif.set_receiver(count)
        inner = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01\x08\x00" + bytes(20 + 8 + size)
        dgram = bytes(header_for(VNI)) + inner
        port = str(netif.local_addr[1])
        cmd = ns_exec(ns, sys.executable, "-c", BLASTER, port, dgram.hex(), str(secs))
        c0, times[0] = time.process_time(), time.monotonic()
        p = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
        out, _ = await p.communicate()
        await asyncio.sleep(0.3)
        cpu = time.process_time() - c0
        st = netif.get_stats_counters()
        await netif.disconnect()
        return {"sent": int(out), "received": st.rx_pkts, "seconds": times[1] - times[0],
                "bytes": st.rx_pkts * size, "cpu_us": cpu / max(st.rx_pkts, 1) * 1e6}  # fmt: skip

    with namespaces("s") as (ns,):
        return asyncio.run(run(ns))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    rows = []
    for size in (64, 1400):
        for path, fn in (
            ("kernel vxlan -> miragekit", kernel_to_us),
            ("miragekit -> miragekit", us_to_us),
            ("kernel vxlan -> kernel vxlan", kernel_to_kernel),
            ("socket -> VxlanNetif only", socket_to_netif),
        ):
            res = fn(size, args.seconds)
            secs = max(res["seconds"], 1e-9)
            rows.append(
                {
                    "path": path,
                    "payload": size,
                    "sent": res["sent"],
                    "received": res["received"],
                    "datagrams_per_s": res["received"] / secs,
                    "mbytes_per_s": res["bytes"] / secs / 1e6,
                    "cpu_us": res.get("cpu_us"),
                }
            )
    print(
        f"{'path':<30} {'payload':>7} {'sent':>9} {'received':>9} {'datagrams/s':>12}"
        f" {'MB/s':>8} {'cpu_us':>7}"
    )
    for r in rows:
        cpu = f"{r['cpu_us']:.1f}" if r["cpu_us"] is not None else "-"
        print(
            f"{r['path']:<30} {r['payload']:>7} {r['sent']:>9} {r['received']:>9} "
            f"{r['datagrams_per_s']:>12,.0f} {r['mbytes_per_s']:>8.1f} {cpu:>7}"
        )
    out = ROOT / "bench" / "results" / "vxlan.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"seconds": args.seconds, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
