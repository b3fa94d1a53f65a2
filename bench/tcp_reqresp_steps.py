"""What one keep-alive request costs our stack's path in-process, counted, not timed: a
measure that other load on the machine does not move, for before/after comparisons of
the request/response path (frame in, ACK processing, delivery, reply segment, frame out).

Run: ``python bench/tcp_reqresp_steps.py [--conns 16] [--rounds 300] [--before DIR]
[--bytecodes]`` (no root; needs ``valgrind`` unless ``--bytecodes``).

A UNIX datagram socketpair stands in for the TAP file descriptor (``TapNetif``, as
tests/test_tap_batch_flush.py does); the peer's frames are built here as the kernel would
send them. ``--conns`` connections are opened to an ``asyncio.Protocol`` served through
``miragekit.aio`` that answers every request with a fixed 160-byte reply; each round
sends one request on every connection (each ACKing the reply before, echoing its TSval)
and waits for the replies. The event loop's clock moves by 0.3 ms per round, so no timer
fires and every run takes the same path.

Default: the user-space instructions per request of ``--rounds`` rounds, counted by
callgrind (counting on only for them), for this tree and, with ``--before DIR``, for
``DIR/src`` too. The figure includes the peer's side (building and parsing frames in
Python here, the same for every tree), so only differences mean anything. ``--bytecodes``:
instead, the Python bytecodes each miragekit function runs per request (``sys.settrace``
opcode events), the largest first: where the steps are; and the Python calls of
miragekit functions per request (each ~0.08 µs of the interpreter's frame work). Prints a table and writes
bench/results/tcp_reqresp_steps.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
OURS, PEER = ipaddress.IPv4Address("10.9.0.2"), ipaddress.IPv4Address("10.9.0.1")
OUR_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
REQUEST = b"GET / HTTP/1.1\r\nHost: 10.9.0.2\r\n\r\n"
REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n"
    b"Date: Mon, 07 Dec 2026 06:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.9\r\n\r\nhello\n"
)


def _sum(data: bytes) -> int:
    s = int.from_bytes(data + b"\0" * (len(data) & 1), "big") % 0xFFFF
    return s or (0xFFFF if any(data) else 0)


def peer_frame(sport: int, seq: int, ack: int, flags: int, opts: bytes, payload: bytes) -> bytes:
    """A frame from the peer's port ``sport`` to our port 80, both checksums right."""
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, ack, (20 + len(opts)) << 2, flags, 502, 0, 0)
    tcp += opts + payload
    pseudo = PEER.packed + OURS.packed + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", 0xFFFF - _sum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                     PEER.packed, OURS.packed)  # fmt: skip
    ip = ip[:10] + struct.pack("!H", 0xFFFF - _sum(ip)) + ip[12:]
    return OUR_MAC + PEER_MAC + b"\x08\x00" + ip + tcp


def _ts(tsv: int, tse: int) -> bytes:
    return bytes([1, 1, 8, 10]) + struct.pack("!II", tsv, tse)


class Reply(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(REPLY)


async def serve(conns: int, rounds: int, mode: str) -> dict[str, Any]:
    """The loop of the module's docstring, in this process (the tree on sys.path)."""
    from miragekit import aio
    from miragekit.link import TapNetif
    from miragekit.macaddr import MacAddr
    from miragekit.net import IPv4Stack
    from miragekit.net._tcp import TCP
    from miragekit.stack import DirectStackV4

    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (ours, peer):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    tap = TapNetif(ours.fileno(), "pair", mtu=1500, mac=MacAddr(OUR_MAC), loop=loop)
    ip = await IPv4Stack.connect(tap, cidr=f"{OURS}/24")
    ip.ipv4.arp.add_static(int(PEER), PEER_MAC, loop.time())
    stack = DirectStackV4(cast(Any, None), ip, TCP(ip.ipv4))
    with aio.bind(stack):
        server = await loop.create_server(Reply, str(OURS), 80)
    clock = [loop.time()]
    loop.time = lambda: clock[0]  # type: ignore[method-assign]  # moves per round only

    async def settle() -> list[bytes]:
        for _ in range(20):
            await asyncio.sleep(0)
        return drain()

    def drain() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(peer.recv(4096))
            except BlockingIOError:
                return out

    await settle()
    tsv = 1000
    state: dict[int, list[int]] = {}  # peer port: [next seq, next ack, TSval to echo]
    syn_opts = struct.pack("!BBH", 2, 4, 1460) + bytes([4, 2, 8, 10])
    for i in range(conns):
        peer.send(peer_frame(40000 + i, 5000, 0, 0x02, syn_opts + struct.pack("!II", tsv, 0)
                             + b"\1\3\3\7", b""))  # fmt: skip
    for f in await settle():
        if f[47] == 0x12:  # SYN-ACK
            state[struct.unpack_from("!H", f, 36)[0]] = [
                5001,
                struct.unpack_from("!I", f, 38)[0] + 1,
                0,
            ]
    assert len(state) == conns, "handshakes"
    for sport, (seq, ack, _) in state.items():
        peer.send(peer_frame(sport, seq, ack, 0x10, _ts(tsv, 0), b""))
    await settle()

    async def run(k: int) -> None:
        nonlocal tsv
        for _ in range(k):
            clock[0] += 0.0003
            tsv += 1
            for sport, s in state.items():
                peer.send(peer_frame(sport, s[0], s[1], 0x18, _ts(tsv, s[2]), REQUEST))
                s[0] += len(REQUEST)
            want = conns
            while want:
                await asyncio.sleep(0)
                for f in drain():
                    tl = struct.unpack_from("!H", f, 16)[0]
                    plen = tl - 20 - (f[46] >> 4) * 4
                    if plen:
                        s = state[struct.unpack_from("!H", f, 36)[0]]
                        s[1] = (struct.unpack_from("!I", f, 38)[0] + plen) & 0xFFFFFFFF
                        s[2] = struct.unpack_from("!I", f, 58)[0]
                        want -= 1

    await run(200)  # warm-up: caches, specialised bytecode
    result: dict[str, Any] = {"requests": rounds * conns}
    if mode == "callgrind":
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=True)
        await run(rounds)
        subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, check=True)
    elif mode == "plain":  # neither counted nor traced (bench/tcp_driver_runs.py counts)
        await run(rounds)
    else:
        counts: collections.Counter[str] = collections.Counter()
        calls: collections.Counter[str] = collections.Counter()

        def tracer(frame: FrameType, event: str, arg: Any) -> Any:
            code = frame.f_code
            frame.f_trace_lines = False
            if "/miragekit/" not in code.co_filename:
                return None
            frame.f_trace_opcodes = True
            name = code.co_filename.split("/miragekit/")[-1] + ":" + code.co_qualname
            calls[name] += 1  # the "call" event: once per Python call of the function

            def local(fr: FrameType, ev: str, a: Any) -> Any:
                if ev == "opcode":
                    counts[name] += 1
                return local

            return local

        sys.settrace(tracer)
        await run(rounds)
        sys.settrace(None)
        n = rounds * conns
        result["bytecodes_per_request"] = sum(counts.values()) / n
        result["functions"] = {k: v / n for k, v in counts.most_common()}
        result["calls_per_request"] = sum(calls.values()) / n
        result["calls"] = {k: v / n for k, v in calls.most_common()}
    server.close()
    ours.close()
    peer.close()
    return result


def worker(args: argparse.Namespace) -> None:
    from miragekit import aio

    print(json.dumps(aio.run(serve(args.conns, args.rounds, args.worker))))


def measure(src: Path, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Run the loop with the tree ``src`` in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", mode, "--conns", str(args.conns),
           "--rounds", str(args.rounds)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        if mode == "callgrind":
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}", *cmd]  # fmt: skip
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        res: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
        if mode == "callgrind":
            totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M)
            assert totals, "callgrind wrote no totals"
            res["instructions_per_request"] = int(totals.group(1)) / res["requests"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--before", metavar="DIR", help="also the stack of DIR/src")
    ap.add_argument("--bytecodes", action="store_true",
                    help="bytecodes per function instead of instructions")  # fmt: skip
    ap.add_argument("--top", type=int, default=30, help="--bytecodes: functions shown")
    ap.add_argument("--worker", choices=["callgrind", "bytecodes"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    trees = {"this tree": ROOT / "src"}
    if args.before:
        if not (Path(args.before) / "src" / "miragekit").is_dir():
            sys.exit(f"--before {args.before}: no src/miragekit there")
        trees["--before"] = Path(args.before).resolve() / "src"
    mode = "bytecodes" if args.bytecodes else "callgrind"
    load0 = os.getloadavg()
    rows = {name: measure(src, args, mode) for name, src in trees.items()}
    print(f"request/response in-process, {args.conns} connections, {args.rounds} rounds")
    if mode == "callgrind":
        print(f"{'tree':12} {'requests':>9} {'instr/request':>14}")
        for name, r in rows.items():
            print(f"{name:12} {r['requests']:9} {r['instructions_per_request']:14,.0f}")
        if args.before:
            a, b = (rows[k]["instructions_per_request"] for k in ("this tree", "--before"))
            print(f"this tree against --before: {100 * (a - b) / b:+.1f}%")
    else:
        for name, r in rows.items():
            print(f"{name}: {r['bytecodes_per_request']:,.0f} miragekit bytecodes and "
                  f"{r['calls_per_request']:.1f} Python calls of miragekit per request")  # fmt: skip
        names = list(rows)
        top = list(rows[names[0]]["functions"])[: args.top]
        print(f"{'function':55} " + " ".join(f"{n:>12}" for n in names))
        for f in top:
            print(f"{f:55} " + " ".join(f"{rows[n]['functions'].get(f, 0):12.1f}" for n in names))
    load1 = os.getloadavg()
    print(f"load average at start {load0}, at end {load1}")
    out = ROOT / "bench" / "results" / "tcp_reqresp_steps.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"conns": args.conns, "rounds": args.rounds, "mode": mode,
                               "rows": rows, "load": [load0, load1]}, indent=1))  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
