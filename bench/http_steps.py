"""CPU per request of examples/static_website on ``--net socket`` from several source
trees side by side, beside the reference server of ``bench/http.py``, in one run.

Run as root: ``python bench/http_steps.py --tree before=DIR --tree after=DIR ...``, each
DIR holding a tree's ``src/`` and ``examples/`` (``git archive COMMIT src examples | tar
-x -C DIR``). Every server runs at once; each round asks every one in turn for
``--seconds`` of wrk keep-alive with 10 connections (other load falls on all alike). Prints
each server's user+system CPU per request and rate per round, and writes
bench/results/http_steps.json: what each commit of a series bought.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_http", HERE / "http.py")
assert _spec is not None and _spec.loader is not None
bench_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_http)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    trees = []
    for spec in args.tree:
        name, sep, d = spec.partition("=")
        src = Path(d).resolve()
        if not sep or not (src / "src" / "miragekit").is_dir() or not (src / "examples").is_dir():
            sys.exit(f"--tree {spec}: want NAME=DIR with DIR/src/miragekit and DIR/examples")
        trees.append((name, src))
    site = str(bench_http.SITE)
    load0 = os.getloadavg()
    with ExitStack() as stack:
        servers: dict[str, tuple[str, int]] = {}
        ref = [sys.executable, "-c", bench_http.REFERENCE, "127.0.0.81", "8081",
               str(bench_http.SITE / "index.html")]  # fmt: skip
        servers["reference: asyncio + h11"] = (
            "http://127.0.0.81:8081/",
            stack.enter_context(bench_http.process(ref, "ready")),
        )
        for i, (name, src) in enumerate(trees):
            ip = f"127.0.0.{82 + i}"
            cmd = ["env", f"PYTHONPATH={src / 'src'}", sys.executable, "-m", "miragekit", "run",
                   str(src / "examples" / "static_website"), "--kv", site, "--net", "socket",
                   "--ip", ip]  # fmt: skip
            servers[name] = (
                f"http://{ip}/",
                stack.enter_context(bench_http.process(cmd, "serving")),
            )
        for url, _pid in servers.values():
            bench_http.wrk(url, 10, 1, False, None)  # warm-up
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for name, (url, pid) in servers.items():
                cpu0 = bench_http.cpu_seconds(pid)
                r = bench_http.wrk(url, 10, args.seconds, False, None)
                r["cpu_us"] = (bench_http.cpu_seconds(pid) - cpu0) / max(r["requests"], 1) * 1e6
                runs.setdefault(name, []).append(r)
    load1 = os.getloadavg()
    for name, rs in runs.items():
        cpu = ", ".join(f"{r['cpu_us']:.1f}" for r in rs)
        rps = ", ".join(f"{r['rps']:.0f}" for r in rs)
        print(f"{name:40} CPU per request {cpu} µs   requests/s {rps}")
    print(f"wrk -c10 keep-alive, {args.seconds:g} s a round; load average {load0[0]:.2f} at "
          f"start, {load1[0]:.2f} at end")  # fmt: skip
    out = HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"runs": runs, "trees": {n: str(d) for n, d in trees}, "load": [load0, load1]}
    (out / "http_steps.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
