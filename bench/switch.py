"""Kernel TCP through ``miragekit switch`` (two TAP ports) beside a kernel Linux bridge.

Run (root): .venv/bin/python bench/switch.py [--seconds S] [--repeat R]

Two ``mk-`` namespaces, a and b, are joined twice: by a ``miragekit switch`` process with
a TAP port in each (10.96.0.0/24), and by a kernel bridge in a third namespace with a veth
pair into each (10.96.1.0/24), the reference. The kernel's ``iperf3 -J`` runs a -> b and
b -> a (``-R``) over each path, the same rounds, best of ``--repeat``. Rows for the switch:
unimpaired (TAP offloads passed through whole), ``--no-offload`` (every frame wire-sized)
and 1% loss on one port. MB/s is at iperf3's receiver (MB = 10**6 bytes); frames/s is what
the switch (its counters) or the bridge (the veth counters) carried, both directions.
Writes bench/results/switch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def iperf(client: str, server: str, ip: str, seconds: float, reverse: bool) -> float:
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server, "iperf3", "-s", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        args = ["ip", "netns", "exec", client, "iperf3", "-J", "-c", ip, "-t", str(seconds)]
        out = subprocess.run([*args, *(["-R"] if reverse else [])], capture_output=True, text=True)
        end = json.loads(out.stdout)["end"]["sum_received"]
        return float(end["bytes"]) / float(end["seconds"]) / 1e6
    finally:
        srv.wait(timeout=30)


def link_packets(ns: str, dev: str) -> int:
    info = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", dev))[0]["stats64"]
    return int(info["rx"]["packets"]) + int(info["tx"]["packets"])


class Switch:
    def __init__(self, ns: list[str], taps: list[str], *extra: str) -> None:
        ctl = f"/tmp/mk-bench-{uuid.uuid4().hex[:6]}.ctl"
        ports = [f"--port=a=tap:{taps[0]},netns={ns[0]}", f"--port=b=tap:{taps[1]},netns={ns[1]}"]
        self.ctl = ctl
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "miragekit", "switch", *ports, "--control", ctl, *extra],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        assert self.proc.stdout is not None
        select.select([self.proc.stdout], [], [], 30)
        self.ready = self.proc.stdout.readline().strip()
        for i, (n, tap) in enumerate(zip(ns, taps, strict=True)):
            sh("ip", "-n", n, "addr", "add", f"10.96.0.{i + 1}/24", "dev", tap)
            sh("ip", "-n", n, "link", "set", tap, "up")

    def frames(self) -> int:
        out = sh(sys.executable, "-m", "miragekit", "switch", "ctl", self.ctl, "stats")
        ports = json.loads(out)["ports"]
        return sum(int(p["in_frames"]) for p in ports.values())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)


def measure(label: str, run: Any, frames: Any, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"path": label}
    for direction, reverse in (("a->b", False), ("b->a", True)):
        f0, t0 = frames(), time.monotonic()
        row[direction] = run(reverse)
        dt = time.monotonic() - t0
        row[f"{direction} frames/s"] = (frames() - f0) / dt
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t = uuid.uuid4().hex[:6]
    ns = [f"mk-{t}-a", f"mk-{t}-b", f"mk-{t}-br"]
    taps = [f"mk-{t}a", f"mk-{t}b"]
    load_start = os.getloadavg()
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        for n in ns:
            sh("ip", "netns", "add", n)
            sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "-n", n, "link", "set", "lo", "up")
        br = ns[2]
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", br, "link", "set", "br0", "up")
        for i, n in enumerate(ns[:2]):
            sh("ip", "link", "add", f"mk-{t}v{i}", "netns", n, "type", "veth", "peer", f"p{i}")
            sh("ip", "link", "set", f"p{i}", "netns", br)
            sh("ip", "-n", br, "link", "set", f"p{i}", "master", "br0", "up")
            sh("ip", "-n", n, "addr", "add", f"10.96.1.{i + 1}/24", "dev", f"mk-{t}v{i}")
            sh("ip", "-n", n, "link", "set", f"mk-{t}v{i}", "up")

        def bridge_frames() -> int:
            return sum(link_packets(br, f"p{i}") for i in range(2)) // 2

        variants = [
            ("miragekit switch, TAP ports (offloads passed through)", ()),
            ("miragekit switch, TAP ports, --no-offload", ("--no-offload",)),
            ("miragekit switch, TAP ports, 1% loss on a", ("--link", "a:loss=0.01")),
        ]
        for _ in range(args.repeat):
            rows.setdefault("kernel bridge (reference)", []).append(
                measure(
                    "kernel bridge (reference)",
                    lambda r: iperf(ns[0], ns[1], "10.96.1.2", args.seconds, r),
                    bridge_frames,
                    args.seconds,
                )
            )
            for label, extra in variants:
                sw = Switch(ns[:2], taps, *extra)
                try:
                    rows.setdefault(label, []).append(
                        measure(
                            label,
                            lambda r: iperf(ns[0], ns[1], "10.96.0.2", args.seconds, r),
                            sw.frames,
                            args.seconds,
                        )
                    )
                finally:
                    sw.stop()
    finally:
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
    load_end = os.getloadavg()
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    print("| path | a->b MB/s | b->a MB/s | frames/s a->b | frames/s b->a | runs a->b |")
    print("|---|---|---|---|---|---|")
    best: dict[str, dict[str, Any]] = {}
    for label, runs in rows.items():
        top = {d: max(r[d] for r in runs) for d in ("a->b", "b->a")}
        fps = {d: max(r[f"{d} frames/s"] for r in runs) for d in ("a->b", "b->a")}
        best[label] = {"MB/s": top, "frames/s": fps, "runs": runs}
        every = ", ".join(f"{r['a->b']:.0f}" for r in runs)
        print(
            f"| {label} | {top['a->b']:.1f} | {top['b->a']:.1f} | {fps['a->b']:,.0f} | "
            f"{fps['b->a']:,.0f} | {every} |"
        )
    out = ROOT / "bench" / "results" / "switch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "repeat": args.repeat,
                "load_start": load_start,
                "load_end": load_end,
                "python": platform.python_version(),
                "results": best,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
