"""Whole stacks on an in-process Ethernet hub: our DHCP server configures our clients.

The hub stands in for the virtual switch (not on this branch): every frame goes to every
other port, on the next loop iteration. Frames are real (Ethernet, ARP, IPv4, UDP).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Coroutine, Sequence
from typing import Any, Self, TypeVar

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from tests.ipstack.memlink import OUR_MAC, MemLink

from miragekit.dhcp import Declined, DhcpClientConfig, DhcpServerConfig, Released
from miragekit.macaddr import MacAddr
from miragekit.net import DhcpClientDriver, DhcpServerDriver, IPv4Stack, dhcp_configure
from miragekit.result import Error, Ok, Timeout
from miragekit.v1 import Buffer, FrameCallback, Network, Stats

T = TypeVar("T")
A = ipaddress.IPv4Address
FAST = DhcpClientConfig(
    arp_probes=1, arp_probe_interval=0.02, arp_announce_wait=0.05, decline_wait=0.1
)
SERVER_CONFIG = DhcpServerConfig(
    server_ip=A("10.0.0.1"),
    network=ipaddress.IPv4Network("10.0.0.0/24"),
    pool_first=A("10.0.0.100"),
    pool_last=A("10.0.0.109"),
    lease_time=3600,
    routers=(A("10.0.0.1"),),
    mtu=1400,
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


class Hub:
    def __init__(self) -> None:
        self.ports: list[HubPort] = []

    def port(self, i: int) -> HubPort:
        p = HubPort(self, MacAddr(bytes((2, 0, 0, 0, 1, i))))
        self.ports.append(p)
        return p

    def deliver(self, sender: HubPort, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        for p in self.ports:
            if p is not sender and p.receiver is not None:
                loop.call_soon(p.receiver, memoryview(frame))


class HubPort:
    """A NETWORK + FrameLink on a :class:`Hub`."""

    def __init__(self, hub: Hub, mac: MacAddr) -> None:
        self.hub = hub
        self._mac = mac
        self.receiver: Any = None
        self._stats = Stats()

    @classmethod
    async def connect(cls, id: Any) -> Ok[Self]:
        raise NotImplementedError

    def id(self) -> str:
        return str(self._mac)

    async def disconnect(self) -> None:
        self.receiver = None

    @property
    def mtu(self) -> int:
        return 1500

    def set_receiver(self, fn: Any) -> None:
        self.receiver = fn

    def send(self, frame: Buffer) -> None:
        self.hub.deliver(self, bytes(frame))

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        self.hub.deliver(self, b"".join(bufs))

    async def write(self, buf: Buffer) -> None:
        self.send(buf)

    async def writev(self, bufs: Sequence[Buffer]) -> None:
        self.sendv(bufs)

    async def listen(self, fn: FrameCallback) -> None:
        pass

    def mac(self) -> MacAddr:
        return self._mac

    def get_stats_counters(self) -> Stats:
        return self._stats

    def reset_stats_counters(self) -> None:
        pass


_check: type[Network] = HubPort


async def server_on(hub: Hub) -> tuple[IPv4Stack, DhcpServerDriver]:
    stack = await IPv4Stack.connect(hub.port(1), cidr="10.0.0.1/24")
    driver = DhcpServerDriver(stack, SERVER_CONFIG)
    driver.start()
    return stack, driver


async def client_on(hub: Hub, i: int) -> IPv4Stack:
    return await IPv4Stack.connect(hub.port(i), cidr="0.0.0.0/0")


async def configured(stack: IPv4Stack) -> DhcpClientDriver:
    r = await dhcp_configure(stack, timeout=5.0, config=FAST)
    assert isinstance(r, Ok), r
    return r.value


def test_two_clients_configured_by_our_server_talk_to_each_other() -> None:
    async def main() -> None:
        hub = Hub()
        _, server = await server_on(hub)
        s1, s2 = await client_on(hub, 2), await client_on(hub, 3)
        d1, d2 = await asyncio.gather(configured(s1), configured(s2))
        assert d1.lease is not None and d2.lease is not None
        a1, a2 = d1.lease.address, d2.lease.address
        assert a1 != a2 and {a1, a2} <= {A(f"10.0.0.{i}") for i in range(100, 110)}
        assert s1.ipv4.get_ip() == [a1] and s2.ipv4.get_ip() == [a2]
        assert s1.ipv4.get_ip_gateways() == [A("10.0.0.1")] and s1.ipv4.mtu == 1400
        assert sorted(x.address for x in server.server.leases(0.0)) == sorted([a1, a2])
        # The addresses carry traffic: UDP from one client to the other.
        got: asyncio.Future[tuple[A, bytes]] = asyncio.get_running_loop().create_future()

        async def on_udp(src: A, dst: A, sport: int, buf: memoryview) -> None:
            got.set_result((src, bytes(buf)))

        s2.listen_udpv4(port=7000, callback=on_udp)
        await s1.udp.write(b"hello neighbour", dest_ip=a2, dest_port=7000)
        assert await asyncio.wait_for(got, 2) == (a1, b"hello neighbour")
        # Stopping releases the lease on the server and removes the address here.
        await d1.stop()
        await asyncio.sleep(0.05)
        assert [x.address for x in server.server.leases(0.0)] == [a2]
        assert s1.ipv4.get_ip() == [A(0)] and s1.ipv4.mtu == 1500
        assert isinstance(d1.history[-1][1], Released)
        await d2.stop()
        for s in (s1, s2):
            assert s.internal_errors == 0

    run(main())


def test_decline_over_arp_then_another_address() -> None:
    async def main() -> None:
        hub = Hub()
        _, server = await server_on(hub)
        # A host the server does not know of already uses the first pool address.
        squatter = await IPv4Stack.connect(hub.port(9), cidr="10.0.0.100/24")
        s = await client_on(hub, 2)
        d = await configured(s)
        assert d.lease is not None and d.lease.address == A("10.0.0.101")
        (declined,) = [e for _, e in d.history if isinstance(e, Declined)]
        assert declined == Declined(A("10.0.0.100"), MacAddr(bytes((2, 0, 0, 0, 1, 9))))
        assert server.server.counters.declines == 1
        assert squatter.ipv4.arp.counters.replies_sent >= 1
        await d.stop()

    run(main())


def test_no_server_times_out() -> None:
    async def main() -> None:
        hub = Hub()
        s = await client_on(hub, 2)
        r = await dhcp_configure(s, timeout=0.2, config=FAST)
        assert isinstance(r, Error) and r.error == Timeout()
        assert s.ipv4.get_ip() == [A(0)]
        assert 68 not in s.udp._listeners  # the client stopped

    run(main())


def test_discover_frame_on_the_wire_and_configure() -> None:
    """What an unconfigured stack sends, decoded by scapy: 0.0.0.0:68 to the broadcast
    address and MAC; then ``IPv4.configure`` sets and removes an address at once."""

    async def main() -> None:
        link = MemLink()
        stack = await IPv4Stack.connect(link, cidr="0.0.0.0/0")
        link.take()
        driver = DhcpClientDriver(stack, config=FAST)
        driver.start()
        (frame,) = link.take()
        assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == OUR_MAC
        assert (frame[IP].src, frame[IP].dst) == ("0.0.0.0", "255.255.255.255")
        assert (frame[UDP].sport, frame[UDP].dport) == (68, 67)
        assert frame[BOOTP].op == 1 and frame[BOOTP].chaddr[:6] == MacAddr(OUR_MAC).packed
        assert ("message-type", 1) in frame[DHCP].options
        # The checksums are the ones scapy computes itself.
        again = Ether(bytes(frame))
        del again[IP].chksum
        del again[UDP].chksum
        again = Ether(bytes(again))
        assert (again[IP].chksum, again[UDP].chksum) == (frame[IP].chksum, frame[UDP].chksum)
        await driver.stop()

        ip = stack.ipv4
        ip.configure(ipaddress.IPv4Interface("10.0.0.7/24"), [A("10.0.0.1")])
        assert ip.get_ip() == [A("10.0.0.7")] and ip.get_ip_gateways() == [A("10.0.0.1")]
        assert ip.get_ip_netmasks() == [ipaddress.IPv4Network("10.0.0.0/24")]
        (announce,) = link.take()  # gratuitous ARP for the new address
        assert announce[ARP].psrc == announce[ARP].pdst == "10.0.0.7"
        ip.configure(None)
        assert ip.get_ip() == [A(0)] and ip.get_ip_gateways() == [] and link.take() == []
        # Unconfigured, the ARP probe has sender address 0.0.0.0 (RFC 5227).
        ip.arp.probe(int(A("10.0.0.9")))
        (probe,) = link.take()
        assert (probe[ARP].op, probe[ARP].psrc, probe[ARP].pdst) == (1, "0.0.0.0", "10.0.0.9")
        assert ip.arp.counters.probes_sent == 1
        await stack.disconnect()

    run(main())
