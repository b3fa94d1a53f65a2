"""CPU per sent segment of our TCP's bulk send path, in-process, without a kernel.

Run: ``python bench/tcp_tx_frames.py [--mb N] [--ack-every K] [--repeat R]
[--baseline DIR ...]``.

One of our stacks sits on a :class:`~miragekit.link.PacketNetif` whose rings are an
anonymous mapping and whose socket is one end of a Unix socket pair: the device's own
code fills TX slots and kicks (one ``send`` per burst, as over a veth), and a peer
written here plays the kernel. At each kick it takes the frames out of the TX slots
(marking them free, as the kernel does once a frame is gone), acknowledges every
``--ack-every`` segments and the last of each burst (timestamps echoed, a wide window),
puts those ACKs in the RX ring and has the device read them on the loop's next turn, as
the kernel's ACKs wait in the ring for the next wake-up. The application writes 1 MiB
blocks, as ``examples/iperf3`` does. The figure is ``time.process_time`` per
1448-byte segment over the transfer, less the peer's own time: the Python our
sending costs, without the system time of a real device (``bench/tap_segcost.py`` and
``bench/tcp_iperf.py`` measure that). Best of ``--repeat``; each case in a child process
(``--baseline DIR``: the ``miragekit`` of other checkouts, ``DIR/src``, taking turns
with this tree). Writes bench/results/tcp_tx_frames.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import mmap
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from proc_cpu import child_result, run_child  # noqa: E402
from tcp_rx_frames import PEER, PEER_MAC, US, peer_frame  # noqa: E402

MSS = 1448
PEER_ISS = 5_000_000
CHUNK = 1 << 20
_H2 = struct.Struct("=IIIHH")
_SEQ = struct.Struct("!HI")  # IPv4 total length at 16, TCP seq at 38: read apart


def measure(total: int, ack_every: int) -> dict[str, float]:
    """CPU per segment and counts (in this process, with the miragekit on sys.path)."""
    from miragekit.link import PacketNetif
    from miragekit.link._packet import FRAME_SIZE, H2_LEN, RingLayout
    from miragekit.macaddr import MacAddr
    from miragekit.net import TCP
    from miragekit.net._ipstack import IPv4Stack
    from miragekit.result import Ok
    from miragekit.wire.tcp import ACK, SYN, TCPRepr

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        layout = RingLayout()
        ring = mmap.mmap(-1, layout.block_size * (layout.rx_blocks + layout.tx_blocks))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        theirs.setblocking(False)
        dev = PacketNetif(ours, ring, "bench", version=2, layout=layout, mtu=1500,
                          mac=MacAddr("02:00:00:00:00:02"), loop=loop)  # fmt: skip
        view = memoryview(ring)
        tx_base = layout.block_size * layout.rx_blocks
        tx_slots = layout.per_block * layout.tx_blocks
        rx_slots = layout.per_block * layout.rx_blocks
        st = {"peer_s": 0.0, "segs": 0, "acks": 0, "kicks": 0, "frames": 0}
        peer = {"tx": 0, "rx": 0, "rcv_nxt": 0, "ours": 0, "tsval": 0, "unacked": 0}
        handshake: list[TCPRepr] = []
        mac = b"\x02\x00\x00\x00\x00\x02"

        def put_rx(f: bytes) -> None:
            off = peer["rx"] * FRAME_SIZE
            view[off + H2_LEN : off + H2_LEN + len(f)] = f
            _H2.pack_into(view, off, 1, len(f), len(f), H2_LEN, H2_LEN + 14)
            peer["rx"] = (peer["rx"] + 1) % rx_slots

        def ack() -> None:
            seg = TCPRepr(5201, peer["ours"], PEER_ISS + 1, peer["rcv_nxt"], ACK, 65535, b"",
                          timestamp=(7, peer["tsval"]))  # fmt: skip
            put_rx(peer_frame(mac, seg))
            st["acks"] += 1
            peer["unacked"] = 0

        def kick() -> None:
            real_kick()
            t0 = time.process_time()
            st["kicks"] += 1
            with_acks = False
            while True:
                off = tx_base + peer["tx"] * FRAME_SIZE
                if view[off] != 1:
                    break
                (n,) = struct.unpack_from("=I", view, off + 4)
                f = view[off + H2_LEN : off + H2_LEN + n]
                st["frames"] += 1
                if f[12] == 8 and f[13] == 0 and f[23] == 6:
                    tl, seq = _SEQ.unpack_from(f, 16)[0], struct.unpack_from("!I", f, 38)[0]
                    flags = f[47]
                    hl = (f[46] >> 4) * 4
                    plen = tl - 20 - hl
                    tsval = struct.unpack_from("!I", f, 58)[0] if hl == 32 else 0
                    if flags & SYN:
                        handshake.append(TCPRepr.parse(bytes(f[34 : 14 + tl]), US, PEER))
                    elif plen and seq == peer["rcv_nxt"]:
                        peer["rcv_nxt"] = (seq + plen) & 0xFFFFFFFF
                        st["segs"] += 1
                        peer["tsval"] = tsval
                        peer["unacked"] += 1
                        if peer["unacked"] >= ack_every:
                            ack()
                            with_acks = True
                view[off : off + 4] = bytes(4)  # the slot is free again
                peer["tx"] = (peer["tx"] + 1) % tx_slots
            if peer["unacked"]:
                ack()
                with_acks = True
            try:
                while theirs.recv(16) is not None:
                    pass
            except BlockingIOError:
                pass
            if with_acks:
                loop.call_soon(dev._on_readable)
            st["peer_s"] += time.process_time() - t0

        real_kick = dev._kick
        dev._kick = kick  # type: ignore[method-assign]
        stack = await IPv4Stack.connect(dev, cidr="10.0.0.2/24")
        stack.ipv4.arp.add_static(int.from_bytes(PEER, "big"), PEER_MAC, loop.time())
        tcp = TCP(stack.ipv4)
        task = asyncio.ensure_future(
            tcp.create_connection((ipaddress.IPv4Address("10.0.0.1"), 5201))
        )
        for _ in range(6):
            await asyncio.sleep(0)
        syn = handshake.pop()
        peer["ours"] = syn.src_port
        peer["rcv_nxt"] = (syn.seq + 1) & 0xFFFFFFFF
        tsval = syn.timestamp[0] if syn.timestamp else 0
        put_rx(peer_frame(mac, TCPRepr(5201, syn.src_port, PEER_ISS, peer["rcv_nxt"], SYN | ACK,
                                  65535, b"", mss=1460, wscale=7, sack_permitted=True,
                                  timestamp=(7, tsval))))  # fmt: skip
        dev._on_readable()
        r = await task
        assert isinstance(r, Ok), r
        flow = r.value
        start = peer["rcv_nxt"]
        block = memoryview(bytes(range(256)) * (CHUNK // 256))
        for k in st:
            st[k] = 0 if k != "peer_s" else 0.0
        t0 = time.process_time()
        sent = 0
        while sent < total:
            n = min(CHUNK, total - sent)
            assert await flow.write(block[:n]) == Ok(None)
            sent += n
        while (peer["rcv_nxt"] - start) & 0xFFFFFFFF < total:
            await asyncio.sleep(0)
        t = time.process_time() - t0 - st["peer_s"]
        flow.abort()
        await tcp.disconnect()
        segs = st["segs"]
        return {
            "us_per_seg": t / segs * 1e6,
            "segs_per_ack": segs / max(1, st["acks"]),
            "frames_per_kick": st["frames"] / max(1, st["kicks"]),
        }

    return asyncio.run(main())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _, _, src, total, ack_every = sys.argv
        sys.path.insert(0, src)
        child_result(src, measure(int(total), int(ack_every)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50, help="MB per run")
    ap.add_argument("--ack-every", type=int, nargs="+", default=[2, 32],
                    help="the peer's ACK for every K segments (and the last of a burst)")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, nargs="+", default=[])
    args = ap.parse_args()
    trees = {f"baseline {b.resolve().name}": str(b.resolve() / "src") for b in args.baseline}
    trees["this tree"] = str(HERE.parent / "src")
    total = args.mb * 1_000_000
    load_start = os.getloadavg()
    runs: dict[tuple[str, int], list[dict[str, float]]] = {
        (name, k): [] for k in args.ack_every for name in trees
    }
    for _ in range(args.repeat):  # the cases take turns, so that load weighs on all
        for name, k in runs:
            runs[(name, k)].append(run_child(__file__, trees[name], total, k))
    load = {"start": load_start, "end": os.getloadavg()}
    width = max(map(len, trees)) + 1
    print(
        f"{'tree':{width}} {'ack every':>9} {'us/seg':>7} {'segs/ack':>8} {'frames/kick':>11}  runs"
    )
    rows: list[dict[str, Any]] = []
    for (name, k), rs in runs.items():
        best = min(rs, key=lambda r: r["us_per_seg"])
        listed = ", ".join(f"{r['us_per_seg']:.2f}" for r in rs)
        rows.append({"tree": name, "ack_every": k, **best, "runs": [r["us_per_seg"] for r in rs]})
        print(
            f"{name:{width}} {k:>9} {best['us_per_seg']:>7.2f} {best['segs_per_ack']:>8.1f} "
            f"{best['frames_per_kick']:>11.1f}  {listed}"
        )
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out = HERE / "results" / "tcp_tx_frames.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"mb": args.mb, "loadavg": load}
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
