"""aiohttp on miragekit's stack (``miragekit exec``, TAP) against the same server on host
sockets, in the same run.

Run as root: ``python bench/http_aiohttp.py [--seconds 10] [--rounds 3] [--conns 16] [--mb 200]``
(needs ``wrk`` and ``curl``: ``apt-get install wrk curl``).

One ``mk-`` namespace holds the kernel side of a TAP device (10.84.0.1/24). The unchanged
program ``bench/programs/aiohttp_app.py`` runs twice inside it: with plain Python on the host's
sockets (the reference, reached at the kernel's 10.84.0.1) and under ``miragekit exec
--net tap`` on our stack (10.84.0.2). For each:

* keep-alive rate: ``wrk`` in the namespace, one thread, ``--conns`` connections, for
  ``--seconds``, on ``/`` (a 6-byte body); the server's CPU time per request beside it.
* bulk TLS: ``curl`` downloads ``--mb`` MiB over HTTPS (a test CA made with trustme,
  TLS 1.3); also the same over plain HTTP.

``--offload`` adds a row for our stack with the TAP's checksum and segmentation offload.
``--before DIR`` adds a row for the stack of another source tree (``DIR/src``, e.g. main
before a change, from ``git archive``), on a TAP device of its own, measured in the same
rounds: before and after side by side in one run.

Everything shares the machine's two cores (wrk and curl too), so the rates follow the
load: the load average is printed and recorded. Prints a table and writes
bench/results/http_aiohttp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tcp_conns import (
    _cpu_seconds,  # the same namespace helpers
    in_ns,
    sh,
)


def cpu_seconds(pid: int) -> float:
    """A process's user and system CPU so far."""
    return sum(_cpu_seconds(pid))


ROOT = Path(__file__).resolve().parent.parent
# In a folder of its own: beside bench/http.py, the program would import that file as the
# standard library's http module.
APP = ROOT / "bench" / "programs" / "aiohttp_app.py"
KERNEL_IP, OUR_IP = "10.84.0.1", "10.84.0.2"
BEFORE_KERNEL_IP, BEFORE_IP = "10.85.0.1", "10.85.0.2"  # --before: its own TAP device
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


def tap_namespace(ns: str, tap: str) -> None:
    """The namespace ``ns`` (made by the caller) set up: IPv6 off, loopback up, and the TAP
    device ``tap`` holding the kernel's address KERNEL_IP."""
    sh(*in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
    sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
    sh("ip", "-n", ns, "addr", "add", f"{KERNEL_IP}/24", "dev", tap)
    sh("ip", "-n", ns, "link", "set", tap, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def start(cmd: list[str], ready: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert p.stdout is not None
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            return p
    p.kill()
    raise RuntimeError(f"{' '.join(cmd)} did not start: {''.join(lines)}")


def wrk(ns: str, url: str, seconds: int, conns: int, pid: int) -> dict[str, Any]:
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(
        in_ns(ns, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", url),
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    cpu = cpu_seconds(pid) - cpu0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    assert m and total, out
    n = int(total.group(1))
    return {"requests_per_second": float(m.group(1)), "requests": n,
            "server_cpu_us_per_request": cpu / max(n, 1) * 1e6,
            "errors": errors.group(0) if errors else ""}  # fmt: skip


def curl_bulk(ns: str, url: str, ca: str | None, resolve: str | None) -> float:
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}"]
    if ca:
        args += ["--cacert", ca]
    if resolve:
        args += ["--resolve", resolve]
    out = subprocess.run(in_ns(ns, *args, url), capture_output=True, text=True, check=True,
                         timeout=300).stdout  # fmt: skip
    return float(out) / 1e6  # MB/s


def measure(ns: str, servers: dict[str, tuple[list[str], list[str], str]], port: int,
            args: argparse.Namespace, ca: str) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Every server's plain program runs at once; ``--rounds`` rounds of wrk measure them
    in turn (so that other load on the machine falls on all of them alike), then a bulk
    download from each; then each TLS program alone for its bulk download."""
    rows: dict[str, dict[str, Any]] = {name: {"rounds": []} for name in servers}
    procs: list[subprocess.Popen[str]] = []
    try:
        pids = {}
        for name, (cmd, _tls, _ip) in servers.items():
            procs.append(start(cmd, f"Running on http://0.0.0.0:{port}"))
            pids[name] = procs[-1].pid
        for _ in range(args.rounds):
            for name, (_cmd, _tls, ip) in servers.items():
                url = f"http://{ip}:{port}/"
                rows[name]["rounds"].append(wrk(ns, url, args.seconds, args.conns, pids[name]))
        for name, (_cmd, _tls, ip) in servers.items():
            url = f"http://{ip}:{port}/bytes?mb={args.mb}"
            rows[name]["bulk_http_MBps"] = curl_bulk(ns, url, None, None)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    tport = port + 1
    for name, (_cmd, tls_cmd, ip) in servers.items():
        p = start(tls_cmd, f"Running on https://0.0.0.0:{tport}")
        try:
            rows[name]["bulk_tls_MBps"] = curl_bulk(
                ns, f"https://bench.test:{tport}/bytes?mb={args.mb}", ca, f"bench.test:{tport}:{ip}"
            )
        finally:
            p.terminate()
            p.wait(timeout=30)
        print(f"  {name}: done", file=sys.stderr)
    for row in rows.values():
        rates = sorted(r["requests_per_second"] for r in row["rounds"])
        cpus = sorted(r["server_cpu_us_per_request"] for r in row["rounds"])
        row["keepalive"] = {
            "requests_per_second": statistics.median(rates),
            "server_cpu_us_per_request": statistics.median(cpus),
            "errors": "; ".join(r["errors"] for r in row["rounds"] if r["errors"]),
        }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per server")
    ap.add_argument("--conns", type=int, default=16, help="wrk connections")
    ap.add_argument("--mb", type=int, default=200, help="MiB per bulk download")
    ap.add_argument("--rounds", type=int, default=3,
                    help="wrk rounds per server, servers in turn; medians reported")  # fmt: skip
    ap.add_argument("--offload", action="store_true",
                    help="also measure our stack with TAP offload (exec --offload)")  # fmt: skip
    ap.add_argument("--before", metavar="DIR",
                    help="also measure the stack of the source tree DIR (DIR/src), same rounds")  # fmt: skip
    args = ap.parse_args()
    if args.before and not (Path(args.before) / "src" / "miragekit").is_dir():
        sys.exit(f"--before {args.before}: no src/miragekit there")
    if os.geteuid() != 0:
        sys.exit("bench/http_aiohttp.py needs root (network namespaces, TAP)")
    import trustme

    load_start = os.getloadavg()
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-ha{tag}", f"mk-ha{tag}t"
    tmp = Path(tempfile.mkdtemp(prefix="http_aiohttp"))
    ca = trustme.CA()
    cert = ca.issue_cert("bench.test")
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    rows: dict[str, Any] = {}
    sh("ip", "netns", "add", ns)
    try:
        tap_namespace(ns, tap)
        py = sys.executable
        tls = [str(cert_pem), str(key_pem)]
        exe = [py, "-m", "miragekit", "exec", "--net", f"tap:{tap}", "--ip", f"{OUR_IP}/24", "--"]
        servers = {
            "aiohttp, host sockets (reference)": (
                in_ns(ns, py, str(APP), "8080"), in_ns(ns, py, str(APP), "8081", *tls), KERNEL_IP
            ),
            "aiohttp, miragekit exec over TAP": (
                in_ns(ns, *exe, str(APP), "8080"), in_ns(ns, *exe, str(APP), "8081", *tls), OUR_IP
            ),
        }  # fmt: skip
        if args.before:
            btap = f"{tap}b"
            sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", btap)
            sh("ip", "-n", ns, "addr", "add", f"{BEFORE_KERNEL_IP}/24", "dev", btap)
            sh("ip", "-n", ns, "link", "set", btap, "up")
            src = str(Path(args.before).resolve() / "src")
            bexe = ["env", f"PYTHONPATH={src}", py, "-m", "miragekit", "exec", "--net",
                    f"tap:{btap}", "--ip", f"{BEFORE_IP}/24", "--"]  # fmt: skip
            servers["aiohttp, miragekit exec over TAP, --before"] = (
                in_ns(ns, *bexe, str(APP), "8080"), in_ns(ns, *bexe, str(APP), "8081", *tls),
                BEFORE_IP,
            )  # fmt: skip
        rows.update(measure(ns, servers, 8080, args, str(ca_pem)))
        if args.offload:
            # The offload row alone: one TAP device serves one of our stacks at a time.
            exe.insert(exe.index("--"), "--offload")
            cmds = (in_ns(ns, *exe, str(APP), "8080"), in_ns(ns, *exe, str(APP), "8081", *tls))
            name = "aiohttp, miragekit exec over TAP, --offload"
            rows.update(measure(ns, {name: (*cmds, OUR_IP)}, 8080, args, str(ca_pem)))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    ref, ours = rows["aiohttp, host sockets (reference)"], rows["aiohttp, miragekit exec over TAP"]
    print(f"aiohttp keep-alive (wrk -t1 -c{args.conns} -d{args.seconds}s, '/', median of "
          f"{args.rounds} rounds), "
          f"bulk downloads of {args.mb} MiB (curl)")  # fmt: skip
    print(f"{'server':46} {'req/s':>8} {'CPU us/req':>11} {'HTTP MB/s':>10} {'TLS MB/s':>9}")
    for name, r in rows.items():
        k = r["keepalive"]
        print(f"{name:46} {k['requests_per_second']:8.0f} {k['server_cpu_us_per_request']:11.0f} "
              f"{r['bulk_http_MBps']:10.1f} {r['bulk_tls_MBps']:9.1f}")  # fmt: skip
        if k["errors"]:
            print(f"  wrk: {k['errors']}")

    def shares_of(row: dict[str, Any]) -> list[float]:
        return [o["requests_per_second"] / h["requests_per_second"]
                for h, o in zip(ref["rounds"], row["rounds"], strict=True)]  # fmt: skip

    shares = shares_of(ours)
    share = statistics.median(shares)
    each = ", ".join(f"{x:.0%}" for x in shares)
    print(f"ours / host sockets, keep-alive rate: median {share:.0%} of {len(shares)} rounds "
          f"({each}; target >= 70%)")  # fmt: skip
    before = rows.get("aiohttp, miragekit exec over TAP, --before")
    if before is not None:
        bs = shares_of(before)
        print(f"--before / host sockets: median {statistics.median(bs):.0%} "
              f"({', '.join(f'{x:.0%}' for x in bs)})")  # fmt: skip
        # Rounds share their load: the CPU per request of ours and --before, round by round.
        cpu = [(o["server_cpu_us_per_request"], b["server_cpu_us_per_request"])
               for o, b in zip(ours["rounds"], before["rounds"], strict=True)]  # fmt: skip
        print("server CPU us/request per round, ours / --before: "
              + ", ".join(f"{o:.1f}/{b:.1f}" for o, b in cpu)
              + f"; median difference {statistics.median(o - b for o, b in cpu):+.1f}")  # fmt: skip
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out = ROOT / "bench" / "results" / "http_aiohttp.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "keepalive_share": share, "loadavg": load,
                               "args": vars(args)}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
