"""Our DHCP client on a TAP device against dnsmasq, the server, in a ``mk-`` namespace.

dnsmasq runs in the namespace on the TAP's kernel side (10.77.0.1/24) with its own lease
file and log; the kernel's ``ping`` checks that the leased address and the default route
carry real traffic. T1/T2 are forced short with options 58/59 (dnsmasq's shortest lease
is 120 s), so renewal happens within seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.flowkit import http_once
from tests.kernelnet import KERNEL_IP, KernelNet, run
from tests.netns import sh
from tests.nstat import snapshot

from miragekit.dhcp import Bound, Declined, DhcpClientConfig, Event, Nak, Released, Renewed
from miragekit.link import TapNetif
from miragekit.net import DhcpClientDriver, IPv4Stack, dhcp_configure
from miragekit.result import Error, Ok, Timeout

pytestmark = pytest.mark.kernel

A = ipaddress.IPv4Address
FAR_IP = "10.99.0.1"  # on the namespace's loopback: reachable from us only via the router
FAST = DhcpClientConfig(arp_probes=1, arp_probe_interval=0.1, arp_announce_wait=0.3)


class Dnsmasq:
    def __init__(self, knet: KernelNet, tmp: Path) -> None:
        self.knet = knet
        self.leases = tmp / "leases"
        self.log = tmp / "dnsmasq.log"
        self.tmp = tmp
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, first: str, last: str, *extra: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.knet.ns,
            "/usr/sbin/dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
            "--user=root", f"--interface={self.knet.tap}", "--bind-interfaces",
            f"--pid-file={self.tmp / 'pid'}",
            f"--dhcp-range={first},{last},255.255.255.0,120s",
            f"--dhcp-leasefile={self.leases}", "--log-dhcp", f"--log-facility={self.log}",
            f"--dhcp-option=option:router,{KERNEL_IP}",
            *extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(100):  # until it listens on port 67
            await asyncio.sleep(0.05)
            if "started" in self.log_text():
                return
        raise AssertionError(f"dnsmasq did not start: {self.log_text()}")

    async def stop(self) -> None:
        p = self.proc
        if p is not None and p.returncode is None:
            p.terminate()
            await p.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def lease_lines(self) -> list[str]:
        return self.leases.read_text().splitlines() if self.leases.exists() else []


async def with_dnsmasq(
    knet: KernelNet,
    tmp: Path,
    body: Callable[[IPv4Stack, Dnsmasq], Awaitable[None]],
    *extra: str,
    ping_check: bool = False,
    first: str = "10.77.0.50",
    last: str = "10.77.0.60",
) -> None:
    """Run ``body`` with dnsmasq serving ``first``-``last``; its check that an address is free
    before offering it (an ICMP echo, 3 s) only when ``ping_check``."""
    r = await TapNetif.connect(knet.tap)
    assert isinstance(r, Ok), r
    netif = r.value
    knet.move_in()
    sh("ip", "-n", knet.ns, "addr", "add", f"{FAR_IP}/32", "dev", "lo")
    server = Dnsmasq(knet, tmp)
    if not ping_check:
        extra = (*extra, "--no-ping")
    await server.start(first, last, *extra)
    stack = await IPv4Stack.connect(netif, cidr="0.0.0.0/0")
    try:
        await body(stack, server)
        assert stack.internal_errors == 0
    finally:
        await stack.disconnect()
        await netif.disconnect()
        await server.stop()


async def configure(stack: IPv4Stack, timeout: float = 15.0) -> DhcpClientDriver:
    r = await dhcp_configure(stack, timeout=timeout, config=FAST)
    assert isinstance(r, Ok), r
    return r.value


def in_range(addr: A, first: str, last: str) -> bool:
    return A(first) <= addr <= A(last)


def test_lease_obtained_and_used_for_traffic(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: IPv4Stack, server: Dnsmasq) -> None:
        assert stack.ipv4.get_ip() == [A(0)]
        # dnsmasq pings the address it is about to offer; before it has offered, the kernel
        # cannot resolve that address (we do not answer ARP for it), so its echo would be
        # stuck in ARP. Neighbour entries for the whole range make it reach our stack.
        mac = str(stack.ethif.mac())
        for last in range(50, 61):
            sh(
                "ip",
                "-n",
                knet.ns,
                "neigh",
                "replace",
                f"10.77.0.{last}",
                "lladdr",
                mac,
                "dev",
                knet.tap,
                "nud",
                "permanent",
            )
        before = snapshot(knet.ns)
        driver = await configure(stack)
        lease = driver.lease
        assert lease is not None and in_range(lease.address, "10.77.0.50", "10.77.0.60")
        assert lease.network == ipaddress.IPv4Network("10.77.0.0/24")
        assert lease.server_id == A(KERNEL_IP) and lease.routers == (A(KERNEL_IP),)
        assert lease.lease_time == 120
        # Applied to the stack: address, netmask, default route.
        assert stack.ipv4.get_ip() == [lease.address]
        assert stack.ipv4.get_ip_netmasks() == [ipaddress.IPv4Network("10.77.0.0/24")]
        assert stack.ipv4.get_ip_gateways() == [A(KERNEL_IP)]
        ours = str(lease.address)
        # The kernel reaches our address; replies to a far source take the default route.
        rc, out = await knet.exec("ping", "-c", "2", "-i", "0.2", "-W", "2", ours)
        assert rc == 0 and b"2 received" in out, out
        rc, out = await knet.exec("ping", "-c", "2", "-i", "0.2", "-W", "2", "-I", FAR_IP, ours)
        assert rc == 0 and b"2 received" in out, out
        # dnsmasq saw the whole exchange, and wrote the lease.
        log = server.log_text()
        for step in ("DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK"):
            assert step in log, log
        assert any(mac in line and ours in line for line in server.lease_lines())
        assert driver.client.counters.arp_probes == 1
        assert stack.ipv4.arp.counters.probes_sent == 1
        assert [type(e) for _, e in driver.history] == [Bound]
        # dnsmasq pinged the address before offering it: the unconfigured stack did
        # not answer for an address that is not its own.
        # The kernel counts every echo request the namespace sent (dnsmasq's and ping's):
        # each one reached the stack, the four pings got replies, dnsmasq's got none.
        sent = snapshot(knet.ns).get("IcmpMsgOutType8", 0) - before.get("IcmpMsgOutType8", 0)
        icmp = stack.ipv4.icmp.counters
        assert sent == 5, f"dnsmasq did not ping before offering: {sent} echo requests"
        assert icmp.rx_echo_requests == sent and icmp.echo_requests_ignored == 1
        assert icmp.tx_echo_replies == 4
        await driver.stop()

    run(with_dnsmasq(knet, tmp_path, body, ping_check=True), timeout=40)


def test_release_seen_by_dnsmasq(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: IPv4Stack, server: Dnsmasq) -> None:
        driver = await configure(stack)
        assert driver.lease is not None
        ours = str(driver.lease.address)
        assert any(ours in line for line in server.lease_lines())
        await driver.stop()
        assert isinstance(driver.history[-1][1], Released)
        assert stack.ipv4.get_ip() == [A(0)] and stack.ipv4.get_ip_gateways() == []
        for _ in range(100):
            if "DHCPRELEASE" in server.log_text() and not any(
                ours in line for line in server.lease_lines()
            ):
                break
            await asyncio.sleep(0.05)
        assert f"DHCPRELEASE({knet.tap}) {ours}" in server.log_text(), server.log_text()
        assert not any(ours in line for line in server.lease_lines())

    run(with_dnsmasq(knet, tmp_path, body), timeout=40)


def test_renewal_before_t1_expiry(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: IPv4Stack, server: Dnsmasq) -> None:
        driver = await configure(stack)
        lease = driver.lease
        assert lease is not None and lease.renew_at is not None
        # The times are the ones dnsmasq sent (it adjusts a short T1 a little).
        sent = dict(re.findall(r"option: (58|59) T[12] +(\d+)s", server.log_text()))
        t1, t2 = int(sent["58"]), int(sent["59"])
        assert t1 < t2 <= 8
        assert lease.renew_at - lease.obtained_at == t1
        assert lease.rebind_at is not None and lease.rebind_at - lease.obtained_at == t2
        for _ in range(100):
            if driver.client.counters.renewals >= 1:
                break
            await asyncio.sleep(0.1)
        renewals = [(t, e) for t, e in driver.history if isinstance(e, Renewed)]
        assert renewals, list(driver.history)
        t, ev = renewals[0]
        assert not ev.rebound and ev.lease.address == lease.address
        # Renewed at T1 (unicast, answered at once), well before T2 and the expiry.
        assert lease.renew_at <= t < lease.rebind_at
        assert ev.lease.expires_at is not None and lease.expires_at is not None
        assert ev.lease.expires_at > lease.expires_at
        assert driver.client.counters.rebinds == 0
        assert stack.ipv4.get_ip() == [lease.address]
        assert server.log_text().count(f"DHCPACK({knet.tap}) {lease.address}") >= 2
        await driver.stop()

    run(
        with_dnsmasq(
            knet, tmp_path, body, "--dhcp-option=option:T1,2", "--dhcp-option=option:T2,6"
        ),
        timeout=40,
    )


def test_nak_after_the_range_changes(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: IPv4Stack, server: Dnsmasq) -> None:
        driver = await configure(stack)
        first = driver.lease
        assert first is not None and in_range(first.address, "10.77.0.50", "10.77.0.60")
        # The server comes back with another range, authoritative: it refuses the renewal.
        await server.stop()
        await server.start(
            "10.77.0.100",
            "10.77.0.110",
            "--dhcp-authoritative",
            "--no-ping",
            "--dhcp-option=option:T1,2",
            "--dhcp-option=option:T2,5",
        )
        for _ in range(150):
            lease = driver.lease
            if lease is not None and lease.address != first.address:
                break
            await asyncio.sleep(0.1)
        kinds = [type(e) for _, e in driver.history]
        assert Nak in kinds, kinds
        nak = next(e for _, e in driver.history if isinstance(e, Nak))
        assert nak.lost == first and nak.server_id == A(KERNEL_IP)
        assert kinds[kinds.index(Nak) + 1] is Bound
        lease = driver.lease
        assert lease is not None and in_range(lease.address, "10.77.0.100", "10.77.0.110")
        assert stack.ipv4.get_ip() == [lease.address]
        assert "DHCPNAK" in server.log_text()
        rc, out = await knet.exec("ping", "-c", "1", "-W", "2", str(lease.address))
        assert rc == 0, out
        await driver.stop()

    run(
        with_dnsmasq(
            knet, tmp_path, body, "--dhcp-option=option:T1,2", "--dhcp-option=option:T2,5"
        ),
        timeout=40,
    )


def test_decline_when_the_kernel_holds_the_offered_address(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: IPv4Stack, server: Dnsmasq) -> None:
        # The kernel side also owns the only address of the range (dnsmasq's own ping
        # check is off): our ARP probe finds it, so we decline it and never use it.
        # The replies must be broadcast: unicast to 10.77.0.50 would stay in the kernel.
        sh("ip", "-n", knet.ns, "addr", "add", "10.77.0.50/24", "dev", knet.tap)
        config = DhcpClientConfig(
            arp_probes=2,
            arp_probe_interval=0.2,
            arp_announce_wait=0.5,
            decline_wait=0.3,
            broadcast_flag=True,
        )
        events: list[Event] = []
        r = await dhcp_configure(stack, timeout=2, config=config, on_event=events.append)
        assert r == Error(Timeout()), r
        declined = [e for e in events if isinstance(e, Declined)]
        assert declined and all(e.address == A("10.77.0.50") for e in declined), server.log_text()
        assert declined[0].mac != stack.ethif.mac()  # the kernel's
        assert not any(isinstance(e, Bound) for e in events)
        assert stack.ipv4.get_ip() == [A(0)]
        log = server.log_text()
        assert f"DHCPDECLINE({knet.tap}) 10.77.0.50" in log, log

    run(with_dnsmasq(knet, tmp_path, body, first="10.77.0.50", last="10.77.0.50"), timeout=40)


def test_direct_stack_in_dhcp_mode_serves_curl(knet: KernelNet, tmp_path: Path) -> None:
    """``DirectStackV4`` with ``mode=DHCP()``: connect completes once bound; the leased
    address serves HTTP to curl in the namespace; disconnect releases the lease."""
    from miragekit.stack import DHCP, DirectStackV4
    from miragekit.v1 import StackConfig

    body = b"served over a DHCP lease\n" * 1000

    async def main() -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        netif = r.value
        knet.move_in()
        server = Dnsmasq(knet, tmp_path)
        await server.start("10.77.0.70", "10.77.0.79", "--no-ping")
        try:
            s = await DirectStackV4.connect(
                StackConfig("dhcp", None, netif, DHCP(timeout=15, config=FAST))
            )
            assert isinstance(s, Ok), s
            stack = s.value
            [addr] = stack.ipv4().get_ip()
            assert in_range(addr, "10.77.0.70", "10.77.0.79")
            assert stack.dhcp is not None and stack.dhcp.lease is not None
            stack.listen_tcpv4(port=80, callback=http_once(body))
            out = tmp_path / "page"
            rc, msg = await knet.exec(
                "curl", "-sS", "--max-time", "20", "-o", str(out), f"http://{addr}/", timeout=30
            )
            assert rc == 0, msg
            assert out.read_bytes() == body
            await stack.disconnect()
            for _ in range(50):
                if "DHCPRELEASE" in server.log_text():
                    break
                await asyncio.sleep(0.1)
            assert "DHCPRELEASE" in server.log_text()
        finally:
            await netif.disconnect()
            await server.stop()

    run(main(), timeout=60)


def test_direct_stack_in_dhcp_mode_without_a_server_errors(knet: KernelNet) -> None:
    from miragekit.result import Unknown
    from miragekit.stack import DHCP, DirectStackV4
    from miragekit.v1 import StackConfig

    async def main() -> None:
        r = await TapNetif.connect(knet.tap)
        assert isinstance(r, Ok), r
        netif = r.value
        knet.move_in()
        try:
            s = await DirectStackV4.connect(
                StackConfig("dhcp", None, netif, DHCP(timeout=2, config=FAST))
            )
            assert s == Error(Unknown("DHCP: no lease within 2 s"))
        finally:
            await netif.disconnect()

    run(main(), timeout=30)
