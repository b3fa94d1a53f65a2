"""HTTP serving rates of examples/static_website on each backend, beside a plain asyncio +
h11 server on host sockets, measured by wrk in one run.

Run as root: ``python bench/http.py [--seconds 5] [--repeat 1]``. wrk (one thread) asks for the
899-byte index page: keep-alive with 10 and with 100 connections, and a new connection
per request (``Connection: close``, 10 connections). Rows: the reference (asyncio + h11,
written below, on host sockets), ``--net socket``, our stack over TAP, over TAP with
``--offload``, and ``--net vnet --forward``. TAP rows run in a ``mk-`` namespace (always
deleted) with wrk inside it. All servers run at once and each round measures every cell once,
server after server (``--repeat`` rounds, each cell keeps its best run), so that load from
other work falls on all rows alike. Prints requests/s, latency percentiles and each row's
ratio to the reference, and writes bench/results/http.json.

``--rows socket,tap`` runs only the rows whose name holds one of the words (the reference
always runs), ``--columns "new conn"`` only those columns; ``--before DIR`` adds a
``--net socket`` row served from the checkout DIR (e.g. a worktree of main): before and
after in one run.
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
from contextlib import ExitStack, contextmanager
from pathlib import Path

from proc_cpu import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "static_website" / "site"
READY = "serving the store"
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
    total = re.search(r"(\d+) requests in", out)
    res: dict[str, float] = {"rps": float(rps.group(1)) if rps else 0.0,
                             "requests": float(total.group(1)) if total else 0.0}  # fmt: skip
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


ROWS = ("--net socket", "--net tap", "--net tap --offload", "--net vnet --forward")
COLUMNS = {  # column: (connections, Connection: close)
    "keep-alive c10": (10, False),
    "keep-alive c100": (100, False),
    "new conn c10": (10, True),
}


@contextmanager
def process(cmd: list[str], ready: str, root: Path = ROOT) -> Iterator[int]:
    """Run a server (from the checkout ``root``) until the block ends; gives its pid
    (``ip netns exec`` execs)."""
    env = {**ENV, "PYTHONPATH": str(root / "src")}
    p = subprocess.Popen(cmd, cwd=root, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_line(p, ready)
        # The app logs every request: keep reading, or a full pipe stops the server.
        assert p.stdout is not None
        threading.Thread(target=p.stdout.read, daemon=True).start()
        yield p.pid
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
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds; each cell keeps its best (other load only lowers a rate)")  # fmt: skip
    ap.add_argument("--rows", default="",
                    help="comma-separated substrings: run only the rows whose name holds one "
                         "(e.g. 'socket'); the reference always runs")  # fmt: skip
    ap.add_argument(
        "--columns",
        default="",
        help="comma-separated substrings of the columns to run (e.g. 'new conn')",
    )
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="also run the --net socket row from the checkout DIR (e.g. of main)")  # fmt: skip
    args = ap.parse_args()
    secs = args.seconds
    wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
    picked = [w.strip() for w in args.columns.split(",") if w.strip()]
    columns = {c: v for c, v in COLUMNS.items() if not picked or any(w in c for w in picked)}
    if not columns:
        ap.error(f"--columns {args.columns!r} names none of: {', '.join(COLUMNS)}")

    def want(name: str) -> bool:
        return not wanted or any(w in name for w in wanted)

    if not any(map(want, ROWS)):
        ap.error(f"--rows {args.rows!r} names none of: {', '.join(ROWS)}")

    load0 = os.getloadavg()
    # Every server runs from the start; each round measures every cell once, server after
    # server, so the rows share the machine's moments of load instead of each row taking
    # its own minute of it.
    servers: dict[str, tuple[str, str | None, int]] = {}  # name -> (url, namespace, pid)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with ExitStack() as stack:
        ref = [sys.executable, "-c", REFERENCE, "127.0.0.61", "8061", str(SITE / "index.html")]
        pid = stack.enter_context(process(ref, "ready"))
        servers["reference: asyncio + h11, host sockets"] = ("http://127.0.0.61:8061/", None, pid)
        if want("--net socket"):
            cmd = run_app("--net", "socket", "--ip", "127.0.0.62")
            pid = stack.enter_context(process(cmd, READY))
            servers["--net socket"] = ("http://127.0.0.62/", None, pid)
            if args.before is not None:
                cmd = run_app("--net", "socket", "--ip", "127.0.0.64")
                pid = stack.enter_context(process(cmd, READY, args.before.resolve()))
                servers["--net socket, before"] = ("http://127.0.0.64/", None, pid)
        for label, extra in (("--net tap", ()), ("--net tap --offload", ("--offload",))):
            if not want(label):
                continue
            netns, tap = stack.enter_context(namespace())
            cmd = ["ip", "netns", "exec", netns, *run_app("--net", f"tap:{tap}", "--ip",
                   "10.84.0.2/24", *extra)]  # fmt: skip
            pid = stack.enter_context(process(cmd, READY))
            servers[label] = ("http://10.84.0.2/", netns, pid)
        if want("--net vnet --forward"):
            cmd = run_app("--net", "vnet", "--forward", "8063:80")
            pid = stack.enter_context(process(cmd, READY))
            time.sleep(0.5)
            servers["--net vnet --forward"] = ("http://127.0.0.1:8063/", None, pid)
        for url, ns, _pid in servers.values():
            wrk(url, 10, 1, False, ns)  # warm-up
        for _ in range(args.repeat):
            for col, (conns, close) in columns.items():
                for name, (url, ns, pid) in servers.items():
                    cpu0 = cpu_seconds(pid)
                    r = wrk(url, conns, secs, close, ns)
                    # The server's own CPU per request: steadier than the rate on a busy
                    # machine (the rate follows the CPU other work leaves).
                    r["cpu_us"] = (cpu_seconds(pid) - cpu0) / max(r["requests"], 1) * 1e6
                    runs.setdefault(name, {}).setdefault(col, []).append(r)
    load1 = os.getloadavg()
    rows = {name: {col: max(rs, key=lambda r: r["rps"]) for col, rs in cols.items()}
            for name, cols in runs.items()}  # fmt: skip
    base = rows["reference: asyncio + h11, host sockets"]
    print(f"{'server':40}" + "".join(f"{c:>30}" for c in columns))
    for name, row in rows.items():
        cells = []
        for c in columns:
            cell = row[c]
            ratio = cell["rps"] / base[c]["rps"] if base[c]["rps"] else 0.0
            cpu = min(x["cpu_us"] for x in runs[name][c])
            cells.append(f"{cell['rps']:7.0f} ({ratio:4.2f}) p99 {cell.get('p99_ms', 0):5.1f} "
                         f"{cpu:4.0f}us")  # fmt: skip
        print(f"{name:40}" + "".join(f"{x:>30}" for x in cells))
    print(f"requests/s (ratio to the reference), p99 latency in ms and the server's CPU per "
          f"request, best of {args.repeat} round(s); load average {load0[0]:.2f} at start, "
          f"{load1[0]:.2f} at end")  # fmt: skip
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "runs": runs, "load": [load0, load1], "seconds": secs,
              "repeat": args.repeat}  # fmt: skip
    (out / "http.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
