"""CPU per received frame of our TCP's bulk receive path, in-process, without a kernel.

Run: ``python bench/tcp_rx_frames.py [--frames N] [--repeat R] [--baseline DIR ...]``.

One of our stacks on the virtual switch takes a connection (handshake by hand), then
``--frames`` full-sized data frames (1448 bytes, timestamps, MTU 1500), built
beforehand, go through ``Interface.receive_frame`` as a device loop would hand them:
``--batch`` at a time, each batch followed by the driver's flush and the application's
reads. The figure is ``time.process_time`` per frame over that loop, best of
``--repeat`` (the cases take turns). ``checksum stubbed`` runs the same with the TCP
checksum check replaced by ``True``: what the checksum costs, by difference.
``--baseline DIR`` runs the plain case with the ``miragekit`` of other checkouts
(``DIR/src``, e.g. a worktree of main), each in a child process; this tree's cases run
in children too, so all start alike. No system time is involved: this is the Python
the kernel's frames cost us once they are in our memory. Writes
bench/results/tcp_rx_frames.json.
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
MSS = 1448
ISS = 1_000_000
WINDOW = 20000


def peer_frame(dst_mac: bytes, seg: Any) -> bytes:
    """The peer's frame (PEER to US) carrying TCP segment ``seg`` (a ``TCPRepr``)."""
    tcp = seg.to_bytes(PEER, US)
    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64,
                                6, 0, PEER, US))  # fmt: skip
    v = sum(struct.unpack("!10H", iph))
    v = (v & 0xFFFF) + (v >> 16)
    v = (v & 0xFFFF) + (v >> 16)
    iph[10:12] = (~v & 0xFFFF).to_bytes(2, "big")
    return bytes(dst_mac + PEER_MAC + b"\x08\x00" + bytes(iph) + tcp)


def measure(frames: int, batch: int, stub_checksum: bool) -> float:
    """µs of CPU per frame (in this process, with the miragekit on sys.path)."""
    from miragekit.link import VnetSwitch
    from miragekit.net import TCP
    from miragekit.net import _tcp as tcp_driver
    from miragekit.net._ipstack import IPv4Stack
    from miragekit.result import Ok
    from miragekit.wire.tcp import ACK, SYN, TCPRepr

    if stub_checksum:
        tcp_driver.ipv4_sums_to_zero = lambda packet, extra: True  # type: ignore[attr-defined]

    def frame(dst_mac: bytes, seg: TCPRepr) -> memoryview:
        return memoryview(bytearray(peer_frame(dst_mac, seg)))

    async def main() -> float:
        sw = VnetSwitch()
        sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
        peer = sw.add_interface("p", mac="02:00:00:00:00:01")
        sent: list[TCPRepr] = []

        def hear(f: memoryview) -> None:
            if f[12:14].tobytes() == b"\x08\x00":
                sent.append(TCPRepr.parse(bytes(f[34:]), US, PEER))

        peer.set_receiver(hear)
        loop = asyncio.get_running_loop()
        sb.ipv4.arp.add_static(int.from_bytes(PEER, "big"), PEER_MAC, loop.time())
        tb = TCP(sb.ipv4)
        flows: list[Any] = []

        async def sink(flow: Any) -> None:
            flows.append(flow)
            await asyncio.sleep(3600)

        tb.listen(80, sink)
        mac = sb.ipv4.id().mac().packed
        recv = sb.iface.receive_frame
        recv(frame(mac, TCPRepr(40000, 80, ISS, 0, SYN, 65535, b"", mss=1460, wscale=7,
                                sack_permitted=True, timestamp=(1, 0))))  # fmt: skip
        for _ in range(6):
            await asyncio.sleep(0)
        synack = sent.pop()
        ours = (synack.seq + 1) & 0xFFFFFFFF
        tsecr = synack.timestamp[0] if synack.timestamp else 0
        recv(frame(mac, TCPRepr(40000, 80, ISS + 1, ours, ACK, WINDOW, b"",
                                timestamp=(2, tsecr))))  # fmt: skip
        for _ in range(6):
            await asyncio.sleep(0)
        payload = bytes(range(256)) * 5 + bytes(MSS - 1280)

        def data(i: int) -> TCPRepr:
            seq = (ISS + 1 + i * MSS) & 0xFFFFFFFF
            return TCPRepr(
                40000, 80, seq, ours, ACK, WINDOW, payload, timestamp=(10 + i // batch, tsecr)
            )

        views = [frame(mac, data(i)) for i in range(frames)]
        flow = flows[0]
        t0 = time.process_time()
        for i in range(0, frames, batch):
            for v in views[i : i + batch]:
                recv(v)
            tb._flush()
            while isinstance(flow.read_now(), Ok):
                pass
        t = time.process_time() - t0
        assert tb.frames_fast >= frames, "the frames must take the fast path"
        await tb.disconnect()
        return t / frames * 1e6

    return asyncio.run(main())


def child(src: str, frames: int, batch: int, stub: bool) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", src, str(frames), str(batch), str(int(stub))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _, _, src, frames, batch, stub = sys.argv
        sys.path.insert(0, src)
        import miragekit

        assert Path(miragekit.__file__).is_relative_to(src), (miragekit.__file__, src)
        print(measure(int(frames), int(batch), stub == "1"))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=40, help="frames per device wake-up")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, nargs="+", default=[])
    args = ap.parse_args()
    ours = str(HERE.parent / "src")
    cases: dict[str, tuple[str, bool]] = {}
    for b in args.baseline:
        cases[f"baseline {b.resolve().name}"] = (str(b.resolve() / "src"), False)
    cases["this tree"] = (ours, False)
    cases["this tree, checksum stubbed"] = (ours, True)
    load_start = os.getloadavg()
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):  # the cases take turns, so that load weighs on all
        for name, (tree, stubbed) in cases.items():
            runs[name].append(child(tree, args.frames, args.batch, stubbed))
    load = {"start": load_start, "end": os.getloadavg()}
    width = max(map(len, cases)) + 1
    print(f"{'case':{width}} {'us/frame':>9}  runs")
    rows = []
    for name, rs in runs.items():
        rows.append({"case": name, "us_per_frame": min(rs), "runs": rs})
        print(f"{name:{width}} {min(rs):>9.2f}  {', '.join(f'{r:.2f}' for r in rs)}")
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out = HERE / "results" / "tcp_rx_frames.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"frames": args.frames, "batch": args.batch, "loadavg": load}
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
