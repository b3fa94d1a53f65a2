"""HTTP serving rates of examples/static_website on each backend, beside a plain asyncio +
h11 server on host sockets, measured by wrk in one run.

Run as root: ``python bench/http.py [--seconds 5]``. wrk (one thread) asks for the
899-byte index page: keep-alive with 10 and with 100 connections, and a new connection
per request (``Connection: close``, 10 connections). Rows: the reference (asyncio + h11,
written below, on host sockets), ``--net socket``, our stack over TAP, over TAP with
``--offload``, and ``--net vnet --forward``. TAP rows run in a ``mk-`` namespace (always
deleted) with wrk inside it. Prints requests/s, latency percentiles and each row's ratio
to the reference, and writes bench/results/http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "static_website" / "site"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}

REFERENCE = r"""
import asyncio, sys
import h11
body = open(sys.argv[3], "rb").read()
async def serve(r, w):
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = await r.read(65536)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(ev, h11.Request):
                close = any(k == b"connection" and v.lower() == b"close" for k, v in ev.headers)
                hdrs = [("content-type", "text/html"), ("content-length", str(len(body)))]
                if close:
                    hdrs.append(("connection", "close"))
                w.write(conn.send(h11.Response(status_code=200, headers=hdrs)))
                w.write(conn.send(h11.Data(data=body)))
                w.write(conn.send(h11.EndOfMessage()))
                await w.drain()
            elif isinstance(ev, h11.ConnectionClosed) or conn.our_state is h11.MUST_CLOSE:
                return
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
    except (h11.RemoteProtocolError, ConnectionError):
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]), backlog=1024)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def wait_line(p: subprocess.Popen[str], pattern: str, timeout: float = 30.0) -> str:
    assert p.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if not line:
            break
        if re.search(pattern, line):
            return line
    raise RuntimeError(f"server never said {pattern!r} (exit {p.poll()})")


def wrk(url: str, conns: int, secs: float, close: bool, ns: str | None) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{secs:g}s", "--latency", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res: dict[str, float] = {"rps": float(rps.group(1)) if rps else 0.0}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            res[f"p{pct}_ms"] = float(m.group(1)) * scale
    errs = re.search(r"Socket errors: (.*)", out)
    res["errors"] = (
        0.0 if errs is None else float(sum(int(x) for x in re.findall(r"\d+", errs.group(1))))
    )
    return res


def measure(url: str, secs: float, ns: str | None = None) -> dict[str, dict[str, float]]:
    wrk(url, 10, 1, False, ns)  # warm-up
    return {
        "keep-alive c10": wrk(url, 10, secs, False, ns),
        "keep-alive c100": wrk(url, 100, secs, False, ns),
        "new conn c10": wrk(url, 10, secs, True, ns),
    }


@contextmanager
def process(cmd: list[str], ready: str) -> Iterator[str]:
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        line = wait_line(p, ready)
        # The app logs every request: keep reading, or a full pipe stops the server.
        assert p.stdout is not None
        threading.Thread(target=p.stdout.read, daemon=True).start()
        yield line
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_app(*args: str) -> list[str]:
    return [sys.executable, "-m", "miragekit", "run", "examples/static_website",
            "--kv", str(SITE), *args]  # fmt: skip


@contextmanager
def namespace() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-h{tag}", f"mk-h{tag[:6]}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
        sh("ip", "-n", ns, "addr", "add", "10.84.0.1/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        yield ns, tap
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    secs = args.seconds
    load0 = os.getloadavg()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    ref = [sys.executable, "-c", REFERENCE, "127.0.0.61", "8061", str(SITE / "index.html")]
    with process(ref, "ready"):
        rows["reference: asyncio + h11, host sockets"] = measure("http://127.0.0.61:8061/", secs)
    with process(run_app("--net", "socket", "--ip", "127.0.0.62"), "serving the store"):
        rows["--net socket"] = measure("http://127.0.0.62/", secs)
    for label, extra in (("--net tap", ()), ("--net tap --offload", ("--offload",))):
        with namespace() as (ns, tap):
            cmd = ["ip", "netns", "exec", ns, *run_app("--net", f"tap:{tap}", "--ip",
                   "10.84.0.2/24", *extra)]  # fmt: skip
            with process(cmd, "serving the store"):
                rows[label] = measure("http://10.84.0.2/", secs, ns)
    with process(run_app("--net", "vnet", "--forward", "8063:80"), "serving the store"):
        time.sleep(0.5)
        rows["--net vnet --forward"] = measure("http://127.0.0.1:8063/", secs)
    load1 = os.getloadavg()
    base = rows["reference: asyncio + h11, host sockets"]
    cols = ("keep-alive c10", "keep-alive c100", "new conn c10")
    print(f"{'server':40}" + "".join(f"{c:>24}" for c in cols))
    for name, r in rows.items():
        cells = []
        for c in cols:
            ratio = r[c]["rps"] / base[c]["rps"] if base[c]["rps"] else 0.0
            cells.append(f"{r[c]['rps']:9.0f} ({ratio:4.2f}) p99 {r[c].get('p99_ms', 0):5.1f}")
        print(f"{name:40}" + "".join(f"{x:>24}" for x in cells))
    print("requests/s (ratio to the reference) and p99 latency in ms; "
          f"load average {load0[0]:.2f} at start, {load1[0]:.2f} at end")  # fmt: skip
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "load": [load0, load1], "seconds": secs}
    (out / "http.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
