"""PacketNetif: our stack on a veth end through a ring-mapped AF_PACKET socket, against the
kernel on the other end (in ``mk-`` namespaces): ping, TCP both ways byte-exact,
malformed and oversized frames counted, a clean close, the runner's ``--net packet:``."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from tests.kernelnet import run
from tests.netns import namespaces, ns_exec, set_tx_checksum, sh
from tests.test_runner_dhcp_vxlan import miragekit

from miragekit.link import PacketNetif, RingLayout
from miragekit.result import Error, Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel

KERNEL_IP, OUR_IP = "10.78.0.1", "10.78.0.2"


@dataclass
class Veth:
    kernel_ns: str  # the kernel's end, KERNEL_IP
    our_ns: str  # our end, no address
    kernel_if: str = "mk-pk"
    our_if: str = "mk-po"


@contextmanager
def veth(mtu: int = 1500, tx_csum: bool = False) -> Iterator[Veth]:
    with namespaces("k", "o") as (k, o):
        v = Veth(k, o)
        sh("ip", "link", "add", v.kernel_if, "netns", k, "type", "veth",
           "peer", "name", v.our_if, "netns", o)  # fmt: skip
        for ns, ifname in ((k, v.kernel_if), (o, v.our_if)):
            sh("ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu), "up")
        sh("ip", "-n", k, "addr", "add", f"{KERNEL_IP}/24", "dev", v.kernel_if)
        set_tx_checksum(k, v.kernel_if, tx_csum)
        yield v


async def stack_on(v: Veth, version: int, **kw: object) -> tuple[DirectStackV4, PacketNetif]:
    r = await PacketNetif.connect(v.our_if, netns=v.our_ns, version=version, **kw)  # type: ignore[arg-type]
    assert isinstance(r, Ok), r
    dev = r.value
    s = await DirectStackV4.connect(StackConfig("p", None, dev, Static(f"{OUR_IP}/24")))
    assert isinstance(s, Ok), s
    return s.value, dev


# The kernel's side: a receiver that reads slowly (so that it still holds data we sent
# while the TX ring's slots are written again), and a sender; both print a SHA-256.
SLOW_RECEIVER = r"""
import hashlib, socket, sys, time
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", 5001)); ls.listen(1); print("ready", flush=True)
c, _ = ls.accept(); h = hashlib.sha256(); n = 0
while d := c.recv(65536):
    h.update(d); n += len(d)
    if n < 8 << 20:
        time.sleep(0.003)
print(n, h.hexdigest(), flush=True)
"""

SENDER = r"""
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[2]))
s = socket.create_connection((sys.argv[1], 5002), timeout=30)
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1)
print(hashlib.sha256(data).hexdigest(), flush=True)
"""


@pytest.mark.parametrize("version", [2, 3])
def test_ping_and_tcp_both_ways_byte_exact(version: int) -> None:
    async def main(v: Veth) -> None:
        stack, dev = await stack_on(v, version, layout=RingLayout(rx_blocks=8, tx_blocks=4))
        rc, out = await ns_exec(v.kernel_ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", OUR_IP)
        assert rc == 0 and b" 0% packet loss" in out, out

        # Ours -> kernel: 24 MiB of random bytes through a 128-slot TX ring.
        recv = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", v.kernel_ns, sys.executable, "-c", SLOW_RECEIVER,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert recv.stdout is not None
        assert (await recv.stdout.readline()).strip() == b"ready"
        r = await stack.tcpv4().create_connection((ipaddress.IPv4Address(KERNEL_IP), 5001))
        assert isinstance(r, Ok), r
        data = os.urandom(24 << 20)
        assert await r.value.write(data) == Ok(None)
        await r.value.close()
        n, digest = (await asyncio.wait_for(recv.stdout.readline(), 60)).split()
        assert await recv.wait() == 0
        assert (int(n), digest.decode()) == (len(data), hashlib.sha256(data).hexdigest())
        assert dev.counters.tx_kicks < dev.get_stats_counters().tx_pkts  # bursts, not frames

        # Kernel -> ours.
        got = hashlib.sha256()
        done = asyncio.get_running_loop().create_future()

        async def sink(flow: object) -> None:
            total = 0
            while isinstance(rr := await flow.read(), Ok):  # type: ignore[attr-defined]
                got.update(rr.value)
                total += len(rr.value)
            done.set_result(total)

        stack.listen_tcpv4(port=5002, callback=sink)
        rc, out = await ns_exec(
            v.kernel_ns, sys.executable, "-c", SENDER, OUR_IP, str(16 << 20), timeout=60
        )
        assert rc == 0, out
        assert await asyncio.wait_for(done, 10) == 16 << 20
        assert got.hexdigest() == out.decode().strip()
        c = dev.counters
        assert (c.rx_truncated, c.rx_csum_partial, c.tx_dropped, c.tx_errors) == (0, 0, 0, 0)
        await stack.disconnect()
        await dev.disconnect()

    with veth() as v:
        run(main(v), timeout=120)


# Frames the kernel's side writes raw onto its veth end: a runt, an IPv4 header that
# lies about its length, a TCP segment with a wrong checksum, one frame longer than a
# ring slot, then a good ARP request for our address.
INJECT = r"""
import socket, struct, sys
ifname, dst = sys.argv[1], bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src = s.getsockname()[4]
eth = dst + src + b"\x08\x00"

def ipv4(total, proto=6):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0,
                    socket.inet_aton("10.78.0.1"), socket.inet_aton("10.78.0.2"))
    v = sum(struct.unpack("!10H", h)); v = (v & 0xFFFF) + (v >> 16); v = (v & 0xFFFF) + (v >> 16)
    return h[:10] + struct.pack("!H", ~v & 0xFFFF) + h[12:]

tcp_bad_sum = struct.pack("!HHIIHHHH", 40000, 7, 1, 0, 5 << 12 | 2, 65535, 0xDEAD, 0)
frames = [
    eth,
    eth + ipv4(0xFFFF) + tcp_bad_sum,
    eth + ipv4(40) + tcp_bad_sum,
    eth + ipv4(8140) + tcp_bad_sum + bytes(8100),
    b"\xff" * 6 + src + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1,
        src, socket.inet_aton("10.78.0.1"), bytes(6), socket.inet_aton("10.78.0.2")),
]
for f in frames:
    s.send(f)
print(len(frames))
"""


@pytest.mark.parametrize("version", [2, 3])
def test_malformed_and_oversized_frames_are_counted_not_raised(version: int) -> None:
    async def main(v: Veth) -> None:
        # Both ends at MTU 9000 so that the kernel passes the long frame on; our stack
        # keeps to 1500, and the frame fits neither a 2048-byte V2 slot nor an 8 KiB V3
        # block.
        stack, dev = await stack_on(v, version, mtu=1500, layout=RingLayout(block_size=8192))
        ip = stack.ipv4()
        rc, out = await ns_exec(
            v.kernel_ns, sys.executable, "-c", INJECT, v.kernel_if, dev.mac().packed.hex()
        )
        assert rc == 0, out
        for _ in range(300):  # V3 hands a block over when its timer expires
            if dev.counters.rx_truncated:
                break
            await asyncio.sleep(0.01)
        assert dev.counters.rx_truncated == 1
        # The stack still answers: the ARP request was answered and ping works.
        rc, out = await ns_exec(v.kernel_ns, "ping", "-c", "1", "-W", "2", OUR_IP)
        assert rc == 0, out
        assert stack.tcpv4().stats["bad_checksum"] == 1
        assert ip.counters.rx_bad_length == 1
        assert dev.get_stats_counters().rx_pkts >= 4
        await stack.disconnect()
        await dev.disconnect()

    with veth(mtu=9000) as v:
        run(main(v), timeout=60)


def test_frames_with_checksums_left_to_do_are_counted() -> None:
    """The kernel's end with transmit checksum offload on: its TCP segments arrive with
    the pseudo-header sum only (TP_STATUS_CSUMNOTREADY); counted, as documented."""

    async def main(v: Veth) -> None:
        stack, dev = await stack_on(v, 2)
        await ns_exec(
            v.kernel_ns, sys.executable, "-c",
            f"import socket; socket.create_connection(('{OUR_IP}', 7), timeout=1)",
        )  # fmt: skip
        assert dev.counters.rx_csum_partial >= 1
        await stack.disconnect()
        await dev.disconnect()

    with veth(tx_csum=True) as v:
        run(main(v), timeout=30)


def test_disconnect_unmaps_the_ring_and_closes_the_socket() -> None:
    async def main(v: Veth) -> None:
        r = await PacketNetif.connect(v.our_if, netns=v.our_ns, version=3)
        assert isinstance(r, Ok), r
        dev = r.value
        fd = dev._sock.fileno()
        got: list[bytes] = []

        async def listen() -> None:
            await dev.listen(lambda frame: _keep(got, frame))

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.05)
        assert not dev.closed
        await dev.disconnect()
        await asyncio.wait_for(task, 5)
        assert dev.closed and not dev.connected
        with pytest.raises(OSError):
            os.fstat(fd)
        dev.send(bytes(60))  # after the close: counted, not raised
        assert dev.counters.tx_dropped == 1

    with veth() as v:
        run(main(v), timeout=30)


async def _keep(got: list[bytes], frame: memoryview) -> None:
    got.append(bytes(frame))


def test_connect_errors_are_sentences() -> None:
    async def main() -> None:
        r = await PacketNetif.connect("mk-nosuchif")
        assert isinstance(r, Error)
        assert "no interface 'mk-nosuchif' here" in str(r.error)
        with pytest.raises(ValueError, match="version"):
            await PacketNetif.connect("lo", version=1)

    run(main())


def test_the_runner_takes_net_packet() -> None:
    p = miragekit("run", "examples/echo", "--net", "packet:")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "miragekit: --net packet:: the interface's name is missing (packet:VETH)"
    )
    p = miragekit("run", "examples/echo", "--net", "packet:mk-nosuchif", "--ip", "10.9.0.2/24")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "miragekit: --net packet:mk-nosuchif: packet socket on 'mk-nosuchif': "
        "no interface 'mk-nosuchif' here"
    )
    with veth() as v:
        args = ("--net", f"packet:{v.our_if}", "--ip", f"{OUR_IP}/24")
        p = miragekit("describe", "examples/echo", *args)
        assert "miragekit.link.PacketNetif (mk-po)" in p.stdout, p.stdout + p.stderr


def _rx_packets(ns: str, ifname: str) -> int:
    import json
    import subprocess

    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


async def _kernel_received(v: Veth, before: int, n: int) -> int:
    """Frames the kernel's end counted since ``before``, once it reaches ``n`` (or after
    two seconds, whatever it is then)."""
    for _ in range(200):
        if _rx_packets(v.kernel_ns, v.kernel_if) - before >= n:
            break
        await asyncio.sleep(0.01)
    return _rx_packets(v.kernel_ns, v.kernel_if) - before


def test_a_burst_larger_than_the_tx_ring_arrives_whole_and_in_few_calls() -> None:
    """300 frames in one ``send_frames`` through a 32-slot TX ring: the ring is filled,
    handed over, refilled (or the rest waits for writability); none is lost."""

    async def main(v: Veth) -> None:
        lay = RingLayout(rx_blocks=2, tx_blocks=1)
        r = await PacketNetif.connect(v.our_if, netns=v.our_ns, version=2, layout=lay)
        assert isinstance(r, Ok), r
        dev = r.value
        before = _rx_packets(v.kernel_ns, v.kernel_if)
        dst = b"\x02\x00\x00\x00\x00\x99"  # not the kernel's MAC: it counts and drops them
        frames = [dst + dev.mac().packed + b"\x88\xb5" + bytes([i % 256]) * 986 for i in range(300)]
        dev.send_frames(frames)
        assert await _kernel_received(v, before, 300) == 300
        st, c = dev.get_stats_counters(), dev.counters
        assert (st.tx_pkts, c.tx_dropped, c.tx_errors) == (300, 0, 0)
        assert 300 // 32 <= c.tx_kicks < 300
        await dev.disconnect()

    with veth() as v:
        run(main(v), timeout=30)


def test_a_split_burst_larger_than_the_tx_ring_arrives_whole() -> None:
    """``send_split``: 300 frames given as headers and payloads apart, through a 32-slot
    TX ring: each slot gets both parts (what does not fit now waits, joined); the
    kernel sees every frame, whole."""

    async def main(v: Veth) -> None:
        lay = RingLayout(rx_blocks=2, tx_blocks=1)
        r = await PacketNetif.connect(v.our_if, netns=v.our_ns, version=2, layout=lay)
        assert isinstance(r, Ok), r
        dev = r.value
        before = _rx_packets(v.kernel_ns, v.kernel_if)
        dst = b"\x02\x00\x00\x00\x00\x99"  # not the kernel's MAC: it counts and drops them
        heads = [dst + dev.mac().packed + b"\x88\xb5" for _ in range(300)]
        bodies = [memoryview(bytes([i % 256]) * 986) for i in range(300)]
        dev.send_split(heads, bodies)
        assert await _kernel_received(v, before, 300) == 300
        st, c = dev.get_stats_counters(), dev.counters
        assert (st.tx_pkts, st.tx_bytes, c.tx_dropped, c.tx_errors) == (300, 300_000, 0, 0)
        await dev.disconnect()

    with veth() as v:
        run(main(v), timeout=30)


def test_the_interface_going_away_is_counted_without_a_busy_loop() -> None:
    async def main(v: Veth) -> None:
        stack, dev = await stack_on(v, 2)
        sh("ip", "-n", v.kernel_ns, "link", "del", v.kernel_if)  # both ends go
        t0 = os.times()
        await asyncio.sleep(0.5)
        t1 = os.times()
        assert dev.counters.link_errors >= 1
        assert (t1.user - t0.user) + (t1.system - t0.system) < 0.25  # not spinning
        await stack.disconnect()
        await dev.disconnect()
        assert dev.closed

    with veth() as v:
        run(main(v), timeout=30)
