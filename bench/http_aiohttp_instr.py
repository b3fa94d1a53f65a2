"""Instructions per keep-alive request of the aiohttp server of ``bench/http_aiohttp.py``,
host sockets against our stack over TAP: a count that other load on the machine does not
move, where CPU time and rates do.

Run as root: ``python bench/http_aiohttp_instr.py [--seconds 10] [--conns 1] [--before DIR]`` (needs
``valgrind``, ``wrk``: ``apt-get install valgrind wrk``).

Each server (the unchanged ``bench/programs/aiohttp_app.py``, on the host's sockets; under
``miragekit exec --net tap``; with ``--before DIR`` under the stack of the source tree
``DIR/src`` as well) runs under ``valgrind --tool=callgrind`` with counting off; after a
warm-up, counting goes on for ``wrk -t1 -c CONNS -d SECONDS`` on ``/`` in the namespace and off
again (one connection by default: with more, how many requests share a loop turn depends
on the speed, and so does the count per request). Shown: the requests wrk counted, the server's user-space instructions per request
(callgrind's ``Ir``: the interpreter's and the C libraries', not the kernel's), and each
row against the host-socket server. Under valgrind the servers run ~50x slower. Prints a table and writes bench/results/http_aiohttp_instr.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from http_aiohttp import APP, KERNEL_IP, OUR_IP, ROOT, tap_namespace
from tcp_conns import in_ns, sh


def count(
    ns: str, cmd: list[str], src: Path, url: str, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    """Run ``cmd`` under callgrind, counting only during the measured wrk run."""
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(in_ns(ns, *vg, *cmd), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert p.stdout is not None
    try:
        deadline = time.monotonic() + 300
        while "Running on" not in p.stdout.readline():
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} did not start under valgrind")
        wrk = in_ns(ns, "wrk", "-t1", f"-c{args.conns}")
        subprocess.run([*wrk, "-d2s", url], capture_output=True, check=True)  # warm-up
        sh("callgrind_control", "-i", "on", str(p.pid))
        res = subprocess.run([*wrk, f"-d{args.seconds}s", url], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        sh("callgrind_control", "-i", "off", str(p.pid))
    finally:
        p.send_signal(2)  # SIGINT: aiohttp stops, callgrind writes its counts
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
    m = re.search(r"(\d+) requests in", res)
    totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M)
    assert m and totals, res
    n = int(m.group(1))
    return {"requests": n, "instructions_per_request": int(totals.group(1)) / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="counted wrk run per server")
    ap.add_argument("--conns", type=int, default=1,
                    help="wrk connections (1: every request alone, the same batching "
                    "whatever the speed)")  # fmt: skip
    ap.add_argument("--before", metavar="DIR", help="also the stack of DIR/src")
    args = ap.parse_args()
    if args.before and not (Path(args.before) / "src" / "miragekit").is_dir():
        sys.exit(f"--before {args.before}: no src/miragekit there")
    if os.geteuid() != 0:
        sys.exit("bench/http_aiohttp_instr.py needs root (network namespaces, TAP)")
    load_start = os.getloadavg()
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-hi{tag}", f"mk-hi{tag}t"
    tmp = Path(tempfile.mkdtemp(prefix="http_aiohttp_instr"))
    py = sys.executable
    exe = [py, "-m", "miragekit", "exec", "--net", f"tap:{tap}", "--ip", f"{OUR_IP}/24", "--"]
    rows: dict[str, Any] = {}
    sh("ip", "netns", "add", ns)
    try:
        tap_namespace(ns, tap)
        runs = [("aiohttp, host sockets (reference)", [py, str(APP), "8080"], ROOT / "src",
                 KERNEL_IP),
                ("aiohttp, miragekit exec over TAP", [*exe, str(APP), "8080"], ROOT / "src",
                 OUR_IP)]  # fmt: skip
        if args.before:
            runs.append(("aiohttp, miragekit exec over TAP, --before", [*exe, str(APP), "8080"],
                         Path(args.before).resolve() / "src", OUR_IP))  # fmt: skip
        for i, (name, cmd, src, ip) in enumerate(runs):
            url = f"http://{ip}:8080/"
            rows[name] = count(ns, cmd, src, url, args, tmp / f"callgrind.{i}")
            print(f"  {name}: done", file=sys.stderr)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    ref = rows["aiohttp, host sockets (reference)"]["instructions_per_request"]
    print(f"aiohttp keep-alive under callgrind (wrk -t1 -c{args.conns} -d{args.seconds}s, '/')")
    print(f"{'server':46} {'requests':>9} {'k instr/req':>12} {'host / this':>12}")
    for name, r in rows.items():
        ipr = r["instructions_per_request"]
        print(f"{name:46} {r['requests']:9d} {ipr / 1000:12.1f} {ref / ipr:12.0%}")
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out = ROOT / "bench" / "results" / "http_aiohttp_instr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "loadavg": load, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
