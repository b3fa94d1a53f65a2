"""UDP datagrams/s and bytes/s: the kernel to our stack over TAP, against kernel to kernel.

Run as root: ``python bench/udp.py [--seconds 3]``. The same Python sender runs in a
network namespace in both cases; it sends to our stack (TAP, the stack's UDP callback
counts) and, as the reference, to a Python receiver in a second namespace over a veth
pair; a third row gives the same veth path with iperf3 (C) at both ends. Prints a table and writes bench/results/udp.json. Namespaces are ``mk-`` and
always deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.link import TapNetif, VnetSwitch
from miragekit.net import IPv4Stack
from miragekit.result import Ok

SENDER = """
import socket, sys, time
dst, size, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
data = bytes(size); addr = (dst, 9); n = 0
end = time.monotonic() + secs
send = s.sendto
while time.monotonic() < end:
    for _ in range(64):
        try:
            send(data, addr); n += 1
        except OSError:
            pass
print(n)
"""

RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", 9)); buf = bytearray(65536)
print("ready", flush=True)
n = 0; first = last = 0.0; nbytes = 0
s.settimeout(5)
k = s.recv_into(buf); first = last = time.monotonic(); n = 1; nbytes = k
s.settimeout(0.5)
try:
    while True:
        k = s.recv_into(buf); n += 1; nbytes += k
        last = time.monotonic()
except TimeoutError:
    pass
print(n, nbytes, last - first)
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def ns_exec(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


@contextmanager
def veth_pair() -> Iterator[tuple[str, str]]:
    """Two ``mk-`` namespaces joined by a veth pair, 10.78.0.1 and 10.78.0.2; always deleted."""
    tag = uuid.uuid4().hex[:8]
    a, b = f"mk-a{tag}", f"mk-b{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"mk-va{tag}", "netns", a,
           "type", "veth", "peer", "name", f"mk-vb{tag}", "netns", b)  # fmt: skip
        sh("ip", "-n", a, "addr", "add", "10.78.0.1/24", "dev", f"mk-va{tag}")
        sh("ip", "-n", b, "addr", "add", "10.78.0.2/24", "dev", f"mk-vb{tag}")
        sh("ip", "-n", a, "link", "set", f"mk-va{tag}", "up")
        sh("ip", "-n", b, "link", "set", f"mk-vb{tag}", "up")
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def kernel_to_kernel(size: int, secs: float) -> dict[str, float]:
    with veth_pair() as (a, b):
        rx = subprocess.Popen(
            ns_exec(b, sys.executable, "-c", RECEIVER), stdout=subprocess.PIPE, text=True
        )
        assert rx.stdout is not None
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(
            ns_exec(a, sys.executable, "-c", SENDER, "10.78.0.2", str(size), str(secs)),
            capture_output=True,
            text=True,
            check=True,
        )
        n, nbytes, dt = rx.communicate(timeout=30)[0].split()
        return {
            "sent": int(tx.stdout),
            "received": int(n),
            "seconds": float(dt),
            "bytes": int(nbytes),
        }


def kernel_to_kernel_iperf3(size: int, secs: float) -> dict[str, float]:
    """The same veth path with C at both ends (iperf3 -u -b 0): the kernel's own ceiling."""
    with veth_pair() as (a, b):
        srv = subprocess.Popen(ns_exec(b, "iperf3", "-s", "-1"), stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                cli = subprocess.run(
                    ns_exec(
                        a,
                        "iperf3",
                        "-c",
                        "10.78.0.2",
                        "-u",
                        "-b",
                        "0",
                        "-l",
                        str(size),
                        "-t",
                        str(max(1, round(secs))),
                        "-J",
                    ),
                    capture_output=True,
                    text=True,
                )
                if cli.returncode == 0:
                    break
                time.sleep(0.1)  # the server is not listening yet
            report = json.loads(cli.stdout or "{}")
            res = report.get("end", {}).get("sum")
            if res is None:  # iperf3 failed (it says why in "error"): report, don't crash
                print(f"iperf3 row failed: {report.get('error', cli.stderr.strip())}")
                return {"sent": 0, "received": 0, "seconds": 1.0, "bytes": 0}
        finally:
            srv.kill()
            srv.wait()
        received = res["packets"] - res["lost_packets"]
        return {
            "sent": res["packets"],
            "received": received,
            "seconds": res["seconds"],
            "bytes": received * size,
        }


async def kernel_to_stack(size: int, secs: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-{tag}", f"mk-t{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "tuntap", "add", "mode", "tap", "name", tap)
        r = await TapNetif.connect(tap)
        assert isinstance(r, Ok)
        netif = r.value
        sh("ip", "link", "set", tap, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        stack = await IPv4Stack.connect(netif, cidr="10.77.0.2/24")
        count = [0, 0]
        times = [0.0, 0.0]

        async def sink(
            src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
        ) -> None:
            if not count[0]:
                times[0] = time.monotonic()
            count[0] += 1
            count[1] += len(buf)
            times[1] = time.monotonic()

        stack.listen_udpv4(port=9, callback=sink)
        p = await asyncio.create_subprocess_exec(
            *ns_exec(ns, sys.executable, "-c", SENDER, "10.77.0.2", str(size), str(secs)),
            stdout=subprocess.PIPE,
        )
        out, _ = await p.communicate()
        await asyncio.sleep(0.5)
        await stack.disconnect()
        await netif.disconnect()
        return {
            "sent": int(out),
            "received": count[0],
            "seconds": times[1] - times[0],
            "bytes": count[1],
        }
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", tap], capture_output=True)


async def stack_to_stack_vswitch(size: int, secs: float) -> dict[str, float]:
    """Our stack to our stack through the virtual switch (real time, no impairments)."""
    sw = VnetSwitch(seed=1)
    tx = await IPv4Stack.connect(sw.add_interface("tx"), cidr="10.9.0.1/24")
    rx = await IPv4Stack.connect(sw.add_interface("rx"), cidr="10.9.0.2/24")
    count = [0, 0]
    times = [0.0, 0.0]

    async def sink(
        src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, sport: int, buf: memoryview
    ) -> None:
        if not count[0]:
            times[0] = time.monotonic()
        count[0] += 1
        count[1] += len(buf)
        times[1] = time.monotonic()

    rx.listen_udpv4(port=9, callback=sink)
    data = bytes(size)
    dst = ipaddress.IPv4Address("10.9.0.2")
    await tx.udp.write(data, dest_ip=dst, dest_port=9)  # resolve ARP first
    await asyncio.sleep(0.05)
    sent = 0
    end = time.monotonic() + secs
    write = tx.udp.write
    while time.monotonic() < end:
        for _ in range(64):
            await write(data, dest_ip=dst, dest_port=9)
        sent += 64
        await asyncio.sleep(0)  # let the switch deliver
    await asyncio.sleep(0.1)
    await tx.disconnect()
    await rx.disconnect()
    return {"sent": sent, "received": count[0], "seconds": times[1] - times[0], "bytes": count[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    rows = []
    for size in (64, 1472):
        for path, res in (
            (
                "miragekit -> miragekit (vswitch)",
                asyncio.run(stack_to_stack_vswitch(size, args.seconds)),
            ),
            ("kernel -> miragekit (TAP)", asyncio.run(kernel_to_stack(size, args.seconds))),
            ("kernel -> kernel (veth)", kernel_to_kernel(size, args.seconds)),
            ("iperf3 -> iperf3 (veth)", kernel_to_kernel_iperf3(size, args.seconds)),
        ):
            secs = max(res["seconds"], 1e-9)
            rows.append(
                {
                    "path": path,
                    "payload": size,
                    "sent": res["sent"],
                    "received": res["received"],
                    "datagrams_per_s": res["received"] / secs,
                    "mbytes_per_s": res["bytes"] / secs / 1e6,
                }
            )
    print(
        f"{'path':<33} {'payload':>7} {'sent':>9} {'received':>9} {'datagrams/s':>12} {'MB/s':>8}"
    )
    for r in rows:
        print(
            f"{r['path']:<33} {r['payload']:>7} {r['sent']:>9} {r['received']:>9} "
            f"{r['datagrams_per_s']:>12,.0f} {r['mbytes_per_s']:>8.1f}"
        )
    out = Path(__file__).resolve().parent / "results" / "udp.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
