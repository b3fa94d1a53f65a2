"""PcapNetif: pass-through, both directions recorded, tshark decodes, same seed same bytes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from miragekit import sim, v1
from miragekit.link import FrameLink, LinkParams, PcapNetif, VnetIf, VnetSwitch
from miragekit.result import Error, Ok

_check_net: type[v1.Network] = PcapNetif
_check_link: type[FrameLink] = PcapNetif

A_IP, B_IP = "10.0.0.1", "10.0.0.2"


def tshark(path: Path, *fields: str) -> list[list[str]]:
    exe = shutil.which("tshark")
    assert exe is not None, "tshark is required (apt-get install tshark)"
    cmd = [exe, "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    return [line.split("|") for line in out.stdout.splitlines()]


def arp_request(a: VnetIf) -> bytes:
    mac = str(a.mac())
    return bytes(
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=A_IP, pdst=B_IP)
    )


def arp_reply(b: VnetIf, a: VnetIf) -> bytes:
    mb, ma = str(b.mac()), str(a.mac())
    return bytes(Ether(src=mb, dst=ma) / ARP(op=2, hwsrc=mb, psrc=B_IP, hwdst=ma, pdst=A_IP))


def udp(src: VnetIf, dst: VnetIf, sport: int, dport: int, payload: bytes) -> bytes:
    s_ip, d_ip = (A_IP, B_IP) if src.name == "a" else (B_IP, A_IP)
    pkt = Ether(src=str(src.mac()), dst=str(dst.mac())) / IP(src=s_ip, dst=d_ip)
    return bytes(pkt / UDP(sport=sport, dport=dport) / Raw(payload))


async def conversation(cap: Path | io.BytesIO, *, link: LinkParams | None, n: int = 5) -> None:
    """a (recorded) ARPs for b, b answers, then n UDP pings that b echoes."""
    sw = VnetSwitch()  # seeded from the simulation
    a = sw.add_interface("a", link=link)
    b = sw.add_interface("b")
    pa = PcapNetif(a, cap, nanosecond=True)
    got: list[bytes] = []
    pa.set_receiver(lambda f: got.append(bytes(f)))

    def b_rx(frame: memoryview) -> None:
        data = bytes(frame)
        if data[12:14] == b"\x08\x06":
            b.send(arp_reply(b, a))
        else:
            b.send(udp(b, a, 7, 5000, data[42:]))

    b.set_receiver(b_rx)
    pa.send(arp_request(a))
    await asyncio.sleep(0.01)
    for i in range(n):
        pa.sendv([udp(a, b, 5000, 7, b"ping %d" % i)[:30], udp(a, b, 5000, 7, b"ping %d" % i)[30:]])
        await asyncio.sleep(0.01)
    await asyncio.sleep(1)
    await pa.disconnect()


@pytest.mark.tools
def test_tshark_decodes_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    sim.run(conversation(path, link=LinkParams(latency=0.001)), seed=3)
    rows = tshark(
        path,
        "frame.time_epoch",
        "eth.src",
        "eth.dst",
        "arp.opcode",
        "ip.src",
        "udp.srcport",
        "udp.dstport",
        "udp.payload",
    )
    assert len(rows) == 2 + 2 * 5
    a_mac, b_mac = "02:6d:6b:00:00:01", "02:6d:6b:00:00:02"
    t, src, dst, op, *_ = rows[0]
    assert (src, dst, op) == (a_mac, "ff:ff:ff:ff:ff:ff", "1")
    assert float(t) == 0.0
    assert rows[1][1:4] == [b_mac, a_mac, "2"]
    # the reply crosses a's 1 ms link on its way in
    assert float(rows[1][0]) == pytest.approx(0.002)
    for i in range(5):
        out, back = rows[2 + 2 * i], rows[3 + 2 * i]
        assert out[1:3] == [a_mac, b_mac] and out[4:7] == [A_IP, "5000", "7"]
        assert bytes.fromhex(out[7]) == b"ping %d" % i
        assert back[1:3] == [b_mac, a_mac] and back[4:7] == [B_IP, "7", "5000"]
        assert bytes.fromhex(back[7]) == b"ping %d" % i
        assert float(back[0]) - float(out[0]) == pytest.approx(0.002)
    # nanosecond file: magic, version, linktype
    head = path.read_bytes()[:24]
    assert struct.unpack("<IHHiIII", head) == (0xA1B23C4D, 2, 4, 0, 0, 262144, 1)


def test_same_seed_gives_byte_identical_pcap() -> None:
    def capture(seed: int) -> str:
        buf = io.BytesIO()
        link = LinkParams(latency=0.001, jitter=0.004, loss=0.2, duplicate=0.1, reorder=0.1)
        sim.run(conversation(buf, link=link, n=40), seed=seed)
        data = buf.getvalue()
        assert len(data) > 24 + 40 * 16
        return hashlib.sha256(data).hexdigest()

    assert capture(11) == capture(11)
    assert capture(11) != capture(12)


@pytest.mark.tools
def test_microseconds_snaplen_real_time_and_listen(tmp_path: Path) -> None:
    path = tmp_path / "rt.pcap"

    async def main() -> list[bytes]:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        pa = PcapNetif(a, path, snaplen=100, buffer_size=0)
        got: list[bytes] = []

        async def on_frame(frame: memoryview) -> None:
            got.append(bytes(frame))

        listener = asyncio.create_task(pa.listen(on_frame))
        await asyncio.sleep(0)
        big = udp(a, b, 5000, 7, b"z" * 1000)
        await pa.write(big)
        await pa.writev([big[:10], big[10:]])
        b.send(udp(b, a, 7, 5000, b"back"))
        await asyncio.sleep(0.05)
        assert path.stat().st_size > 24  # buffer_size=0 writes every record through
        assert pa.mac() == a.mac() and pa.mtu == 1500 and pa.id() == a.id()
        assert pa.get_stats_counters().tx_pkts == 2
        await pa.disconnect()
        await asyncio.wait_for(listener, 1)
        return got

    t0 = time.time()
    got = asyncio.run(main())
    t1 = time.time()
    assert len(got) == 1
    rows = tshark(path, "frame.time_epoch", "frame.len", "frame.cap_len", "udp.dstport")
    assert [r[1:] for r in rows] == [
        ["1042", "100", "7"],
        ["1042", "100", "7"],
        ["46", "46", "5000"],
    ]
    for r in rows:
        assert t0 - 1 <= float(r[0]) <= t1 + 1
    assert struct.unpack("<I", path.read_bytes()[:4]) == (0xA1B2C3D4,)


def test_bounded_buffer_and_connect(tmp_path: Path) -> None:
    path = tmp_path / "b.pcap"

    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        b.set_receiver(lambda f: None)
        match await PcapNetif.connect(str(path), netif=a):
            case Ok(pa):
                pass
            case other:
                raise AssertionError(other)
        assert isinstance(await PcapNetif.connect(str(path)), Error)
        assert isinstance(await PcapNetif.connect(str(tmp_path / "no" / "x"), netif=a), Error)
        frame = udp(a, b, 5000, 7, b"q" * 1000)
        for _ in range(3000):  # ~3 MB through a 1 MiB buffer
            pa.send(frame)
            assert len(pa._writer._buf) < (1 << 20) + 2000
        size_before = path.stat().st_size
        assert size_before >= 2 << 20
        await pa.disconnect()
        assert path.stat().st_size == 24 + 3000 * (16 + len(frame))
        assert pa.records == 3000
        assert not a.connected
        pa.send(frame)  # after close: passes through unrecorded (and a drops it)

    sim.run(main())
    with pytest.raises(ValueError, match="snaplen"):
        PcapNetif(VnetSwitch(seed=0).add_interface("x"), io.BytesIO(), snaplen=0)


def test_byte_identical_across_processes_and_hash_seeds() -> None:
    code = (
        "import hashlib, io\n"
        "from miragekit import sim\n"
        "from miragekit.link import LinkParams\n"
        "from tests.test_pcap import conversation\n"
        "buf = io.BytesIO()\n"
        "link = LinkParams(latency=0.001, jitter=0.004, loss=0.2, duplicate=0.1, reorder=0.1)\n"
        "sim.run(conversation(buf, link=link, n=30), seed=5)\n"
        "print(hashlib.sha256(buf.getvalue()).hexdigest())\n"
    )
    root = Path(__file__).resolve().parent.parent
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": f"{root / 'src'}:{root}"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


@pytest.mark.tools
def test_mirror_port_captures_the_whole_segment(tmp_path: Path) -> None:
    path = tmp_path / "seg.pcap"

    async def main() -> None:
        sw = VnetSwitch()
        a, b, c = (sw.add_interface(n) for n in "abc")
        cap = PcapNetif(sw.add_interface("mon", mirror=True), path)  # nobody listens on it
        for p in (a, b, c):
            p.set_receiver(lambda f: None)
        a.send(arp_request(a))
        b.send(arp_reply(b, a))
        a.send(udp(a, b, 5000, 7, b"hi"))
        c.send(udp(c, a, 5000, 7, b"from c"))
        await asyncio.sleep(0.01)
        await cap.disconnect()

    sim.run(main(), seed=1)
    rows = tshark(path, "eth.src", "eth.dst", "_ws.col.Protocol")
    assert [r[0][-1] + r[1][-1] for r in rows] == ["1f", "21", "12", "31"]
    assert [r[2] for r in rows] == ["ARP", "ARP", "ECHO", "ECHO"]


def test_a_failing_capture_does_not_break_the_network() -> None:
    class Full(io.BytesIO):
        def write(self, b: object) -> int:
            raise OSError(28, "No space left on device")

    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        got: list[bytes] = []
        b.set_receiver(lambda f: got.append(bytes(f)))
        cap = PcapNetif(a, Full(), buffer_size=100)
        for i in range(5):
            cap.send(udp(a, b, 5000, 7, b"x%d" % i))
        await asyncio.sleep(0.01)
        assert len(got) == 5
        assert cap.error is not None and cap.error.errno == 28
        await cap.disconnect()

    sim.run(main())


def test_records_reach_the_file_within_a_second(tmp_path: Path) -> None:
    """A capture is readable while the program runs, and a kill loses at most the last
    second (docs/hardening.md): records are written within ``flush_interval``."""
    path = tmp_path / "live.pcap"

    async def main() -> None:
        sw = VnetSwitch(seed=1)
        a, b = sw.add_interface("a"), sw.add_interface("b")
        b.set_receiver(lambda f: None)
        pa = PcapNetif(a, path)  # the default 1 MiB buffer: one frame never fills it
        frame = udp(a, b, 5000, 7, b"live")
        pa.send(frame)
        assert path.stat().st_size == 0  # buffered
        await asyncio.sleep(1.2)
        assert path.stat().st_size == 24 + 16 + len(frame)
        pa.send(frame)
        await asyncio.sleep(1.2)
        assert path.stat().st_size == 24 + 2 * (16 + len(frame))
        await pa.disconnect()

    asyncio.run(main())
