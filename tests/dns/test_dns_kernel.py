"""DNS over TAP against real peers in a ``mk-`` namespace: dig asks our server; our
resolver asks dnsmasq (static and DHCP-learned) and unbound."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.dns.dnszone import ORIGIN, ZONE
from tests.kernelnet import KERNEL_IP, OUR_IP, KernelNet, run

from miragekit.dns import Authority, NXDomain, Resolver, Server
from miragekit.link import TapNetif
from miragekit.result import Error, Ok
from miragekit.stack import DHCP, DirectStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.kernel

A = ipaddress.IPv4Address


async def with_stack(
    k: KernelNet,
    body: Callable[[DirectStackV4], Awaitable[None]],
    mode: object = None,
    before: Callable[[], Awaitable[None]] | None = None,
) -> None:
    r = await TapNetif.connect(k.tap)
    assert isinstance(r, Ok), r
    netif = r.value
    k.move_in()
    if before is not None:
        await before()  # a server on the kernel side that the stack needs to come up
    s = await DirectStackV4.connect(StackConfig("tap", None, netif, mode or Static(f"{OUR_IP}/24")))
    assert isinstance(s, Ok), s
    try:
        await body(s.value)
    finally:
        await s.value.disconnect()
        await netif.disconnect()


async def dig(k: KernelNet, *args: str) -> str:
    rc, out = await k.exec("dig", f"@{OUR_IP}", "+time=2", "+tries=2", *args, timeout=30)
    assert rc == 0, out
    return out.decode()


def test_dig_asks_our_server(knet: KernelNet) -> None:
    async def body(stack: DirectStackV4) -> None:
        auth = Authority.from_text(ZONE, ORIGIN)
        Server(stack, auth).serve(53)
        short = await dig(knet, "+short", "www.example.test", "A")
        assert sorted(short.split()) == ["10.0.0.80", "10.0.0.81"]
        assert (await dig(knet, "+short", "www.example.test", "AAAA")).split() == ["fd00::80"]
        assert (await dig(knet, "+short", "mail.example.test", "MX")).split() == [
            "10",
            "www.example.test.",
        ]
        assert (await dig(knet, "+short", "txt.example.test", "TXT")).strip() == '"hello world"'
        out = await dig(knet, "nope.example.test", "A")
        assert "status: NXDOMAIN" in out and "flags: qr aa rd" in out
        assert "example.test.\t\t60\tIN\tSOA" in out  # the negative TTL (RFC 2308)
        out = await dig(knet, "big.example.test", "TXT")
        assert "Truncated, retrying in TCP mode" in out and out.count('"aaaa') == 1
        assert "status: NOERROR" in out and auth.counters["truncated"] >= 1
        out = await dig(knet, "+tcp", "alias.example.test", "A")
        assert "alias.example.test.\t300\tIN\tCNAME\twww.example.test." in out

    run(with_stack(knet, body), timeout=90)


def dnsmasq(k: KernelNet, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", k.ns, "/usr/sbin/dnsmasq", "--no-daemon", "--conf-file=/dev/null",
         "--user=root", f"--interface={k.tap}", "--bind-interfaces", "--no-resolv",
         "--no-hosts", f"--pid-file={tmp / 'pid'}", f"--log-facility={tmp / 'log'}",
         "--local=/test/", "--address=/web.test/10.9.9.9", "--address=/web.test/fd00::99",
         "--cname=www.web.test,web.test", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def wait_log(path: Path, word: str) -> None:
    for _ in range(200):
        if path.exists() and word in path.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{word!r} never in {path}")


def test_our_resolver_asks_dnsmasq_and_skips_a_dead_server(knet: KernelNet, tmp_path: Path) -> None:
    async def body(stack: DirectStackV4) -> None:
        proc = dnsmasq(knet, tmp_path, "--port=53")
        try:
            await wait_log(tmp_path / "log", "started")
            # 10.77.0.9 answers nothing (no such host): the first round times out there.
            res = Resolver(stack, ["10.77.0.9", KERNEL_IP], timeout=1.0, rng=random.Random(5))
            r = await res.resolve("www.web.test", "A")
            assert isinstance(r, Ok) and [rd.to_text() for rd in r.value] == ["10.9.9.9"]
            assert await res.addresses("web.test") == Ok([A("10.9.9.9")])
            assert await res.resolve("nothing.test", "A") == Error(NXDomain("nothing.test"))
            # The dead server is asked once; then the one that answered goes first.
            assert res.counters["sent"] == res.counters["queries"] + 1, res.counters
        finally:
            proc.terminate()
            proc.wait()

    run(with_stack(knet, body), timeout=90)


def test_servers_learned_by_dhcp(knet: KernelNet, tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    async def start() -> None:
        procs.append(dnsmasq(
            knet, tmp_path, "--port=53", "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,120s",
            f"--dhcp-leasefile={tmp_path / 'leases'}", f"--dhcp-option=option:dns-server,{KERNEL_IP}",
        ))  # fmt: skip
        await wait_log(tmp_path / "log", "started")

    async def body(stack: DirectStackV4) -> None:
        res = Resolver(stack, rng=random.Random(6))
        assert res.current_servers() == [A(KERNEL_IP)]
        assert await res.addresses("web.test") == Ok([A("10.9.9.9")])

    try:
        run(with_stack(knet, body, DHCP(timeout=20), before=start), timeout=90)
    finally:
        for p in procs:
            p.terminate()
            p.wait()


UNBOUND_CONF = """server:
    interface: {ip}
    port: 53
    access-control: 10.77.0.0/24 allow
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: "{dir}/unbound.log"
    do-ip6: no
    local-zone: "lab.test." static
    local-data: "lab.test. 300 IN SOA ns.lab.test. admin.lab.test. 1 3600 600 86400 30"
    local-data: "db.lab.test. 300 IN A 10.5.5.5"
    local-data: 'db.lab.test. 300 IN TXT "from unbound"'
remote-control:
    control-enable: no
"""


def test_our_resolver_asks_unbound(knet: KernelNet, tmp_path: Path) -> None:
    conf = tmp_path / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(ip=KERNEL_IP, dir=tmp_path))

    async def body(stack: DirectStackV4) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", knet.ns, "unbound", "-d", "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            res = Resolver(stack, [KERNEL_IP], timeout=1.0, attempts=10, rng=random.Random(7))
            assert await res.addresses("db.lab.test") == Ok([A("10.5.5.5")])
            r = await res.resolve("db.lab.test", "TXT")
            assert isinstance(r, Ok) and r.value[0].to_text() == '"from unbound"'
            assert await res.resolve("none.lab.test") == Error(NXDomain("none.lab.test"))
        finally:
            proc.terminate()
            proc.wait()

    run(with_stack(knet, body), timeout=90)
