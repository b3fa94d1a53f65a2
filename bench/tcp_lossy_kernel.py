"""Loss recovery against the Linux kernel's, side by side through ``miragekit switch``.

Run as root: ``python bench/tcp_lossy_kernel.py [--seconds 8] [--rtt-ms 2 20]
[--loss 0.01 0.05] [--seed 7] [--repeat 3] [--congestion cubic]
[--kernel-congestion cubic] [--rows kernel]``.

One ``miragekit switch`` (``--no-offload``: every frame wire-sized, so a loss is one
segment's) with three ports: TAP ``a`` in ``mk-`` namespace A, TAP ``b`` in namespace B,
and a VXLAN port ``c`` on loopback for our stack, which runs in this process. Port a's
link drops the given share of frames and delays each by half the RTT, in both
directions; b and c are clean. So every row crosses the same impairment once each way:

* kernel -> kernel: a Python socket sender in B to a receiver in A;
* ours -> kernel: our sender (``Config(congestion=...)``) to the receiver in A;
* kernel -> ours: the sender in A to our receiver.

The kernel runs with its defaults (SACK, RACK-TLP, PRR, HyStart) except its congestion
control, set on the sender's socket to ``--kernel-congestion`` (CUBIC: loss-based as
ours; a host default of BBR hardly slows down for random loss at all). Each row gets a
fresh switch; the rows run in ``--repeat`` rounds, round r with seed ``--seed`` + r for
all three rows (one seed replays much the same losses, so the rounds differ), and the
table shows each row's median run (by goodput) with its RTOs, and the line printed per
cell the smoothed RTT the kernel's sender saw (``tcp_info``, the median of samples every
quarter second), to the kernel's receiver and to ours. Goodput is what the receiving
application read in the ``--seconds`` after its first byte (MB = 10**6 bytes); RTOs are
the sender's retransmission timeouts: the kernel's ``TcpExtTCPTimeouts`` from ``nstat``
in the sender's namespace, ours the connection's ``stats["rto"]``. Beside the kernel's
row, the Mathis figure 1.22·MSS/(RTT·√p) for MSS 1448 at the link's RTT and at the SRTT
the kernel's sender saw (the switch's own per-frame time adds to the round trip): whether
Linux itself reaches the rule of thumb on this path. This kernel builds no netem (nor fq
or ETF, which could delay by departure time), so the switch is where the kernel's TCP
meets seeded loss and delay. ``--rows kernel`` runs the kernel's row alone. Prints a
table and writes bench/results/tcp_lossy_kernel.json (``..._kernel_only.json`` with
``--rows kernel``). Namespaces are always deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from tcp_lossy import mathis  # noqa: E402

from miragekit.link import VxlanNetif  # noqa: E402
from miragekit.result import Ok  # noqa: E402
from miragekit.stack import DirectStackV4, Static  # noqa: E402
from miragekit.tcp import Config  # noqa: E402
from miragekit.v1 import StackConfig  # noqa: E402

NET = "10.97.0"
A_IP, B_IP, OURS_IP = f"{NET}.1", f"{NET}.2", f"{NET}.3"
PORT = 5301
#: The kernel's MSS on this path (1500-byte MTU, timestamps on).
KMSS = 1448
VNI = 4242
SW_VX, OURS_VX = 47931, 47932
#: Our TCP settings (from the command line).
CFG = [Config()]
#: The kernel sender's congestion control (TCP_CONGESTION, which root may set to any).
KCC = ["cubic"]

KERNEL_RECV = r"""
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port)); srv.listen(1)
print("ready", flush=True)
c, _ = srv.accept()
c.settimeout(0.5)
n, t0 = 0, None
while t0 is None or time.monotonic() - t0 < secs:
    try:
        d = c.recv(1 << 20)
    except TimeoutError:
        continue
    if not d:
        break
    if t0 is None:
        t0 = time.monotonic()
    n += len(d)
print(n, time.monotonic() - t0, flush=True)
"""

KERNEL_SEND = r"""
import socket, struct, sys, time
host, port, limit, cc = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
s.settimeout(30)
s.connect((host, port))
s.settimeout(limit)
block = bytes(65536)
end = time.monotonic() + limit
sample = time.monotonic() + 1.0
try:
    while time.monotonic() < end:
        s.sendall(block)
        if time.monotonic() >= sample:
            # tcp_info's tcpi_rtt (microseconds): the smoothed RTT the sender sees.
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            print(struct.unpack_from("I", info, 68)[0], flush=True)
            sample += 0.25
except OSError:
    pass
"""


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def timeouts(ns: str) -> int:
    """The namespace's TcpExtTCPTimeouts (absolute, not nstat's history-relative)."""
    out = sh("ip", "netns", "exec", ns, "nstat", "-az", "TcpExtTCPTimeouts")
    m = re.search(r"TcpExtTCPTimeouts\s+(\d+)", out)
    return int(m.group(1)) if m else 0


async def start_switch(ns: list[str], taps: list[str], link: str, seed: int) -> Any:
    ports = [
        f"--port=a=tap:{taps[0]},netns={ns[0]}",
        f"--port=b=tap:{taps[1]},netns={ns[1]}",
        # dstport: a learned endpoint's port is the other end's, not our own.
        f"--port=c=vxlan:{VNI}@127.0.0.1:{SW_VX},127.0.0.1:{OURS_VX},dstport={OURS_VX},mtu=1500",
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "miragekit", "switch", *ports, "--no-offload",
        f"--link=a:{link}", f"--seed={seed}",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if b"ready" not in line:
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        raise RuntimeError(f"the switch did not start: {(line + err).decode()!r}")
    for i, (n, tap) in enumerate(zip(ns, taps, strict=True)):
        sh("ip", "-n", n, "addr", "add", f"{NET}.{i + 1}/24", "dev", tap)
        sh("ip", "-n", n, "link", "set", tap, "up")
    return proc


async def stop(proc: Any) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)


async def end(proc: Any) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def end_sender(proc: Any) -> float | None:
    """Stop a kernel sender; the median of the smoothed RTTs it printed (ms), the RTT it
    saw through the impaired link and the receiver (None: too short to sample)."""
    await end(proc)
    out = (await proc.stdout.read()).split()
    rtts = sorted(int(x) / 1000 for x in out)
    return rtts[len(rtts) // 2] if rtts else None


async def in_ns(ns: str, *args: str) -> Any:
    return await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, "-c", *args,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def kernel_receiver(ns: str, secs: float) -> tuple[Any, Callable[[], Awaitable[float]]]:
    """A receiver in ``ns``, listening; a function that waits for its goodput."""
    proc = await in_ns(ns, KERNEL_RECV, str(PORT), str(secs))
    assert proc.stdout is not None
    assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 30)

    async def result() -> float:
        out, _ = await asyncio.wait_for(proc.communicate(), secs + 120)
        n, dt = out.split()
        return int(n) / float(dt) / 1e6

    return proc, result


class OurStack:
    """Our stack on a VXLAN tunnel to the switch's port c, in this process."""

    async def __aenter__(self) -> DirectStackV4:
        spec = f"vxlan:{VNI}@127.0.0.1:{OURS_VX},127.0.0.1:{SW_VX},mtu=1500,dstport={SW_VX}"
        r = await VxlanNetif.connect(spec)
        assert isinstance(r, Ok), r
        self.netif = r.value
        s = await DirectStackV4.connect(
            StackConfig("bench", None, self.netif, Static(f"{OURS_IP}/24")), tcp_config=CFG[0]
        )
        assert isinstance(s, Ok), s
        self.stack = s.value
        return self.stack

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.disconnect()
        await self.netif.disconnect()


async def kernel_to_kernel(ns: list[str], secs: float) -> dict[str, Any]:
    proc, result = await kernel_receiver(ns[0], secs)
    t0 = timeouts(ns[1])
    sender = await in_ns(ns[1], KERNEL_SEND, A_IP, str(PORT), str(secs + 60), KCC[0])
    mbps = await result()
    srtt = await end_sender(sender)
    await proc.wait()
    return {"MB/s": mbps, "rto": timeouts(ns[1]) - t0, "srtt_ms": srtt}


async def ours_to_kernel(ns: list[str], secs: float) -> dict[str, Any]:
    _proc, result = await kernel_receiver(ns[0], secs)
    async with OurStack() as stack:
        r = await stack.tcpv4().create_connection((IPv4Address(A_IP), PORT))
        assert isinstance(r, Ok), r
        flow = r.value
        block = bytes(256 * 1024)

        async def pump() -> None:
            while await flow.write(block) == Ok(None):
                pass

        task = asyncio.ensure_future(pump())
        mbps = await result()
        task.cancel()
        stats = dict(flow.connection.stats)
        return {"MB/s": mbps, "rto": stats["rto"], "stats": stats}


async def kernel_to_ours(ns: list[str], secs: float) -> dict[str, Any]:
    got: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def handle(flow: Any) -> None:
        n, t0 = 0, None
        while t0 is None or time.monotonic() - t0 < secs:
            r = await flow.read()
            if not isinstance(r, Ok):
                break
            if t0 is None:
                t0 = time.monotonic()
            n += len(r.value)
        if not got.done():
            got.set_result(n / (time.monotonic() - (t0 or time.monotonic())) / 1e6)
        await flow.close()

    async with OurStack() as stack:
        stack.listen_tcpv4(port=PORT, callback=handle)
        t0 = timeouts(ns[0])
        sender = await in_ns(ns[0], KERNEL_SEND, OURS_IP, str(PORT), str(secs + 60), KCC[0])
        mbps = await asyncio.wait_for(got, secs + 60)
        srtt = await end_sender(sender)
        return {"MB/s": mbps, "rto": timeouts(ns[0]) - t0, "srtt_ms": srtt}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    t = uuid.uuid4().hex[:6]
    ns = [f"mk-lk{t}a", f"mk-lk{t}b"]
    taps = [f"mk-lk{t}ta", f"mk-lk{t}tb"]
    KCC[0] = args.kernel_congestion
    CFG[0] = Config(
        congestion=args.congestion,
        recv_buffer=4 << 20,
        send_buffer=4 << 20,
        delayed_ack=not args.no_delayed_ack,
    )
    rows: list[dict[str, Any]] = []
    try:
        for n in ns:
            sh("ip", "netns", "add", n)
            sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "-n", n, "link", "set", "lo", "up")
        for rtt_ms in args.rtt_ms:
            for loss in args.loss:
                link = f"loss={loss},latency={rtt_ms / 2000}"
                row: dict[str, Any] = {"rtt_ms": rtt_ms, "loss": loss}
                cases: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                    ("kernel->kernel", lambda: kernel_to_kernel(ns, args.seconds)),
                    ("ours->kernel", lambda: ours_to_kernel(ns, args.seconds)),
                    ("kernel->ours", lambda: kernel_to_ours(ns, args.seconds)),
                ]
                if args.rows == "kernel":
                    cases = cases[:1]
                elif args.rows == "receiver":
                    cases = [cases[0], cases[2]]
                # Rounds of every row, so that a busy machine weighs on all of them alike.
                runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in cases}
                for r in range(args.repeat):
                    for key, fn in cases:
                        sw = await start_switch(ns, taps, link, args.seed + r)
                        try:
                            runs[key].append(await fn())
                        finally:
                            await stop(sw)
                for key, got in runs.items():
                    got.sort(key=lambda r: float(r["MB/s"]))
                    mid = got[len(got) // 2]  # the median run by goodput
                    row[key] = {**mid, "runs": got}
                k = row["kernel->kernel"]
                row["mathis_MB_per_s"] = mathis(KMSS, rtt_ms / 1000, loss) / 1e6
                if k["srtt_ms"]:
                    row["mathis_at_srtt_MB_per_s"] = mathis(KMSS, k["srtt_ms"] / 1000, loss) / 1e6
                rows.append(row)
                print(
                    f"rtt {rtt_ms:4.0f}ms loss {loss:4.0%}  kernel->kernel {k['MB/s']:6.2f} MB/s "
                    f"(rto {k['rto']}, runs {[round(x['MB/s'], 2) for x in k['runs']]}, "
                    f"rtos {[x['rto'] for x in k['runs']]}); mathis {row['mathis_MB_per_s']:.2f} "
                    f"at the link's RTT, {mathis_at(row)} at the sender's SRTT {k['srtt_ms']} ms",
                    flush=True,
                )
                if args.rows == "kernel":
                    continue
                i = row["kernel->ours"]
                print(
                    f"rtt {rtt_ms:4.0f}ms loss {loss:4.0%}  kernel->kernel {k['MB/s']:6.2f} MB/s "
                    f"(rto {k['rto']})  ours->kernel {vs(row, 'ours->kernel')}  kernel->ours "
                    f"{vs(row, 'kernel->ours')}; the kernel sender's SRTT {k['srtt_ms']} ms to the "
                    f"kernel, {i['srtt_ms']} ms to ours",
                    flush=True,
                )
    finally:
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
    return rows


def vs(row: dict[str, Any], key: str) -> str:
    """A row's median goodput with its RTOs and its ratio to the kernel's, for a table."""
    if key not in row:
        return "—"
    r, k = row[key], row["kernel->kernel"]
    return f"{r['MB/s']:.2f} ({r['rto']}), {r['MB/s'] / k['MB/s']:.2f}x"


def mathis_at(row: dict[str, Any]) -> str:
    """The Mathis figure at the kernel's SRTT with the kernel's ratio to it, for a table."""
    m = row.get("mathis_at_srtt_MB_per_s")
    return f"{m:.2f} ({row['kernel->kernel']['MB/s'] / m:.2f}x)" if m else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[2.0, 20.0])
    ap.add_argument("--loss", type=float, nargs="+", default=[0.01, 0.05])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median is shown")
    ap.add_argument("--congestion", default="cubic", choices=["newreno", "cubic"], help="ours")
    ap.add_argument(
        "--kernel-congestion", default="cubic", help="the kernel sender's (TCP_CONGESTION)"
    )
    ap.add_argument("--no-delayed-ack", action="store_true", help="our receiver ACKs every segment")
    ap.add_argument(
        "--rows",
        default="all",
        choices=["all", "kernel", "receiver"],
        help="kernel: kernel -> kernel alone; receiver: with kernel -> ours",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("tcp_lossy_kernel: needs root (namespaces, TAP devices)")
    load_start = os.getloadavg()
    rows = asyncio.run(run(args))
    load_end = os.getloadavg()
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    print(
        "| RTT | loss | kernel → kernel MB/s (RTO) | kernel's SRTT ms | Mathis at the RTT "
        "(kernel's ratio) | Mathis at the SRTT (kernel's ratio) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        k = r["kernel->kernel"]
        print(
            f"| {r['rtt_ms']:g} ms | {r['loss']:.0%} | {k['MB/s']:.2f} ({k['rto']}) | "
            f"{k['srtt_ms']} | {r['mathis_MB_per_s']:.2f} "
            f"({k['MB/s'] / r['mathis_MB_per_s']:.2f}x) | {mathis_at(r)} |"
        )
    if args.rows == "kernel":
        rows_done(args, rows, load_start, load_end)
        return
    print("| RTT | loss | kernel → kernel MB/s (RTO) | ours → kernel | kernel → ours |")
    print("|---|---|---|---|---|")
    for r in rows:
        k = r["kernel->kernel"]
        print(
            f"| {r['rtt_ms']:g} ms | {r['loss']:.0%} | {k['MB/s']:.2f} ({k['rto']}) | "
            f"{vs(r, 'ours->kernel')} | {vs(r, 'kernel->ours')} |"
        )
    rows_done(args, rows, load_start, load_end)


def rows_done(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
) -> None:
    """Write the JSON."""
    name = "tcp_lossy_kernel_only.json" if args.rows == "kernel" else "tcp_lossy_kernel.json"
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "seed": args.seed,
                "repeat": args.repeat,
                "congestion": args.congestion,
                "kernel_congestion": args.kernel_congestion,
                "load_start": load_start,
                "load_end": load_end,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
