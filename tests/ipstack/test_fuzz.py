"""Fuzz the input path: valid frames, mutated, truncated and random, into the stack.

Nothing may be raised (the stack counts its own exceptions in ``internal_errors``), and a
corrupted header must show up in the drop counters, not in delivery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from tests.fuzzkit import fix_frame, valid_sum_frame
from tests.ipstack.memlink import OUR_MAC, PEER, PEER_MAC, US, MemLink

from miragekit.net import UDP as StackUDP
from miragekit.net import Ethif, IPv4, IPv4Stack
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, Static
from miragekit.v1 import StackConfig

A = ipaddress.IPv4Address
ETH = Ether(src=PEER_MAC, dst=OUR_MAC)
SEEDS = [
    bytes(
        Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER, pdst=US)
    ),
    bytes(ETH / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER, hwdst=OUR_MAC, pdst=US)),
    bytes(ETH / IP(src=PEER, dst=US) / ICMP(type=8, id=1, seq=2) / (b"p" * 40)),
    bytes(ETH / IP(src=PEER, dst=US) / UDP(sport=1000, dport=7) / b"hello"),
    bytes(ETH / IP(src=PEER, dst=US) / UDP(sport=1000, dport=9) / b"closed"),
    bytes(ETH / IP(src=PEER, dst=US, options=b"\x01\x01\x01\x00") / UDP(dport=7) / b"opts"),
    bytes(ETH / IP(src=PEER, dst=US, proto=17, id=9, flags="MF", frag=0) / (b"f" * 64)),
    bytes(ETH / IP(src=PEER, dst=US, proto=17, id=9, frag=8) / (b"g" * 16)),
    bytes(
        ETH
        / IP(src=PEER, dst=US)
        / TCP(
            sport=40000,
            dport=80,
            flags="S",
            seq=7,
            window=65535,
            options=[
                ("MSS", 1460),
                ("WScale", 7),
                ("SAckOK", b""),
                ("Timestamp", (1, 0)),
                ("NOP", None),
                ("NOP", None),
            ],
        )
    ),
    bytes(ETH / IP(src=PEER, dst=US, proto=6) / bytes(20)),
]

DROPS = {
    "ethif": ("rx_short", "rx_not_for_us", "rx_unknown_type"),
    "arp": ("rx_malformed", "rx_ignored", "conflicts"),
    "ipv4": (
        "rx_short",
        "rx_bad_version",
        "rx_bad_length",
        "rx_bad_checksum",
        "rx_not_for_us",
        "rx_martian",
        "rx_no_protocol",
    ),
    "reassembly": ("dropped_bad", "dropped_overlap", "dropped_limit"),
    "icmp": ("rx_malformed",),
    "udp": ("rx_malformed", "rx_bad_checksum", "rx_no_listener"),
}


def drops(stack: IPv4Stack, layer: str | None = None) -> int:
    c = stack.counters()
    return sum(
        c[lay][name] for lay, names in DROPS.items() if layer in (None, lay) for name in names
    )


@st.composite
def mutated(draw: Any) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(frame) - 1))
        frame[i] = draw(st.integers(0, 255))
    how = draw(st.sampled_from(["keep", "truncate", "extend"]))
    if how == "truncate":
        del frame[draw(st.integers(0, len(frame))) :]
    elif how == "extend":
        frame += draw(st.binary(max_size=64))
    return bytes(frame)


async def fresh_stack() -> IPv4Stack:
    stack = await IPv4Stack.connect(MemLink(), cidr=f"{US}/24", rng=random.Random(0))

    async def sink(*_: Any) -> None:
        pass

    stack.listen_udpv4(port=7, callback=sink)
    return stack


async def fresh_direct() -> DirectStackV4:
    """The whole stack, TCP included (the real driver, a listener on port 80 that
    echoes), on an in-memory link: a fresh one for every example."""
    r = await DirectStackV4.connect(StackConfig("mem", None, MemLink(), Static(f"{US}/24")))
    assert isinstance(r, Ok), r
    stack = r.value

    async def echo(flow: Any) -> None:
        while isinstance(got := await flow.read(), Ok):
            await flow.write(got.value)

    async def sink(*_: Any) -> None:
        pass

    stack.listen_tcpv4(port=80, callback=echo)
    stack.listen_udpv4(port=7, callback=sink)
    return stack


def feed_fresh(frames: list[bytes]) -> dict[str, dict[str, int]]:
    """A fresh DirectStackV4 takes ``frames`` (letting its tasks run after each); nothing
    may be raised or counted as an internal error. Its counters, for the caller."""

    async def main() -> dict[str, dict[str, int]]:
        stack = await fresh_direct()
        # The peer's ARP request first: our answers need no resolution (which would wait).
        stack.ip_stack.receive_frame(memoryview(bytearray(SEEDS[0])))
        try:
            for frame in frames:
                stack.ip_stack.receive_frame(memoryview(bytearray(frame)))
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert stack.ip_stack.internal_errors == 0
            assert stack.tcpv4().internal_errors == 0
            return stack.counters()
        finally:
            await stack.disconnect()

    return asyncio.run(main())


FUZZ = settings(max_examples=300)
FRAMES = st.lists(st.one_of(mutated(), st.binary(max_size=200)), min_size=1, max_size=4)


@FUZZ
@given(FRAMES)
def test_fuzz_nothing_raised(frames: list[bytes]) -> None:
    c = feed_fresh(frames)
    assert c["ethif"]["rx_frames"] == len(frames) + 1  # and the ARP request first


@FUZZ
@given(st.lists(valid_sum_frame(SEEDS), min_size=1, max_size=4))
def test_fuzz_past_the_checksums_nothing_raised(frames: list[bytes]) -> None:
    """Mutated frames whose IPv4, TCP, UDP and ICMP sums were recomputed reach the
    parsers behind the checks (TCP options, ICMP, UDP, reassembly) of a fresh stack."""
    feed_fresh(frames)


def test_valid_sum_mutations_pass_the_checks() -> None:
    """The fuzzer above is not stopped by checksums: a frame mutated past the IP header
    and fixed up is never dropped for its checksum."""
    tcp_seed = SEEDS[-2]
    for i in range(34, len(tcp_seed)):
        frame = bytearray(tcp_seed)
        frame[i] ^= 0x5A
        c = feed_fresh([bytes(fix_frame(frame))])
        assert c["ipv4"]["rx_bad_checksum"] == 0 and c["tcp"]["bad_checksum"] == 0, (i, c)


IP_SEEDS = [s for s in SEEDS if s[12:14] == b"\x08\x00"]


def on_fresh_stack(body: Callable[[IPv4Stack], None]) -> None:
    """``body`` on a fresh IPv4Stack (its own loop), then its tasks run once."""

    async def main() -> None:
        stack = await fresh_stack()
        body(stack)
        await asyncio.sleep(0)
        assert stack.internal_errors == 0

    asyncio.run(main())


@FUZZ
@given(st.sampled_from(IP_SEEDS), st.data())
def test_fuzz_corrupt_ip_header_is_dropped(seed: bytes, data: st.DataObject) -> None:
    frame = bytearray(seed)
    hl = (frame[14] & 0x0F) * 4
    i = data.draw(st.integers(14, 14 + hl - 1))
    frame[i] = data.draw(st.integers(0, 255).filter(lambda v: v != seed[i]))

    def body(stack: IPv4Stack) -> None:
        stack.receive_frame(memoryview(frame))
        assert stack.internal_errors == 0
        assert drops(stack, "ipv4") == 1
        assert stack.ipv4.counters.rx_delivered == 0

    on_fresh_stack(body)


UDP_SEED = bytes(ETH / IP(src=PEER, dst=US) / UDP(sport=1000, dport=7) / b"some payload")


@FUZZ
@given(st.integers(34, len(UDP_SEED) - 1), st.integers(0, 255))
def test_fuzz_corrupt_udp_is_dropped(i: int, v: int) -> None:
    assume(v != UDP_SEED[i])
    frame = bytearray(UDP_SEED)
    frame[i] = v

    def body(stack: IPv4Stack) -> None:
        stack.receive_frame(memoryview(frame))
        assert stack.internal_errors == 0
        if frame[40:42] != b"\0\0":  # else the checksum became "none": a valid datagram
            assert drops(stack, "udp") == 1
            assert stack.udp.counters.rx_delivered == 0

    on_fresh_stack(body)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 8191), st.booleans(), st.integers(0, 1600)),
        max_size=30,
    )
)
def test_fuzz_fragments_stay_within_limits(frags: list[tuple[int, int, bool, int]]) -> None:
    def body(stack: IPv4Stack) -> None:
        cfg = stack.ipv4.reassembler.config
        for ident, off, mf, n in frags:
            pkt = (
                ETH
                / IP(src=PEER, dst=US, proto=17, id=ident, frag=off, flags="MF" if mf else 0)
                / (b"z" * n)
            )
            stack.receive_frame(memoryview(bytearray(bytes(pkt))))
            assert stack.internal_errors == 0
            r = stack.ipv4.reassembler
            assert r.bytes_held <= cfg.max_bytes and len(r) <= cfg.max_datagrams

    on_fresh_stack(body)


@FUZZ
@given(st.lists(st.one_of(mutated(), valid_sum_frame(SEEDS), st.binary(max_size=200)), max_size=4))
def test_fuzz_v1_async_path(frames: list[bytes]) -> None:
    """The seed's path: Ethif.input -> IPv4.input -> UDP.input, mutated frames into fresh
    layers, then the seed's own datagram still arrives."""
    loop = asyncio.new_event_loop()
    try:
        link = MemLink()
        eth = Ethif(link)
        ip = IPv4(eth, loop=loop, rng=random.Random(0))
        loop.run_until_complete(ip.set_ip_netmask(ipaddress.IPv4Network("10.0.0.0/24")))
        loop.run_until_complete(ip.set_ip(ipaddress.IPv4Address(US)))
        udp = StackUDP(ip)
        got: list[bytes] = []

        async def on_udp(src: A, dst: A, sport: int, buf: memoryview) -> None:
            got.append(bytes(buf))

        async def arpv4(b: memoryview) -> None:
            await ip.input_arpv4(b)

        async def ipv4(b: memoryview) -> None:
            async def tcp(s: A, d: A, p: memoryview) -> None:
                pass

            async def udp_in(s: A, d: A, p: memoryview) -> None:
                await udp.input(s, d, p, listeners=lambda port: on_udp if port == 7 else None)

            async def default(proto: int, s: A, d: A, p: memoryview) -> None:
                pass

            await ip.input(b, tcp=tcp, udp=udp_in, default=default)

        async def ipv6(b: memoryview) -> None:
            pass

        for frame in frames:
            loop.run_until_complete(
                eth.input(memoryview(bytearray(frame)), arpv4=arpv4, ipv4=ipv4, ipv6=ipv6)
            )
        loop.run_until_complete(eth.input(memoryview(SEEDS[3]), arpv4=arpv4, ipv4=ipv4, ipv6=ipv6))
        assert got[-1] == b"hello"
    finally:
        loop.close()
