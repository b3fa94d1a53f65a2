"""CPU per connection of our echo server, in-process, without a kernel: the Python that
``bench/tcp_conns.py``'s connections cost us once their frames are in our memory.

Run: ``python bench/tcp_conn_frames.py [--conns N] [--inflight K] [--repeat R]
[--baseline DIR ...] [--instructions]``.

One of our stacks on the virtual switch serves ``examples/echo``'s TCP echo on port 7
(its ``echo_tcp``, run by the driver as ``miragekit run`` runs it). A scripted client
plays the kernel client of ``bench/tcp_conns.py``, ``--inflight`` connections at a time,
each: SYN (MSS, SACK-permitted, timestamps, window scale), the handshake's ACK and 1 byte,
the ACK of the echo and FIN, the last ACK. Each round hands the server every in-flight
connection's next frames through ``Interface.receive_frame``, as one device wake-up
would, then lets the event loop run until every one of them was answered; the figure is
``time.process_time`` of those two steps per connection (the client's own frame building
and the parsing of the answers are outside it), best of ``--repeat``. No system time is
involved, and other work on the machine moves it much less than the kernel benchmark's
figures. ``--baseline DIR`` runs the same with the ``miragekit`` of other checkouts
(``DIR/src``), the cases taking turns, each in a child process. Also shown: the event
loop's turns (selector polls) per connection. ``--instructions`` adds the machine
instructions per connection of each case, counted by valgrind's cachegrind (needs
``valgrind``; slow, but exact and unmoved by other work on the machine: the steady figure
for cuts of a few per cent). The client reads our answers with its own small parser, so
its share is the same in every case. Writes bench/results/tcp_conn_frames.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEER, US = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
PEER_MAC = b"\x02\x00\x00\x00\x00\x01"
_IP = struct.Struct("!BBHHHBBH4s4s")


_ANSWER = struct.Struct("!HHIIBB")  # ports, numbers, data offset, flags


def _tsval(opts: memoryview) -> int | None:
    """TSval of an answer's options (MSS, NOP, window scale, SACK-permitted, timestamps,
    or NOP, NOP, timestamps: what our stack sends), walked option by option."""
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if kind == 8:
            return int.from_bytes(opts[i + 2 : i + 6], "big")
        i += max(opts[i + 1], 2)
    return None


def peer_frame(dst_mac: bytes, tcp: bytes) -> memoryview:
    """The client's frame (PEER to US) carrying the TCP segment bytes ``tcp``."""
    iph = bytearray(_IP.pack(0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, PEER, US))
    v = sum(struct.unpack("!10H", iph))
    v = (v & 0xFFFF) + (v >> 16)
    v = (v & 0xFFFF) + (v >> 16)
    iph[10:12] = (~v & 0xFFFF).to_bytes(2, "big")
    return memoryview(bytearray(dst_mac + PEER_MAC + b"\x08\x00" + bytes(iph) + tcp))


def measure(conns: int, inflight: int) -> tuple[float, float]:
    """(µs of CPU per connection, loop turns per connection), in this process, with the
    miragekit on sys.path."""
    from miragekit.cli.run import _freeze_start_up as freeze_start_up
    from miragekit.cli.run import _thaw as thaw
    from miragekit.link import VnetSwitch
    from miragekit.net import TCP
    from miragekit.net._ipstack import IPv4Stack
    from miragekit.result import Ok
    from miragekit.wire.tcp import ACK, FIN, PSH, SYN, TCPRepr

    async def echo_tcp(flow: Any) -> None:  # examples/echo's, as miragekit run serves it
        while True:
            match await flow.read():
                case Ok(data):
                    if not isinstance(await flow.write(data), Ok):
                        return
                case _:
                    return

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        selector: Any = loop._selector  # type: ignore[attr-defined]
        select = selector.select
        turns = 0

        def counting(timeout: float | None = None) -> Any:
            nonlocal turns
            turns += 1
            return select(timeout)

        selector.select = counting
        sw = VnetSwitch()
        sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
        peer = sw.add_interface("p", mac="02:00:00:00:00:01")
        heard: list[bytes] = []
        peer.set_receiver(lambda f: heard.append(bytes(f)))
        sb.ipv4.arp.add_static(int.from_bytes(PEER, "big"), PEER_MAC, loop.time())
        tb = TCP(sb.ipv4)
        tb.listen(7, echo_tcp)
        mac = sb.ipv4.id().mac().packed
        recv = sb.iface.receive_frame
        # Per connection (by client port): [step, our ISN + 1, server's ISN + 1, TSecr].
        state: dict[int, list[int]] = {}
        next_port = 10000
        clock = time.process_time

        async def run(count: int) -> float:
            """CPU seconds of the server's work for ``count`` connections."""
            nonlocal next_port
            done = 0
            cpu = 0.0
            last = next_port + count
            while done < count:
                while len(state) < inflight and next_port < last:
                    state[next_port] = [0, 1000, 0, 0]
                    next_port += 1
                batch: list[memoryview] = []
                finishing = [p for p, st in state.items() if st[0] == 3]
                ts = len(heard) + 1
                for port, (step, c, s, tsecr) in state.items():
                    if step == 0:
                        segs = [TCPRepr(port, 7, c - 1, 0, SYN, 64240, b"", 1460, 7, True, (),
                                        (ts, 0))]  # fmt: skip
                    elif step == 1:
                        segs = [
                            TCPRepr(port, 7, c, s, ACK, 502, b"", timestamp=(ts, tsecr)),
                            TCPRepr(port, 7, c, s, ACK | PSH, 502, b"x", timestamp=(ts, tsecr)),
                        ]
                    elif step == 2:
                        segs = [
                            TCPRepr(port, 7, c + 1, s + 1, ACK, 502, b"", timestamp=(ts, tsecr)),
                            TCPRepr(port, 7, c + 1, s + 1, ACK | FIN, 502, b"",
                                    timestamp=(ts, tsecr)),
                        ]  # fmt: skip
                    else:
                        segs = [
                            TCPRepr(port, 7, c + 2, s + 2, ACK, 502, b"", timestamp=(ts, tsecr))
                        ]
                    batch.extend(peer_frame(mac, bytes(g.to_bytes(PEER, US))) for g in segs)
                t0 = clock()
                for f in batch:
                    recv(f)
                for _ in range(50):
                    await asyncio.sleep(0)
                    # Answered: a SYN-ACK, the echo, our FIN, nothing (the last ACK).
                    if len(heard) >= len(state) - len(finishing):
                        break
                else:
                    raise RuntimeError("the server did not answer")
                await asyncio.sleep(0)  # the last ACK's turn, and anything late
                cpu += clock() - t0
                for f in heard:
                    if f[12:14] != b"\x08\x00":
                        continue
                    # Read here, not by the TCPRepr.parse of the tree measured: the
                    # client's work stays the same in every case (--instructions).
                    _sp, dport, seq, _ack, off, flags = _ANSWER.unpack_from(f, 34)
                    hl = (off >> 4) * 4
                    st = state[dport]
                    if (tsv := _tsval(f[54 : 34 + hl])) is not None:
                        st[3] = tsv
                    if flags & SYN:
                        st[0], st[2] = 1, seq + 1
                    elif len(f) > 34 + hl:
                        st[0] = 2
                    elif flags & FIN:
                        st[0] = 3
                heard.clear()
                for port in finishing:  # their last ACK went in this round
                    del state[port]
                    done += 1
            return cpu

        await run(200)  # warm-up: the first connections import and fill caches
        # As ``miragekit run`` does before it starts the application (docs/running.md):
        # what start-up left alive is frozen out of the collector's passes, and young
        # collections come less often.
        freeze_start_up()
        turns0 = turns
        try:
            cpu = await run(conns)
        finally:
            thaw()
        stats = tb.stats
        await tb.disconnect()
        assert stats["rst_sent"] == 0, stats
        return cpu / conns * 1e6, (turns - turns0) / conns

    return asyncio.run(main())


def child(src: str, conns: int, inflight: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", src, str(conns), str(inflight)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu, turns = out.strip().splitlines()[-1].split()
    return float(cpu), float(turns)


def instructions(src: str, conns: int, inflight: int) -> float:
    """Machine instructions per connection (server and the scripted client, whose work is
    the same in every case), counted by valgrind's cachegrind: the difference between a
    run of 300 connections and one of ``300 + conns``, so start-up and warm-up cancel.
    Exact and repeatable (to about 0.1%) whatever else the machine runs."""
    counts = []
    for n in (300, 300 + conns):
        err = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
             sys.executable, __file__, "--child", src, str(n), str(inflight)],
            check=True, capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        ).stderr  # fmt: skip
        refs = [ln for ln in err.splitlines() if "I   refs:" in ln or "I refs:" in ln]
        if not refs:
            sys.exit(f"no instruction count from valgrind: {err.strip()[-300:]}")
        counts.append(int(refs[-1].split(":")[1].replace(",", "")))
    return (counts[1] - counts[0]) / conns


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _, _, src, conns, inflight = sys.argv
        sys.path.insert(0, src)
        import miragekit

        assert Path(miragekit.__file__).is_relative_to(src), (miragekit.__file__, src)
        print(*measure(int(conns), int(inflight)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, nargs="+", default=[])
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions per connection under valgrind (slow)")  # fmt: skip
    args = ap.parse_args()
    if args.conns < 1 or args.inflight < 1 or args.repeat < 1:
        sys.exit("need --conns, --inflight and --repeat of at least 1")
    cases: dict[str, str] = {}
    for b in args.baseline:
        cases[f"baseline {b.resolve().name}"] = str(b.resolve() / "src")
    cases["this tree"] = str(HERE.parent / "src")
    load_start = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.repeat):  # the cases take turns, so that load weighs on all
        for name, tree in cases.items():
            runs[name].append(child(tree, args.conns, args.inflight))
    irs: dict[str, float] = {}
    if args.instructions:
        for name, tree in cases.items():
            irs[name] = instructions(tree, args.conns, args.inflight)
    load = {"start": load_start, "end": os.getloadavg()}
    width = max(map(len, cases)) + 1
    ir_head = f" {'instr/conn':>10}" if irs else ""
    print(f"{'case':{width}} {'us/conn':>8} {'turns/conn':>10}{ir_head}  runs (us/conn)")
    rows = []
    for name, rs in runs.items():
        best = min(rs)
        row: dict[str, Any] = {"case": name, "us_per_conn": best[0], "turns_per_conn": best[1],
                               "runs": rs}  # fmt: skip
        ir_cell = ""
        if name in irs:
            row["instructions_per_conn"] = irs[name]
            ir_cell = f" {irs[name]:>10,.0f}"
        rows.append(row)
        print(f"{name:{width}} {best[0]:>8.2f} {best[1]:>10.3f}{ir_cell}  "
              f"{', '.join(f'{r[0]:.2f}' for r in rs)}")  # fmt: skip
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out = HERE / "results" / "tcp_conn_frames.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"conns": args.conns, "inflight": args.inflight, "loadavg": load}
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
