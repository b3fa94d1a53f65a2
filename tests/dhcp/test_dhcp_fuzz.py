"""DHCP fuzzing past the checksum: mutated messages into the sans-I/O server and client,
and mutated frames (UDP checksum recomputed) through an IPv4 stack into the server.

A DHCP message has no checksum of its own; the UDP one carrying it does, so at the frame
level the sums are recomputed (tests/fuzzkit.py) and the mutation reaches the parser.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from tests.dhcp.test_client import make, reply, state
from tests.dhcp.test_server import mac, server_config
from tests.fuzzkit import fix_frame, mutation, valid_sum_frame
from tests.ipstack.memlink import MemLink

from miragekit.dhcp import DhcpServer, State, Transmit
from miragekit.net import IPv4Stack
from miragekit.net._dhcp_server import DhcpServerDriver
from miragekit.wire.dhcp import DhcpMessageType, DhcpOp, DhcpRepr

A = ipaddress.IPv4Address
MT = DhcpMessageType
OPTIONS_AT = 240  # the fixed BOOTP fields and the magic cookie come first


def full_request(mt: DhcpMessageType, i: int = 1) -> bytes:
    """A client message with every option the server reads, and some it does not."""
    return DhcpRepr(
        op=DhcpOp.REQUEST,
        xid=0x1000 + i,
        chaddr=mac(i),
        message_type=mt,
        requested_ip=A("10.0.0.100"),
        server_id=A("10.0.0.1"),
        client_id=b"\x01" + mac(i).packed,
        parameter_request_list=(1, 3, 6, 15, 26, 51, 54, 58, 59, 121),
        host_name="fuzz",
        lease_time=3600,
        other=((60, b"vendor"), (250, b"\x00" * 7)),
    ).to_bytes()


CLIENT_SEEDS = [full_request(mt) for mt in (MT.DISCOVER, MT.REQUEST, MT.RELEASE, MT.DECLINE)]


@settings(max_examples=300)
@given(st.lists(st.sampled_from([0, OPTIONS_AT]).flatmap(
    lambda start: mutation(CLIENT_SEEDS[start % 4], start)), min_size=1, max_size=8))  # fmt: skip
def test_server_takes_mutated_messages(msgs: list[bytearray]) -> None:
    """Mutated client messages (the options above all): a reply or a counted drop, never
    an exception, and never two clients on one address."""
    server = DhcpServer(server_config(pool_last=A("10.0.0.102"), lease_time=60))
    server.handle_message(0.0, full_request(MT.DISCOVER, 2))
    for i, m in enumerate(msgs):
        for r in server.handle_message(float(i), m):
            assert r.message.op is DhcpOp.REPLY
            DhcpRepr.from_bytes(r.payload)  # what we send parses
        leases = server.leases(float(i))
        assert len({x.address for x in leases}) == len(leases)
    c = server.counters
    assert c.rx_messages == len(msgs) + 1


@settings(max_examples=300)
@given(st.sampled_from([MT.OFFER, MT.ACK, MT.NAK]), st.data())
def test_client_takes_mutated_replies(mt: DhcpMessageType, data: st.DataObject) -> None:
    """A client waiting for an answer gets a mutated OFFER, ACK or NAK to its own
    request (the xid right, so the options are parsed and used): never an exception,
    and a lease only with an address."""
    c = make()
    c.start(0.0)
    c.handle_timer(0.0)
    (out,) = [o for o in c.messages_to_send(0.0) if isinstance(o, Transmit)]
    if mt is not MT.OFFER:  # an answer to the REQUEST that follows an offer
        c.handle_message(0.05, reply(out.message, MT.OFFER))
        (out,) = [o for o in c.messages_to_send(0.05) if isinstance(o, Transmit)]
    seed = reply(out.message, mt, host_name="h", renewal_time=30, rebinding_time=50)
    m = data.draw(mutation(seed, data.draw(st.sampled_from([OPTIONS_AT, 28]))))
    c.handle_message(0.1, m)
    c.messages_to_send(0.1)
    c.events()
    if state(c) is State.BOUND:
        assert c.lease is not None and c.lease.interface.ip != A(0)


DHCP_FRAMES = [
    bytes(
        Ether(src=f"02:00:00:00:00:0{i}", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / seed
    )
    for i, seed in enumerate(CLIENT_SEEDS, 1)
]
UDP_PAYLOAD_AT = 14 + 20 + 8


def driver_counters(frames: list[bytes]) -> tuple[int, int]:
    """Frames into a fresh IPv4Stack serving DHCP; (messages the server got, replies)."""

    async def main() -> tuple[int, int]:
        link = MemLink()
        stack = await IPv4Stack.connect(link, cidr="10.0.0.1/24", rng=random.Random(0))
        driver = DhcpServerDriver(stack, server_config())
        driver.start()
        for f in frames:
            stack.receive_frame(memoryview(bytearray(f)))
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert stack.internal_errors == 0
        await driver.stop()
        return driver.server.counters.rx_messages, len(link.sent)

    return asyncio.run(main())


@settings(max_examples=200)
@given(st.lists(valid_sum_frame(DHCP_FRAMES, UDP_PAYLOAD_AT), min_size=1, max_size=4))
def test_server_on_a_stack_takes_mutated_frames(frames: list[bytes]) -> None:
    """Through Ethernet, IPv4 and UDP (checksums recomputed) to the server's parser."""
    driver_counters(frames)


def test_mutated_frames_with_fixed_sums_reach_the_server() -> None:
    """A change in the DHCP payload with the UDP sum fixed reaches the server; without
    the fix UDP drops it (the fuzzing above would test only UDP's checksum)."""
    frames, broken = [], []
    for i in range(UDP_PAYLOAD_AT, UDP_PAYLOAD_AT + 300, 3):
        f = bytearray(DHCP_FRAMES[0])
        f[i] ^= 0x11
        broken.append(bytes(f))
        frames.append(bytes(fix_frame(f)))
    assert driver_counters(frames)[0] == len(frames)
    assert driver_counters(broken)[0] == 0
