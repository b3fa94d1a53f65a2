"""DNS: queries/s of our authoritative server over TAP beside unbound serving the same
zone, asked by the same client; and what a resolver cache hit costs.

Run as root: ``python bench/dns.py [--seconds 5] [--window 32]``. A Python client in a
``mk-`` namespace keeps ``window`` UDP queries in flight (random names of the zone, a
tenth of them NXDOMAIN) and counts answers for ``seconds``. Row 1: examples/dns_server on
our stack over a TAP device (``--net tap``, its own process). Row 2: unbound in the
namespace with the same zone file as an ``auth-zone`` on a veth peer (the kernel's UDP
and a C server: the reference). The last table times ``Resolver.resolve`` on a cached
name against dnspython's own cache lookup. Prints tables and writes
bench/results/dns.json; namespaces are always deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named dns.py: its own folder must not shadow dnspython's ``dns`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "src"))

ZONES = ROOT / "examples" / "dns_server" / "zones"

CLIENT = """
import random, socket, sys, time
import dns.message
dst, secs, window = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
names = ["www", "alias", "mail", "txt", "ns1"] * 2 + ["missing"]
qs = [dns.message.make_query(f"{n}.example.test", "A", id=i % 65536).to_wire()
      for i, n in enumerate(random.Random(1).choices(names, k=4096))]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, 53)); s.settimeout(1.0)
for _ in range(50):  # until the server answers
    try:
        s.send(qs[0]); s.recv(4096); break
    except OSError:
        time.sleep(0.1)
else:
    print("0 0 0"); sys.exit()
sent = got = lost = 0; i = 0
end = time.monotonic() + secs
s.settimeout(0.2)
for _ in range(window):
    s.send(qs[i % 4096]); i += 1; sent += 1
t0 = time.monotonic()
while time.monotonic() < end:
    try:
        s.recv(4096); got += 1
    except TimeoutError:
        lost += 1
    s.send(qs[i % 4096]); i += 1; sent += 1
print(got, time.monotonic() - t0, lost)
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def client(ns: str, dst: str, secs: float, window: int) -> dict[str, float]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, dst, str(secs), str(window)],
        capture_output=True, text=True, check=True, timeout=secs + 60,
    ).stdout.split()  # fmt: skip
    got, dt, lost = int(out[0]), float(out[1]), int(out[2])
    return {"answers": got, "seconds": dt, "qps": got / dt if dt else 0.0, "timeouts": lost}


def ours(secs: float, window: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    ns, tap = f"mk-{tag}", f"mk-t{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap)
        sh("ip", "-n", ns, "addr", "add", "10.79.0.1/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "up")
        app = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "miragekit", "run",
             "examples/dns_server", "--net", f"tap:{tap}", "--ip", "10.79.0.2/24",
             "--kv", str(ZONES)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )  # fmt: skip
        assert app.stdout is not None
        for line in app.stdout:
            if "answering" in line:
                break
        try:
            return client(ns, "10.79.0.2", secs, window)
        finally:
            app.terminate()
            app.wait(30)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


UNBOUND = """server:
    interface: 10.80.0.2
    port: 53
    access-control: 10.80.0.0/24 allow
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: "{d}/unbound.log"
    do-ip6: no
    num-threads: 1
auth-zone:
    name: "example.test."
    zonefile: "{zone}"
    for-downstream: yes
    for-upstream: no
remote-control:
    control-enable: no
"""


def unbound(secs: float, window: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    a, b = f"mk-a{tag}", f"mk-b{tag}"
    d = Path(tempfile.mkdtemp(prefix="mk-unbound-"))
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"mk-va{tag}", "netns", a,
           "type", "veth", "peer", "name", f"mk-vb{tag}", "netns", b)  # fmt: skip
        sh("ip", "-n", a, "addr", "add", "10.80.0.1/24", "dev", f"mk-va{tag}")
        sh("ip", "-n", b, "addr", "add", "10.80.0.2/24", "dev", f"mk-vb{tag}")
        sh("ip", "-n", a, "link", "set", f"mk-va{tag}", "up")
        sh("ip", "-n", b, "link", "set", f"mk-vb{tag}", "up")
        (d / "unbound.conf").write_text(UNBOUND.format(d=d, zone=ZONES / "example.test.zone"))
        srv = subprocess.Popen(
            ["ip", "netns", "exec", b, "unbound", "-d", "-c", str(d / "unbound.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            return client(a, "10.80.0.2", secs, window)
        finally:
            srv.terminate()
            srv.wait(30)
    finally:
        for n in (a, b):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        subprocess.run(["rm", "-rf", str(d)])


def cache_hit(n: int) -> dict[str, float]:
    """µs per resolve() of a cached name, beside dnspython's Cache.get for the same."""
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    import dns.resolver

    from miragekit.dns import Resolver
    from miragekit.dns._stub import Question

    async def ours() -> float:
        r = Resolver(object(), ["10.0.0.1"])
        q = Question.make("www.example.test", "A")
        assert isinstance(q, Question)
        import dns.rrset

        rr = dns.rrset.from_text("www.example.test.", 300, "IN", "A", "10.0.0.80")
        r.cache.put(q.key, tuple(rr), 300, asyncio.get_running_loop().time())
        t0 = time.perf_counter()
        for _ in range(n):
            await r.resolve("www.example.test", "A")
        return (time.perf_counter() - t0) / n * 1e6

    ours_us = asyncio.run(ours())
    c = dns.resolver.Cache()
    key = (dns.name.from_text("www.example.test"), dns.rdatatype.A, dns.rdataclass.IN)
    c.data[key] = type("Ans", (), {"expiration": time.time() + 300})()  # type: ignore[assignment]
    t0 = time.perf_counter()
    for _ in range(n):
        c.get(key)
    theirs_us = (time.perf_counter() - t0) / n * 1e6
    return {"resolver_hit_us": ours_us, "dnspython_cache_get_us": theirs_us}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=32)
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows = {
        "ours over TAP (examples/dns_server)": ours(args.seconds, args.window),
        "unbound over veth (reference)": unbound(args.seconds, args.window),
    }
    hit = cache_hit(100_000)
    load1 = os.getloadavg()
    print(f"{'server':40} {'queries/s':>10} {'answers':>9} {'timeouts':>9}")
    for name, r in rows.items():
        print(f"{name:40} {r['qps']:10.0f} {r['answers']:9d} {r['timeouts']:9d}")
    ref = rows["unbound over veth (reference)"]["qps"]
    if ref:
        print(f"ours / unbound: {rows['ours over TAP (examples/dns_server)']['qps'] / ref:.2f}")
    print(f"resolver cache hit: {hit['resolver_hit_us']:.2f} µs per resolve(); "
          f"dnspython Cache.get: {hit['dnspython_cache_get_us']:.2f} µs")  # fmt: skip
    print(f"load average: {load0[0]:.2f} at start, {load1[0]:.2f} at end")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "cache": hit, "load": [load0, load1], "args": vars(args)}
    (out / "dns.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
