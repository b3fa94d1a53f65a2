"""Does a change leave seeded simulations identical? For changes made only for speed.

Run: ``python bench/sim_identical.py --before REV``. The same scenarios run on this
tree's sources and on git revision REV's (exported to a temporary directory), each in
its own subprocess: 12 ``sim.Network`` hosts, 40 echo connections opened one after the
other, 15 simulated seconds, under four kinds of link (independent loss; loss with
latency; ideal; loss, latency and jitter), with a crash, a restart and a partition in
two of them, for seeds 1 to 3. Each run is reduced to a digest of its event log, every
host's outcome and counters, three hosts' pcaps and the segment's pcap; the table
shows the digests side by side. Any difference exits with status 1.
Writes bench/results/sim_identical.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv[:-1] else str(ROOT / "src")
sys.path.insert(0, _SRC)

from revision_src import extract_src  # noqa: E402

from miragekit import sim  # noqa: E402
from miragekit.link import LinkParams  # noqa: E402

HOSTS, CONNS, SECONDS = 12, 40, 15.0
LINKS: dict[str, tuple[LinkParams, bool]] = {
    "loss": (LinkParams(loss=0.02), True),
    "latency": (LinkParams(loss=0.01, latency=0.002), False),
    "ideal": (LinkParams(), True),
    "jitter": (LinkParams(loss=0.01, latency=0.001, jitter=0.001), False),
}


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def host_main(h: int) -> Any:
    targets = [(h + 1 + i // HOSTS) % HOSTS for i in range(CONNS) if i % HOSTS == h]

    async def main() -> list[str | None]:
        server = await asyncio.start_server(echo, None, 7000)
        loop = asyncio.get_running_loop()
        until = loop.time() + SECONDS

        async def ping(d: int) -> str | None:
            try:
                reader, writer = await asyncio.open_connection(f"h{d}", 7000)
                while loop.time() < until:
                    writer.write(b"x" * 100)
                    await reader.readexactly(100)
                    await asyncio.sleep(1.0)
                writer.close()
            except OSError as e:
                return repr(e)
            return None

        tasks = []
        for d in targets:
            tasks.append(asyncio.create_task(ping(d)))
            await asyncio.sleep(0.01)
        out = await asyncio.gather(*tasks)
        server.close()
        return out

    return main


def digest(seed: int, link: LinkParams, faults: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        net = sim.Network(seed=seed, subnet="10.0.0.0/16", link=link)
        for h in range(HOSTS):
            pcap = os.path.join(tmp, f"h{h}.pcap") if h < 3 else None
            net.host(f"h{h}", main=host_main(h), pcap=pcap)
        net.capture(os.path.join(tmp, "segment.pcap"))
        if faults:
            net.crash("h4", at=5.0)
            net.restart("h4", at=8.0)
            net.partition(["h1", "h2"], at=10.0)
            net.heal(at=12.0)
        report = net.run(until=SECONDS + 10)
        sha = hashlib.sha256(report.format_events().encode())
        for name, o in report.hosts.items():
            sha.update(repr((name, o.state, o.value, repr(o.error), o.counters)).encode())
        for f in sorted(os.listdir(tmp)):
            sha.update(f.encode() + Path(tmp, f).read_bytes())
        return {"digest": sha.hexdigest()[:16], "events": len(report.events)}


def all_digests() -> dict[str, dict[str, Any]]:
    return {
        f"seed {seed} {name}": digest(seed, link, faults)
        for seed in (1, 2, 3)
        for name, (link, faults) in LINKS.items()
    }


def on(src: str | None, rev: str | None) -> dict[str, dict[str, Any]]:
    """The digests on ``src`` (this tree) or revision ``rev``, in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        if rev is not None:
            src = extract_src(rev, tmp)
        args = [sys.executable, __file__, "--src", str(src), "--digests-only"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    result: dict[str, dict[str, Any]] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", metavar="REV", required="--digests-only" not in sys.argv)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--digests-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.digests_only:
        print(json.dumps(all_digests()))
        return
    before, now = on(None, a.before), on(str(ROOT / "src"), None)
    print(f"{'run':<20} {'at ' + a.before:>18} {'now':>18} {'events':>7}  same")
    same = True
    for key, b in before.items():
        n = now[key]
        ok = b == n
        same &= ok
        print(f"{key:<20} {b['digest']:>18} {n['digest']:>18} {n['events']:>7}  {ok}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    result = {"before": a.before, "rows": {"before": before, "now": now}, "identical": same}
    (out / "sim_identical.json").write_text(json.dumps(result, indent=2))
    print("identical" if same else "DIFFERENT")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
